"""The data layer on small files written here: every format and variant, label sets, the row
checks, file-level errors, Dataset and the stratified split."""

from __future__ import annotations

import re
import copy
import json

import numpy as np
import pandas as pd
import pytest

from relex.data import COLUMNS, Dataset, LabelSet, read_dataset, stratified_split
from relex.data.io import from_records, load
from relex.data.split import split_indices
from relex.errors import BadRowsError, RelexError

# (sentence, subject word, subject type, object word, object type, label, source)
ROWS = [
    ("〈Something〉는 조지 해리슨이 쓰고 비틀즈가 1969년 앨범 《Abbey Road》에 담은 노래다.",
     "비틀즈", "ORG", "조지 해리슨", "PER", "no_relation", "wikipedia"),
    ("이순신은 조선 중기의 무신이다.", "이순신", "PER", "무신", "POH", "per:title", "wikipedia"),
    ("삼성전자는 1969년 수원에서 설립되었다.", "삼성전자", "ORG", "1969년", "DAT", "org:founded",
     "wikitree"),
    ("세종은 조선의 제4대 국왕으로, 태종의 아들이다.", "세종", "PER", "태종", "PER", "per:parents",
     "wikipedia"),
    ("김연아는 대한민국의 피겨 스케이팅 선수이다.", "김연아", "PER", "선수", "POH", "per:title",
     "policy_briefing"),
    ("카카오는 판교에 본사를 두고 있다.", "카카오", "ORG", "판교", "LOC", "org:place_of_headquarters",
     "wikitree"),
    ("'큰따옴표\"와 작은따옴표' 가 든 단어도 읽는다.", "'큰따옴표\"와 작은따옴표'", "POH", "단어", "POH",
     "no_relation", "wikipedia"),
]
LABELS = ["no_relation", "org:founded", "org:place_of_headquarters", "per:parents", "per:title"]


def ent(sentence: str, word: str, etype: str) -> dict:
    start = sentence.index(word)
    return {"word": word, "start_idx": start, "end_idx": start + len(word) - 1, "type": etype}


def records(rows=ROWS, id_key="guid", ids=None) -> list[dict]:
    out = []
    for i, (s, sw, st, ow, ot, label, src) in enumerate(rows):
        out.append({id_key: ids[i] if ids else f"r{i}", "sentence": s,
                    "subject_entity": ent(s, sw, st), "object_entity": ent(s, ow, ot),
                    "label": label, "source": src})
    return out


def expected_frame(rows=ROWS, ids=None) -> pd.DataFrame:
    recs = records(rows, ids=ids)
    return pd.DataFrame({
        "id": [r["guid"] for r in recs],
        "sentence": [r["sentence"] for r in recs],
        "subj_word": [r["subject_entity"]["word"] for r in recs],
        "subj_start": [r["subject_entity"]["start_idx"] for r in recs],
        "subj_end": [r["subject_entity"]["end_idx"] for r in recs],
        "subj_type": [r["subject_entity"]["type"] for r in recs],
        "obj_word": [r["object_entity"]["word"] for r in recs],
        "obj_start": [r["object_entity"]["start_idx"] for r in recs],
        "obj_end": [r["object_entity"]["end_idx"] for r in recs],
        "obj_type": [r["object_entity"]["type"] for r in recs],
        "label": [r["label"] for r in recs],
        "source": [r["source"] for r in recs],
    })


def write_json(path, recs):
    path.write_text(json.dumps(recs, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def write_jsonl(path, recs):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in recs) + "\n",
                    encoding="utf-8")
    return path


def competition_frame(recs, id_key="id") -> pd.DataFrame:
    """The boostcamp layout: entity columns as str(dict)."""
    return pd.DataFrame({
        id_key: [r["guid"] for r in recs],
        "sentence": [r["sentence"] for r in recs],
        "subject_entity": [str(r["subject_entity"]) for r in recs],
        "object_entity": [str(r["object_entity"]) for r in recs],
        "label": [r["label"] for r in recs],
        "source": [r["source"] for r in recs],
    })


def flat_frame(recs, prefixes=("subj_", "obj_"), keys=("word", "start", "end", "type")) -> pd.DataFrame:
    d = {"id": [r["guid"] for r in recs], "sentence": [r["sentence"] for r in recs]}
    for prefix, name in zip(prefixes, ("subject_entity", "object_entity")):
        for key, src in zip(keys, ("word", "start_idx", "end_idx", "type")):
            d[prefix + key] = [r[name][src] for r in recs]
    d["label"] = [r["label"] for r in recs]
    d["source"] = [r["source"] for r in recs]
    return pd.DataFrame(d)


def write_csv(path, frame, **kw):
    frame.to_csv(path, index=kw.pop("index", False), **kw)
    return path


def assert_same_table(ds: Dataset, want: pd.DataFrame) -> None:
    assert list(ds.frame.columns) == list(COLUMNS)
    got = ds.frame
    for c in COLUMNS:
        assert got[c].tolist() == want[c].tolist(), c
    for c in ("subj_start", "subj_end", "obj_start", "obj_end"):
        assert got[c].dtype == np.int64


# --- formats ----------------------------------------------------------------------------------------
def _all_formats(tmp_path):
    recs = records()
    comp = competition_frame(recs)
    return {
        "json": write_json(tmp_path / "a.json", recs),
        "jsonl": write_jsonl(tmp_path / "a.jsonl", recs),
        "jsonl_named_json": write_jsonl(tmp_path / "lines.json", recs),
        "csv": write_csv(tmp_path / "a.csv", comp),
        "csv_index": write_csv(tmp_path / "idx.csv", comp, index=True),
        "tsv": write_csv(tmp_path / "a.tsv", comp, sep="\t"),
        "csv_flat": write_csv(tmp_path / "flat.csv", flat_frame(recs)),
        "parquet_struct": _parquet(tmp_path / "s.parquet", pd.DataFrame(recs).rename(columns={"guid": "id"})),
        "parquet_dictstr": _parquet(tmp_path / "d.parquet", comp),
        "parquet_flat": _parquet(tmp_path / "f.parquet", flat_frame(recs)),
    }


def _parquet(path, frame):
    frame.to_parquet(path, index=False)
    return path


def test_every_format_gives_the_same_table_and_hash(tmp_path):
    want = expected_frame()
    hashes = set()
    for name, path in _all_formats(tmp_path).items():
        ds = read_dataset(path)
        assert len(ds) == len(ROWS), name
        assert_same_table(ds, want)
        assert ds.labels.names == tuple(LABELS), name
        assert ds.skipped == 0
        hashes.add(ds.content_hash)
    assert len(hashes) == 1


def test_parquet_with_index_and_csv_with_unnamed_index(tmp_path):
    recs = records()
    p = tmp_path / "i.parquet"
    competition_frame(recs).set_index("id", drop=False).rename_axis("idx").reset_index().to_parquet(p)
    assert_same_table(read_dataset(p), expected_frame())
    # pandas' own leading index column, written twice over (Unnamed: 0 kept, then an index again)
    c = tmp_path / "twice.csv"
    competition_frame(recs).to_csv(c)
    pd.read_csv(c).to_csv(c)
    assert_same_table(read_dataset(c), expected_frame())


def test_csv_quotes_and_backslashes_in_words_round_trip(tmp_path):
    rows = ROWS + [("경로 C:\\data\\x 에 저장했다.", "C:\\data\\x", "POH", "저장", "POH", "no_relation", "")]
    recs = records(rows)
    ds = read_dataset(write_csv(tmp_path / "q.csv", competition_frame(recs)))
    assert ds.frame["subj_word"].tolist()[-2:] == ["'큰따옴표\"와 작은따옴표'", "C:\\data\\x"]


def test_key_and_column_variants(tmp_path):
    recs = records()
    variants = []
    for r in recs:
        v = dict(r)
        s, o = r["subject_entity"], r["object_entity"]
        v["subject_entity"] = {"text": s["word"], "start": str(s["start_idx"]),
                               "end": str(s["end_idx"]), "entity_type": s["type"]}
        v["object_entity"] = {"text": o["word"], "start_idx": float(o["start_idx"]),
                              "end_idx": o["end_idx"], "type": o["type"]}
        variants.append(v)
    assert_same_table(read_dataset(write_json(tmp_path / "v.json", variants)), expected_frame())
    # the same as dict strings in a CSV keyed by id
    frame = competition_frame(variants)
    assert_same_table(read_dataset(write_csv(tmp_path / "v.csv", frame)), expected_frame())
    # JSON object strings instead of Python dict strings
    frame = competition_frame(recs)
    frame["subject_entity"] = [json.dumps(r["subject_entity"], ensure_ascii=False) for r in recs]
    assert_same_table(read_dataset(write_csv(tmp_path / "j.csv", frame)), expected_frame())
    frame.loc[1, "subject_entity"] = '{"word": "이순신", "start_idx": 0, "end_idx": 2, "type": null}'
    with pytest.raises(BadRowsError, match=r"row 2 \[CSV line 3\] \(id r1\): subject_entity: type is"):
        read_dataset(write_csv(tmp_path / "j.csv", frame))
    # flattened subject_*/object_* columns with start_idx/end_idx names
    flat = flat_frame(recs, prefixes=("subject_", "object_"), keys=("word", "start_idx", "end_idx", "type"))
    assert_same_table(read_dataset(write_csv(tmp_path / "f.csv", flat)), expected_frame())


def test_missing_source_is_empty_and_missing_id_is_the_row_number(tmp_path):
    recs = records()
    for r in recs:
        del r["source"], r["guid"]
    ds = read_dataset(write_json(tmp_path / "n.json", recs))
    assert ds.frame["source"].tolist() == [""] * len(ROWS)
    assert ds.frame["id"].tolist() == [str(i) for i in range(len(ROWS))]


def test_numeric_ids_keep_their_text(tmp_path):
    recs = records(ids=["007", "8", "9", "10", "11", "12", "13"])
    ds = read_dataset(write_csv(tmp_path / "ids.csv", competition_frame(recs)))
    assert ds.frame["id"].tolist()[:2] == ["007", "8"]
    recs = records()
    for i, r in enumerate(recs):
        r["guid"] = i  # a number in JSON
    assert read_dataset(write_json(tmp_path / "n.json", recs)).frame["id"].tolist()[:2] == ["0", "1"]


def test_bom_is_ignored(tmp_path):
    p = write_csv(tmp_path / "bom.csv", competition_frame(records()), encoding="utf-8-sig")
    assert p.read_bytes()[:3] == b"\xef\xbb\xbf"
    assert_same_table(read_dataset(p), expected_frame())


# --- label sets ---------------------------------------------------------------------------------------
def test_labelset_basics():
    ls = LabelSet.from_names(["per:title", "no_relation", "org:founded", "per:title"])
    assert ls.names == ("no_relation", "org:founded", "per:title")
    assert ls.negative_id == 0 and len(ls) == 3
    assert ls.id("per:title") == 2
    assert ls.ids(["org:founded", None, "no_relation"]).tolist() == [1, -1, 0]
    assert ls.ids([]).dtype == np.int64
    with pytest.raises(RelexError, match="unknown label 'x'"):
        ls.id("x")
    with pytest.raises(RelexError, match="unknown label"):
        ls.ids(["per:title", "x"])
    assert LabelSet.from_dict(ls.to_dict()) == ls
    with pytest.raises(RelexError, match="unique"):
        LabelSet(("a", "a"), "a")
    with pytest.raises(RelexError, match="'no_relation' does not occur"):
        LabelSet.from_names(["관계없음", "곤충:특성"])
    ko = LabelSet.from_names(["곤충:특성", "관계없음", "곤충:먹이"], "관계없음")
    assert ko.names == ("관계없음", "곤충:먹이", "곤충:특성") and ko.negative_id == 0


def test_labelset_from_file_keeps_order(tmp_path):
    p = tmp_path / "relation_list.json"
    names = ["no_relation", "per:title", "org:founded"]
    p.write_text(json.dumps({"relations": names}), encoding="utf-8")
    assert LabelSet.from_file(p).names == tuple(names)
    p2 = tmp_path / "labels.json"
    p2.write_text(json.dumps({"names": ["관계없음", "b"], "negative": "관계없음"}), encoding="utf-8")
    assert LabelSet.from_file(p2).negative_id == 0
    p3 = tmp_path / "list.json"
    p3.write_text(json.dumps(["b", "no_relation"]), encoding="utf-8")
    assert LabelSet.from_file(p3).negative_id == 1
    p.write_text(json.dumps({"relations": ["a", "b"]}), encoding="utf-8")
    with pytest.raises(RelexError, match=r"relation_list.json: the negative label 'no_relation' is not"):
        LabelSet.from_file(p)
    p.write_text(json.dumps({"relations": ["a", "a", "no_relation"]}), encoding="utf-8")
    with pytest.raises(RelexError, match="repeated labels: 'a'"):
        LabelSet.from_file(p)
    p.write_text("{", encoding="utf-8")
    with pytest.raises(RelexError, match="invalid JSON"):
        LabelSet.from_file(p)
    with pytest.raises(RelexError, match="not found"):
        LabelSet.from_file(tmp_path / "nope.json")


def test_read_with_a_label_list(tmp_path):
    rel = tmp_path / "relation_list.json"
    order = ["no_relation", "per:title", "per:parents", "org:founded", "org:place_of_headquarters",
             "org:dissolved"]
    rel.write_text(json.dumps({"relations": order}), encoding="utf-8")
    path = write_json(tmp_path / "a.json", records())
    ds = read_dataset(path, labels=rel)
    assert ds.labels.names == tuple(order)
    assert ds.label_ids().tolist() == [order.index(r[5]) for r in ROWS]
    ds2 = read_dataset(path, labels=LabelSet(tuple(order[::-1]), "no_relation"))
    assert ds2.label_ids().tolist() == [order[::-1].index(r[5]) for r in ROWS]
    # a label outside the list is a bad row
    rel.write_text(json.dumps({"relations": ["no_relation", "per:title"]}), encoding="utf-8")
    with pytest.raises(BadRowsError) as e:
        read_dataset(path, labels=rel)
    msg = str(e.value)
    assert "a.json: row 3 (id r2): label 'org:founded' is not in the label set" in msg
    assert "3 bad rows of 7" in msg


def test_custom_negative_label(tmp_path):
    rows = [r[:5] + ("관계없음" if r[5] == "no_relation" else r[5],) + r[6:] for r in ROWS]
    path = write_json(tmp_path / "ko.json", records(rows))
    with pytest.raises(RelexError, match=r"ko.json: the negative label 'no_relation' does not occur.*"
                                         r"probably '관계없음'"):
        read_dataset(path)
    ds = read_dataset(path, negative="관계없음")
    assert ds.labels.names[0] == "관계없음" and ds.labels.negative == "관계없음"
    assert load(path, negative=None).labels.negative == "관계없음"  # detected


def test_unlabelled_files(tmp_path):
    recs = records()
    for r in recs:
        del r["label"]
    path = write_json(tmp_path / "test.json", recs)
    with pytest.raises(RelexError, match=r"test.json: missing column 'label'"):
        read_dataset(path)
    ds = read_dataset(path, require_labels=False)
    assert ds.frame["label"].tolist() == [None] * len(ROWS)
    assert ds.label_ids().tolist() == [-1] * len(ROWS)
    # a competition test file: placeholder label 100, read against the training labels
    frame = competition_frame(records())
    frame["label"] = "100"
    ds = read_dataset(write_csv(tmp_path / "t.csv", frame), require_labels=False,
                      labels=LabelSet(tuple(LABELS)))
    assert ds.label_ids().tolist() == [-1] * len(ROWS)
    # empty labels are missing labels
    frame = competition_frame(records())
    frame.loc[2, "label"] = ""
    with pytest.raises(BadRowsError, match=r"row 3 \[CSV line 4\] \(id r2\): label is missing"):
        read_dataset(write_csv(tmp_path / "e.csv", frame))


# --- bad rows -------------------------------------------------------------------------------------------
def _mutate_json(tmp_path, i, fn, name="bad.json"):
    recs = records()
    fn(recs[i])
    return write_json(tmp_path / name, recs)


BAD_CASES = {
    "span_mismatch": (lambda r: r["subject_entity"].update(word="비틀"),
                      r"subject_entity: sentence\[24:26\+1\] is '비틀즈' but word is '비틀'"),
    "exclusive_end": (lambda r: r["object_entity"].update(end_idx=r["object_entity"]["end_idx"] + 1),
                      r"object_entity: sentence\[13:19\+1\] is '조지 해리슨이'.*looks exclusive"),
    "outside": (lambda r: r["object_entity"].update(start_idx=200, end_idx=201),
                rf"object_entity: end_idx 201 is outside the sentence \(length {len(ROWS[0][0])}, "
                rf"last index {len(ROWS[0][0]) - 1}\)"),
    "start_after_end": (lambda r: r["object_entity"].update(start_idx=18, end_idx=13),
                        r"object_entity: start_idx 18 > end_idx 13"),
    "negative_index": (lambda r: r["object_entity"].update(start_idx=-1),
                       r"object_entity: negative index"),
    "overlap": (lambda r: r.update(object_entity={"word": "비틀즈가", "start_idx": 24, "end_idx": 27,
                                                  "type": "ORG"}),
                r"subject \(24-26 '비틀즈'\) and object \(24-27 '비틀즈가'\) spans overlap"),
    "empty_type": (lambda r: r["subject_entity"].update(type=" "), r"subject_entity: type is missing or empty"),
    "no_type_key": (lambda r: r["subject_entity"].pop("type"), r"subject_entity has no 'type' key"),
    "bad_index": (lambda r: r["subject_entity"].update(start_idx="x24"),
                  r"subject_entity: start_idx is 'x24', not an integer"),
    "bool_index": (lambda r: r["subject_entity"].update(start_idx=True), r"not an integer"),
    "empty_sentence": (lambda r: r.update(sentence=""), r"sentence is missing or empty"),
    "missing_entity": (lambda r: r.pop("object_entity"), r"object_entity is missing"),
    "entity_not_dict": (lambda r: r.update(object_entity=[1, 2]), r"object_entity is a list, not a dict"),
    "missing_label": (lambda r: r.update(label=None), r"label is missing or empty"),
    "duplicate_id": (lambda r: r.update(guid="r5"), None),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_each_kind_of_bad_row_is_reported_with_file_row_id_and_reason(tmp_path, case):
    fn, pattern = BAD_CASES[case]
    row = 0 if case != "duplicate_id" else 6
    path = _mutate_json(tmp_path, row, fn)
    with pytest.raises(BadRowsError) as e:
        read_dataset(path)
    err = e.value
    assert len(err.bad_rows) == 1 and err.total_rows == len(ROWS)
    b = err.bad_rows[0]
    assert b.file == str(path) and b.row == row + 1
    if case == "duplicate_id":
        assert b.id == "r5" and b.reason == "duplicate id 'r5' (first at row 6)"
    else:
        assert b.id == "r0"
        assert __import__("re").search(pattern, b.reason), b.reason
    assert f"{path}: row {row + 1} (id {b.id}): " in str(err)
    assert "--skip-bad-rows" in str(err)
    ds = read_dataset(path, skip_bad_rows=True)
    assert len(ds) == len(ROWS) - 1 and ds.skipped == 1
    assert ds.bad_rows[0] == b
    assert b.id not in ds.frame["id"].tolist() or case == "duplicate_id"


def test_csv_bad_rows_name_the_line_and_malformed_dict_strings(tmp_path):
    recs = records()
    recs[1]["sentence"] = recs[1]["sentence"].replace("조선", "조선\n")  # a quoted line break
    recs[1]["object_entity"] = ent(recs[1]["sentence"], "무신", "POH")
    frame = competition_frame(recs)
    frame.loc[3, "subject_entity"] = "{'word': '세종', 'start_idx': 0, 'end_idx': 1, 'type': ‘PER'}"
    frame.loc[4, "object_entity"] = "{'word': '선수', 'start_idx': 16"
    frame.loc[5, "object_entity"] = "['판교', 4, 5, 'LOC']"
    path = write_csv(tmp_path / "train.csv", frame)
    with pytest.raises(BadRowsError) as e:
        read_dataset(path)
    lines = str(e.value).splitlines()
    assert lines[0] == f"3 bad rows of 7 in {path}:"
    # row 2 spans two lines, so row 4 starts on line 6
    assert lines[1].startswith(f"  {path}: row 4 [CSV line 6] (id r3): subject_entity is not a valid "
                               f"dict string (invalid character '‘' (U+2018)")
    assert "replace the curly quote ‘ with straight quotes" in lines[1]
    assert lines[2].startswith(f"  {path}: row 5 [CSV line 7] (id r4): object_entity is not a valid dict string")
    assert lines[3].startswith(f"  {path}: row 6 [CSV line 8] (id r5): object_entity is a list, not a dict")
    ds = read_dataset(path, skip_bad_rows=True)
    assert ds.frame["id"].tolist() == ["r0", "r1", "r2", "r6"] and ds.skipped == 3
    assert ds.frame["sentence"][1] == recs[1]["sentence"]


def test_jsonl_bad_rows_name_the_line(tmp_path):
    recs = records()
    text = "\n".join(json.dumps(r, ensure_ascii=False) for r in recs)
    lines = text.split("\n")
    lines[2] = lines[2][:-5]  # truncated record
    lines.insert(1, "")  # a blank line
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines + ["[1, 2]"]), encoding="utf-8")
    with pytest.raises(BadRowsError) as e:
        read_dataset(path)
    bad = e.value.bad_rows
    assert [(b.row, b.where) for b in bad] == [(3, "line 4"), (8, "line 9")]
    assert "invalid JSON" in bad[0].reason and "not an object" in bad[1].reason
    assert f"{path}: row 3 [line 4]: invalid JSON" in str(e.value)


def test_first_twenty_bad_rows_and_a_count(tmp_path):
    recs = [copy.deepcopy(r) for r in records() * 5]
    for i, r in enumerate(recs):
        r["guid"] = f"x{i}"
        if i % 7 != 0:
            r["subject_entity"] = dict(r["subject_entity"], end_idx=999)
    path = write_json(tmp_path / "many.json", recs)
    with pytest.raises(BadRowsError) as e:
        read_dataset(path)
    msg = str(e.value).splitlines()
    assert msg[0] == f"30 bad rows of 35 in {path}:"
    assert sum(1 for m in msg if ": row " in m) == 20
    assert "  ... and 10 more" in msg
    assert len(e.value.bad_rows) == 30


def test_all_rows_bad_with_skip_is_an_error(tmp_path):
    recs = records()
    for r in recs:
        r["label"] = ""
    path = write_json(tmp_path / "nolabels.json", recs)
    with pytest.raises(RelexError, match=r"nolabels.json: no valid rows; all 7 rows are bad"):
        read_dataset(path, skip_bad_rows=True)


# --- file-level errors ---------------------------------------------------------------------------------------
def _err(path, **kw) -> str:
    with pytest.raises(RelexError) as e:
        read_dataset(path, **kw)
    assert not isinstance(e.value, BadRowsError)
    return str(e.value)


def test_file_level_errors(tmp_path):
    assert "not found" in _err(tmp_path / "missing.csv")
    (tmp_path / "x.txt").write_text("a")
    assert "x.txt: unknown file type '.txt'" in _err(tmp_path / "x.txt")
    (tmp_path / "d.json").mkdir()
    assert "is a directory" in _err(tmp_path / "d.json")
    for name in ("e.csv", "e.json", "e.jsonl"):
        (tmp_path / name).write_text("  \n", encoding="utf-8")
        assert f"{name}: the file is empty" in _err(tmp_path / name)
    (tmp_path / "h.csv").write_text("id,sentence,subject_entity,object_entity,label\n", encoding="utf-8")
    assert "h.csv: no data rows" in _err(tmp_path / "h.csv")
    (tmp_path / "l.json").write_text("[]", encoding="utf-8")
    assert "l.json: no records" in _err(tmp_path / "l.json")
    (tmp_path / "bad.json").write_text('[{"guid": "a",\n "sentence": }]', encoding="utf-8")
    assert "bad.json: invalid JSON at line 2 column 14" in _err(tmp_path / "bad.json")
    (tmp_path / "obj.json").write_text('{"guid": "a"}', encoding="utf-8")
    assert "obj.json: expected a JSON list of records" in _err(tmp_path / "obj.json")
    (tmp_path / "rel.json").write_text('{"relations": ["no_relation"]}', encoding="utf-8")
    assert "rel.json: this is a label list, not a data file" in _err(tmp_path / "rel.json")
    (tmp_path / "str.json").write_text('"text"', encoding="utf-8")
    assert "found a JSON string" in _err(tmp_path / "str.json")
    (tmp_path / "p.parquet").write_bytes(b"PAR1 this is not parquet")
    assert "p.parquet: not a readable Parquet file" in _err(tmp_path / "p.parquet")
    (tmp_path / "ragged.csv").write_text('id,sentence\n1,"a\n2,b,c,d\n', encoding="utf-8")
    assert "ragged.csv: cannot parse as CSV" in _err(tmp_path / "ragged.csv")


def test_korean_windows_encoding_is_named(tmp_path):
    path = tmp_path / "cp.csv"
    competition_frame(records()).to_csv(path, index=False, encoding="cp949")
    msg = _err(path)
    assert msg.startswith(f"{path}: not UTF-8 text (byte 0x")
    assert "CP949/EUC-KR" in msg and "iconv -f cp949 -t utf-8 cp.csv" in msg
    jpath = tmp_path / "cp.json"
    jpath.write_bytes(json.dumps(records(), ensure_ascii=False).encode("euc-kr", errors="replace"))
    assert "CP949/EUC-KR" in _err(jpath)
    u16 = tmp_path / "u16.csv"
    competition_frame(records()).to_csv(u16, index=False, encoding="utf-16")
    assert "UTF-16" in _err(u16)
    latin = tmp_path / "bin.jsonl"
    latin.write_bytes(b'{"a": "\xff\xfe\xfd\xff"}\n')
    m = _err(latin)
    assert "not UTF-8 text" in m and "CP949" not in m


def test_missing_columns_say_what_to_rename(tmp_path):
    frame = competition_frame(records()).rename(columns={"subject_entity": "subj"})
    msg = _err(write_csv(tmp_path / "train.csv", frame))
    assert msg == (f"{tmp_path / 'train.csv'}: missing column 'subject_entity' (found: 'id', "
                   f"'sentence', 'subj', 'object_entity', 'label', 'source'); rename 'subj' to "
                   f"'subject_entity'")
    frame = competition_frame(records()).rename(
        columns={"sentence": "text", "object_entity": "tail", "label": "relation"})
    msg = _err(write_csv(tmp_path / "t2.csv", frame))
    assert "missing columns 'sentence', 'object_entity', 'label'" in msg
    assert "rename 'text' to 'sentence', rename 'tail' to 'object_entity', rename 'relation' to 'label'" in msg
    flat = flat_frame(records()).drop(columns=["obj_type"])
    msg = _err(write_csv(tmp_path / "f.csv", flat))
    assert "missing column 'object_entity'" in msg and "or add 'obj_type'" in msg
    frame = competition_frame(records()).drop(columns=["subject_entity"])
    assert "subj_word/subj_start/subj_end/subj_type" in _err(write_csv(tmp_path / "n.csv", frame))


def test_semicolon_csv_is_explained(tmp_path):
    path = write_csv(tmp_path / "semi.csv", competition_frame(records()), sep=";")
    assert "separates fields with semicolons; relex reads comma-separated .csv" in _err(path)


def test_entity_dicts_with_other_key_names(tmp_path):
    recs = records()
    for r in recs:
        e = r["subject_entity"]
        r["subject_entity"] = {"w": e["word"], "start_idx": e["start_idx"], "end_idx": e["end_idx"],
                               "kind": e["type"]}
    msg = _err(write_json(tmp_path / "k.json", recs))
    assert "k.json: the subject_entity entries have keys 'w', 'start_idx', 'end_idx', 'kind'" in msg
    assert msg.endswith("rename 'w' to 'word', rename 'kind' to 'type'")


def test_exclusive_end_indices_everywhere(tmp_path):
    recs = records()
    for r in recs:
        for k in ("subject_entity", "object_entity"):
            r[k]["end_idx"] += 1
    assert "every row the end index looks exclusive" in _err(write_json(tmp_path / "x.json", recs))


# --- Dataset -------------------------------------------------------------------------------------------------
def test_content_hash_ignores_id_but_not_content(tmp_path):
    base = read_dataset(write_json(tmp_path / "a.json", records()))
    other_ids = read_dataset(write_json(tmp_path / "b.json", records(ids=[f"z{i}" for i in range(7)])))
    assert base.content_hash == other_ids.content_hash
    assert re.fullmatch(r"[0-9a-f]{64}", base.content_hash)  # a sha256 hex digest

    def changed(fn):
        recs = records()
        fn(recs)
        return read_dataset(write_json(tmp_path / "c.json", recs)).content_hash

    assert changed(lambda rs: rs[0].update(label="per:title")) != base.content_hash
    assert changed(lambda rs: rs[3]["object_entity"].update(type="ORG")) != base.content_hash
    assert changed(lambda rs: rs[1].update(source="x")) != base.content_hash
    assert changed(lambda rs: rs.reverse()) != base.content_hash
    unl = read_dataset(write_json(tmp_path / "a.json", records()), require_labels=False)
    assert unl.content_hash == base.content_hash


def test_subset_and_label_ids(tmp_path):
    ds = read_dataset(write_json(tmp_path / "a.json", records()))
    ids = ds.label_ids()
    assert ids.dtype == np.int64
    assert ids.tolist() == [LABELS.index(r[5]) for r in ROWS]
    sub = ds.subset([5, 1, 1])
    assert len(sub) == 3 and sub.frame["id"].tolist() == ["r5", "r1", "r1"]
    assert sub.label_ids().tolist() == [ids[5], ids[1], ids[1]]
    assert list(sub.frame.index) == [0, 1, 2]
    assert sub.labels is ds.labels and sub.content_hash != ds.content_hash
    assert ds.subset(np.arange(len(ds))).content_hash == ds.content_hash
    mask = np.zeros(len(ds), dtype=bool)
    mask[[0, 6]] = True
    assert ds.subset(mask).frame["id"].tolist() == ["r0", "r6"]
    assert ds.entity_types() == ["DAT", "LOC", "ORG", "PER", "POH"]
    assert "7 rows" in repr(ds)


# --- split ------------------------------------------------------------------------------------------------
def test_split_keeps_class_proportions():
    rng = np.random.default_rng(0)
    y = rng.choice(5, size=1000, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    tr, va = split_indices(y, 0.2, seed=3)
    assert len(np.intersect1d(tr, va)) == 0
    assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(1000))
    assert len(va) == 200
    assert np.all(np.diff(tr) > 0) and np.all(np.diff(va) > 0)
    for c in range(5):
        total = int((y == c).sum())
        assert abs(int((y[va] == c).sum()) - 0.2 * total) <= 1, c
    tr2, va2 = split_indices(y, 0.2, seed=3)
    assert np.array_equal(va, va2)
    assert not np.array_equal(va, split_indices(y, 0.2, seed=4)[1])


def test_split_keeps_singletons_in_train_and_handles_tiny_sets():
    y = np.array([0] * 10 + [1] * 10 + [2] + [3])
    tr, va = split_indices(y, 0.2, seed=0)
    assert 20 in tr and 21 in tr
    assert len(va) == 5 and set(y[va]) <= {0, 1}
    # fewer validation rows than classes: falls back to a plain split, no crash
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    tr, va = split_indices(y, 0.2, seed=0)
    assert len(va) == 2 and len(tr) == 8
    with pytest.raises(RelexError, match="between 0 and 1"):
        split_indices(y, 1.0, seed=0)
    with pytest.raises(RelexError, match="cannot split"):
        split_indices(np.array([0, 1, 2]), 0.5, seed=0)


def test_stratified_split_of_a_dataset(tmp_path):
    recs = [copy.deepcopy(r) for r in records() * 6]
    for i, r in enumerate(recs):
        r["guid"] = f"x{i}"
    recs.append(dict(records()[0], guid="lonely", label="org:dissolved"))
    ds = read_dataset(write_json(tmp_path / "a.json", recs))
    train, valid = stratified_split(ds, 0.25, seed=1)
    assert len(train) + len(valid) == len(ds)
    assert set(train.frame["id"]) | set(valid.frame["id"]) == set(ds.frame["id"])
    assert "lonely" in set(train.frame["id"])
    assert train.labels is ds.labels and valid.labels is ds.labels
    got = valid.frame["label"].value_counts().to_dict()
    want = ds.frame["label"].value_counts().to_dict()
    for label, n in got.items():
        assert abs(n - 0.25 * want[label]) <= 1


def test_from_records_checks_like_a_file(tmp_path):
    recs = records()
    ds = from_records(recs)
    assert_same_table(ds, expected_frame())
    assert ds.path is None
    assert ds.content_hash == read_dataset(write_json(tmp_path / "a.json", recs)).content_hash
    recs[2]["object_entity"]["word"] = "2000년"
    with pytest.raises(BadRowsError, match=r"<records>: row 3 \(id r2\): object_entity: sentence"):
        from_records(recs)
    assert len(from_records(recs, skip_bad_rows=True)) == len(ROWS) - 1
    with pytest.raises(RelexError, match="mine: no records"):
        from_records([], name="mine")

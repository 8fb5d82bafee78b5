"""`relex data fix` and relex.data.repair: one test per repair kind on hand-made rows, what stays
bad, the written formats, and the label / column rules of the reader that the repairs answer."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from relex.data.io import load, read_dataset
from relex.data.repair import repair_file
from relex.errors import BadRowsError


def ent(word, start, end, typ="PER"):
    return {"word": word, "start_idx": start, "end_idx": end, "type": typ}


def rec(guid, sentence, subj, obj, label="rel"):
    return {"guid": guid, "sentence": sentence, "subject_entity": subj, "object_entity": obj,
            "label": label}


def write_json(path: Path, records) -> Path:
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    """Rows as the competition CSV; entity values that are dicts become ``str(dict)``."""
    frame = pd.DataFrame([{k: (str(v) if isinstance(v, dict) else v) for k, v in r.items()}
                          for r in rows])
    frame.to_csv(path, index=False)
    return path


# a clean row that every hand-made file carries, with the negative label
CLEAN = rec("c0", "이순신은 조선의 장군이다.", ent("이순신", 0, 2), ent("조선", 5, 6, "ORG"), "no_relation")


def cli(argv, capsys):
    """Run ``relex ARGV`` in process: (exit code, stdout, stderr)."""
    from relex.cli import main

    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def only_changes(repair, kind):
    return [c for c in repair.changes if c.kind == kind]


# --- quotes ----------------------------------------------------------------------------------------
def test_curly_and_doubled_quotes_in_entity_strings(tmp_path):
    s = "이순신은 조선의 장군이다."
    rows = [
        {"id": 0, "sentence": s, "subject_entity": "{'word': '이순신', 'start_idx': 0, 'end_idx': 2, 'type': ‘PER'}",
         "object_entity": ent("조선", 5, 6, "ORG"), "label": "rel"},
        {"id": 1, "sentence": s, "subject_entity": ent("이순신", 0, 2),
         "object_entity": "{‘word’: ‘조선’, ‘start_idx’: 5, ‘end_idx’: 6, ‘type’: ‘ORG’}", "label": "rel"},
        {"id": 2, "sentence": s, "subject_entity": '{""word"": ""이순신"", ""start_idx"": 0, ""end_idx"": 2, ""type"": ""PER""}',
         "object_entity": ent("조선", 5, 6, "ORG"), "label": "no_relation"},
    ]
    path = write_csv(tmp_path / "q.csv", rows)
    with pytest.raises(BadRowsError):
        read_dataset(path)
    repair = repair_file(path)
    quotes = only_changes(repair, "quotes")
    assert [(c.row, c.field) for c in quotes] == [(1, "subject_entity"), (2, "object_entity"),
                                                  (3, "subject_entity")]
    assert quotes[0].before.endswith("'type': ‘PER'}") and quotes[0].after.endswith("'type': 'PER'}")
    assert quotes[0].where == "CSV line 2" and quotes[0].id == "0"
    ds = repair.dataset()
    assert not ds.bad_rows and len(ds) == 3
    assert ds.frame["subj_type"].tolist() == ["PER", "PER", "PER"]
    assert ds.frame["obj_word"].tolist() == ["조선"] * 3
    assert repair.counts() == {"quotes": (3, 3)}


def test_curly_quotes_inside_a_word_that_parses_are_kept(tmp_path):
    s = "그는 ‘조선’의 장군 이순신이다."
    word = "‘조선’"
    start = s.index(word)
    path = write_json(tmp_path / "w.json", [
        rec("a", s, ent("이순신", s.index("이순신"), s.index("이순신") + 2),
            ent(word, start, start + len(word) - 1, "ORG")), CLEAN])
    repair = repair_file(path)
    assert repair.changes == []
    assert repair.dataset().frame["obj_word"].tolist()[0] == word


# --- re-anchoring ------------------------------------------------------------------------------------
def test_a_word_occurring_twice_goes_to_the_nearest_occurrence(tmp_path):
    s = "개미 가가가가 개미는 사회성 곤충이고 개미집을 짓는다."
    first, second, third = [i for i in range(len(s)) if s.startswith("개미", i)]
    obj = ent("곤충", s.index("곤충"), s.index("곤충") + 1, "CLS")
    path = write_json(tmp_path / "twice.json", [
        rec("near-second", s, ent("개미", second + 3, second + 4), obj),   # 3 after the second
        rec("near-first", s, ent("개미", first + 2, first + 3), obj),      # 2 after the first
        rec("tie", s, ent("개미", (first + second) // 2, (first + second) // 2 + 1), obj),
        CLEAN])
    assert (second - first) % 2 == 0  # the "tie" row really is half-way
    repair = repair_file(path)
    ds = repair.dataset()
    assert not ds.bad_rows
    assert ds.frame["subj_start"].tolist()[:3] == [second, first, first]  # a tie: the earlier one
    assert ds.frame["subj_end"].tolist()[:3] == [second + 1, first + 1, first + 1]
    moved = only_changes(repair, "reanchor")
    assert [(c.row, c.field) for c in moved] == [(1, "subject_entity.span"), (2, "subject_entity.span"),
                                                 (3, "subject_entity.span")]
    assert moved[0].before.startswith(f"{second + 3}-{second + 4} ")
    assert moved[0].after == f"{second}-{second + 1} '개미'"
    assert third > second  # the third occurrence exists and is never the nearest here


def test_reanchoring_skips_an_occurrence_inside_the_other_entity(tmp_path):
    s = "불독개미와 같은 개미는 시력이 좋다."
    subj = ent("불독개미", 0, 3, "INS")
    # the object '개미' is written at 1-2 (inside the subject); its nearest free occurrence is 9
    path = write_json(tmp_path / "o.json", [rec("x", s, subj, ent("개미", 1, 2, "INS")), CLEAN])
    ds = repair_file(path).dataset()
    assert not ds.bad_rows
    assert (ds.frame["obj_start"][0], ds.frame["obj_end"][0]) == (s.index("개미", 4), s.index("개미", 4) + 1)


def test_a_word_occurring_nowhere_stays_bad_and_is_reported_as_data_check_does(tmp_path, capsys):
    s = "이순신은 조선의 장군이다."
    path = write_json(tmp_path / "nowhere.json", [
        rec("gone", s, ent("세종", 0, 1), ent("조선", 5, 6, "ORG")), CLEAN])
    repair = repair_file(path)
    assert only_changes(repair, "reanchor") == []
    ds = repair.dataset()
    check = load(path)
    assert [str(b) for b in ds.bad_rows] == [str(b) for b in check.bad_rows]
    assert "sentence[0:1+1] is '이순' but word is '세종'" in ds.bad_rows[0].reason
    out_path = tmp_path / "fixed.json"
    rc, out, _ = cli(["data", "fix", path, "--out", out_path], capsys)
    assert rc == 2
    assert "could not be repaired" in out and "세종" in out and "Bad rows (1;" in out
    written = json.loads(out_path.read_text(encoding="utf-8"))
    assert written[0]["subject_entity"] == ent("세종", 0, 1)  # kept as it was, nothing lost
    assert len(written) == 2


# --- end-exclusive files -----------------------------------------------------------------------------
def test_a_file_written_end_exclusive_is_shifted_throughout(tmp_path):
    rows = []
    for i, (s, a, b) in enumerate([("이순신은 조선의 장군이다.", "이순신", "조선"),
                                   ("세종은 한글을 만들었다.", "세종", "한글"),
                                   ("김구는 임시정부의 주석이었다.", "김구", "임시정부")]):
        sa, sb = s.index(a), s.index(b)
        rows.append(rec(f"r{i}", s, ent(a, sa, sa + len(a)), ent(b, sb, sb + len(b), "ORG"),
                        "no_relation" if i == 0 else "rel"))
    path = write_json(tmp_path / "excl.json", rows)
    repair = repair_file(path)
    shifted = only_changes(repair, "exclusive_end")
    assert len(shifted) == 6 and only_changes(repair, "reanchor") == []
    assert shifted[0].field == "subject_entity.end_idx" and (shifted[0].before, shifted[0].after) == ("3", "2")
    ds = repair.dataset()
    assert not ds.bad_rows
    for r in ds.frame.itertuples():
        assert r.sentence[r.subj_start:r.subj_end + 1] == r.subj_word
        assert r.sentence[r.obj_start:r.obj_end + 1] == r.obj_word


def test_one_exclusive_row_in_an_inclusive_file_is_reanchored_not_a_file_shift(tmp_path):
    s = "세종은 한글을 만들었다."
    path = write_json(tmp_path / "one.json", [
        rec("x", s, ent("세종", 0, 2), ent("한글", 4, 5, "ORG")), CLEAN, {**CLEAN, "guid": "c1"}])
    repair = repair_file(path)
    assert only_changes(repair, "exclusive_end") == []
    assert [(c.field, c.before, c.after) for c in only_changes(repair, "reanchor")] == [
        ("subject_entity.span", "0-2 '세종은'", "0-1 '세종'")]


# --- invisible characters ----------------------------------------------------------------------------
def test_invisible_characters_are_removed_and_spans_follow_the_text(tmp_path):
    # a soft hyphen inside the subject's span of the sentence, a zero-width space before the
    # object: the file's indices count them
    s = "이\u00ad순신은 \u200b조선의 장군이다."
    subj = ent("이순신", 0, 3)           # sentence[0:4] == '이\xad순신' != '이순신'
    obj = ent("조선", s.index("조선"), s.index("조선") + 1, "ORG")
    # a zero-width space in a word whose sentence is clean
    t = "세종은 한글을 만들었다."
    path = write_json(tmp_path / "inv.json", [
        rec("a", s, subj, obj), rec("b", t, ent("세\u200b종", 0, 1), ent("한글", 4, 5, "ORG")), CLEAN])
    with pytest.raises(BadRowsError):
        read_dataset(path)
    repair = repair_file(path)
    inv = only_changes(repair, "invisible")
    assert [(c.row, c.field) for c in inv] == [
        (1, "sentence"), (1, "subject_entity.span"), (1, "object_entity.span"), (2, "subject_entity.word")]
    assert inv[0].before == "'이<U+00AD>순신은 <U+200B>조선의 장군이다.'"
    assert inv[0].after == "'이순신은 조선의 장군이다.'"
    assert (inv[1].before, inv[1].after) == ("0-3", "0-2")
    assert (inv[2].before, inv[2].after) == ("7-8", "5-6")
    ds = repair.dataset()
    assert not ds.bad_rows
    assert ds.frame["sentence"].tolist()[:2] == ["이순신은 조선의 장군이다.", t]
    assert ds.frame["subj_word"].tolist()[:2] == ["이순신", "세종"]
    assert repair.counts() == {"invisible": (4, 2)}


def test_indices_counted_without_the_invisible_characters_are_kept(tmp_path):
    s = "\u200b이순신은 조선의 장군이다."
    path = write_json(tmp_path / "clean-idx.json", [
        rec("a", s, ent("이순신", 0, 2), ent("조선", 5, 6, "ORG")), CLEAN])
    repair = repair_file(path)
    assert [c.field for c in repair.changes] == ["sentence"]
    ds = repair.dataset()
    assert (ds.frame["subj_start"][0], ds.frame["obj_start"][0]) == (0, 5)


# --- labels ------------------------------------------------------------------------------------------
def test_labels_with_spaces_are_bad_rows_and_data_fix_strips_them(tmp_path):
    path = write_json(tmp_path / "lab.json", [
        {**CLEAN, "guid": "a", "label": " rel"}, {**CLEAN, "guid": "b", "label": "rel "}, CLEAN])
    ds = load(path)
    assert [b.row for b in ds.bad_rows] == [1, 2]
    assert ds.bad_rows[0].reason == "label ' rel' has spaces around it (`relex data fix` strips them)"
    assert ds.labels.names == ("no_relation",)  # no class ' rel' or 'rel '
    repair = repair_file(path)
    assert [(c.before, c.after) for c in only_changes(repair, "label_spaces")] == [
        ("' rel'", "'rel'"), ("'rel '", "'rel'")]
    fixed = repair.dataset()
    assert not fixed.bad_rows and fixed.labels.names == ("no_relation", "rel")


def test_list_and_dict_labels_are_bad_rows_never_classes(tmp_path):
    path = write_json(tmp_path / "lab.json", [
        {**CLEAN, "guid": "a", "label": ["rel", "other"]}, {**CLEAN, "guid": "b", "label": {"name": "rel"}},
        CLEAN])
    ds = load(path)
    reasons = [b.reason for b in ds.bad_rows]
    assert reasons == ["label is a list, not a string: ['rel', 'other']",
                       "label is a dict, not a string: {'name': 'rel'}"]
    assert ds.labels.names == ("no_relation",)
    # unlabelled reads (relex predict) take them as no label instead
    unl = load(path, require_labels=False)
    assert not unl.bad_rows and unl.frame["label"].tolist() == [None, None, "no_relation"]
    # data fix cannot guess the label: they stay bad
    assert repair_file(path).dataset().bad_rows[0].row == 1


def test_subject_and_object_columns_with_text_and_entity_type_keys(tmp_path):
    s = "이순신은 조선의 장군이다."
    frame = pd.DataFrame({
        "id": ["a", "b"], "sentence": [s, s],
        "subject": [str({"text": "이순신", "start_idx": 0, "end_idx": 2, "entity_type": "PER"})] * 2,
        "object": [str({"text": "조선", "start_idx": 5, "end_idx": 6, "entity_type": "ORG"})] * 2,
        "label": ["rel", "no_relation"]})
    frame.to_csv(tmp_path / "so.csv", index=False)
    ds = read_dataset(tmp_path / "so.csv")
    assert ds.frame["subj_word"].tolist() == ["이순신"] * 2 and ds.frame["obj_type"].tolist() == ["ORG"] * 2


# --- the command -------------------------------------------------------------------------------------
def _mixed_csv(tmp_path) -> Path:
    s = "이순신은 조선의 장군이다."
    return write_csv(tmp_path / "mixed.csv", [
        {"id": 10, "sentence": s, "subject_entity": "{'word': '이순신', 'start_idx': 0, 'end_idx': 2, 'type': ‘PER'}",
         "object_entity": ent("조선", 5, 6, "ORG"), "label": " rel"},
        {"id": 11, "sentence": s, "subject_entity": ent("이순신", 3, 5), "object_entity": ent("조선", 5, 6, "ORG"),
         "label": "no_relation"},
        {"id": 12, "sentence": s, "subject_entity": ent("이순신", 0, 2), "object_entity": ent("조선", 5, 6, "ORG"),
         "label": "rel"}])


@pytest.mark.parametrize("ext", [".json", ".csv", ".jsonl", ".parquet"])
def test_data_fix_writes_a_file_data_check_accepts(tmp_path, capsys, ext):
    src = _mixed_csv(tmp_path)
    out_path = tmp_path / f"fixed{ext}"
    rc, out, _ = cli(["data", "fix", src, "--out", out_path], capsys)
    assert rc == 0, out
    assert "3 rows, 2 repaired (3 changes)" in out
    assert "CSV line 2" in out and "label" in out and "' rel' → 'rel'" in out
    assert "0-2 '이순신' → 0-2 '이순신'" not in out and "3-5 '은 조' → 0-2 '이순신'" in out
    rc, check_out, _ = cli(["data", "check", out_path], capsys)
    assert rc == 0 and "OK: all 3 rows are valid" in check_out
    ds = read_dataset(out_path)
    assert ds.frame["id"].tolist() == ["10", "11", "12"]
    assert ds.frame["label"].tolist() == ["rel", "no_relation", "rel"]
    assert ds.frame["subj_start"].tolist() == [0, 0, 0]
    # deterministic: the same input gives the same bytes
    again = tmp_path / f"again{ext}"
    assert cli(["data", "fix", src, "--out", again], capsys)[0] == 0
    if ext != ".parquet":
        assert again.read_bytes() == out_path.read_bytes()
    else:
        assert read_dataset(again).frame.equals(ds.frame)


def test_data_fix_csv_keeps_the_competition_layout(tmp_path, capsys):
    out_path = tmp_path / "fixed.csv"
    assert cli(["data", "fix", _mixed_csv(tmp_path), "--out", out_path], capsys)[0] == 0
    frame = pd.read_csv(out_path, dtype=str, keep_default_na=False)
    assert list(frame.columns) == ["id", "sentence", "subject_entity", "object_entity", "label"]
    assert frame["subject_entity"][0] == "{'word': '이순신', 'start_idx': 0, 'end_idx': 2, 'type': 'PER'}"


def test_data_fix_dry_run_writes_nothing(tmp_path, capsys):
    out_path = tmp_path / "fixed.json"
    rc, out, _ = cli(["data", "fix", _mixed_csv(tmp_path), "--out", out_path, "--dry-run"], capsys)
    assert rc == 0 and not out_path.exists()
    assert "dry run: nothing written" in out and "2 repaired" in out


def test_data_fix_negative_label(tmp_path, capsys):
    path = write_json(tmp_path / "neg.json", [{**CLEAN, "label": "없음"}, {**CLEAN, "guid": "b", "label": "rel"}])
    rc, _, err = cli(["data", "fix", path, "--out", tmp_path / "f.json"], capsys)
    assert rc == 2 and "negative label 'no_relation' does not occur" in err
    assert not (tmp_path / "f.json").exists()
    rc, out, _ = cli(["data", "fix", path, "--out", tmp_path / "f.json", "--negative-label", "없음"], capsys)
    assert rc == 0 and (tmp_path / "f.json").exists()


def test_data_fix_refuses_its_input_and_unknown_formats(tmp_path, capsys):
    src = _mixed_csv(tmp_path)
    before = src.read_bytes()
    rc, _, err = cli(["data", "fix", src, "--out", src], capsys)
    assert rc == 2 and "is the input file" in err and src.read_bytes() == before
    rc, _, err = cli(["data", "fix", src, "--out", tmp_path / "fixed.xlsx"], capsys)
    assert rc == 2 and "unknown file type '.xlsx'" in err
    assert not (tmp_path / "fixed.xlsx").exists()


def test_invisible_characters_in_a_label(tmp_path):
    path = write_json(tmp_path / "lab.json", [{**CLEAN, "guid": "a", "label": "rel\u200b"},
                                              {**CLEAN, "guid": "b", "label": "rel"}, CLEAN])
    ds = load(path)
    assert [b.reason for b in ds.bad_rows] == [
        "label 'rel<U+200B>' holds invisible characters (`relex data fix` removes them)"]
    repair = repair_file(path)
    assert [(c.field, c.kind, c.before, c.after) for c in repair.changes] == [
        ("label", "invisible", "'rel<U+200B>'", "'rel'")]
    assert repair.dataset().frame["label"].tolist() == ["rel", "rel", "no_relation"]


def test_data_fix_labels_file(tmp_path, capsys):
    src = _mixed_csv(tmp_path)
    short = tmp_path / "short.json"
    short.write_text(json.dumps({"relations": ["no_relation"]}))
    rc, out, _ = cli(["data", "fix", src, "--out", tmp_path / "a.json", "--labels", short], capsys)
    assert rc == 2 and "label 'rel' is not in the label set" in out
    full = tmp_path / "full.json"
    full.write_text(json.dumps({"relations": ["no_relation", "rel", "unused"]}))
    rc, out, _ = cli(["data", "fix", src, "--out", tmp_path / "b.json", "--labels", full], capsys)
    assert rc == 0, out
    assert read_dataset(tmp_path / "b.json", labels=full).labels.names == ("no_relation", "rel", "unused")


def test_data_fix_unlabeled_test_file_with_flat_columns(tmp_path, capsys):
    s = "세종은 한글을 만들었다."
    frame = pd.DataFrame({"id": [1, 2], "sentence": [s, "\u200b" + s],
                          "subj_word": ["세종", "세종"], "subj_start": [0, 0], "subj_end": [2, 1],
                          "subj_type": ["PER", "PER"], "obj_word": ["한글", "한글"],
                          "obj_start": [4, 4], "obj_end": [5, 5], "obj_type": ["ORG", "ORG"]})
    frame.to_csv(tmp_path / "test.csv", index=False)
    rc, _, err = cli(["data", "fix", tmp_path / "test.csv", "--out", tmp_path / "f.json"], capsys)
    assert rc == 2 and "missing column 'label'" in err
    rc, out, _ = cli(["data", "fix", tmp_path / "test.csv", "--out", tmp_path / "f.json", "--unlabeled"], capsys)
    assert rc == 0, out
    written = json.loads((tmp_path / "f.json").read_text(encoding="utf-8"))
    assert [set(r) for r in written] == [{"guid", "sentence", "subject_entity", "object_entity"}] * 2
    assert written[0]["subject_entity"] == ent("세종", 0, 1)   # 0-2 '세종은' moved to the word
    assert written[1]["sentence"] == s and written[1]["object_entity"] == ent("한글", 4, 5, "ORG")
    ds = read_dataset(tmp_path / "f.json", require_labels=False)
    assert ds.frame["id"].tolist() == ["1", "2"] and ds.frame["label"].tolist() == [None, None]

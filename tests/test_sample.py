"""The bundled KLUE-format sample: format, validity, variety, reproducibility."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict

import pytest

from relex.data.sample import SAMPLE_LABELS, SAMPLE_PATH
from relex.data.sample import generate as gen

ENTITY_KEYS = ("subject_entity", "object_entity")


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return json.loads(SAMPLE_PATH.read_text(encoding="utf-8"))


def core_skeleton(r: dict) -> str:
    """The sentence with both entities replaced by their role and type, numbers collapsed and
    the neutral openings/closings removed: what is left is the template's own wording."""
    s = r["sentence"]
    spans = sorted(
        (r[k]["start_idx"], r[k]["end_idx"], f"<{k[0].upper()}:{r[k]['type']}>") for k in ENTITY_KEYS
    )
    (a0, a1, at), (b0, b1, bt) = spans
    s = s[:a0] + at + s[a1 + 1 : b0] + bt + s[b1 + 1 :]
    for opening in gen.OPENINGS:
        if opening and s.startswith(opening):
            s = s[len(opening) :]
    for closing in gen.CLOSINGS:
        if closing and s.endswith(closing):
            s = s[: -len(closing)]
    return re.sub(r"\d+", "#", s)


def test_klue_json_format(rows):
    assert isinstance(rows, list) and len(rows) >= 400
    for r in rows:
        assert set(r) == {"guid", "sentence", "subject_entity", "object_entity", "label", "source"}
        for k in ENTITY_KEYS:
            assert set(r[k]) == {"word", "start_idx", "end_idx", "type"}
            assert isinstance(r[k]["start_idx"], int) and isinstance(r[k]["end_idx"], int)
    assert len({r["guid"] for r in rows}) == len(rows)
    assert len({r["sentence"] for r in rows}) == len(rows)


def test_every_span_is_valid_and_entities_do_not_overlap(rows):
    for r in rows:
        s = r["sentence"]
        for k in ENTITY_KEYS:
            e = r[k]
            assert 0 <= e["start_idx"] <= e["end_idx"] < len(s), r["guid"]
            assert s[e["start_idx"] : e["end_idx"] + 1] == e["word"], r["guid"]  # end inclusive
            assert e["word"] == e["word"].strip() and e["word"]
        a, b = r["subject_entity"], r["object_entity"]
        assert a["end_idx"] < b["start_idx"] or b["end_idx"] < a["start_idx"], r["guid"]


def test_labels_types_and_balance(rows):
    labels = Counter(r["label"] for r in rows)
    assert len(labels) >= 10 and "no_relation" in labels
    assert tuple(sorted(labels, key=lambda x: (x != "no_relation", x))) == SAMPLE_LABELS
    assert 0.25 <= labels["no_relation"] / len(rows) <= 0.30
    assert min(labels.values()) >= 20  # every class has validation rows under a 10% split
    for name in labels:
        assert name == "no_relation" or re.fullmatch(r"(per|org):[a-z_/]+", name)
    # KLUE's entity types; subjects are PER or ORG, as in KLUE
    assert {r["subject_entity"]["type"] for r in rows} == {"PER", "ORG"}
    assert {r["object_entity"]["type"] for r in rows} == {"PER", "ORG", "LOC", "DAT", "POH", "NOH"}
    # a relation always joins the same pair of types
    pairs = defaultdict(set)
    for r in rows:
        if r["label"] != "no_relation":
            pairs[r["label"]].add((r["subject_entity"]["type"], r["object_entity"]["type"]))
    assert all(len(p) == 1 for p in pairs.values()), pairs


def test_labels_are_klue_labels(rows, shared_data):
    klue = json.loads((shared_data / "klue-re" / "relation_list.json").read_text())["relations"]
    assert set(SAMPLE_LABELS) <= set(klue)


def test_varied(rows):
    # Template wording: the generator has 85 relation templates and 24 no-relation ones; after
    # stripping entities, numbers, openings and closings the wording of a row is one of them
    # (particle forms and unmarked third entities add more: 255 today). A degenerate sample
    # (one phrasing per label) would give 14.
    skeletons = Counter(core_skeleton(r) for r in rows)
    assert len(skeletons) >= 100
    by_label = defaultdict(set)
    for r in rows:
        by_label[r["label"]].add(core_skeleton(r))
    assert min(len(v) for v in by_label.values()) >= 5  # no label is one memorisable string
    assert max(skeletons.values()) <= 0.03 * len(rows)
    # Entity words: invented names, so nearly every row has new ones
    words = Counter(r[k]["word"] for r in rows for k in ENTITY_KEYS if r[k]["type"] in ("PER", "ORG", "LOC"))
    assert len(words) >= 0.8 * sum(words.values())
    # Both orders: each label has rows with the subject first and rows with the object first
    orders = defaultdict(set)
    for r in rows:
        orders[r["label"]].add(r["subject_entity"]["start_idx"] < r["object_entity"]["start_idx"])
    assert all(v == {True, False} for v in orders.values()), orders


def test_file_is_exactly_what_the_generator_writes(rows):
    assert SAMPLE_PATH.read_text(encoding="utf-8") == gen.render_json(gen.generate())
    other = gen.generate(seed=gen.SEED + 1)
    assert [r["sentence"] for r in other] != [r["sentence"] for r in rows]


def test_generator_check_flag(tmp_path, capsys):
    assert gen.main(["--check"]) == 0
    out = tmp_path / "s.json"
    assert gen.main(["--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == SAMPLE_PATH.read_text(encoding="utf-8")
    out.write_text("[]\n", encoding="utf-8")
    assert gen.main(["--check", "--out", str(out)]) == 1


@pytest.mark.parametrize(
    "word, kind, expected",
    [
        ("김민수", "은", "는"), ("박지원", "은", "은"), ("이서연", "이", "이"), ("한빛전자", "을", "를"),
        ("한빛", "을", "을"), ("김하나", "과", "와"), ("최준혁", "과", "과"),
        ("하온시", "로", "로"), ("서울", "로", "로"), ("부산", "로", "으로"),  # ㄹ takes 로
        ("1,200명", "을", "을"), ("2", "을", "를"), ("7", "로", "로"), ("10", "은", "은"),
        ("교수", "이다|인", "인"), ("원장", "이다|이다", "이다"), ("코치", "이다|이다", "다"),
    ],
)
def test_particles_follow_the_final_consonant(word, kind, expected):
    assert gen.particle(word, kind) == expected


def test_render_reports_inclusive_spans():
    sentence, spans = gen.render("{O}에서 태어난 {S|은} {N}살이다.", {"S": "김민수", "O": "부산"}, 7)
    assert sentence == "부산에서 태어난 김민수는 7살이다."
    assert spans == {"O": (0, 1), "S": (9, 11)}
    assert sentence[9:12] == "김민수"


def test_sample_loads_through_the_data_layer(rows):
    from relex.data import read_dataset

    ds = read_dataset(SAMPLE_PATH)
    assert len(ds) == len(rows) and not ds.skipped  # nothing dropped
    assert tuple(ds.labels.names) == SAMPLE_LABELS
    assert ds.labels.negative == "no_relation"
    f = ds.frame
    r = rows[0]
    assert (f.iloc[0]["subj_word"], f.iloc[0]["subj_end"]) == (
        r["subject_entity"]["word"], r["subject_entity"]["end_idx"])


def test_vocabulary_from_a_training_split_covers_its_validation_split(tmp_path):
    """With the tokenizer trained on 90% of the rows (as the trainer does), the held-out 10%
    tokenizes without [UNK]: its names are built from the same syllables."""
    from relex.data import read_dataset, stratified_split
    from relex.model.backbone import TINY, load_tokenizer, resolve_backbone

    train, valid = stratified_split(read_dataset(SAMPLE_PATH), 0.1, 0)
    tok = load_tokenizer(resolve_backbone(TINY, corpus=train.frame["sentence"].tolist(), cache_dir=tmp_path))
    for s in valid.frame["sentence"]:
        assert tok.unk_token_id not in tok(s)["input_ids"], s

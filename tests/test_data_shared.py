"""The data layer on the real sets in ../shared: KLUE-RE train as KLUE JSON and as the
competition CSV, and the insects set with its own labels and malformed rows. Skipped when
../shared is absent."""

from __future__ import annotations

import ast
import json

import numpy as np
import pandas as pd
import pytest

from relex.data import COLUMNS, LabelSet, read_dataset, stratified_split
from relex.errors import BadRowsError, RelexError

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def klue(shared_data):
    d = shared_data / "klue-re"
    return read_dataset(d / "klue-re-v1.1_train.json"), read_dataset(d / "train.csv")


def test_klue_json_and_csv_give_the_same_table_except_ids(klue, shared_data):
    js, cs = klue
    raw = json.loads((shared_data / "klue-re" / "klue-re-v1.1_train.json").read_text(encoding="utf-8"))
    assert len(js) == len(cs) == len(raw)
    for c in COLUMNS:
        if c != "id":
            assert js.frame[c].tolist() == cs.frame[c].tolist(), c
    # row i of the CSV is guid klue-re-v1_train_{i:05d}
    assert js.frame["id"].tolist() == [r["guid"] for r in raw]
    assert cs.frame["id"].tolist() == [str(int(g.rsplit("_", 1)[1])) for g in js.frame["id"]]
    assert js.content_hash == cs.content_hash
    assert js.labels == cs.labels and len(js.labels) == len({r["label"] for r in raw})
    # spot-check the normalization against the raw records
    for i in (0, 1234, len(raw) - 1):
        r, row = raw[i], js.frame.iloc[i]
        assert row["subj_word"] == r["subject_entity"]["word"]
        assert row["obj_end"] == r["object_entity"]["end_idx"]
        assert row["sentence"][row["subj_start"]:row["subj_end"] + 1] == row["subj_word"]


def test_klue_with_relation_list_keeps_its_order(klue, shared_data):
    d = shared_data / "klue-re"
    order = json.loads((d / "relation_list.json").read_text(encoding="utf-8"))["relations"]
    ds = read_dataset(d / "train.csv", labels=d / "relation_list.json")
    assert ds.labels.names == tuple(order) and ds.labels.negative_id == 0
    js, _ = klue
    ids = ds.label_ids()
    assert np.array_equal(np.asarray(order)[ids], js.frame["label"].to_numpy(dtype=object))
    counts = np.bincount(ids, minlength=len(order))
    assert counts.sum() == len(ds) and (counts > 0).all()


def test_klue_stratified_split(klue):
    js, _ = klue
    train, valid = stratified_split(js, 0.1, seed=42)
    assert len(train) + len(valid) == len(js)
    assert abs(len(valid) - 0.1 * len(js)) <= 1
    full = np.bincount(js.label_ids(), minlength=len(js.labels))
    got = np.bincount(valid.label_ids(), minlength=len(js.labels))
    assert np.all(np.abs(got - 0.1 * full) <= 1)


def _insects_bad_rows(path) -> set[int]:
    """1-based rows whose entity strings do not parse or whose spans do not match, found here
    independently of relex."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    bad = set()
    for i, r in enumerate(df.itertuples(index=False)):
        for col in (r.subject_entity, r.object_entity):
            try:
                e = ast.literal_eval(col)
            except SyntaxError:
                bad.add(i + 1)
                continue
            if r.sentence[int(e["start_idx"]):int(e["end_idx"]) + 1] != e["word"]:
                bad.add(i + 1)
    return bad


def test_insects_train_has_its_own_labels_and_bad_rows(shared_data):
    path = shared_data / "insects-re" / "train.csv"
    want_bad = _insects_bad_rows(path)
    assert want_bad
    with pytest.raises(RelexError, match="'no_relation' does not occur.*probably '관계없음'"):
        read_dataset(path, skip_bad_rows=True)
    with pytest.raises(BadRowsError) as e:
        read_dataset(path, negative="관계없음")
    err = e.value
    assert {b.row for b in err.bad_rows} == want_bad
    assert all(b.where == f"CSV line {b.row + 1}" for b in err.bad_rows)  # no multi-line rows
    assert f"{path}: row {min(want_bad)} [CSV line {min(want_bad) + 1}] (id " in str(err)
    ds = read_dataset(path, negative="관계없음", skip_bad_rows=True)
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert ds.skipped == len(want_bad) and len(ds) == len(raw) - len(want_bad)
    assert set(ds.labels.names) == set(raw["label"]) and len(ds.labels) == 14
    assert ds.labels.names[0] == "관계없음"
    assert ds.frame["source"].eq("").all()
    assert ds.frame["id"].tolist() == [x for i, x in enumerate(raw["id"]) if i + 1 not in want_bad]


def test_insects_eval_with_the_train_labels(shared_data):
    d = shared_data / "insects-re"
    train = read_dataset(d / "train.csv", negative="관계없음", skip_bad_rows=True)
    valid = read_dataset(d / "validation.csv", labels=train.labels)
    assert valid.labels is train.labels and len(valid) == 128
    own = read_dataset(d / "validation.csv", negative="관계없음")
    assert len(own.labels) < len(train.labels)  # why evaluation files need the training labels
    ev = read_dataset(d / "evaluation.csv", labels=train.labels, skip_bad_rows=True)
    assert ev.skipped == len(_insects_bad_rows(d / "evaluation.csv")) > 0
    assert isinstance(LabelSet.from_dict(train.labels.to_dict()), LabelSet)

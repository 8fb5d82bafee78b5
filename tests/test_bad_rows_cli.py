"""`--skip-bad-rows` on train / evaluate / predict with files that have real bad rows, and
`relex predict --repair`: a submission never lacks an id without saying so."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from relex.data.sample import SAMPLE_PATH
from test_data_repair import cli

FAST = ["--tiny-hidden", "32", "--tiny-layers", "1", "--max-length", "80", "--batch-size", "32",
        "--lr", "5e-3", "--warmup-ratio", "0", "--num-threads", "1", "--epochs", "1"]


def _curly(entity: dict) -> str:
    """An entity dict string with a curly opening quote on its type, as the insects set has."""
    return str(entity).replace(f"'type': '{entity['type']}'", f"'type': ‘{entity['type']}'")


def write_competition_csv(records, path: Path, *, curly=(), nowhere=()) -> Path:
    """Records as the competition CSV; rows in ``curly`` get a curly quote in the subject string
    (repairable), rows in ``nowhere`` a subject word the sentence does not contain (not)."""
    rows = []
    for i, r in enumerate(records):
        subj = dict(r["subject_entity"])
        cell = str(subj)
        if i in curly:
            cell = _curly(subj)
        if i in nowhere:
            cell = str({**subj, "word": "없는낱말"})
        rows.append({"id": r["guid"], "sentence": r["sentence"], "subject_entity": cell,
                     "object_entity": str(r["object_entity"]), "label": r["label"]})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    records = json.loads(Path(SAMPLE_PATH).read_text(encoding="utf-8"))
    d = tmp_path_factory.mktemp("bad")
    return {
        "train": write_competition_csv(records[:240], d / "train.csv", curly={3}, nowhere={7}),
        "valid": write_competition_csv(records[240:300], d / "valid.csv", curly={2}, nowhere={5}),
        "repairable": write_competition_csv(records[240:300], d / "repairable.csv", curly={2, 9}),
        "ids": [r["guid"] for r in records[240:300]],
        "dir": d,
    }


@pytest.fixture(scope="module")
def trained(files, session_cache):
    out = files["dir"] / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RELEX_CACHE", str(session_cache))
        from relex.cli import main

        rc = main([str(a) for a in ["train", "--train", files["train"], "--valid", files["valid"],
                                    "--out", out, "--skip-bad-rows", "--quiet", *FAST]])
    assert rc == 0
    return out / "best"


def test_train_skips_and_names_bad_rows_of_both_files(files, trained, tmp_path, capsys):
    assert (trained / "model.safetensors").exists()
    # the same run with its output captured: one warning line per file, naming the first row
    rc, out, err = cli(["train", "--train", files["train"], "--valid", files["valid"], "--out",
                        tmp_path / "again", "--skip-bad-rows", "--quiet", "--max-steps", "1", *FAST], capsys)
    assert rc == 0, err
    assert f"relex: skipped 2 bad rows of {files['train']} (--skip-bad-rows; first: " in err
    assert "train.csv: row 4 [CSV line 5]" in err
    assert f"relex: skipped 2 bad rows of {files['valid']}" in err
    assert "Traceback" not in err


def test_train_without_the_flag_stops_before_writing(files, tmp_path, capsys):
    rc, _, err = cli(["train", "--train", files["train"], "--valid", files["valid"], "--out",
                      tmp_path / "run", *FAST], capsys)
    assert rc == 2
    assert "2 bad rows of 240 in" in err and "row 8 [CSV line 9]" in err and "없는낱말" in err
    assert not (tmp_path / "run").exists()


def test_evaluate_skip_bad_rows(files, trained, capsys):
    rc, _, err = cli(["evaluate", trained, files["valid"]], capsys)
    assert rc == 2 and "2 bad rows of 60" in err
    rc, out, err = cli(["evaluate", trained, files["valid"], "--skip-bad-rows", "--json"], capsys)
    assert rc == 0, err
    assert json.loads(out)["n"] == 58
    assert f"relex: skipped 2 bad rows of {files['valid']}" in err


def test_predict_skip_bad_rows_names_the_ids_the_submission_lacks(files, trained, tmp_path, capsys):
    out_csv = tmp_path / "sub.csv"
    rc, _, err = cli(["predict", trained, files["valid"], "--output", out_csv], capsys)
    assert rc == 2 and not out_csv.exists()
    rc, _, err = cli(["predict", trained, files["valid"], "--output", out_csv, "--skip-bad-rows"], capsys)
    assert rc == 0, err
    sub = pd.read_csv(out_csv, dtype=str)
    lacking = [files["ids"][2], files["ids"][5]]
    assert sub["id"].tolist() == [i for i in files["ids"] if i not in lacking]
    assert (f"the submission lacks 2 of the 60 input ids (bad rows skipped: {lacking[0]}, "
            f"{lacking[1]})") in err


def test_predict_repair_gives_one_row_per_id_as_data_fix_would(files, trained, tmp_path, capsys):
    sub_path = tmp_path / "sub.csv"
    rc, _, err = cli(["predict", trained, files["repairable"], "--output", sub_path, "--repair"], capsys)
    assert rc == 0, err
    assert "2 rows repaired (2 × curly or doubled quotes in an entity string)" in err
    sub = pd.read_csv(sub_path, dtype=str)
    assert sub["id"].tolist() == files["ids"]
    # the same predictions as on the file `relex data fix` writes
    fixed = tmp_path / "fixed.json"
    assert cli(["data", "fix", files["repairable"], "--out", fixed], capsys)[0] == 0
    assert cli(["predict", trained, fixed, "--output", tmp_path / "ref.csv"], capsys)[0] == 0
    ref = pd.read_csv(tmp_path / "ref.csv", dtype=str)
    assert ref.equals(sub)


def test_predict_repair_with_a_row_it_cannot_repair(files, trained, tmp_path, capsys):
    out_csv = tmp_path / "sub.csv"
    rc, _, err = cli(["predict", trained, files["valid"], "--output", out_csv, "--repair"], capsys)
    assert rc == 2 and not out_csv.exists()
    assert "1 bad row of 60" in err and "없는낱말" in err
    rc, _, err = cli(["predict", trained, files["valid"], "--output", out_csv, "--repair",
                      "--skip-bad-rows"], capsys)
    assert rc == 0, err
    sub = pd.read_csv(out_csv, dtype=str)
    assert len(sub) == 59 and files["ids"][2] in sub["id"].tolist()
    assert f"the submission lacks 1 of the 60 input ids (bad rows skipped: {files['ids'][5]})" in err

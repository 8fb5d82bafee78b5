"""Real annotation data end to end: the insects set (../shared/data/insects-re, negative label
관계없음, curly quotes in some entity strings) through `relex data fix`, a two-trial sweep that
skips bad rows, `relex evaluate` and `relex predict` (one submission row per input id).

Also `Sweep(skip_bad_rows=True)` in pre-flight, without Ray, on hand-made bad rows (always runs).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import SHARED_DATA
from test_bad_rows_cli import write_competition_csv
from test_data_repair import cli

from relex.data.sample import SAMPLE_PATH
from relex.errors import BadRowsError, RelexError

ROOT = Path(__file__).resolve().parents[1]
INSECTS = SHARED_DATA / "insects-re"
TINY = dict(backbone="relex/tiny", tiny_hidden=32, tiny_layers=1, tiny_heads=2, max_length=96,
            batch_size=32, eval_batch_size=128, warmup_ratio=0.0, num_threads=1, amp="off")


def write_job(path: Path, *, space: dict, axes: dict | None = None, **sweep) -> Path:
    """A job file: ``Sweep(**sweep)`` with ``space`` fixed and each of ``axes`` a grid()."""
    grids = "".join(f", {k!r}: grid({v!r})" for k, v in (axes or {}).items())
    args = "".join(f", {k}={v!r}" for k, v in sweep.items())
    path.write_text("from relex.sweep import Sweep, grid\n"
                    f"sweep = Sweep(space={{**{space!r}{grids}}}{args})\n", encoding="utf-8")
    return path


# --- Sweep(skip_bad_rows=True): pre-flight on the driver, no Ray --------------------------------------
@pytest.fixture(scope="module")
def bad_sample(tmp_path_factory) -> Path:
    records = json.loads(Path(SAMPLE_PATH).read_text(encoding="utf-8"))
    d = tmp_path_factory.mktemp("sample")
    return write_competition_csv(records[:200], d / "train.csv", curly={0, 5}, nowhere={9})


def test_sweep_skip_bad_rows_in_preflight(bad_sample, tmp_path):
    from rich.console import Console

    from relex.sweep.job import load_job
    from relex.sweep.runner import preflight

    job = load_job(write_job(tmp_path / "job.py", name="skip", train=str(bad_sample), valid=0.25,
                             space=TINY, skip_bad_rows=True))
    assert job.skip_bad_rows and job.resolved()["skip_bad_rows"] is True
    console = Console(file=open(tmp_path / "log.txt", "w"), width=200)
    prepared, _ = preflight(job, tmp_path / "sweep", console=console)
    console.file.close()
    assert prepared.skipped_bad_rows == {str(bad_sample): 3}
    assert len(prepared.train) + len(prepared.valid) == 197
    assert f"skipped 3 bad rows of {bad_sample} (skip_bad_rows)" in (tmp_path / "log.txt").read_text()

    strict = load_job(write_job(tmp_path / "strict.py", name="strict", train=str(bad_sample),
                                valid=0.25, space=TINY))
    with pytest.raises(BadRowsError, match="3 bad rows of 200"):
        preflight(strict, tmp_path / "strict", console=None)
    with pytest.raises(RelexError, match="skip_bad_rows='yes' is invalid"):
        load_job(write_job(tmp_path / "bad.py", name="b", train=str(bad_sample), space=TINY,
                           skip_bad_rows="yes"))


def test_sweep_flag_in_the_plan_and_resume_guard(bad_sample, tmp_path, capsys):
    from relex.sweep.job import load_job
    from relex.sweep.layout import JOB_FILE
    from relex.sweep.runner import _check_same_job

    job_file = write_job(tmp_path / "job.py", name="plan", train=str(bad_sample), valid=0.25, space=TINY)
    rc, out, _ = cli(["sweep", job_file, "--dry-run", "--skip-bad-rows"], capsys)
    assert rc == 0 and "bad rows skipped" in out
    rc, out, _ = cli(["sweep", job_file, "--dry-run"], capsys)
    assert rc == 0 and "bad rows skipped" not in out
    # a sweep started without skipping cannot be resumed with it: its data would differ
    job = load_job(job_file)
    (tmp_path / JOB_FILE).write_text(json.dumps(job.resolved()))
    job.skip_bad_rows = True
    with pytest.raises(RelexError, match=r"data settings \(skip_bad_rows\) differ"):
        _check_same_job(job, tmp_path)


# --- the insects set, end to end --------------------------------------------------------------------
@pytest.fixture(scope="module")
def insects() -> Path:
    if not (INSECTS / "train.csv").exists():
        pytest.skip(f"the insects set is not at {INSECTS} (set RELEX_SHARED_DATA)")
    return INSECTS


@pytest.mark.shared
@pytest.mark.ray
@pytest.mark.slow
def test_insects_fix_sweep_evaluate_predict(insects, tmp_path, capsys):
    fixed = tmp_path / "fixed"
    fixed.mkdir()
    # 1. data fix: the defects the files really have are curly quotes in entity strings
    rc, out, _ = cli(["data", "fix", insects / "train.csv", "--out", fixed / "train.json"], capsys)
    assert rc == 0, out
    assert "train.csv: 1,021 rows, 17 repaired (17 changes)" in out
    assert "'type': ‘CLS'} → {'word': '곤충', 'start_idx': 0, 'end_idx': 1, 'type': 'CLS'}" in out
    assert "wrote" in out and "1,021 rows, 1,021 valid, 0 bad" in out
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"insects-re/train.csv: {out.splitlines()[0].split(': ', 1)[1]}" in readme
    rc, out, _ = cli(["data", "fix", insects / "evaluation.csv", "--out", fixed / "evaluation.json"], capsys)
    assert rc == 0 and "128 rows, 3 repaired (3 changes)" in out
    assert f"insects-re/evaluation.csv: {out.splitlines()[0].split(': ', 1)[1]}" in readme
    for name, n in (("train.json", 1021), ("evaluation.json", 128)):
        rc, out, _ = cli(["data", "check", fixed / name], capsys)
        assert rc == 0 and f"OK: all {n:,} rows are valid" in out and "negative label: 관계없음" in out

    # 2. a two-trial sweep on the repaired training file; its validation file is the set's own,
    # with two entity strings curled the way the set's other files are, skipped by the flag
    valid = tmp_path / "validation.csv"
    frame = pd.read_csv(insects / "validation.csv", dtype=str, keep_default_na=False)
    for i in (4, 40):
        frame.loc[i, "object_entity"] = frame.loc[i, "object_entity"].replace("'type': '", "'type': ‘")
    frame.to_csv(valid, index=False)
    job = write_job(tmp_path / "insects.py", name="insects", train=str(fixed / "train.json"),
                    valid=str(valid), negative_label="관계없음", seeds=[42], max_concurrent=2,
                    space={**TINY, "epochs": 1, "eval_every": 16}, axes={"lr": [5e-3, 1e-3]},
                    resources={"gpu": 0, "cpu": 1}, asha={"grace_period": 1})
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "TOKENIZERS_PARALLELISM": "false", "RELEX_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-m", "relex.cli", "sweep", str(job), "--storage",
                           str(tmp_path / "art"), "--skip-bad-rows"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"skipped 2 bad rows of {valid} (skip_bad_rows)" in proc.stdout
    sweep_dir = tmp_path / "art" / "insects"
    recorded = json.loads((sweep_dir / "job.json").read_text(encoding="utf-8"))
    assert recorded["skip_bad_rows"] is True and recorded["negative_label"] == "관계없음"
    assert recorded["skipped_bad_rows"] == {str(fixed / "train.json"): 0, str(valid): 2}
    rows = pq.read_table(sweep_dir / "trials.parquet").to_pylist()
    assert len(rows) == 2 and all(r["status"] in ("TERMINATED", "STOPPED_EARLY") for r in rows)
    best = max(rows, key=lambda r: r["micro_f1"])
    labels = json.loads((sweep_dir / "labels.json").read_text(encoding="utf-8"))
    assert labels["negative"] == "관계없음" and len(labels["names"]) == 14

    # 3. evaluate the best trial on the repaired evaluation file
    rc, out, err = cli(["evaluate", best["checkpoint"], fixed / "evaluation.json", "--json"], capsys)
    assert rc == 0, err
    scores = json.loads(out)
    assert scores["n"] == 128 and 0 <= scores["micro_f1"] <= 100

    # 4. predict on the evaluation file as distributed: --repair gives one row per input id,
    # --skip-bad-rows names the ids it leaves out
    ids = pd.read_csv(insects / "evaluation.csv", dtype=str, keep_default_na=False)["id"].tolist()
    rc, _, err = cli(["predict", best["checkpoint"], insects / "evaluation.csv", "--output",
                      tmp_path / "sub.csv", "--repair"], capsys)
    assert rc == 0, err
    sub = pd.read_csv(tmp_path / "sub.csv", dtype=str)
    assert sub["id"].tolist() == ids and len(set(ids)) == 128
    assert set(sub["pred_label"]) <= set(labels["names"])
    rc, _, err = cli(["predict", best["checkpoint"], insects / "evaluation.csv", "--output",
                      tmp_path / "partial.csv", "--skip-bad-rows"], capsys)
    assert rc == 0, err
    assert "the submission lacks 3 of the 128 input ids (bad rows skipped: 724, 149, 600)" in err
    partial = pd.read_csv(tmp_path / "partial.csv", dtype=str)
    assert partial["id"].tolist() == [i for i in ids if i not in ("724", "149", "600")]
    # the rows both submissions share carry the same predictions (up to float rounding: the
    # batches differ by the rows left out)
    shared = sub[sub["id"].isin(partial["id"])].reset_index(drop=True)
    assert partial["pred_label"].tolist() == shared["pred_label"].tolist()
    probs = [np.array([ast.literal_eval(p) for p in f["probs"]]) for f in (partial, shared)]
    assert np.allclose(probs[0], probs[1], atol=1e-5)

"""Sweeps that stop and are resumed, for real: a wall-clock ``time_budget`` (no fake clock)
that pauses a sweep, and a k-fold sweep whose driver is killed mid-fold. Each `relex sweep`
runs as a subprocess that starts its own Ray, as on a single machine, so the driver can be
SIGKILLed (its watchdog then ends that Ray) and resumed by a new one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from relex.data.sample import SAMPLE_PATH
from relex.sweep.layout import SweepDir
from test_sweep_ray import _attempts, _env, _without_retention

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    data = json.loads(Path(SAMPLE_PATH).read_text(encoding="utf-8"))
    (d / "data.json").write_text(json.dumps(data[::2], ensure_ascii=False), encoding="utf-8")
    return d / "data.json"


def _cmd(job, storage, name, *extra):
    return [sys.executable, "-m", "relex.cli", "sweep", str(job), "--storage", str(storage),
            "--name", name, *extra]


TIME_JOB = '''
import os, time
from relex.sweep import Sweep, grid

def slow_start(cfg, trial_id):
    # on the first run t000 trains only once the 45 s budget, which started before it, is
    # surely used up: it trains to its next evaluation (a checkpoint) and is paused there;
    # nothing else starts (45 s: the first trial must start within the budget, on a busy machine)
    if trial_id == "t000" and os.path.exists({flag!r}):
        time.sleep(46)

sweep = Sweep(
    name="timed", train={data!r}, valid=0.25,
    space=dict(lr=grid([1e-3, 2e-3, 3e-3]), tiny_hidden=16, tiny_layers=1, tiny_heads=2,
               tiny_vocab=500, max_length=48, batch_size=32, epochs=50, max_steps=40, eval_every=4,
               warmup_ratio=0.0, num_threads=1, amp="off", eval_batch_size=256),
    seeds=[3], asha=dict(grace_period=50), resources=dict(gpu=0, cpu=1), max_concurrent=1,
    before_trial=slow_start, time_budget={budget!r},
)
'''


def test_time_budget_pauses_a_real_sweep_and_resume_finishes_it(small_data, tmp_path):
    """A real wall-clock budget (no fake clock): the running trial stops at its next
    checkpoint as PAUSED, the others are NOT_STARTED; --resume (the budget raised) continues
    the paused trial from its checkpoint and runs the rest."""
    data = small_data
    flag = tmp_path / "first-run"
    flag.write_text("")
    job = tmp_path / "timed.py"
    job.write_text(TIME_JOB.format(flag=str(flag), data=str(data), budget="45s"))
    storage, env = tmp_path / "art", _env(tmp_path)
    sweep_dir = storage / "timed"
    p = subprocess.run(_cmd(job, storage, "timed"), cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr[-2000:]  # stopped early: not all ran
    assert "time budget of 45s reached: 1 trial(s) paused at a checkpoint, 2 not started" in p.stdout
    rows = {r["trial_id"]: r for r in pq.read_table(sweep_dir / "trials.parquet").to_pylist()}
    assert rows["t000"]["status"] == "PAUSED" and 1 <= rows["t000"]["evaluations"] < 10
    assert rows["t001"]["status"] == rows["t002"]["status"] == "NOT_STARTED"
    paused_at = rows["t000"]["evaluations"]

    flag.unlink()
    job.write_text(TIME_JOB.format(flag=str(flag), data=str(data), budget="1h"))
    p = subprocess.run(_cmd(job, storage, "timed", "--resume"),
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    rows = {r["trial_id"]: r for r in pq.read_table(sweep_dir / "trials.parquet").to_pylist()}
    assert all(r["status"] == "TERMINATED" and r["evaluations"] == 10 for r in rows.values())
    runs = _attempts(sweep_dir, "t000")
    assert len(runs) == 2 and runs[1]["resume_from"] is not None  # from its checkpoint
    hist = sorted((h for h in pq.read_table(sweep_dir / "history.parquet").to_pylist()
                   if h["trial_id"] == "t000"), key=lambda h: h["iteration"])
    assert [h["step"] for h in hist] == list(range(4, 44, 4))


KFOLD_JOB = '''
import os, time
from relex.sweep import Sweep, grid

def park_victim(cfg, trial_id):
    # on the first run fold 1 of t000 parks after its second report (a checkpoint kept) so
    # that the driver is killed while it surely runs
    if trial_id != "t000-f1" or not os.path.exists({flag!r}):
        return
    from ray import tune
    real, seen = tune.report, []
    def report(metrics, checkpoint=None):
        real(metrics, checkpoint=checkpoint)
        seen.append(1)
        if len(seen) == 2:
            open({parked!r}, "w").close()
            time.sleep(120)
    tune.report = report

sweep = Sweep(
    name="folds", train={data!r}, folds=3, fold_seed=1,
    space=dict(lr=grid([1e-3, 3e-3]), tiny_hidden=16, tiny_layers=1, tiny_heads=2, tiny_vocab=500,
               max_length=48, batch_size=32, epochs=50, max_steps=12, eval_every=3,
               warmup_ratio=0.0, num_threads=1, amp="off", eval_batch_size=256),
    seeds=[3], resources=dict(gpu=0, cpu=1), max_concurrent=1, before_trial=park_victim,
)
'''


def test_interrupted_kfold_sweep_resumes_and_assembles_out_of_fold(small_data, tmp_path):
    """A fold sweep whose driver is killed mid-fold: --resume keeps the finished folds, continues
    the interrupted one from its checkpoint, runs the rest, and assembles every configuration's
    out-of-fold probabilities (each training row predicted once)."""
    import numpy as np

    data = small_data
    flag, parked = tmp_path / "first-run", tmp_path / "parked"
    flag.write_text("")
    job = tmp_path / "folds.py"
    job.write_text(KFOLD_JOB.format(flag=str(flag), parked=str(parked), data=str(data)))
    storage, env = tmp_path / "art", _env(tmp_path)
    sweep_dir = storage / "folds"
    proc = subprocess.Popen(_cmd(job, storage, "folds"), cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 900
        while time.time() < deadline and proc.poll() is None and not parked.exists():
            time.sleep(0.1)
        if not parked.exists():
            out = proc.communicate(timeout=60)[0] if proc.poll() is not None else ""
            pytest.fail(f"fold t000-f1 never parked:\n{out[-3000:]}")
        time.sleep(2)  # let the driver write the experiment state that holds the checkpoint
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    flag.unlink()
    # the killed driver's last rows may still be fragments: read as every reader does
    before = {r["trial_id"]: r for r in SweepDir(sweep_dir).trial_rows()}
    assert before["t000-f0"]["status"] == "TERMINATED" and before["t000-f1"]["status"] == "RUNNING"
    assert not (sweep_dir / "oof_probs").exists()

    p = subprocess.run(_cmd(job, storage, "folds", "--resume"),
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    after = {r["trial_id"]: r for r in pq.read_table(sweep_dir / "trials.parquet").to_pylist()}
    assert sorted(after) == [f"t00{c}-f{f}" for c in range(2) for f in range(3)]
    assert all(r["status"] == "TERMINATED" and r["evaluations"] == 4 for r in after.values())
    assert _without_retention(after["t000-f0"]) == _without_retention(before["t000-f0"])
    assert len(_attempts(sweep_dir, "t000-f0")) == 1  # finished: not run again
    runs = _attempts(sweep_dir, "t000-f1")
    assert len(runs) == 2 and runs[0]["resume_from"] is None and runs[1]["resume_from"] is not None
    hist = sorted((h for h in pq.read_table(sweep_dir / "history.parquet").to_pylist()
                   if h["trial_id"] == "t000-f1"), key=lambda h: h["iteration"])
    assert [h["step"] for h in hist] == [3, 6, 9, 12]
    folds = pq.read_table(sweep_dir / "folds.parquet").to_pylist()
    assert sorted({f["fold"] for f in folds}) == [0, 1, 2]
    names = json.loads((sweep_dir / "labels.json").read_text())["names"]
    for cid in ("t000", "t001"):
        oof = np.load(sweep_dir / "oof_probs" / f"{cid}.npy")
        assert oof.shape == (len(folds), len(names))
        np.testing.assert_allclose(oof.sum(axis=1), 1.0, atol=1e-4)  # every row predicted once
        # each row's probabilities are those its held-out fold's trial saved for it
        for fold in range(3):
            rows = [i for i, f in enumerate(folds) if f["fold"] == fold]
            saved = np.load(after[f"{cid}-f{fold}"]["valid_probs"])
            np.testing.assert_allclose(oof[rows], saved, atol=1e-6)

"""The results callback without Ray running: rows, statuses, history, the live table, and the
guard that keeps results recorded before a crash."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest

from relex.data.sample import SAMPLE_PATH
from relex.errors import RelexError
from relex.sweep.asha import Rungs
from relex.sweep.callback import SweepCallback
from relex.sweep.job import load_job
from relex.analysis.leaderboard import live_table, plain_text
from relex.sweep.results import ResultsWriter, Tables


class FakeTrial:
    def __init__(self, tid):
        self.trial_id = "ray_" + tid
        self.config = {"trial": {"trial_id": tid, "config": {}}}

    def get_error(self):
        return "Traceback (most recent call last):\n  File x\nValueError: from the traceback\n"


@pytest.fixture
def job(tmp_path):
    p = tmp_path / "job.py"
    p.write_text("from relex.sweep import Sweep, grid\n"
                 f"sweep = Sweep(name='cb', train={str(SAMPLE_PATH)!r},\n"
                 "  space=dict(head=grid(['cls', 'marker', 'rbert'])))\n")
    return load_job(p)


def _result(it, f1, **kw):
    return {"training_iteration": it, "micro_f1": f1, "auprc": 50.0, "accuracy": 60.0,
            "val_loss": 1.0, "train_loss": 2.0, "lr": 1e-4, "step": 10 * it, "epoch": 0.5 * it,
            "is_best": True, "best_micro_f1": f1, "best_auprc": 50.0, "best_accuracy": 60.0,
            "best_val_loss": 1.0, "best_step": 10 * it, "best_epoch": 0.5 * it, "attempt": 1,
            "elapsed_s": 3.0 * it, "node": "10.0.0.2", "node_id": "n1", "gpu": "0", **kw}


def test_callback_records_statuses_history_and_draws_the_table(job, tmp_path):
    from rich.console import Console

    sweep_dir = tmp_path / "sw"
    rungs = Rungs(grace_period=1, reduction_factor=2, path=sweep_dir / "asha_state.json")
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=250)
    cb = SweepCallback(job, sweep_dir, ResultsWriter(sweep_dir), rungs, console=console,
                       tables=Tables(live=live_table, plain=plain_text))
    assert cb.live_enabled
    cb.setup()
    a, b, c = FakeTrial("t000"), FakeTrial("t001"), FakeTrial("t002")
    for t in (a, b, c):
        cb.on_trial_start(0, [], t)
    # t000 finishes normally: its summary (written by the trial) is the final word
    cb.on_trial_result(0, [], a, _result(1, 40.0))
    cb.on_trial_result(0, [], a, _result(2, 55.5))
    tdir = sweep_dir / "trials" / "t000"
    tdir.mkdir(parents=True)
    (tdir / "summary.json").write_text(json.dumps({
        "trial_id": "t000", "micro_f1": 55.5, "auprc": 51.0, "accuracy": 61.0, "val_loss": 0.9,
        "best_step": 20, "best_epoch": 1.0, "epochs_run": 1.0, "wall_s": 8.5,
        "checkpoint": "/ck/t000"}))
    cb.on_trial_complete(0, [], a)
    # t001 is stopped by ASHA: best-so-far from its last report, status STOPPED_EARLY
    rungs.decide("t000", 1, 40.0)
    cb.on_trial_result(0, [], b, _result(1, 10.0))
    assert rungs.decide("t001", 1, 10.0) == "STOP"
    cb.on_trial_complete(0, [], b)
    # t002 fails: message from its error.json, else from Ray's traceback text
    cb.on_trial_error(0, [], c)
    cb.on_experiment_end([])

    rows = {r["trial_id"]: r for r in pq.read_table(sweep_dir / "trials.parquet").to_pylist()}
    assert rows["t000"]["status"] == "TERMINATED" and rows["t000"]["micro_f1"] == 55.5
    assert rows["t000"]["wall_s"] == 8.5 and rows["t000"]["checkpoint"] == "/ck/t000"
    assert rows["t000"]["head"] == "cls" and rows["t000"]["node"] == "10.0.0.2"
    assert rows["t001"]["status"] == "STOPPED_EARLY" and rows["t001"]["micro_f1"] == 10.0
    assert rows["t001"]["best_step"] == 10 and rows["t001"]["evaluations"] == 1
    assert rows["t002"]["status"] == "ERROR" and rows["t002"]["error"] == "ValueError: from the traceback"
    hist = pq.read_table(sweep_dir / "history.parquet").to_pylist()
    assert [(h["trial_id"], h["iteration"], h["step"]) for h in hist] == [
        ("t000", 1, 10), ("t000", 2, 20), ("t001", 1, 10)]
    for t in ("t000", "t001", "t002"):
        assert json.loads((sweep_dir / "trials" / t / "final.json").read_text())["status"] == rows[t]["status"]
    text = out.getvalue()
    assert "cb: 3/3 trials finished" in text and "55.50" in text and "STOPPED_EARLY" in text

    # a driver resumed after a crash keeps these rows, even if Ray runs a finished trial again
    cb2 = SweepCallback(job, sweep_dir, ResultsWriter(sweep_dir), rungs, console=None)
    cb2.on_trial_start(0, [], a)
    cb2.on_trial_result(0, [], a, _result(1, 1.0))
    cb2.on_trial_complete(0, [], a)
    again = {r["trial_id"]: r for r in pq.read_table(sweep_dir / "trials.parquet").to_pylist()}
    assert again == rows


def test_a_resumed_trial_continues_from_its_last_recorded_evaluation(job, tmp_path):
    """A resumed sweep is a new Tune run: a trial killed mid-run continues from its newest state
    at or before the last evaluation the driver recorded (the trial may have written one past
    it), and its evaluations are numbered on from there, not from Tune's training_iteration."""
    from relex.sweep.trial import continue_from

    sweep_dir = tmp_path / "sw"
    cb = SweepCallback(job, sweep_dir, ResultsWriter(sweep_dir), None, console=None)
    a = FakeTrial("t000")
    cb.on_trial_start(0, [], a)
    for it in (1, 2, 3):
        cb.on_trial_result(0, [], a, _result(it, 40.0 + it, evaluation=it))
    states = sweep_dir / "trials" / "t000" / "states"
    for step in (20, 30, 40):  # step 40's evaluation never reached the driver (killed)
        (states / f"step_{step:08d}").mkdir(parents=True)
    recorded = ResultsWriter(sweep_dir).last_recorded()  # what the resumed driver reads back
    assert recorded == {"t000": 30}
    assert continue_from(states, recorded["t000"]) == states / "step_00000030"
    assert continue_from(states, 10) is None  # nothing kept that early: from the start
    assert continue_from(states, None) is None  # never recorded: from the start

    cb2 = SweepCallback(job, sweep_dir, ResultsWriter(sweep_dir), None, console=None)
    cb2.on_trial_start(0, [], a)
    cb2.on_trial_result(0, [], a, {**_result(1, 44.0, evaluation=4), "step": 40})
    cb2.compact()
    hist = pq.read_table(sweep_dir / "history.parquet").to_pylist()
    assert [(h["iteration"], h["step"], h["micro_f1"]) for h in hist] == [
        (1, 10, 41.0), (2, 20, 42.0), (3, 30, 43.0), (4, 40, 44.0)]


def test_plain_lines_off_a_terminal(job, tmp_path):
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    sweep_dir = tmp_path / "sw"
    cb = SweepCallback(job, sweep_dir, ResultsWriter(sweep_dir), None, console=console)
    assert not cb.live_enabled
    t = FakeTrial("t001")
    cb.on_trial_result(0, [], t, _result(1, 12.5))
    (sweep_dir / "trials" / "t001").mkdir(parents=True)
    (sweep_dir / "trials" / "t001" / "error.json").write_text(json.dumps({"error": "TrainingDiverged: loss is nan"}))
    cb.on_trial_error(0, [], t)
    line = out.getvalue().strip()
    assert line.startswith("[1/3] t001 ERROR micro_f1=12.50  TrainingDiverged: loss is nan")
    assert "\x1b" not in line


def test_only_the_top_k_ended_trials_keep_their_checkpoints(tmp_path):
    from relex.sweep.retention import checkpoints_to_drop

    rows = []
    for tid, status, f1 in [("t0", "TERMINATED", 50.0), ("t1", "STOPPED_EARLY", 70.0),
                            ("t2", "TERMINATED", 60.0), ("t3", "RUNNING", 10.0), ("t4", "ERROR", None),
                            ("t5", "ERROR", 99.0), ("t6", "PAUSED", 1.0)]:
        best = tmp_path / tid / "best"
        best.mkdir(parents=True)
        rows.append({"trial_id": tid, "status": status, "micro_f1": f1, "checkpoint": str(best)})
    # t1, t2 kept; t3 runs, t6 is paused; t4 and t5 failed: their states refer to their
    # checkpoints (--retry-errors continues from there), ranked or not
    drop = checkpoints_to_drop(rows, 2, "micro_f1", "max")
    assert drop == {"t0": "keep_checkpoints=2: ranked 3 by micro_f1"}
    assert checkpoints_to_drop(rows, 0, "micro_f1", "max") == {}  # 0 keeps all
    rows[0]["val_loss"], rows[1]["val_loss"], rows[2]["val_loss"] = 0.5, 0.9, 0.7
    assert list(checkpoints_to_drop(rows, 1, "val_loss", "min")) == ["t2", "t1"]
    (tmp_path / "t1" / "best").rmdir()  # already gone: nothing to drop
    assert list(checkpoints_to_drop(rows, 1, "val_loss", "min")) == ["t2"]


def test_a_checkpoint_budget_keeps_the_best_ranked_that_fit(tmp_path):
    from relex.sweep.retention import checkpoints_to_drop, parse_size

    assert parse_size("50GB", "job") == 50 * 10 ** 9 and parse_size("1.5 MiB", "job") == 1572864
    assert parse_size(4096, "job") == 4096
    for bad in ("50 gigs", -1, True, "0GB"):
        with pytest.raises(RelexError, match="checkpoint_budget"):
            parse_size(bad, "job.py")
    rows = []
    for tid, status, f1, size in [("t0", "TERMINATED", 90.0, 300), ("t1", "TERMINATED", 80.0, 300),
                                  ("t2", "TERMINATED", 70.0, 100), ("t3", "RUNNING", 10.0, 300),
                                  ("t4", "ERROR", 5.0, 300)]:
        best = tmp_path / tid / "best"
        best.mkdir(parents=True)
        (best / "model.safetensors").write_bytes(b"x" * size)
        rows.append({"trial_id": tid, "status": status, "micro_f1": f1, "checkpoint": str(best)})
    # 1,300 bytes: the running and the failed trial hold 600 first; t0 fits (900), t1 does not
    # (1,200 > 1,000 is over the budget), and t2, ranked below t1, goes too though it would fit
    drop = checkpoints_to_drop(rows, 0, "micro_f1", "max", budget=1000)
    assert drop == {t: "checkpoint_budget 1 KB: full, 900 B held by better-ranked, running or failed trials"
                    for t in ("t1", "t2")}
    assert checkpoints_to_drop(rows, 0, "micro_f1", "max", budget=1500) == {}
    # both limits: a checkpoint stays only inside both
    assert list(checkpoints_to_drop(rows, 1, "micro_f1", "max", budget=1500)) == ["t1", "t2"]
    assert list(checkpoints_to_drop(rows, 0, "micro_f1", "max", budget=100)) == ["t0", "t1", "t2"]


def test_a_fold_sweep_keeps_whole_configurations(tmp_path):
    from relex.sweep.retention import checkpoints_to_drop

    rows = []
    for cid, f1s in [("t0", [50.0, 90.0]), ("t1", [70.0, 71.0]), ("t2", [99.0])]:  # t2: fold 1 runs
        for fold, f1 in enumerate(f1s):
            best = tmp_path / f"{cid}-f{fold}" / "best"
            best.mkdir(parents=True)
            rows.append({"trial_id": f"{cid}-f{fold}", "config_id": cid, "fold": fold,
                         "status": "TERMINATED", "micro_f1": f1, "checkpoint": str(best)})
    # by mean: t0 70.0 < t1 70.5; t0's best single fold (90) does not save it; t2 is unfinished
    assert list(checkpoints_to_drop(rows, 1, "micro_f1", "max", folds=2)) == ["t0-f0", "t0-f1"]
    rows[3]["micro_f1"] = None  # one unscored fold ranks its configuration last
    assert list(checkpoints_to_drop(rows, 1, "micro_f1", "max", folds=2)) == ["t1-f0", "t1-f1"]


def test_the_sweep_drops_checkpoints_over_its_budget_and_records_why(tmp_path):
    """Sweep(checkpoint_budget=...) as trials end: the best-ranked keep their best checkpoints
    while they fit; a failed trial's stays (its state refers to it) and counts first; the
    trials.parquet row of a dropped checkpoint says which limit took it."""
    p = tmp_path / "job.py"
    p.write_text("from relex.sweep import Sweep, grid\n"
                 f"sweep = Sweep(name='cb', train={str(SAMPLE_PATH)!r}, checkpoint_budget='1KB',\n"
                 "  space=dict(head=grid(['cls', 'marker', 'rbert', 'cls']), lr=grid([1e-3])))\n")
    with pytest.raises(RelexError):  # a repeated grid value, not the budget, is wrong here
        load_job(p)
    p.write_text(p.read_text().replace("'rbert', 'cls'", "'rbert'").replace("1e-3]", "1e-3, 2e-3]"))
    job = load_job(p)
    assert job.checkpoint_budget == 1000 and job.keep_checkpoints == 0  # no count limit with a budget
    assert json.loads(json.dumps(job.resolved()))["checkpoint_budget"] == 1000  # job.json records it
    sweep_dir = tmp_path / "sw"
    cb = SweepCallback(job, sweep_dir, ResultsWriter(sweep_dir), None, console=None)
    best = {}
    for tid, f1 in [("t000", 50.0), ("t001", 70.0), ("t002", 90.0), ("t003", 60.0)]:
        best[tid] = sweep_dir / "trials" / tid / "run" / "best"
        best[tid].mkdir(parents=True)
        (best[tid] / "model.safetensors").write_bytes(b"x" * 300)
        cb.on_trial_result(0, [], FakeTrial(tid), _result(1, f1, checkpoint=str(best[tid])))
    cb.on_trial_error(0, [], FakeTrial("t001"))  # 300 bytes the retry needs, whatever its rank
    # t000 ends while t002 and t003 run: their 600 bytes and t001's 300 leave no room for it
    cb.on_trial_complete(0, [], FakeTrial("t000"))
    assert not best["t000"].exists() and all(best[t].is_dir() for t in ("t001", "t002", "t003"))
    cb.on_trial_complete(0, [], FakeTrial("t003"))
    cb.on_trial_complete(0, [], FakeTrial("t002"))  # 900 bytes in all now: both fit
    rows = {r["trial_id"]: r for r in pq.read_table(sweep_dir / "trials.parquet").to_pylist()}
    assert all(best[t].is_dir() for t in ("t001", "t002", "t003"))
    assert rows["t000"]["checkpoint_dropped"] == (
        "checkpoint_budget 1 KB: full, 900 B held by better-ranked, running or failed trials")
    assert all(rows[t]["checkpoint_dropped"] is None for t in ("t001", "t002", "t003"))

"""One run on two Ray Train workers (CPU, gloo), through the commands users run: `relex train
--workers 2` survives losing a worker process, and a sweep of two-worker trials runs under ASHA.

Each command runs as a subprocess with its own Ray (a descendant of the test process, so a worker
can be SIGKILLed), and nothing is left running when the command ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from relex.data.sample import SAMPLE_PATH

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
TINY = ["--tiny-hidden", "32", "--tiny-layers", "1", "--tiny-heads", "2", "--max-length", "80",
        "--num-threads", "1", "--amp", "off", "--warmup-ratio", "0"]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "TOKENIZERS_PARALLELISM": "false", "RELEX_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("RAY_ADDRESS", None)
    return env


def _history(out: Path) -> list[dict]:
    path = out / "history.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _train_workers(pid: int) -> list[psutil.Process]:
    """The Ray Train worker processes of the command ``pid`` (its Ray is its own)."""
    found = []
    for p in psutil.Process(pid).children(recursive=True):
        try:
            if "RayTrainWorker" in " ".join(p.cmdline()):
                found.append(p)
        except psutil.NoSuchProcess:
            pass
    return found


def test_a_killed_worker_is_replaced_and_the_run_continues_from_its_state(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "relex.cli", "train", "--workers", "2", "--out", str(out),
           "--save-state", "--batch-size", "8", "--global-batch-size", "16", "--epochs", "50",
           "--max-steps", "400", "--eval-every", "25", *TINY]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 900  # Ray's start and its workers' take minutes on a busy machine
        # the first evaluation's state written (Ray Train may not have registered it yet: the
        # workers find it anyway)
        while not (out / "state" / "state.json").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        if not _history(out):
            proc.kill()
            pytest.fail("no evaluation was written: " + proc.communicate()[0][-3000:])
        victims = _train_workers(proc.pid)
        assert len(victims) == 2
        killed_at = _history(out)[-1]["step"]
        victims[-1].send_signal(signal.SIGKILL)
        text, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, text[-3000:]
    assert killed_at < 400  # the worker died mid-run
    resumed = [line for line in text.splitlines() if "[relex] resumed from" in line]
    assert resumed, text[-3000:]
    step = int(resumed[0].split(" at step ")[1].split()[0])
    assert step >= 25 and step % 25 == 0  # from a state written at an evaluation, not from scratch
    steps = [h["step"] for h in _history(out)]
    assert steps == list(range(25, 401, 25))  # each evaluation once, as in an uninterrupted run
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["steps"] == 400 and summary["config"]["workers"] == 2
    assert (out / "best" / "model.safetensors").exists() or any((out / "best").iterdir())


JOB = '''
from relex.sweep import Sweep, grid
sweep = Sweep(
    name="two-workers",
    train={data!r}, valid=0.2,
    space=dict(lr=grid([5e-3, 1e-5]), tiny_hidden=32, tiny_layers=1, tiny_heads=2, max_length=80,
               batch_size=8, epochs=20, max_steps=12, eval_every=3, warmup_ratio=0.0,
               num_threads=1, amp="off"),
    asha=dict(metric="micro_f1", grace_period=1, reduction_factor=2),
    resources=dict(gpu=0, cpu=1),
    workers_per_trial=2,
    max_failures=1,
)
'''


def test_a_sweep_of_two_worker_trials_runs_under_asha(tmp_path):
    data = json.loads(Path(SAMPLE_PATH).read_text(encoding="utf-8"))
    (tmp_path / "data.json").write_text(json.dumps(data[::2], ensure_ascii=False), encoding="utf-8")
    job = tmp_path / "job.py"
    job.write_text(JOB.format(data=str(tmp_path / "data.json")))
    p = subprocess.run([sys.executable, "-m", "relex.cli", "sweep", str(job), "--storage",
                        str(tmp_path / "art")], cwd=tmp_path, env=_env(tmp_path),
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "0 GPU + 1 CPU per worker, 2 workers per trial" in p.stdout + p.stderr
    sweep_dir = tmp_path / "art" / "two-workers"
    rows = {r["trial_id"]: r for r in pq.read_table(sweep_dir / "trials.parquet").to_pylist()}
    assert set(rows) == {"t000", "t001"}
    assert {r["status"] for r in rows.values()} <= {"TERMINATED", "STOPPED_EARLY"}
    assert all(r["workers"] == 2 for r in rows.values())
    history = pq.read_table(sweep_dir / "history.parquet").to_pylist()
    for tid, row in rows.items():
        steps = [h["step"] for h in history if h["trial_id"] == tid]
        assert steps and steps == sorted(set(steps)) and all(s % 3 == 0 for s in steps)
        assert row["best_step"] in steps
        assert Path(row["checkpoint"]).is_dir()  # the leader's best checkpoint
        assert (sweep_dir / "valid_probs" / f"{tid}.npy").exists()
    # ASHA decided on every trial's first evaluation, and stopped exactly the trials it recorded
    asha = json.loads((sweep_dir / "asha_state.json").read_text())
    assert {tid for tid, _, _ in asha["records"]["1"]} == set(rows)
    assert {t for t, r in rows.items() if r["status"] == "STOPPED_EARLY"} == set(asha["stopped"])

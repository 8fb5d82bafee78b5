"""TPE sweeps on Ray: suggestions under ASHA with the seed mean told to the study once; a driver
SIGKILLed mid-study resumes it with nothing lost or asked twice; a retried sampled trial keeps
its parameters; the report's continuous-axis section.

The drivers run as `relex sweep` subprocesses joining one local Ray cluster (as on a real
cluster), so a driver can be killed without taking Ray with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from relex.data.sample import SAMPLE_PATH

pytest.importorskip("optuna")
pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false"}

JOB = '''
from pathlib import Path
from relex.sweep import Sweep, loguniform, uniform

def fail_while_flagged(cfg, trial_id):
    if trial_id == "s001" and Path({flag!r}).exists():
        raise RuntimeError("broken trial " + trial_id)

sweep = Sweep(
    name="tpe", train={data!r}, valid=0.25,
    space=dict(lr=loguniform(1e-4, 3e-3), warmup_ratio=uniform(0.0, 0.3, q=0.05),
               tiny_hidden=32, tiny_layers=1, tiny_heads=2, max_length=64, batch_size=16,
               epochs=20, max_steps=24, eval_every=4, num_threads=1, amp="off"),
    search="tpe", search_seed=3, {extra}
    asha=dict(grace_period=1, reduction_factor=2),
    resources=dict(gpu=0, cpu=1),
    before_trial=fail_while_flagged,
)
'''


def _head_node(Cluster, tries: int = 3):
    """Ray gives a starting node 30 s to register; on a busy machine a start is retried."""
    for attempt in range(1, tries + 1):
        try:
            return Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
        except Exception:
            if attempt == tries:
                raise


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    with pytest.MonkeyPatch.context() as env:
        for k, v in ENV.items():
            env.setenv(k, v)
        c = _head_node(Cluster)
        try:
            yield c.address
        finally:
            ray.shutdown()
            c.shutdown()


def _job(tmp_path, extra, flag="no-such-flag"):
    p = tmp_path / "job.py"
    p.write_text(JOB.format(data=str(SAMPLE_PATH), flag=str(tmp_path / flag), extra=extra))
    return p


def _cmd(job, storage, address, *extra):
    return [sys.executable, "-m", "relex.cli", "sweep", str(job), "--storage", str(storage),
            "--name", "tpe", "--address", address, *extra]


def _env(tmp_path):
    env = {**os.environ, **ENV, "RELEX_CACHE": str(tmp_path / "cache"), "TUNE_GLOBAL_CHECKPOINT_S": "0",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("RAY_ADDRESS", None)
    return env


def _run(job, tmp_path, address, *extra, ok=True):
    p = subprocess.run(_cmd(job, tmp_path / "art", address, *extra), cwd=tmp_path,
                       env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    if ok:
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return p


def _rows(sweep_dir):
    return {r["trial_id"]: r for r in pq.read_table(sweep_dir / "trials.parquet").to_pylist()}


def _study(sweep_dir):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(sweep_dir / "study.journal")))
    return optuna.load_study(study_name="point-0", storage=storage)


def _tells(sweep_dir):
    """How many times the journal records each study trial as COMPLETE (told)."""
    from optuna.trial import TrialState

    ops = [json.loads(x) for x in (sweep_dir / "study.journal").read_text().splitlines()]
    return Counter(op["trial_id"] for op in ops if op.get("state") == TrialState.COMPLETE.value)


@pytest.fixture(scope="module")
def seeded_tpe(cluster, tmp_path_factory):
    """A TPE sweep with two seeds per suggestion and two trials at a time."""
    tmp = tmp_path_factory.mktemp("tpe")
    job = _job(tmp, "num_samples=4, seeds=[1, 2], max_concurrent=2,")
    proc = _run(job, tmp, cluster)
    return tmp / "art" / "tpe", proc


def test_tpe_sweep_under_asha_tells_the_seed_mean_once(seeded_tpe):
    sweep_dir, proc = seeded_tpe
    rows = _rows(sweep_dir)
    assert sorted(rows) == [f"s00{i}-{s}" for i in range(4) for s in (1, 2)]
    assert all(r["status"] in ("TERMINATED", "STOPPED_EARLY") for r in rows.values())
    study = _study(sweep_dir)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    for t in study.trials:
        a, b = rows[f"s{t.number:03d}-1"], rows[f"s{t.number:03d}-2"]
        assert (a["seed"], b["seed"]) == (1, 2) and a["config_id"] == b["config_id"] == f"s{t.number:03d}"
        assert a["lr"] == b["lr"] == t.params["lr"] and 1e-4 <= a["lr"] <= 3e-3
        assert a["warmup_ratio"] == b["warmup_ratio"] == round(t.params["warmup_ratio"], 12)
        assert t.value == pytest.approx((a["micro_f1"] + b["micro_f1"]) / 2)
    assert _tells(sweep_dir) == {i: 1 for i in range(4)}
    assert "8 trials" in proc.stdout
    # --dry-run showed what the sweep asked first
    from relex.sweep.job import load_job
    from relex.sweep.search import first_suggestions

    shown = first_suggestions(load_job(sweep_dir.parents[1] / "job.py"), 2)
    assert [p["lr"] for p in shown] == [t.params["lr"] for t in study.trials[:2]]


def _wait_for(predicate, timeout=400):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_sigkill_mid_study_then_resume_runs_exactly_num_samples(cluster, tmp_path):
    job = _job(tmp_path, "num_samples=5, seeds=[7], max_concurrent=1,")
    sweep_dir = tmp_path / "art" / "tpe"

    def mid_study():  # two suggestions finished, the third has reported an evaluation
        try:
            rows = _rows(sweep_dir)
        except Exception:
            return False
        done = [r for r in rows.values() if r["status"] in ("TERMINATED", "STOPPED_EARLY")]
        return len(done) >= 2 and any(r["status"] == "RUNNING" and r["evaluations"] for r in rows.values())

    proc = subprocess.Popen(_cmd(job, tmp_path / "art", cluster), cwd=tmp_path, env=_env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(mid_study), "the sweep never got mid-study"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed = _rows(sweep_dir)
    running = [t for t, r in killed.items() if r["status"] == "RUNNING"]
    assert len(running) == 1
    _run(job, tmp_path, cluster, "--resume")
    rows = _rows(sweep_dir)
    assert sorted(rows) == [f"s{i:03d}" for i in range(5)]
    assert all(r["status"] in ("TERMINATED", "STOPPED_EARLY") for r in rows.values())
    params = [(r["lr"], r["warmup_ratio"]) for r in rows.values()]
    assert len(set(params)) == 5  # no suggestion asked twice
    study = _study(sweep_dir)
    assert len(study.trials) == 5 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert _tells(sweep_dir) == {i: 1 for i in range(5)}
    for t in study.trials:
        assert rows[f"s{t.number:03d}"]["lr"] == t.params["lr"]
    # the trial killed mid-run ran again with its parameters, from its latest resumable state
    runs = [json.loads(x) for x in (sweep_dir / "trials" / running[0] / "attempts.jsonl").read_text().splitlines()]
    assert len(runs) == 2 and runs[0]["resume_from"] is None and "states/step_" in runs[1]["resume_from"]
    assert killed[running[0]]["lr"] == rows[running[0]]["lr"]


def test_retry_errors_reruns_a_sampled_trial_with_its_parameters(cluster, tmp_path):
    flag = tmp_path / "broken"
    flag.write_text("")
    job = _job(tmp_path, "num_samples=3, seeds=[7], max_concurrent=1,", flag="broken")
    sweep_dir = tmp_path / "art" / "tpe"
    first = _run(job, tmp_path, cluster, ok=False)
    assert first.returncode == 0 or "s001 ERROR" in first.stdout
    rows = _rows(sweep_dir)
    assert rows["s001"]["status"] == "ERROR" and len(rows) == 3
    assert _study(sweep_dir).trials[1].state.name == "RUNNING"  # a failed suggestion is not told
    flag.unlink()
    _run(job, tmp_path, cluster, "--resume", "--retry-errors")
    again = _rows(sweep_dir)
    assert sorted(again) == ["s000", "s001", "s002"]
    assert again["s001"]["status"] in ("TERMINATED", "STOPPED_EARLY")
    assert (again["s001"]["lr"], again["s001"]["warmup_ratio"]) == (rows["s001"]["lr"], rows["s001"]["warmup_ratio"])
    study = _study(sweep_dir)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert study.trials[1].value == pytest.approx(again["s001"]["micro_f1"])

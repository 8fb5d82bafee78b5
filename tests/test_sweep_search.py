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

import pytest

from relex.data.sample import SAMPLE_PATH

pytest.importorskip("optuna")
pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false"}

JOB = '''
from pathlib import Path
from relex.sweep import Sweep, loguniform, uniform

STEP_PAUSE = {pause!r}

def fail_while_flagged(cfg, trial_id):
    if trial_id == "s001" and Path({flag!r}).exists():
        raise RuntimeError("broken trial " + trial_id)
    import torch.optim.optimizer as optim
    if STEP_PAUSE and not getattr(optim, "paused_steps", False):  # once per worker process
        import time
        optim.register_optimizer_step_post_hook(lambda *_: time.sleep(STEP_PAUSE))
        optim.paused_steps = True

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


def _job(tmp_path, extra, flag="no-such-flag", pause=0.0):
    p = tmp_path / "job.py"
    p.write_text(JOB.format(data=str(SAMPLE_PATH), flag=str(tmp_path / flag), extra=extra,
                            pause=pause))
    return p


def _cmd(job, storage, address, *extra, name="tpe"):
    return [sys.executable, "-m", "relex.cli", "sweep", str(job), "--storage", str(storage),
            "--name", name, "--address", address, *extra]


def _env(tmp_path):
    env = {**os.environ, **ENV, "RELEX_CACHE": str(tmp_path / "cache"), "TUNE_GLOBAL_CHECKPOINT_S": "0",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("RAY_ADDRESS", None)
    return env


def _run(job, tmp_path, address, *extra, ok=True, name="tpe"):
    p = subprocess.run(_cmd(job, tmp_path / "art", address, *extra, name=name), cwd=tmp_path,
                       env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    if ok:
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return p


def _rows(sweep_dir):
    """The rows as recorded now: the compacted file and the fragments a running (or killed)
    driver wrote since."""
    from relex.sweep.layout import SweepDir

    return {r["trial_id"]: r for r in SweepDir(sweep_dir).trial_rows()}


def _study(sweep_dir):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(sweep_dir / "study.journal")))
    return optuna.load_study(study_name="point-0", storage=storage)


def _tells(sweep_dir):
    """How many times the journal records each study trial as told COMPLETE (a trial created
    finished, a staged sweep's hand-over, is not a tell)."""
    from optuna.trial import TrialState

    ops = [json.loads(x) for x in (sweep_dir / "study.journal").read_text().splitlines()]
    return Counter(op["trial_id"] for op in ops
                   if op.get("state") == TrialState.COMPLETE.value and "trial_id" in op)


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
    # 0.2 s a step: a trial's evaluations are a second apart, however fast the CPU, so the
    # polls below find one running and the kill lands before it ends
    job = _job(tmp_path, "num_samples=5, seeds=[7], max_concurrent=1,", pause=0.2)
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


STAGE = """
from relex.sweep import Sweep, grid, loguniform, narrow
RUN = dict(tiny_hidden=32, tiny_layers=1, tiny_heads=2, max_length=64, batch_size=16, epochs=1,
           eval_every=8, num_threads=1, amp="off")
sweep = Sweep({args}, seeds=[7], resources=dict(gpu=0, cpu=1), max_concurrent={concurrent},
              asha=dict(grace_period=1, reduction_factor=2))
"""


def test_a_staged_tpe_sweep_builds_on_the_first_stages_trials_without_rerunning_them(cluster, tmp_path):
    import math

    # stage 1: a grid over the learning rate; stage 2: TPE within 0.6 of loguniform(1e-4, 1e-2)'s
    # two decades around stage 1's best, i.e. 0.6 decades either side
    first = tmp_path / "stage1.py"
    first.write_text(STAGE.format(concurrent=2, args=f"name='stage1', train={str(SAMPLE_PATH)!r}, valid=0.25, "
                                                     "space=dict(lr=grid([3e-4, 1e-3, 3e-3]), **RUN)"))
    _run(first, tmp_path, cluster, name="stage1")
    stage1 = _rows(tmp_path / "art" / "stage1")
    assert sorted(stage1) == ["t000", "t001", "t002"]
    assert all(r["status"] in ("TERMINATED", "STOPPED_EARLY") for r in stage1.values())
    best = max(sorted(stage1), key=lambda t: stage1[t]["micro_f1"])
    in_range = sorted(t for t, r in stage1.items()
                      if abs(math.log10(r["lr"]) - math.log10(stage1[best]["lr"])) <= 0.6)
    assert best in in_range and len(in_range) >= 2  # the best and its grid neighbours

    second = tmp_path / "stage2.py"
    second.write_text(STAGE.format(concurrent=1, args=f"name='stage2', base={str(tmp_path / 'art' / 'stage1')!r}, "
                                                      "top=1, space=dict(lr=narrow(loguniform(1e-4, 1e-2), 0.6), **RUN), "
                                                      "search='tpe', search_seed=1, num_samples=2"))
    _run(second, tmp_path, cluster, name="stage2")
    sweep_dir = tmp_path / "art" / "stage2"
    rows = _rows(sweep_dir)
    # only the new suggestions ran; stage 1's trials are untouched
    assert sorted(rows) == ["s000", "s001"]
    assert sorted(p.name for p in (sweep_dir / "trials").iterdir()) == ["s000", "s001"]
    ran = ("status", "lr", "micro_f1", "ended_at", "wall_s")
    assert ({t: [r[k] for k in ran] for t, r in _rows(tmp_path / "art" / "stage1").items()}
            == {t: [r[k] for k in ran] for t, r in stage1.items()})
    assert all(r["status"] in ("TERMINATED", "STOPPED_EARLY") and r["lineage"] == f"stage1/{best}"
               for r in rows.values())
    center = math.log10(stage1[best]["lr"])
    assert all(abs(math.log10(r["lr"]) - center) <= 0.6 + 1e-9 for r in rows.values())
    # the study was told stage 1's finished trials in range first, with their scores, then its own
    study = _study(sweep_dir)
    given = len(in_range)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * (given + 2)
    assert sorted((t.user_attrs["from"], t.params["lr"], t.value) for t in study.trials[:given]) == [
        (f"stage1/{t}", stage1[t]["lr"], stage1[t]["micro_f1"]) for t in in_range]
    for t in study.trials[given:]:
        row = rows[f"s{t.number - given:03d}"]
        assert "from" not in t.user_attrs and t.params["lr"] == row["lr"]
        assert t.value == pytest.approx(row["micro_f1"])
    assert _tells(sweep_dir) == {given: 1, given + 1: 1}

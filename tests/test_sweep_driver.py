"""The sweep driver with a Ray of its own: one driver per sweep (two real drivers), and nothing of
its Ray left running after it is SIGKILLed; the next driver takes the stale lease over.

`relex sweep` runs as a subprocess without --address, so it starts (and owns) a local Ray.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from relex.data.sample import SAMPLE_PATH
from relex.sweep.lease import LEASE_FILE
from relex.sweep.specs import tune_trial_id
from relex.sweep.trial import Prepared

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]

JOB = '''
from relex.sweep import Sweep, grid
sweep = Sweep(
    name="lease", train={data!r}, valid=0.25,
    space=dict(lr=grid([1e-3, 3e-3]), tiny_hidden=32, tiny_layers=1, tiny_heads=2, max_length=64,
               batch_size=16, epochs=20, max_steps=24, eval_every=4, warmup_ratio=0.0,
               num_threads=1, amp="off", eval_batch_size=128),
    seeds=[3], asha=dict(grace_period=50), resources=dict(gpu=0, cpu=1), max_concurrent=1,
)
'''


def _env(tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "TOKENIZERS_PARALLELISM": "false", "RELEX_CACHE": str(tmp_path / "cache"),
           "TUNE_GLOBAL_CHECKPOINT_S": "0",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("RAY_ADDRESS", None)
    return env


def _cmd(job, storage, *extra):
    return [sys.executable, "-m", "relex.cli", "sweep", str(job), "--storage", str(storage),
            "--name", "lease", *extra]


def _ray_processes_below(pid):
    import ray  # noqa: F401  (Ray ships psutil in its thirdparty_files)
    import psutil

    out = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
            if child.name() in ("raylet", "gcs_server") or cmd.startswith("ray::") or "/ray/" in cmd:
                out.append(child)
        except psutil.Error:
            pass
    return out


def _alive(procs):
    import psutil

    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


def test_second_driver_refused_and_a_killed_driver_leaves_nothing(tmp_path):
    data = json.loads(Path(SAMPLE_PATH).read_text(encoding="utf-8"))
    (tmp_path / "data.json").write_text(json.dumps(data[::2], ensure_ascii=False), encoding="utf-8")
    job = tmp_path / "job.py"
    job.write_text(JOB.format(data=str(tmp_path / "data.json")))
    storage, env = tmp_path / "art", _env(tmp_path)
    sweep_dir = storage / "lease"
    first = subprocess.Popen(_cmd(job, storage), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    ray_procs = []
    try:
        deadline = time.time() + 240
        while not (sweep_dir / LEASE_FILE).exists() and first.poll() is None \
                and time.time() < deadline:
            time.sleep(0.1)
        assert first.poll() is None, first.communicate()[0][-3000:]
        # a second driver of the same sweep, in any mode, refuses with one line naming the first
        for extra in ((), ("--resume",), ("--overwrite",)):
            p = subprocess.run(_cmd(job, storage, *extra), cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=120)
            assert p.returncode == 2, (extra, p.stderr[-2000:])
            lines = p.stderr.strip().splitlines()
            assert len(lines) == 1 and "in use by another relex sweep" in lines[0], (extra, lines)
            assert f"pid {first.pid} on " in lines[0]
        # the first driver is unharmed by them: wait until its trial runs, then kill it outright
        while first.poll() is None and time.time() < deadline and \
                not list(sweep_dir.glob("ray/t*/checkpoint_*")):
            time.sleep(0.1)
        assert first.poll() is None, first.communicate()[0][-3000:]
        ray_procs = _ray_processes_below(first.pid)
        names = {p.name() for p in ray_procs}
        assert {"raylet", "gcs_server"} <= names and any("Agent" in n for n in names), names
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        # within a few seconds nothing of its Ray is left, agents included
        gone_by = time.time() + 20
        while _alive(ray_procs) and time.time() < gone_by:
            time.sleep(0.2)
        left = [(p.pid, p.name()) for p in _alive(ray_procs)]
        assert not left, f"Ray processes outlived the killed driver: {left}"
    finally:
        if first.poll() is None:
            first.kill()
        for p in _alive(ray_procs):
            p.kill()
    # the lease of the dead driver is no obstacle: --resume takes the sweep over and finishes it
    p = subprocess.run(_cmd(job, storage, "--resume"), cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    rows = pq.read_table(sweep_dir / "trials.parquet").to_pylist()
    assert sorted((r["trial_id"], r["status"]) for r in rows) == [("t000", "TERMINATED"),
                                                               ("t001", "TERMINATED")]
    assert not (sweep_dir / LEASE_FILE).exists()  # released at the end


# ---------------------------------------------------------------- Tune's snapshot, cut short
@dataclass
class FlakyInputs(Prepared):
    """The flaky trainable's settings: a directory outside the sweep where it records each start
    (``starts/``) and reads which trials must fail (``fail``)."""

    control: str = ""


def _flaky_trial(config, prepared):
    """A lightweight trainable: records each start; fails while its id is listed in ``fail``."""
    from ray import tune

    tid = tune_trial_id(config)
    control = Path(prepared.control)
    (control / "starts").mkdir(exist_ok=True)
    (control / "starts" / f"{tid}-{time.time_ns()}").write_text("")
    if tid in (control / "fail").read_text().split():
        raise RuntimeError(f"{tid} fails on purpose")
    score = 1.0 + int(tid[1:])
    tune.report({"micro_f1": score, "best_micro_f1": score, "step": 1, "epoch": 1.0})


def _starts(control, tid):
    return len(list((control / "starts").glob(f"{tid}-*")))


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """One local Ray for the in-process sweeps of this module (the driver tests start their own)."""
    import ray
    import ray.cloudpickle

    with pytest.MonkeyPatch.context() as mp:
        for k, v in _env(tmp_path_factory.mktemp("ray")).items():
            mp.setenv(k, v)
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        try:
            yield
        finally:
            ray.shutdown()


@pytest.mark.parametrize("cut", ["truncated", "missing"])
def test_resume_after_tune_snapshot_was_cut_short(local_ray, tmp_path, cut):
    """A driver killed while Ray Tune copies its experiment snapshot (Tune writes it in place)
    leaves it truncated, or absent when killed before the first copy. The resume does not read
    it (relex's own records say what is left to run): the unfinished trials run, the finished
    ones are kept (restoring it was a KeyError: 'trial')."""
    from rich.console import Console

    from relex.sweep.job import load_job
    from relex.sweep.runner import run

    job_file = tmp_path / "job.py"
    job_file.write_text(JOB.format(data=str(SAMPLE_PATH)))
    job = load_job(job_file)
    sweep_dir, inputs = tmp_path / "art" / "lease", FlakyInputs(control=str(tmp_path))
    (tmp_path / "fail").write_text("t001")
    first = run(job, storage=tmp_path / "art", trainable=_flaky_trial, prepared=inputs, live=False)
    assert first.counts == {"TERMINATED": 1, "ERROR": 1}
    snapshot = max((sweep_dir / "ray").glob("experiment_state-*.json"))
    if cut == "truncated":
        snapshot.write_bytes(snapshot.read_bytes()[:1000])
    else:
        snapshot.unlink()
    (tmp_path / "fail").write_text("")
    out = io.StringIO()
    again = run(job, storage=tmp_path / "art", resume=True, retry_errors=True,
                trainable=_flaky_trial, prepared=inputs, live=False,
                console=Console(file=out, width=400))
    assert again.counts == {"TERMINATED": 2}
    assert "retrying 1 failed trial(s): t001" in out.getvalue()
    assert (_starts(tmp_path, "t000"), _starts(tmp_path, "t001")) == (1, 2)
    rows = {r["trial_id"]: r for r in pq.read_table(sweep_dir / "trials.parquet").to_pylist()}
    assert rows["t001"]["micro_f1"] == 2.0 and rows["t000"]["micro_f1"] == 1.0

"""Sweeps on a real Ray cluster: one trial per GPU across nodes; kill the driver and resume;
a failing trial becomes an ERROR row while the rest complete.

One local multi-node Ray cluster serves the module (a CPU head and two worker nodes that each
declare one GPU, as `ray start --num-gpus 1` would on a GPU box). `relex sweep` runs as a
subprocess joining it with `--address`, as on a real cluster, so the driver can be SIGKILLed.
"""

from __future__ import annotations

import csv
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
from relex.sweep.layout import SweepDir
from relex.sweep.specs import tune_trial_id
from relex.sweep.trial import Prepared

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0",
       "TOKENIZERS_PARALLELISM": "false"}


def _start_cluster(Cluster, tries=3):
    """A CPU head and two one-GPU workers. Ray gives a starting node 30 s to register (fixed in
    its code); on a machine busy with other work that can run out, so a failed start is retried."""
    for attempt in range(tries):
        c = None
        try:
            c = Cluster(initialize_head=True,
                        head_node_args={"num_cpus": 2, "include_dashboard": False})
            workers = [c.add_node(num_cpus=1, num_gpus=1) for _ in range(2)]
            c.wait_for_nodes()
            return c, workers
        except Exception:
            if c is not None:
                c.shutdown()
            if attempt == tries - 1:
                raise


@pytest.fixture(scope="module")
def cluster():
    import ray
    import ray.cloudpickle
    from ray.cluster_utils import Cluster

    saved = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV)
    c, workers = _start_cluster(Cluster)
    ray.init(address=c.address)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        yield {"address": c.address, "gpu_nodes": {w.node_id for w in workers}}
    finally:
        ray.shutdown()
        c.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ---------------------------------------------------------------- one trial per GPU
@dataclass
class ProbeInputs(Prepared):
    """The probe trainable's settings, beside what every trial gets."""

    sleep_s: float = 1.0  # how long the probe "trains"
    gather: int = 0  # trials that should share one GPU: wait until they have all started


def _probe_trial(config, prepared):
    """A lightweight trainable: records where and when it ran."""
    import ray
    from ray import tune

    tid = tune_trial_id(config)
    start = time.time()
    node = ray.get_runtime_context().get_node_id()
    if prepared.gather:
        # wait (60 s at most) until the trials that should share this GPU have all started:
        # trial processes start seconds apart on a loaded machine, and the test is about
        # where Ray puts them, not about how fast they start
        seen = Path(prepared.sweep_dir) / "started"
        seen.mkdir(exist_ok=True)
        (seen / f"{tid}-{node}").write_text("")
        deadline = time.time() + 60
        while len(list(seen.glob(f"*-{node}"))) < prepared.gather and time.time() < deadline:
            time.sleep(0.1)
    time.sleep(prepared.sleep_s)
    rec = {"trial": tid, "node": ray.get_runtime_context().get_node_id(),
           "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
           "gpu_ids": [str(g) for g in ray.get_gpu_ids()], "start": start, "end": time.time()}
    out = Path(prepared.sweep_dir) / "probe"
    out.mkdir(exist_ok=True)
    (out / f"{tid}.json").write_text(json.dumps(rec))
    from relex.sweep.trial import placement

    tune.report({"micro_f1": float(int(tid[1:])), "step": 1, "epoch": 1.0, **placement()})


def test_trials_land_one_per_gpu_across_nodes(cluster, tmp_path):
    from relex.sweep.job import load_job
    from relex.sweep.runner import run

    job_file = tmp_path / "gpu_job.py"
    job_file.write_text(
        "from relex.sweep import Sweep, grid\n"
        f"sweep = Sweep(name='gpus', train={str(SAMPLE_PATH)!r},\n"
        "              space=dict(lr=grid([1e-4, 2e-4, 3e-4, 4e-4, 5e-4, 6e-4])),\n"
        "              asha=dict(grace_period=2))\n")  # one report per trial: no rung reached
    job = load_job(job_file)
    assert job.resources == {"gpu": None, "cpu": None}  # the default: one GPU if there are GPUs
    out = run(job, storage=tmp_path / "art", trainable=_probe_trial, prepared=ProbeInputs(), live=False)
    assert out.counts == {"TERMINATED": 6}

    recs = [json.loads(p.read_text()) for p in sorted((out.sweep_dir / "probe").glob("*.json"))]
    assert len(recs) == 6
    for r in recs:
        assert r["node"] in cluster["gpu_nodes"]  # never on the GPU-less head
        assert len(r["gpu_ids"]) == 1 and r["cuda"] == r["gpu_ids"][0]
    # never two trials at once on one GPU, never more trials at once than GPUs
    for node in cluster["gpu_nodes"]:
        spans = sorted((r["start"], r["end"]) for r in recs if r["node"] == node)
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
    events = sorted([(r["start"], 1) for r in recs] + [(r["end"], -1) for r in recs])
    running, peak = 0, 0
    for _, d in events:
        running += d
        peak = max(peak, running)
    assert peak <= 2
    rows = pq.read_table(out.sweep_dir / "trials.parquet").to_pylist()
    by_id = {r["trial_id"]: r for r in rows}
    for r in recs:
        assert by_id[r["trial"]]["node_id"] == r["node"]
        assert by_id[r["trial"]]["gpu"].split(":")[0] == r["gpu_ids"][0]


@pytest.mark.parametrize("fraction", [0.25])  # 0.5 in test_sweep_job (the plan)
def test_fractional_gpus_pack_trials_onto_each_gpu(cluster, tmp_path, fraction):
    """Ray places at most 1/fraction trials on a GPU, and nothing else limits them here: each
    trial asks for a hundredth of a CPU (the 1-CPU workers would admit 100 at once) and the
    grid has half again as many trials as the two GPUs hold, so a GPU given more trials than
    its fraction allows shows as a peak above 1/fraction."""
    from relex.sweep.job import load_job
    from relex.sweep.runner import run

    per_gpu = round(1 / fraction)
    n = 3 * per_gpu  # 1.5 times what the two GPUs hold at once: Ray must make trials wait
    job_file = tmp_path / "frac_job.py"
    job_file.write_text(
        "from relex.sweep import Sweep, grid\n"
        f"sweep = Sweep(name='frac', train={str(SAMPLE_PATH)!r},\n"
        f"              space=dict(lr=grid([{', '.join(f'{i}e-4' for i in range(1, n + 1))}])),\n"
        f"              resources=dict(gpu={fraction}, cpu=0.01), asha=dict(grace_period=2))\n")
    job = load_job(job_file)
    assert job.resources == {"gpu": fraction, "cpu": 0.01}
    # the flag beats the job file: 0.25 from the command line, as `--gpus-per-trial 0.25` passes it
    out = run(job, storage=tmp_path / "art", trainable=_probe_trial, gpus=fraction,
              prepared=ProbeInputs(sleep_s=1.5, gather=per_gpu), live=False)
    assert out.counts == {"TERMINATED": n}
    recs = [json.loads(p.read_text()) for p in sorted((out.sweep_dir / "probe").glob("*.json"))]
    assert len(recs) == n
    for r in recs:  # each trial sees exactly one GPU, its own node's
        assert r["node"] in cluster["gpu_nodes"]
        assert len(r["gpu_ids"]) == 1 and r["cuda"] == r["gpu_ids"][0]
    peaks = {}
    for node in cluster["gpu_nodes"]:
        events = sorted([(r["start"], 1) for r in recs if r["node"] == node]
                        + [(r["end"], -1) for r in recs if r["node"] == node])
        running, peaks[node] = 0, 0
        for _, d in events:
            running += d
            peaks[node] = max(peaks[node], running)
    # exactly 1/fraction trials on each GPU at once: never more, every GPU used and shared
    assert sorted(peaks.values()) == [per_gpu, per_gpu], peaks


# ------------------------------------------------------------ kill, resume, errors
JOB = '''
from relex.sweep import Sweep, grid

def fail_one(cfg, trial_id):
    # one trial of the grid is broken on purpose: it must end as an ERROR row
    if cfg.head == "marker" and cfg.lr == 1e-3:
        raise RuntimeError("broken trial " + trial_id)

sweep = Sweep(
    name="e2e", train={data!r}, valid=0.25,
    space=dict(head=grid(["cls", "marker"]), lr=grid([2e-4, 1e-3, 3e-3]),
               tiny_hidden=32, tiny_layers=1, tiny_heads=2, max_length=64, batch_size=16,
               epochs=20, max_steps=30, eval_every=6, warmup_ratio=0.0, num_threads=1, amp="off",
               eval_batch_size=128),
    seeds=[7],
    asha=dict(metric="auprc", grace_period=1, reduction_factor=2),
    resources=dict(gpu=0, cpu=1),
    max_concurrent=1,
    max_failures=1,
    before_trial=fail_one,
    keep_checkpoints=3,
)
'''


def _sweep_cmd(job, storage, name, address, *extra):
    return [sys.executable, "-m", "relex.cli", "sweep", str(job), "--storage", str(storage),
            "--name", name, "--address", address, *extra]


def _env(tmp_path):
    env = {**os.environ, **ENV, "RELEX_CACHE": str(tmp_path / "cache"), "TUNE_GLOBAL_CHECKPOINT_S": "0",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("RAY_ADDRESS", None)
    return env


def _leaderboard(sweep_dir):
    from relex.analysis.leaderboard import csv_text
    from relex.leaderboard import load_rows

    rows = list(csv.DictReader(io.StringIO(csv_text(load_rows(sweep_dir)))))
    keys = ("rank", "trial_id", "head", "micro_f1", "auprc", "accuracy", "best_step", "status")
    return [{k: r[k] for k in keys} for r in rows]


def _without_retention(row):
    """A trial row but for what retention did to its checkpoint since (trials ending later)."""
    return {k: v for k, v in row.items() if k != "checkpoint_dropped"}


def _attempts(sweep_dir, tid):
    f = sweep_dir / "trials" / tid / "attempts.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines()] if f.exists() else []


@pytest.fixture(scope="module")
def e2e_job(tmp_path_factory):
    d = tmp_path_factory.mktemp("e2e")
    data = json.loads(Path(SAMPLE_PATH).read_text(encoding="utf-8"))
    (d / "data.json").write_text(json.dumps(data[::2], ensure_ascii=False), encoding="utf-8")
    job = d / "job.py"
    job.write_text(JOB.format(data=str(d / "data.json")))
    return job


@pytest.fixture(scope="module")
def reference(cluster, e2e_job, tmp_path_factory):
    """The uninterrupted run of the seeded sweep."""
    tmp = tmp_path_factory.mktemp("ref")
    p = subprocess.run(_sweep_cmd(e2e_job, tmp / "art", "ref", cluster["address"]), cwd=tmp,
                       env=_env(tmp), capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    return tmp / "art" / "ref", p


def test_failing_trial_is_an_error_row_and_the_rest_complete(reference):
    sweep_dir, proc = reference
    rows = {r["trial_id"]: r for r in pq.read_table(sweep_dir / "trials.parquet").to_pylist()}
    assert len(rows) == 6
    assert rows["t004"]["status"] == "ERROR"
    assert rows["t004"]["error"] == "RuntimeError: broken trial t004"
    assert len(_attempts(sweep_dir, "t004")) == 2  # retried once (max_failures=1), then ERROR
    others = [r for t, r in rows.items() if t != "t004"]
    assert all(r["status"] in ("TERMINATED", "STOPPED_EARLY") for r in others)
    assert all(r["micro_f1"] is not None and r["error"] is None for r in others)
    assert any(r["status"] == "STOPPED_EARLY" for r in others)  # ASHA did prune
    assert "t004 ERROR" in proc.stdout and "RuntimeError: broken trial t004" in proc.stdout
    job = json.loads((sweep_dir / "job.json").read_text())
    # per-trial artifacts: the best checkpoint, and its validation probabilities whose rows and
    # columns valid_index.parquet and labels.json name
    import numpy as np

    index = pq.read_table(sweep_dir / "valid_index.parquet").to_pylist()
    names = json.loads((sweep_dir / "labels.json").read_text())["names"]
    data_ids = {str(r["guid"]) for r in json.loads(Path(job["train"]).read_text(encoding="utf-8"))}
    ids = [x["id"] for x in index]
    assert len(set(ids)) == len(ids) and set(ids) <= data_ids
    assert abs(len(ids) - 0.25 * len(data_ids)) <= 1 and len(names) > 1
    # only the 3 best finished trials by the ASHA metric (auprc) keep their best checkpoint
    kept = sorted((t for t in rows if t != "t004"), key=lambda t: -rows[t]["auprc"])[:3]
    for t, r in rows.items():
        if t == "t004":
            continue
        assert Path(r["checkpoint"], "model.safetensors").exists() == (t in kept), t
        probs = np.load(r["valid_probs"])
        assert probs.shape == (len(index), len(names))
        assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
        gold = np.array([names.index(x["label"]) for x in index])
        assert round(100 * float((probs.argmax(1) == gold).mean()), 4) == round(r["accuracy"], 4)
    hist = pq.read_table(sweep_dir / "history.parquet").to_pylist()
    assert {h["trial_id"] for h in hist} == set(rows) - {"t004"}
    done = {t: r["evaluations"] for t, r in rows.items() if t != "t004"}
    for t, n in done.items():
        assert sorted(h["iteration"] for h in hist if h["trial_id"] == t) == list(range(1, n + 1))
    # pre-flight built the backbone and the features once; the trials found them in the cache
    built = list((sweep_dir / "cache" / "backbones").iterdir())
    assert len(built) == 1
    for t in rows:
        assert all(Path(a["backbone_path"]).is_relative_to(built[0]) for a in _attempts(sweep_dir, t))
    assert len(list((sweep_dir / "cache" / "features").glob("*.npz"))) == 2  # train + valid
    job = json.loads((sweep_dir / "job.json").read_text())
    assert [t["trial_id"] for t in job["trials"]] == [f"t{i:03d}" for i in range(6)]


PARK_HOOK = '''
import os, time
from ray import tune

def park_victim(cfg, trial_id):
    # the first run parks the victim after its second report (a checkpoint kept, the driver has
    # taken in the result) so that the driver is killed while the trial is surely mid-run
    fail_one(cfg, trial_id)
    if trial_id != {victim!r} or not os.path.exists({flag!r}):
        return
    real, seen = tune.report, []
    def report(metrics, checkpoint=None):
        real(metrics, checkpoint=checkpoint)
        seen.append(1)
        if len(seen) == 2:
            open({parked!r}, "w").close()
            time.sleep(120)
    tune.report = report

sweep.before_trial = park_victim
'''


def test_kill_driver_then_resume_matches_uninterrupted(cluster, e2e_job, reference, tmp_path):
    ref_dir, _ = reference
    ref_rows = pq.read_table(ref_dir / "trials.parquet").to_pylist()
    # a trial that ASHA lets run to the end, after two finished ones: killed mid-run it must resume
    victim = next(r["trial_id"] for r in ref_rows
                  if r["trial_id"] >= "t002" and r["status"] == "TERMINATED")
    flag, parked = tmp_path / "first-run", tmp_path / "parked"
    flag.write_text("")
    data = Path(e2e_job).parent / "data.json"
    job = tmp_path / "job.py"
    job.write_text(JOB.format(data=str(data))
                   + PARK_HOOK.format(victim=victim, flag=str(flag), parked=str(parked)))
    storage = tmp_path / "art"
    sweep_dir = storage / "cut"
    env = _env(tmp_path)
    proc = subprocess.Popen(_sweep_cmd(job, storage, "cut", cluster["address"]), cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 180
    try:
        while time.time() < deadline and proc.poll() is None and not parked.exists():
            time.sleep(0.1)
        if not parked.exists():
            out = proc.communicate(timeout=60)[0] if proc.poll() is not None else ""
            pytest.fail(f"the victim {victim} never parked:\n{out[-3000:]}")
        time.sleep(2)  # let the driver write the experiment state that holds the checkpoint
        os.kill(proc.pid, signal.SIGKILL)  # no warning, no cleanup
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    flag.unlink()
    # the killed driver's last rows may still be fragments: read as every reader does
    before = {r["trial_id"]: r for r in SweepDir(sweep_dir).trial_rows()
              if r["status"] in ("TERMINATED", "STOPPED_EARLY", "ERROR")}
    assert len(before) >= 2 and victim not in before
    assert len(_attempts(sweep_dir, victim)) == 1
    attempts_before = {t: len(_attempts(sweep_dir, t)) for t in before}

    p = subprocess.run(_sweep_cmd(job, storage, "cut", cluster["address"], "--resume"),
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]

    after = {r["trial_id"]: r for r in pq.read_table(sweep_dir / "trials.parquet").to_pylist()}
    assert sorted(after) == [f"t{i:03d}" for i in range(6)]
    for t, row in before.items():  # finished trials: kept as they were, never run again
        assert _without_retention(after[t]) == _without_retention(row)
        assert len(_attempts(sweep_dir, t)) == attempts_before[t]
    # the trial running at the kill was started again from its last checkpoint
    runs = _attempts(sweep_dir, victim)
    assert len(runs) == 2 and runs[0]["resume_from"] is None and runs[1]["resume_from"] is not None
    # same leaderboard and the same ASHA decisions as the uninterrupted run
    assert _leaderboard(sweep_dir) == _leaderboard(ref_dir)
    ours = json.loads((sweep_dir / "asha_state.json").read_text())
    theirs = json.loads((ref_dir / "asha_state.json").read_text())
    assert ours["records"] == theirs["records"] and ours["stopped"] == theirs["stopped"]
    hist = pq.read_table(sweep_dir / "history.parquet").to_pylist()
    ref_hist = pq.read_table(ref_dir / "history.parquet").to_pylist()
    key = lambda h: (h["trial_id"], h["iteration"])  # noqa: E731
    assert sorted(map(key, hist)) == sorted(map(key, ref_hist))


def test_resume_and_start_guards(cluster, e2e_job, reference, tmp_path):
    ref_dir, _ = reference
    env = _env(tmp_path)
    # starting over an existing sweep without --resume/--overwrite is refused, before Ray work
    p = subprocess.run(_sweep_cmd(e2e_job, ref_dir.parent, "ref", cluster["address"]),
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "already holds a sweep" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    p = subprocess.run(_sweep_cmd(e2e_job, tmp_path / "none", "x", cluster["address"], "--resume"),
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "no sweep to resume" in p.stderr
    # resuming with a job whose trials changed is refused
    changed = tmp_path / "changed.py"
    changed.write_text(e2e_job.read_text().replace("3e-3]", "4e-3]"))
    p = subprocess.run(_sweep_cmd(changed, ref_dir.parent, "ref", cluster["address"], "--resume"),
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "trials differ" in p.stderr


# ------------------------------------------------------------------- --retry-errors
RETRY_JOB = '''
import os
from relex.sweep import Sweep, grid

def break_midway(cfg, trial_id):
    # while the flag file exists, trial t001 fails after its second report (a checkpoint kept)
    if trial_id != "t001" or not os.path.exists({flag!r}):
        return
    from ray import tune
    real, seen = tune.report, []
    def report(metrics, checkpoint=None):
        real(metrics, checkpoint=checkpoint)
        seen.append(1)
        if len(seen) == 2:
            raise RuntimeError("the node's disk went away")
    tune.report = report

sweep = Sweep(
    name="retry", train={data!r}, valid=0.25,
    space=dict(lr=grid([1e-3, 3e-3]), tiny_hidden=32, tiny_layers=1, tiny_heads=2, max_length=64,
               batch_size=16, epochs=20, max_steps=24, eval_every=4, warmup_ratio=0.0,
               num_threads=1, amp="off", eval_batch_size=128),
    seeds=[5], asha=dict(grace_period=50), resources=dict(gpu=0, cpu=1), max_concurrent=1,
    max_failures=0, before_trial=break_midway,
)
'''


def test_retry_errors_continues_failed_trials_from_their_checkpoint(cluster, e2e_job, tmp_path):
    data = Path(e2e_job).parent / "data.json"
    flag = tmp_path / "broken"
    flag.write_text("")
    job = tmp_path / "retry.py"
    job.write_text(RETRY_JOB.format(flag=str(flag), data=str(data)))
    storage, env = tmp_path / "art", _env(tmp_path)
    sweep_dir = storage / "retry"
    p = subprocess.run(_sweep_cmd(job, storage, "retry", cluster["address"]), cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    before = {r["trial_id"]: r for r in pq.read_table(sweep_dir / "trials.parquet").to_pylist()}
    assert before["t000"]["status"] == "TERMINATED"
    assert before["t001"]["status"] == "ERROR"
    assert before["t001"]["error"] == "RuntimeError: the node's disk went away"
    # kept for a retry: Tune's checkpoint is only a pointer to the state, written once where the
    # trial's other files are; the two newest states are kept, the finished trial's are gone
    ckpts = sorted((sweep_dir / "ray" / "t001").glob("checkpoint_*"))
    assert ckpts and [p.name for p in ckpts[-1].iterdir()] == ["pointer.json"]
    state = sweep_dir / json.loads((ckpts[-1] / "pointer.json").read_text())["state"]
    assert state.parent == sweep_dir / "trials" / "t001" / "states" and (state / "state.json").exists()
    assert [p.name for p in sorted(state.parent.iterdir())] == ["step_00000004", "step_00000008"]
    assert not (sweep_dir / "trials" / "t000" / "states").exists()

    # --retry-errors only with --resume; a plain --resume leaves the ERROR trial alone
    p = subprocess.run(_sweep_cmd(job, storage, "retry", cluster["address"], "--retry-errors"),
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "use it with --resume" in p.stderr
    flag.unlink()  # the cause is mended
    p = subprocess.run(_sweep_cmd(job, storage, "retry", cluster["address"], "--resume",
                                  "--retry-errors"),
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "retrying 1 failed trial(s): t001" in p.stdout
    after = {r["trial_id"]: r for r in pq.read_table(sweep_dir / "trials.parquet").to_pylist()}
    assert after["t000"] == before["t000"]  # finished: untouched, not run again
    assert len(_attempts(sweep_dir, "t000")) == 1
    assert after["t001"]["status"] == "TERMINATED" and after["t001"]["error"] is None
    runs = _attempts(sweep_dir, "t001")
    assert len(runs) == 2 and runs[0]["resume_from"] is None
    assert runs[1]["resume_from"] == str(state)  # from the newest state its checkpoint named
    hist = [h for h in pq.read_table(sweep_dir / "history.parquet").to_pylist()
            if h["trial_id"] == "t001"]
    assert sorted(h["iteration"] for h in hist) == list(range(1, after["t001"]["evaluations"] + 1))
    assert [h["step"] for h in sorted(hist, key=lambda h: h["iteration"])] == [4, 8, 12, 16, 20, 24]


# ---------------------------------------------------------------------------- budgets
def _metered_trial(config, prepared):
    """Four evaluations (step i at the i-th), each 'taking' 15 GPU-minutes by the clock it
    reports; started again, it continues after the last step the driver recorded
    (Prepared.recorded), as relex's trials do."""
    from ray import tune

    tid = tune_trial_id(config)
    done = prepared.recorded.get(tid, 0)
    log = Path(prepared.sweep_dir) / "starts.jsonl"
    with open(log, "a") as fh:
        fh.write(json.dumps({"trial": tid, "from": done}) + "\n")
    attempt = sum(1 for ln in log.read_text().splitlines() if json.loads(ln)["trial"] == tid)
    for i in range(done + 1, 5):
        time.sleep(0.2)
        tune.report({"micro_f1": float(i), "step": i, "epoch": float(i), "attempt": attempt,
                     "elapsed_s": 900.0 * (i - done)})


BUDGET_JOB = '''
from relex.sweep import Sweep, grid
sweep = Sweep(name="budget", train={data!r}, space=dict(lr=grid([1e-4, 2e-4, 3e-4, 4e-4])),
              asha=dict(grace_period=50), resources=dict(gpu=1), max_concurrent=1,
              gpu_hours={hours}, cost_per_gpu_hour=2.0)
'''


def test_gpu_hours_budget_pauses_the_sweep_and_resume_continues_it(cluster, tmp_path, capsys):
    from relex.leaderboard import leaderboard
    from relex.sweep.job import load_job
    from relex.sweep.runner import run

    job_file = tmp_path / "budget.py"
    job_file.write_text(BUDGET_JOB.format(data=str(SAMPLE_PATH), hours=1.6))
    out = run(load_job(job_file), storage=tmp_path / "art", trainable=_metered_trial, prepared=Prepared(),
              live=False)
    # t000 used 1.0 GPU-hour; t001's third evaluation (1.75) used the budget up: it stops at
    # that checkpoint, and the two trials after it never start
    assert out.counts == {"TERMINATED": 1, "PAUSED": 1, "NOT_STARTED": 2}
    rows = {r["trial_id"]: r for r in out.rows}
    assert rows["t001"]["status"] == "PAUSED" and rows["t001"]["evaluations"] == 3
    assert rows["t002"]["status"] == rows["t003"]["status"] == "NOT_STARTED"
    starts = [json.loads(x) for x in (out.sweep_dir / "starts.jsonl").read_text().splitlines()]
    assert [s["trial"] for s in starts] == ["t000", "t001"]
    assert json.loads((out.sweep_dir / "usage.json").read_text())["hours"] == pytest.approx(1.75)

    # more budget, then --resume: t001 continues from its checkpoint, the rest run
    job_file.write_text(BUDGET_JOB.format(data=str(SAMPLE_PATH), hours=10))
    out = run(load_job(job_file), storage=tmp_path / "art", resume=True, trainable=_metered_trial,
              prepared=Prepared(), live=False)
    assert out.counts == {"TERMINATED": 4}
    starts = [json.loads(x) for x in (out.sweep_dir / "starts.jsonl").read_text().splitlines()]
    assert starts[2:] == [{"trial": "t001", "from": 3}, {"trial": "t002", "from": 0},
                          {"trial": "t003", "from": 0}]
    assert json.loads((out.sweep_dir / "usage.json").read_text())["hours"] == pytest.approx(4.0)
    capsys.readouterr()
    import argparse

    leaderboard(argparse.Namespace(sweep_dir=str(out.sweep_dir), top=None, format="markdown", by_config=False))
    assert capsys.readouterr().out.rstrip().endswith(
        "compute: 4.00 GPU-hours, cost 8.00 at 2 per GPU-hour")

def test_report_on_a_real_sweep(reference, capsys):
    """`relex report` on what a real sweep wrote: mean AP recorded per trial and evaluation,
    sentences in valid_index.parquet, the failed trial said, effects, errors and cost shown."""
    from relex.cli import main

    sweep_dir, _ = reference
    rows = {r["trial_id"]: r for r in pq.read_table(sweep_dir / "trials.parquet").to_pylist()}
    scored = [r for t, r in rows.items() if t != "t004"]
    assert all(0 <= r["mean_ap"] <= 100 for r in scored)
    hist = pq.read_table(sweep_dir / "history.parquet").to_pylist()
    assert all(h["mean_ap"] is not None for h in hist)
    index = pq.read_table(sweep_dir / "valid_index.parquet").to_pylist()
    assert all(x["sentence"][x["subj_start"]:x["subj_end"] + 1] == x["subj_word"] for x in index)
    assert main(["report", str(sweep_dir), "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "t004: RuntimeError: broken trial t004" in out
    assert "| head | marker vs cls |" in out and "| lr | 0.001 vs 0.0002 |" in out
    assert "**[S:" in out or "none." in out
    assert "## Cost" in out and "ASHA stopped" in out


RETENTION_JOB = '''
import os
from relex.sweep import Sweep, grid

def break_two(cfg, trial_id):
    # while the flag file exists, trials t001 and t002 fail after their first report (a
    # checkpoint kept); ten trials finish after them, so retention runs many times
    if trial_id not in ("t001", "t002") or not os.path.exists({flag!r}):
        return
    from ray import tune
    real = tune.report
    def report(metrics, checkpoint=None):
        real(metrics, checkpoint=checkpoint)
        raise RuntimeError("the node went away")
    tune.report = report

sweep = Sweep(
    name="retain", train={data!r}, valid=0.25,
    space=dict(lr=grid([{lrs}]), tiny_hidden=16, tiny_layers=1, tiny_heads=2, tiny_vocab=500,
               max_length=48, batch_size=32, epochs=20, max_steps=4, eval_every=2,
               warmup_ratio=0.0, num_threads=1, amp="off", eval_batch_size=256),
    seeds=[3], asha=dict(grace_period=50), resources=dict(gpu=0, cpu=1), max_concurrent=1,
    max_failures=0, before_trial=break_two, keep_checkpoints=2,
)
'''


def test_retry_errors_after_retention_of_a_twelve_trial_sweep(cluster, e2e_job, tmp_path):
    """Retention (keep_checkpoints=2) runs as each of ten trials finishes; it must never delete
    the best checkpoint of a failed trial, whose kept state refers to it: --resume
    --retry-errors continues both failed trials from their checkpoints and finishes."""
    data = Path(e2e_job).parent / "data.json"
    flag = tmp_path / "broken"
    flag.write_text("")
    job = tmp_path / "retain.py"
    lrs = ", ".join(f"{i}e-3" for i in range(1, 13))
    job.write_text(RETENTION_JOB.format(flag=str(flag), data=str(data), lrs=lrs))
    storage, env = tmp_path / "art", _env(tmp_path)
    sweep_dir = storage / "retain"
    p = subprocess.run(_sweep_cmd(job, storage, "retain", cluster["address"]), cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    before = {r["trial_id"]: r for r in pq.read_table(sweep_dir / "trials.parquet").to_pylist()}
    assert len(before) == 12
    failed = {t for t, r in before.items() if r["status"] == "ERROR"}
    assert failed == {"t001", "t002"}
    finished = [t for t in before if t not in failed]
    assert all(before[t]["status"] == "TERMINATED" for t in finished)
    with_ckpt = {t for t, r in before.items() if Path(r["checkpoint"], "model.safetensors").exists()}
    best2 = set(sorted(finished, key=lambda t: (-before[t]["micro_f1"], t))[:2])
    assert with_ckpt == best2 | failed  # the failed trials' checkpoints survive retention

    flag.unlink()
    p = subprocess.run(_sweep_cmd(job, storage, "retain", cluster["address"], "--resume",
                                  "--retry-errors"),
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "retrying 2 failed trial(s): t001, t002" in p.stdout
    after = {r["trial_id"]: r for r in pq.read_table(sweep_dir / "trials.parquet").to_pylist()}
    for t in failed:
        assert after[t]["status"] == "TERMINATED" and after[t]["error"] is None, after[t]
        runs = _attempts(sweep_dir, t)
        assert len(runs) == 2 and Path(runs[1]["resume_from"]).parent.name == "states"
        hist = sorted((h for h in pq.read_table(sweep_dir / "history.parquet").to_pylist()
                       if h["trial_id"] == t), key=lambda h: h["iteration"])
        assert [h["step"] for h in hist] == [2, 4]  # continued after step 2, not started again
    for t in finished:
        assert _without_retention(after[t]) == _without_retention(before[t])
        assert len(_attempts(sweep_dir, t)) == 1
    # retention after the retry: the two best of all twelve keep their checkpoints, nobody else
    best2 = set(sorted(after, key=lambda t: (-after[t]["micro_f1"], t))[:2])
    kept = {t for t, r in after.items() if Path(r["checkpoint"], "model.safetensors").exists()}
    assert kept == best2
    assert all(after[t]["checkpoint_dropped"].startswith("keep_checkpoints=2: ranked ")
               for t in set(after) - best2)


def _unmounting_trial(config, prepared):
    """Reports once; trial t002 first takes the sweep's storage away, as an unmounted shared
    file system would (its path is then no directory)."""
    from ray import tune

    tid = tune_trial_id(config)
    if tid == "t002":
        sweep_dir = Path(prepared.sweep_dir)
        os.replace(sweep_dir, sweep_dir.with_name("unmounted"))
        sweep_dir.write_text("")
    tune.report({"micro_f1": float(int(tid[1:])), "step": 1, "epoch": 1.0})


def test_storage_lost_mid_sweep_is_one_error_and_keeps_the_results(cluster, tmp_path):
    from relex.errors import RelexError
    from relex.sweep.job import load_job
    from relex.sweep.runner import run

    job_file = tmp_path / "lost.py"
    job_file.write_text(
        "from relex.sweep import Sweep, grid\n"
        f"sweep = Sweep(name='lost', train={str(SAMPLE_PATH)!r}, max_concurrent=1,\n"
        "              space=dict(lr=grid([1e-4, 2e-4, 3e-4, 4e-4])), resources=dict(gpu=0, cpu=1),\n"
        "              asha=dict(grace_period=2))\n")
    with pytest.raises(RelexError) as e:
        run(load_job(job_file), storage=tmp_path / "art", trainable=_unmounting_trial,
            prepared=Prepared(), live=False)
    sweep_dir = tmp_path / "art" / "lost"
    message = str(e.value)
    assert message == (f"{sweep_dir}: the sweep's storage can no longer be written (Not a "
                       "directory); what was written before is whole there; continue with "
                       "--resume once it is back")
    # what was written before the storage went is whole: the two finished trials
    rows = SweepDir(tmp_path / "art" / "unmounted").trial_rows()
    assert {r["trial_id"]: r["status"] for r in rows if r["status"] == "TERMINATED"} == {
        "t000": "TERMINATED", "t001": "TERMINATED"}

"""The cluster path of README, run for real with Ray's own tools on this machine.

A Ray cluster is started with `ray start` — a head (the driver's node, no GPU) and two worker
nodes that each declare one GPU — with Ray's token authentication on, every port chosen free and
every node's --temp-dir under the test's temporary directory. Then:

* a sweep is submitted exactly as README says (`ray job submit --address http://127.0.0.1:PORT
  --working-dir . --runtime-env-json ... -- relex sweep JOB --storage DIR`, RAY_AUTH_MODE=token),
  its logs are followed with `ray job logs --follow`, and its results are found in DIR;
* node loss: the same sweep again, and the raylet of the worker running its first trial is
  killed mid-trial; the trial continues on the other worker from its last checkpoint, and its
  evaluations equal those of the uninterrupted run.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from relex.data.sample import SAMPLE_PATH
from relex.sweep.layout import SweepDir


def _jobs_api_missing() -> str | None:
    """Why Ray's dashboard / Jobs API cannot start here (None: it can)."""
    import ray._private.utils

    err = ray._private.utils.get_dashboard_dependency_error()
    return None if err is None else f"needs ray[default] for the Jobs API ({err}): pip install -e '.[cluster]'"


pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
README = (ROOT / "README.md").read_text(encoding="utf-8")

# the job submitted to the cluster: tiny trials, one GPU each (logical GPUs on this machine)
JOB = '''
import os
from pathlib import Path
from relex.sweep import Sweep, grid

DATA = Path(os.environ.get("RELEX_DATA", "data/klue-re"))
STEP_PAUSE = float(os.environ.get("STEP_PAUSE_S", "0"))  # read where the job is loaded

def where_relex_runs(cfg, trial_id):
    # which relex each trial imports (RELEX_DATA reaches the trials through the job's runtime env)
    import json, relex
    out = DATA.parent / "relex_used"
    out.mkdir(exist_ok=True)
    (out / (trial_id + ".json")).write_text(json.dumps({"relex": relex.__file__}))
    import torch.optim.optimizer as optim
    # a trial still training when the test kills its node, however fast the CPU
    if STEP_PAUSE and not getattr(optim, "paused_steps", False):  # once per worker process
        import time
        optim.register_optimizer_step_post_hook(lambda *_: time.sleep(STEP_PAUSE))
        optim.paused_steps = True

sweep = Sweep(
    name="cluster", train=DATA / "train.json", valid=0.25,
    space=dict(lr=grid([1e-3, 3e-3]), tiny_hidden=32, tiny_layers=1, tiny_heads=2, max_length=64,
               batch_size=16, epochs=20, max_steps=32, eval_every=4, warmup_ratio=0.0,
               num_threads=1, amp="off", eval_batch_size=128),
    seeds=[11], asha=dict(grace_period=50), resources=dict(gpu=1, cpu=1), max_concurrent=1,
    max_failures=1, before_trial=where_relex_runs,
)
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_ports() -> list[str]:
    out = []
    for flag in ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                 "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port"):
        out += [flag, str(_free_port())]
    return out


class LocalCluster:
    """`ray start --block` processes (one per node); ending them ends their nodes."""

    def __init__(self, base: Path):
        self.base = base
        self.token = base / "auth_token"
        self.token.write_text(secrets.token_hex(32))
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token),
                    "RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false",
                    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                    # a busy machine: give agents and raylets time to come up
                    "RAY_agent_register_timeout_ms": "120000",
                    "RAY_raylet_start_wait_time_s": "120",
                    # a lost node is declared dead after about 3 s without health checks
                    "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3",
                    "RELEX_CACHE": str(base / "cache"), "TUNE_GLOBAL_CHECKPOINT_S": "0"}
        for k in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "PYTHONPATH"):
            self.env.pop(k, None)
        self.nodes: dict[str, subprocess.Popen] = {}
        self.watches = []
        self.gcs_port = self.dash_port = 0

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.base / f"{name}.log", "w")
        proc = subprocess.Popen([str(BIN / "ray"), "start", "--block", *args, *_node_ports(),
                                 "--temp-dir", str(self.base / (name[0] + name[-1]))],
                                env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.nodes[name] = proc
        return proc

    def start(self) -> None:
        self.gcs_port, self.dash_port = _free_port(), _free_port()
        head = self._start("head", ["--head", "--port", str(self.gcs_port), "--num-cpus", "1",
                                    "--num-gpus", "0", "--dashboard-host", "127.0.0.1",
                                    "--dashboard-port", str(self.dash_port)])
        self._wait(lambda: self._dashboard_up(), head, "the head's dashboard")
        workers = {f"worker{i}": ["--address", f"127.0.0.1:{self.gcs_port}", "--num-cpus", "1",
                                  "--num-gpus", "1"] for i in (1, 2)}
        for name, args in workers.items():
            self._start(name, args)
        self._wait(lambda: self.alive_gpu_nodes() == 2, head, "two GPU workers", restart=workers)

    def _wait(self, ready, proc, what, timeout=400.0, restart=None) -> None:
        """Poll ``ready``. Ray gives a starting node 30 s to register (fixed in its code), which a
        busy machine can miss: a worker whose `ray start` gave up is started again."""
        deadline, restarts = time.time() + timeout, 0
        while time.time() < deadline:
            for name, p in list(self.nodes.items()):
                if p.poll() is None:
                    continue
                if restart and name in restart and restarts < 4:
                    restarts += 1
                    self._start(name, restart[name])
                    continue
                raise RuntimeError(f"{name} exited while waiting for {what}:\n"
                                   + (self.base / f"{name}.log").read_text()[-3000:])
            if ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out waiting for {what}")

    def _dashboard_up(self) -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.dash_port}/api/version", timeout=2)
        except urllib.error.HTTPError as e:
            return e.code == 401  # up, and refusing us without the token
        except OSError:
            return False
        return True

    def nodes_info(self) -> list[dict]:
        p = subprocess.run([sys.executable, "-c", (
            "import json, ray; ray.init(address=%r, log_to_driver=False, logging_level='ERROR');"
            "print('NODES', json.dumps([{'id': n['NodeID'], 'alive': n['Alive'], "
            "'gpu': n['Resources'].get('GPU', 0)} for n in ray.nodes()]))")
            % f"127.0.0.1:{self.gcs_port}"], env=self.env, capture_output=True, text=True,
            timeout=120)
        line = next((ln for ln in p.stdout.splitlines() if ln.startswith("NODES ")), None)
        return json.loads(line[6:]) if line else []

    def alive_gpu_nodes(self) -> int:
        return sum(1 for n in self.nodes_info() if n["alive"] and n["gpu"] >= 1)

    def raylet_of(self, node_id: str):
        """The raylet process of the node with this Ray node id (its command line names it)."""
        import ray  # noqa: F401  (Ray ships psutil in its thirdparty_files)
        import psutil

        for name, p in self.nodes.items():
            for child in psutil.Process(p.pid).children(recursive=True):
                try:
                    if child.name() == "raylet" and f"--node_id={node_id}" in " ".join(child.cmdline()):
                        return name, child
                except psutil.Error:
                    pass
        raise LookupError(node_id)

    def record(self) -> None:
        from relex.sweep.watchdog import Watch

        self.watches = [Watch(p.pid) for p in self.nodes.values()]
        for w in self.watches:
            w.record()

    def stop(self) -> None:
        for p in self.nodes.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.nodes.values():
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        for w in self.watches:  # agents that ignore SIGTERM, workers of a killed raylet
            w.end_leftovers()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if _jobs_api_missing():
        pytest.skip(_jobs_api_missing())
    base = tmp_path_factory.mktemp("c")  # short: Ray's socket paths must fit 107 bytes
    c = LocalCluster(base)
    try:
        c.start()
        c.record()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A checkout of the repository (tracked files) with the job and data, plus a `.venv`
    link as a user's checkout has: it must not be uploaded."""
    wd = tmp_path_factory.mktemp("checkout")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\n")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file() and not src.is_symlink():
            (wd / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, wd / rel)
    (wd / ".venv").symlink_to(Path(sys.executable).resolve().parents[1], target_is_directory=True)
    (wd / "jobs" / "cluster_check.py").write_text(JOB)
    data = tmp_path_factory.mktemp("efs") / "data"
    data.mkdir()
    rows = json.loads(Path(SAMPLE_PATH).read_text(encoding="utf-8"))[::2]
    (data / "train.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return wd, data


def _readme_block(start: str) -> str:
    """The README command that begins with ``start`` (joined over its continuation lines)."""
    lines = README.splitlines()
    for i, ln in enumerate(lines):
        if ln.startswith(start):
            cmd = [ln]
            while cmd[-1].split("#")[0].rstrip().endswith("\\"):
                i += 1
                cmd.append(lines[i])
            return " ".join(c.split("  #")[0].rstrip().rstrip("\\").strip() for c in cmd)
    raise LookupError(start)


def _submit_cmd(cluster, data: Path, storage: Path) -> list[str]:
    """README's `ray job submit` command, with this cluster's port and storage filled in."""
    import shlex

    text = _readme_block("ray job submit")
    text = text.replace("http://127.0.0.1:8265", f"http://127.0.0.1:{cluster.dash_port}")
    text = text.replace("/mnt/efs/data/klue-re", str(data)).replace("/mnt/efs/relex", str(storage))
    text = text.replace("jobs/ablation.py", "jobs/cluster_check.py")
    return [str(BIN / "ray") if a == "ray" else a for a in shlex.split(text)]


def _history(sweep_dir: Path, tid: str) -> list[tuple]:
    rows = [h for h in pq.read_table(sweep_dir / "history.parquet").to_pylist() if h["trial_id"] == tid]
    return sorted((h["iteration"], h["step"], h["micro_f1"], h["auprc"], h["accuracy"], h["val_loss"])
                  for h in rows)


def _attempts(sweep_dir: Path, tid: str) -> list[dict]:
    f = sweep_dir / "trials" / tid / "attempts.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines()] if f.exists() else []


def test_readme_cluster_commands_are_the_ones_tested():
    # the commands below are run by this module as README writes them
    assert "ray get-auth-token --generate" in README
    assert "export RAY_AUTH_MODE=token" in README
    submit = _readme_block("ray job submit")
    assert submit.startswith("ray job submit --address http://127.0.0.1:8265 --working-dir . ")
    assert "-- relex sweep jobs/ablation.py --storage /mnt/efs/relex" in submit
    assert _readme_block("ray job logs").startswith(
        "ray job logs --address http://127.0.0.1:8265 --follow JOB_ID")
    assert "--dashboard-host=127.0.0.1" in (ROOT / "cluster.yaml").read_text()


@pytest.fixture(scope="module")
def submitted(cluster, workdir, tmp_path_factory):
    wd, data = workdir
    storage = tmp_path_factory.mktemp("efs-results")
    p = subprocess.run(_submit_cmd(cluster, data, storage), cwd=wd, env=cluster.env,
                       capture_output=True, text=True, timeout=900)
    return p, storage / "cluster"


def test_sweep_submitted_as_readme_says_runs_and_leaves_its_results(cluster, workdir, submitted):
    p, sweep_dir = submitted
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    job_id = re.search(r"Job '(raysubmit_\w+)' submitted successfully", out).group(1)
    assert f"Job '{job_id}' succeeded" in out
    # what was uploaded: the checkout without its .venv (nor anything .gitignore lists)
    # (session_latest is a link to the head's one session; the .zip.lock files are Ray's own)
    uploaded = [d for d in cluster.base.glob("hd/session_latest/runtime_resources/working_dir_files/_ray_pkg_*")
                if d.is_dir()]
    assert len(uploaded) == 1 and (uploaded[0] / "relex" / "sweep" / "runner.py").exists()
    assert not (uploaded[0] / ".venv").exists()
    # README's `ray job logs --follow` shows the sweep's output from the start to its summary
    logs = subprocess.run(_readme_block("ray job logs").replace("ray", str(BIN / "ray"), 1)
                          .replace("8265", str(cluster.dash_port)).replace("JOB_ID", job_id).split(),
                          env=cluster.env, capture_output=True, text=True, timeout=120)
    assert logs.returncode == 0, logs.stderr[-2000:]
    assert "sweep cluster: 2 trials, 1 GPU + 1 CPU per trial" in logs.stdout
    assert "2 trials: 2 terminated; results in" in logs.stdout
    rows = {r["trial_id"]: r for r in pq.read_table(sweep_dir / "trials.parquet").to_pylist()}
    assert sorted((t, r["status"]) for t, r in rows.items()) == [("t000", "TERMINATED"),
                                                               ("t001", "TERMINATED")]
    gpu_nodes = {n["id"] for n in cluster.nodes_info() if n["gpu"] >= 1}
    assert all(r["node_id"] in gpu_nodes and r["gpu"] for r in rows.values())
    # the trials ran the uploaded relex, not another copy
    for tid in rows:
        used = json.loads((workdir[1].parent / "relex_used" / f"{tid}.json").read_text())["relex"]
        assert f"/runtime_resources/working_dir_files/{uploaded[0].name}/relex/" in used, used


def test_submit_without_the_token_is_refused(cluster, workdir, tmp_path):
    wd, data = workdir
    env = {**cluster.env, "RAY_AUTH_TOKEN": "not-the-token"}
    env.pop("RAY_AUTH_TOKEN_PATH")
    p = subprocess.run(_submit_cmd(cluster, data, tmp_path), cwd=wd, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "Invalid authentication token" in p.stdout + p.stderr
    env.pop("RAY_AUTH_MODE")
    p = subprocess.run(_submit_cmd(cluster, data, tmp_path), cwd=wd, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "Authentication required" in p.stdout + p.stderr


def test_node_loss_mid_trial_continues_on_another_node(cluster, workdir, submitted, tmp_path):
    wd, data = workdir
    ref_dir = submitted[1]
    storage = tmp_path / "efs"
    # 32 steps of 0.3 s: the node goes down with about 8 s of training left, not after the end
    env = {**cluster.env, "RELEX_DATA": str(data), "PYTHONPATH": str(wd), "STEP_PAUSE_S": "0.3"}
    sweep = subprocess.Popen(
        [str(BIN / "relex"), "sweep", "jobs/cluster_check.py", "--storage", str(storage),
         "--address", f"127.0.0.1:{cluster.gcs_port}"],
        cwd=wd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sweep_dir = storage / "cluster"
    try:
        deadline, victim = time.time() + 600, None
        while time.time() < deadline and sweep.poll() is None:
            # the first trial has reported and the driver has taken its report in (its evaluation
            # is in the results; Tune registers the report's checkpoint right after the callbacks
            # that write them): a checkpoint on disk alone may not be the driver's yet under load
            if list(sweep_dir.glob("ray/t000/checkpoint_*")) and _attempts(sweep_dir, "t000") and \
                    any(r["trial_id"] == "t000" for r in SweepDir(sweep_dir).history_rows()):
                victim = _attempts(sweep_dir, "t000")[0]["node_id"]
                break
            time.sleep(0.1)
        assert victim, sweep.communicate()[0][-3000:] if sweep.poll() is not None else "no start"
        time.sleep(1.0)  # the driver's processing of that report ends with the checkpoint's save
        assert not SweepDir(sweep_dir).trial("t000").is_final(), "t000 ended before the node loss"
        name, raylet = cluster.raylet_of(victim)
        raylet.kill()  # the node is gone: its raylet (and with it every worker there) dies
        out = sweep.communicate(timeout=600)[0]
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 0, out[-4000:]
    rows = {r["trial_id"]: r for r in pq.read_table(sweep_dir / "trials.parquet").to_pylist()}
    assert all(r["status"] == "TERMINATED" for r in rows.values()) and len(rows) == 2
    runs = _attempts(sweep_dir, "t000")
    assert len(runs) == 2, runs  # not lost, and not run a third time
    assert runs[1]["node_id"] != victim and runs[1]["resume_from"]  # elsewhere, from a checkpoint
    assert len(_attempts(sweep_dir, "t001")) == 1
    # every evaluation equals the uninterrupted run's
    for tid in ("t000", "t001"):
        assert _history(sweep_dir, tid) == _history(ref_dir, tid)
    keys = ("micro_f1", "auprc", "accuracy", "val_loss", "best_step", "evaluations")
    ref = {r["trial_id"]: r for r in pq.read_table(ref_dir / "trials.parquet").to_pylist()}
    assert {t: [r[k] for k in keys] for t, r in rows.items()} == \
        {t: [r[k] for k in keys] for t, r in ref.items()}

"""Benchmark: relex's own bookkeeping in sweeps of 100, 300 and 1,000 trials.

A simulated cluster (``ray.cluster_utils.Cluster``: a head and ``--nodes`` nodes that each declare
``--gpus-per-node`` logical GPUs, 100 GPUs by default) runs stub trials: each reports
``--evals`` evaluations ``--eval-s`` seconds apart with every key a real trial reports
(``relex.sweep.trial.TrialReport``) and writes its validation probabilities as a real trial
does, so the figures are relex's overhead, not training. At most ``--concurrent`` trials run at
once (each is a Ray worker process; a 2-core machine does not hold 100 of them), with
``reuse_actors``. For each size two drivers run, each in its own process joined to the cluster:

* relex: ``relex.sweep.runner.run`` with the stub as its ``trainable`` (results writer, live
  leaderboard on a terminal, persistent ASHA, lease, retention);
* baseline: the same stub, grid and concurrency through plain Ray Tune with its own ASHA
  (``ASHAScheduler``, same grace period and reduction factor), no relex callback or writer, and
  Tune's default per-trial loggers off as in relex's runs.

Recorded per size: wall time and wall time minus Σ trial time ÷ concurrency (overhead per
trial) of both; relex's extra wall time per trial over the baseline; the callback's own time
per trial; the driver's peak RSS; bytes the relex driver writes per trial (results fragments
and compactions, ASHA state, usage), checkpoints aside; the live table's draw time and its
redraw thread's CPU share; then ``relex leaderboard`` and ``relex report --html`` on the
result. Last, a ``--resume-trials`` sweep is killed (SIGKILL) once half its trials finished and
resumed: no finished trial may start again, and the resume's start-up (the driver's start to
its first trial launched, and to its first trial started) is timed.

Targets: overhead per trial at 1,000 trials ≤ 0.1 s and flat from 100 to 1,000; driver RSS
growth 100 → 1,000 ≤ 200 MB; results bytes per trial flat (O(n) in all); ``relex report``
on 1,000 trials < 15 s; live table redraws < 5% of one core; resume start-up < 10 s, nothing
re-run.

    .venv/bin/python bench/sweep_scale.py [--quick] [--sizes 100 300 1000] [--json FILE]
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import _common as C

from relex.sweep.trial import Prepared

HERE = Path(__file__).resolve()
SEEDS = 10  # the grid: lr values × 10 seeds
TARGETS = {"overhead_s": 0.1, "rss_growth_mb": 200.0, "report_s": 15.0, "live_cpu": 0.05,
           "resume_startup_s": 10.0}


@dataclass
class StubInputs(Prepared):
    """What the stub trial needs beside what every trial gets."""

    evals: int = 4
    eval_s: float = 0.05
    valid_rows: int = 0
    labels: int = 0


def stub_trial(config, prepared):
    """Reports like a trial (every key of TrialReport, placement) without training; its score
    follows lr and seed; writes its validation probabilities as a trial does."""
    import math
    import time

    import numpy as np
    from ray import tune

    from relex.sweep.layout import SweepDir
    from relex.sweep.specs import tune_trial_spec
    from relex.sweep.trial import TrialReport, placement

    spec = tune_trial_spec(config, prepared.specs)
    tid, cfg = spec["trial_id"], spec["config"]
    sweep = SweepDir(prepared.sweep_dir)
    if sweep.trial(tid).is_final():
        # as run_trial: its result is recorded (a resume runs only the trials without one, so
        # this counts what should not happen)
        with open(os.path.join(prepared.sweep_dir, "skipped.log"), "a") as fh:
            fh.write(tid + "\n")
        return
    with open(os.path.join(prepared.sweep_dir, "starts.log"), "a") as fh:
        fh.write(tid + "\n")  # one short line per start: appends do not interleave
    started = time.time()
    quality = 70.0 - 8.0 * abs(math.log10(cfg["lr"]) + 4.3) + (cfg["seed"] % 7) * 0.3
    rng = np.random.default_rng(cfg["seed"] * 7919 + int(cfg["lr"] * 1e8))
    best, best_it = -1.0, 0
    where = placement()
    for it in range(1, prepared.evals + 1):
        time.sleep(prepared.eval_s)
        f1 = quality - 20.0 / it + float(rng.normal(0, 0.5))
        is_best = f1 > best
        if is_best:
            best, best_it = f1, it
            if prepared.valid_rows:
                logits = rng.normal(0, 1, size=(prepared.valid_rows, prepared.labels))
                probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
                sweep.write_probs(tid, probs)
        metrics = {"micro_f1": f1, "auprc": f1 + 5.0, "mean_ap": f1 + 4.0, "accuracy": f1 + 10.0,
                   "val_loss": 100.0 / max(f1, 1.0), "train_loss": 1.0 / it, "lr": cfg["lr"]}
        best_metrics = {"micro_f1": best, "auprc": best + 5.0, "mean_ap": best + 4.0,
                        "accuracy": best + 10.0, "val_loss": 100.0 / max(best, 1.0)}
        report = TrialReport(trial_id=tid, step=10 * it, epoch=float(it), is_best=is_best,
                             metrics=metrics, best=best_metrics, best_step=10 * best_it,
                             best_epoch=float(best_it), checkpoint=None, attempt=1,
                             evaluation=it, started_at=started, elapsed_s=time.time() - started, where=where)
        tune.report({**report.to_result(), **where})


# ---------------------------------------------------------------------------------- drivers
def job_text(name: str, n: int, concurrent: int) -> str:
    lrs = [round(10 ** (-5 + 2 * i / max(n // SEEDS - 1, 1)), 10) for i in range(n // SEEDS)]
    return ("from relex.sweep import Sweep, grid\n"
            f"sweep = Sweep(name={name!r}, train={str(_sample_path())!r},\n"
            f"              space=dict(lr=grid({lrs!r})), seeds=list(range({SEEDS})),\n"
            "              asha=dict(grace_period=1, reduction_factor=2),\n"
            f"              resources=dict(gpu=1, cpu=1), max_concurrent={concurrent},\n"
            "              max_failures=0, reuse_actors=True)\n")


def _sample_path() -> Path:
    from relex.data.sample import SAMPLE_PATH

    return Path(SAMPLE_PATH)


def _valid_set():
    from relex.data.io import read_dataset
    from relex.data.split import stratified_split

    _, valid = stratified_split(read_dataset(_sample_path()), 0.2, 0)
    return valid


def _inputs(args, valid) -> StubInputs:
    return StubInputs(evals=args.evals, eval_s=args.eval_s, valid_rows=len(valid),
                      labels=len(valid.labels))


class Meter:
    """The relex driver's own costs, measured around relex's code from outside (the product is
    not instrumented): time in the callback, the live table's redraws (thread CPU time), and the
    bytes every results, ASHA and usage write puts on disk."""

    def __init__(self):
        self.first_start: float | None = None  # perf_counter at the first trial start
        self.first_launch: float | None = None  # ... when Tune asked Ray for the first trial's actor
        self.callback_s = 0.0
        self.redraw_cpu_s = 0.0
        self.redraws = 0
        self.bytes: dict[str, int] = {}

    def install(self) -> None:
        from relex import io_utils
        from relex.sweep import callback, results

        from relex.sweep import asha, budget

        for name in ("on_trial_start", "on_trial_result", "on_trial_complete", "on_trial_error",
                     "on_experiment_end"):
            setattr(callback.SweepCallback, name, self._timed(getattr(callback.SweepCallback, name)))
        # what relex's scheduler adds to Tune's loop: ASHA's decisions (and their persistence)
        # and the budget's usage meter
        asha.Rungs.decide = self._timed(asha.Rungs.decide)
        budget.Budget.on_report = self._timed(budget.Budget.on_report)
        real_start = callback.SweepCallback.on_trial_start

        def on_trial_start(cb, *a, **kw):
            if self.first_start is None:
                self.first_start = time.perf_counter()
            return real_start(cb, *a, **kw)

        callback.SweepCallback.on_trial_start = on_trial_start
        from ray.tune.execution.tune_controller import TuneController

        real_launch = TuneController._schedule_trial_actor

        def schedule_trial_actor(controller, trial):
            if self.first_launch is None:
                self.first_launch = time.perf_counter()
            return real_launch(controller, trial)

        TuneController._schedule_trial_actor = schedule_trial_actor
        real_redraw = callback.SweepCallback.redraw_if_changed

        def redraw(cb):
            t0 = time.thread_time()
            before = cb._drawn
            real_redraw(cb)
            self.redraw_cpu_s += time.thread_time() - t0
            self.redraws += cb._drawn != before

        callback.SweepCallback.redraw_if_changed = redraw
        real_bytes, real_table = io_utils.atomic_write_bytes, results.write_table

        def write_bytes(path, data, *a, **kw):
            real_bytes(path, data, *a, **kw)
            self._count(Path(path), len(data))

        def write_table(path, table):
            real_table(path, table)
            self._count(Path(path), Path(path).stat().st_size)

        io_utils.atomic_write_bytes = write_bytes
        results.write_table = write_table

    def _timed(self, fn):
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.callback_s += time.perf_counter() - t0
        return wrapper

    def _count(self, path: Path, n: int) -> None:
        kind = {"results": "results fragments", "asha_decisions": "ASHA decisions"}.get(
            path.parent.name, path.name)
        if path.suffix == ".npy":
            kind = "valid_probs (trials' own)"
        self.bytes[kind] = self.bytes.get(kind, 0) + n


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def drive_relex(args) -> dict:
    """One relex sweep (a driver process of its own)."""
    from rich.console import Console

    from relex.analysis.leaderboard import live_table, plain_text
    from relex.sweep.job import load_job
    from relex.sweep.layout import SweepDir
    from relex.sweep.results import Tables
    from relex.sweep.runner import run

    meter = Meter()
    meter.install()
    valid = _valid_set()
    job_file = Path(args.storage) / f"{args.name}.py"
    job_file.write_text(job_text(args.name, args.trials, args.concurrent), encoding="utf-8")
    job = load_job(job_file)
    rss0 = _peak_rss_mb()
    console = Console(file=open(os.devnull, "w"), force_terminal=True, width=200)
    t0 = time.perf_counter()
    out = run(job, storage=Path(args.storage), address=args.address, trainable=stub_trial,
              prepared=_inputs(args, valid), resume=args.resume, console=console, live=True,
              tables=Tables(live=live_table, plain=plain_text))
    wall = time.perf_counter() - t0
    sweep = SweepDir(out.sweep_dir)
    from relex.sweep.runner import write_valid_index

    write_valid_index(sweep.path, valid)  # what the pre-flight writes: the report's error analysis
    rows = sweep.trial_rows()
    evals = sum(int(r.get("evaluations") or 0) for r in rows)
    draws = []
    for _ in range(5):
        t = time.perf_counter()
        Console(file=open(os.devnull, "w"), force_terminal=True, width=200).print(
            live_table(rows, name=job.name, total=len(rows)))
        draws.append(time.perf_counter() - t)
    return {"mode": "relex", "n": len(rows), "counts": out.counts, "wall_s": wall,
            "trial_s": evals * args.eval_s, "evaluations": evals,
            "callback_s": meter.callback_s, "redraw_cpu_s": meter.redraw_cpu_s,
            "redraws": meter.redraws, "bytes": meter.bytes, "peak_rss_mb": _peak_rss_mb(),
            "rss_before_run_mb": rss0, "live_draw_s": sorted(draws)[2], "sweep_dir": str(sweep.path),
            "first_start_s": None if meter.first_start is None else meter.first_start - t0,
            "first_launch_s": None if meter.first_launch is None else meter.first_launch - t0}


def drive_tune(args) -> dict:
    """The same stub, grid and concurrency through plain Ray Tune (a driver process of its own)."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from relex.sweep.job import load_job

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # as lean as relex's Tune run: without Tune's default per-trial CSV/JSON/TensorBoard loggers
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    valid = _valid_set()
    job_file = Path(args.storage) / f"{args.name}.py"
    job_file.write_text(job_text(args.name, args.trials, args.concurrent), encoding="utf-8")
    job = load_job(job_file)
    storage = Path(args.storage) / args.name
    storage.mkdir(parents=True, exist_ok=True)
    inputs = _inputs(args, valid)
    inputs.sweep_dir = str(storage)
    rss0 = _peak_rss_mb()
    t0 = time.perf_counter()
    ray.init(address=args.address, log_to_driver=False, logging_level="WARNING")
    inputs.specs = job.specs()
    name = lambda t: str(t.config["trial"])  # noqa: E731
    first_start = []

    class FirstStart(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            first_start.append(first_start or time.perf_counter())

    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(stub_trial, prepared=inputs), {"cpu": 1, "gpu": 1}),
        param_space={"trial": tune.grid_search([t.trial_id for t in job.trials])},
        tune_config=tune.TuneConfig(
            scheduler=ASHAScheduler(metric="micro_f1", mode="max", grace_period=1, reduction_factor=2,
                                    max_t=args.evals),
            max_concurrent_trials=args.concurrent, reuse_actors=True,
            trial_name_creator=name, trial_dirname_creator=name),
        run_config=tune.RunConfig(name="ray", storage_path=str(storage), verbose=0,
                                  callbacks=[FirstStart()],
                                  failure_config=tune.FailureConfig(max_failures=0),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
    grid = tuner.fit()
    ray.shutdown()
    wall = time.perf_counter() - t0
    evals = sum(int(r.metrics.get("training_iteration") or 0) for r in grid)
    return {"mode": "tune", "n": len(grid), "errors": grid.num_errors, "wall_s": wall,
            "trial_s": evals * args.eval_s, "evaluations": evals, "peak_rss_mb": _peak_rss_mb(),
            "rss_before_run_mb": rss0, "first_start_s": first_start[0] - t0 if first_start else None}


# ------------------------------------------------------------------------------ the cluster
def start_cluster(nodes: int, gpus: int):
    """A head (the drivers' node, no GPU) and ``nodes`` nodes of ``gpus`` logical GPUs and as
    many logical CPUs; retried, since Ray gives a starting node 30 s on a busy machine."""
    from ray.cluster_utils import Cluster

    for attempt in range(3):
        c = None
        try:
            c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
            for _ in range(nodes):
                c.add_node(num_cpus=gpus, num_gpus=gpus)
            c.wait_for_nodes()
            return c
        except Exception:
            if c is not None:
                c.shutdown()
            if attempt == 2:
                raise


def _driver_cmd(mode: str, n: int, name: str, args, address: str, storage: Path, *extra) -> list[str]:
    return [sys.executable, str(HERE), "--driver", mode, "--trials", str(n), "--name", name,
            "--address", address, "--storage", str(storage), "--concurrent", str(args.concurrent),
            "--evals", str(args.evals), "--eval-s", str(args.eval_s), *extra]


def _env() -> dict[str, str]:
    root = str(HERE.parents[1])
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}


def run_driver(mode: str, n: int, name: str, args, address: str, storage: Path) -> dict:
    out = storage / f"{name}.result.json"
    cmd = _driver_cmd(mode, n, name, args, address, storage, "--json", str(out))
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=args.timeout)
    if p.returncode != 0:
        raise SystemExit(f"{mode} driver of {n} trials failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return json.loads(out.read_text())


def time_cli(*argv: str) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "relex.cli", *argv], env=_env(), capture_output=True,
                       text=True, timeout=600)
    return time.perf_counter() - t0, p


def cli_figures(sweep_dir: str, tmp: Path) -> dict:
    import_s, _ = time_cli("--help")  # Python and relex's imports, in every command's time
    lb_s, lb = time_cli("leaderboard", sweep_dir, "--format", "table")
    html = tmp / f"{Path(sweep_dir).name}.html"
    rep_s, rep = time_cli("report", sweep_dir, "--html", str(html))
    for p in (lb, rep):
        if p.returncode != 0:
            raise SystemExit(f"relex {' '.join(p.args[3:5])} failed:\n{p.stderr[-3000:]}")
    return {"cli_start_s": import_s, "leaderboard_s": lb_s, "leaderboard_lines": len(lb.stdout.splitlines()),
            "report_s": rep_s, "report_html_bytes": html.stat().st_size, "report_html": str(html),
            "report_stdout_lines": len(rep.stdout.splitlines())}


# ---------------------------------------------------------------------------------- resume
def finished_count(sweep_dir: Path) -> int:
    trials = sweep_dir / "trials"
    return sum(1 for _ in trials.glob("*/final.json")) if trials.is_dir() else 0


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def resume_figures(n: int, args, address: str, storage: Path) -> dict:
    """Kill a relex driver (SIGKILL) once half its trials finished, then --resume it."""
    from relex.sweep.layout import SweepDir

    name = f"resume{n}"
    sweep_dir = storage / name
    first = subprocess.Popen(_driver_cmd("relex", n, name, args, address, storage), env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + args.timeout
    while finished_count(sweep_dir) < n // 2 and first.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    if first.poll() is not None:
        raise SystemExit(f"the sweep to kill ended first:\n{first.stderr.read()[-3000:]}")
    first.send_signal(signal.SIGKILL)
    first.wait()
    sweep = SweepDir(sweep_dir)
    done_before = {r["trial_id"] for r in sweep.trial_rows()
                   if r["status"] in ("TERMINATED", "STOPPED_EARLY", "ERROR")}
    starts_before = (sweep_dir / "starts.log").read_text().split()
    skipped_before = _lines(sweep_dir / "skipped.log")
    out = storage / f"{name}.result.json"
    t0 = time.time()
    p = subprocess.run(_driver_cmd("relex", n, name, args, address, storage, "--resume",
                                   "--json", str(out)), env=_env(), capture_output=True,
                       text=True, timeout=args.timeout)
    if p.returncode != 0:
        raise SystemExit(f"the resume failed:\n{p.stderr[-3000:]}")
    res = json.loads(out.read_text())
    starts = (sweep_dir / "starts.log").read_text().split()
    again = [t for t in starts[len(starts_before):] if t in done_before]
    return {"n": n, "finished_at_kill": len(done_before), "rerun_finished": len(again),
            "noop_restarts": len(_lines(sweep_dir / "skipped.log")) - len(skipped_before),
            "resumed_wall_s": time.time() - t0, "driver_startup_s": res["first_start_s"],
            "driver_launch_s": res.get("first_launch_s"),
            "resume_counts": res["counts"]}


# ------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    p = C.parser(__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--gpus-per-node", type=int, default=25)
    p.add_argument("--concurrent", type=int, default=8, help="trials at once (worker processes)")
    p.add_argument("--evals", type=int, default=3)
    p.add_argument("--baseline-sizes", type=int, nargs="*", default=None,
                   help="sizes also run through plain Ray Tune (default: every size)")
    p.add_argument("--eval-s", type=float, default=0.05)
    p.add_argument("--resume-trials", type=int, default=1000, help="0: no resume figure")
    p.add_argument("--timeout", type=int, default=3600)
    # a driver process of its own (internal)
    p.add_argument("--driver", choices=("relex", "tune"))
    p.add_argument("--trials", type=int)
    p.add_argument("--name")
    p.add_argument("--address")
    p.add_argument("--storage")
    p.add_argument("--resume", action="store_true")
    args = p.parse_args(argv)
    if args.driver:
        res = (drive_relex if args.driver == "relex" else drive_tune)(args)
        C.write_json(args.json, res)
        return 0
    if args.quick:
        args.sizes, args.resume_trials = [20, 40], 40
    info = C.machine()
    C.print_machine(info)
    with tempfile.TemporaryDirectory(prefix="relex-scale-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        cluster = start_cluster(args.nodes, args.gpus_per_node)
        print(f"cluster: head + {args.nodes} nodes x {args.gpus_per_node} logical GPUs "
              f"({args.nodes * args.gpus_per_node} GPUs), started in {time.perf_counter() - t0:.0f}s; "
              f"{args.concurrent} trials at once, {args.evals} evaluations {args.eval_s}s apart per trial",
              flush=True)
        try:
            sizes = []
            baseline = args.sizes if args.baseline_sizes is None else args.baseline_sizes
            for n in args.sizes:
                tune_res = run_driver("tune", n, f"tune{n}", args, cluster.address, tmp) if n in baseline else None
                relex_res = run_driver("relex", n, f"relex{n}", args, cluster.address, tmp)
                relex_res.update(cli_figures(relex_res["sweep_dir"], tmp))
                sizes.append({"n": n, "tune": tune_res, "relex": relex_res})
                print(f"  {n} trials: relex {relex_res['wall_s']:.1f}s" + (
                    f", Ray Tune {tune_res['wall_s']:.1f}s" if tune_res else ""), flush=True)
            resume = resume_figures(args.resume_trials, args, cluster.address, tmp) if args.resume_trials else None
        finally:
            cluster.shutdown()
    report(sizes, resume, args, info)
    return 0


RESULTS_FILES = ("results fragments", "trials.parquet", "history.parquet")


def _figures(s: dict, P: int) -> dict:
    r, t = s["relex"], s["tune"]
    per = lambda x: x / r["n"]  # noqa: E731
    f = {"overhead_relex_s": per(r["wall_s"] - r["trial_s"] / P), "code_s": per(r["callback_s"]),
         "results_bytes": per(sum(v for k, v in r["bytes"].items() if k in RESULTS_FILES)),
         "other_bytes": per(sum(v for k, v in r["bytes"].items()
                                if k not in RESULTS_FILES and not k.startswith("valid_probs"))),
         "live_cpu": r["redraw_cpu_s"] / r["wall_s"], "overhead_tune_s": None, "relex_extra_s": None}
    if t:
        f["overhead_tune_s"] = (t["wall_s"] - t["trial_s"] / P) / t["n"]
        f["relex_extra_s"] = per(r["wall_s"] - t["wall_s"])
    return f


def _opt(v, scale: float = 1.0):
    return "-" if v is None else v * scale


def _secs(v) -> str:
    return "-" if v is None else f"{v:.1f}s"


def report(sizes, resume, args, info) -> None:
    rows = []
    for s in sizes:
        s["figures"] = f = _figures(s, args.concurrent)
        r, t = s["relex"], s["tune"] or {}
        rows.append([r["n"], r["wall_s"], _opt(t.get("wall_s")), f["overhead_relex_s"],
                     _opt(f["overhead_tune_s"]), _opt(f["relex_extra_s"]), f["code_s"] * 1000,
                     r["peak_rss_mb"], _opt(t.get("peak_rss_mb")), f["results_bytes"] / 1024,
                     f["other_bytes"] / 1024, r["live_draw_s"] * 1000, 100 * f["live_cpu"],
                     r["leaderboard_s"], r["report_s"]])
    print(C.table(rows, ["trials", "relex wall s", "Tune wall s", "relex ovh/trial s",
                         "Tune ovh/trial s", "relex − Tune s/trial", "relex code ms/trial",
                         "relex RSS MB", "Tune RSS MB", "results KB/trial", "other KB/trial",
                         "live draw ms", "live CPU %", "leaderboard s", "report s"]))
    a, b = sizes[0], sizes[-1]
    fa, fb = a["figures"], b["figures"]
    print()
    print(f"bytes the driver wrote ({b['n']} trials), per trial: " + ", ".join(
        f"{k} {v / b['n'] / 1024:.1f} KB" for k, v in sorted(b["relex"]["bytes"].items())))
    print(f"relex's code in Tune's loop (callback, ASHA, budget) at {b['n']} trials: "
          f"{fb['code_s'] * 1000:.1f} ms/trial (target ≤ {TARGETS['overhead_s'] * 1000:.0f} ms: "
          f"{C.verdict(fb['code_s'], TARGETS['overhead_s'], higher_is_better=False)}); at {a['n']}: "
          f"{fa['code_s'] * 1000:.1f} ms/trial (ratio {fb['code_s'] / fa['code_s']:.2f})")
    print(f"whole-sweep overhead per trial (wall − Σ trial time ÷ {args.concurrent}): "
          f"{fa['overhead_relex_s']:.2f}s at {a['n']}, {fb['overhead_relex_s']:.2f}s at {b['n']}, "
          "mostly Ray Tune's own: see the baseline columns")
    print(f"results written per trial: {fa['results_bytes'] / 1024:.1f} KB at {a['n']}, "
          f"{fb['results_bytes'] / 1024:.1f} KB at {b['n']} (ratio {fb['results_bytes'] / fa['results_bytes']:.2f}; "
          "O(n²) writing would grow it tenfold)")
    growth = b["relex"]["peak_rss_mb"] - a["relex"]["peak_rss_mb"]
    print(f"driver peak RSS growth {a['n']} -> {b['n']}: relex {growth:.0f} MB (target ≤ "
          f"{TARGETS['rss_growth_mb']:.0f}: {C.verdict(growth, TARGETS['rss_growth_mb'], higher_is_better=False)})")
    print(f"relex report on {b['n']} trials: {b['relex']['report_s']:.1f}s incl. {b['relex']['cli_start_s']:.1f}s "
          f"of start-up (target < {TARGETS['report_s']:.0f}s: "
          f"{C.verdict(b['relex']['report_s'], TARGETS['report_s'], higher_is_better=False)}); HTML "
          f"{b['relex']['report_html_bytes'] / 1e6:.2f} MB; relex leaderboard {b['relex']['leaderboard_s']:.1f}s")
    print(f"live table: {b['relex']['live_draw_s'] * 1000:.0f} ms a draw at {b['n']} rows, "
          f"{b['relex']['redraws']} redraws, {100 * fb['live_cpu']:.2f}% of one core "
          f"({C.verdict(fb['live_cpu'], TARGETS['live_cpu'], higher_is_better=False)})")
    if resume:
        launch, start = resume["driver_launch_s"], resume["driver_startup_s"]
        print(f"resume of {resume['n']} trials killed at {resume['finished_at_kill']} finished: "
              f"{resume['rerun_finished']} finished trials trained again, {resume['noop_restarts']} "
              "started only to return at once; the resumed driver's run() to its first trial "
              f"launched {_secs(launch)} (target < {TARGETS['resume_startup_s']:.0f}s: "
              f"{C.verdict(launch or float('inf'), TARGETS['resume_startup_s'], higher_is_better=False)}), to its first "
              f"trial started {start:.1f}s ({C.verdict(start, TARGETS['resume_startup_s'], higher_is_better=False)}: "
              f"the {args.concurrent} trials' worker processes start at once on this machine's "
              f"{os.cpu_count()} cores); resumed process {resume['resumed_wall_s']:.0f}s, "
              f"{resume['resume_counts']}; a fresh start of {b['n']} trials: "
              f"{_secs(b['relex'].get('first_launch_s'))} to its first trial launched, "
              f"{b['relex']['first_start_s']:.1f}s to its first trial started; plain Ray Tune's "
              f"start of the same grid, ray.init included: {_secs((b['tune'] or {}).get('first_start_s'))} "
              "to its first trial started")
    C.write_json(args.json, {"machine": info, "args": vars(args), "sizes": sizes, "resume": resume,
                             "load_avg_1m_end": os.getloadavg()[0]})


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark 10: grid, random and TPE search under ASHA on the same trial budget, and what a TPE
suggestion costs.

A three-dimensional continuous space — learning rate (log-uniform), warm-up ratio and weight
decay — searched three ways through relex's Ray Tune runner, every trial under the same ASHA:

* grid: the quartile points of each range (2 × 2 × 2 = 8 configurations for a budget of 8);
* random: ``search="random"``, ``num_samples`` = the budget;
* TPE: ``search="tpe"``, the same budget, ``max_concurrent`` trials at a time.

Each method runs ``--reps`` times: repetition r uses search seed r and training seed 100 + r for
all three (the grid differs between repetitions only by the training seed). For each run the
trials are put in the order they ended and the best validation micro-F1 so far is read against
the trial-seconds spent (Σ ``wall_s``); the figures are the median and the range over the
repetitions at fixed shares of the grid's median trial-seconds, and at the end.

The searcher's own cost: the median time of one TPE suggestion (relex's searcher: ask on the
study journal, a trial spec built) with 100 and 1,000 finished trials in the study, beside Ray
Tune's ``OptunaSearch`` (TPE, in-memory study) measured in the same process. No training.
Target: median < 50 ms at 1,000 finished trials.

Data: the sample bundled with relex (default), or a stratified slice of a KLUE-RE file
(``--data FILE --rows N``).

    .venv/bin/python bench/search.py [--quick] [--reps 5] [--budget 8] [--cost-only]
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _common as C

COST_TARGET_MS = 50.0
SPACE = "lr=loguniform(3e-4, 3e-2), warmup_ratio=uniform(0.0, 0.5), weight_decay=uniform(0.0, 0.2)"
# the quartile points of each range (log scale for lr)
GRID = {"lr": [3e-4 * 10 ** 0.5, 3e-4 * 10 ** 1.5], "warmup_ratio": [0.125, 0.375], "weight_decay": [0.05, 0.15]}
SHARES = (0.25, 0.5, 0.75, 1.0)


def _job_text(method: str, rep: int, train: str, args) -> str:
    fixed = (f"backbone='relex/tiny', tiny_hidden=32, tiny_layers=1, tiny_heads=2, max_length=64, "
             f"batch_size=16, epochs=100, max_steps={args.steps}, checkpoint_every=1000, "
             f"eval_every={max(1, args.steps // args.evals)}, eval_batch_size=128, num_threads=1, amp='off'")
    if method == "grid":
        space = ", ".join(f"{k}=grid({v!r})" for k, v in GRID.items())
        search = ""
    else:
        space = SPACE
        search = f"num_samples={args.budget}, search={method!r}, search_seed={rep}, "
    return ("from relex.sweep import Sweep, grid, loguniform, uniform\n"
            f"sweep = Sweep(name='{method}-{rep}', train={train!r}, valid=0.2,\n"
            f"  space=dict({space}, {fixed}),\n"
            f"  {search}seeds=[{100 + rep}], resources=dict(gpu=0, cpu=1),\n"
            f"  asha=dict(metric='micro_f1', mode='max', grace_period=1, reduction_factor=2, "
            f"max_t={args.evals}),\n"
            f"  max_concurrent={args.concurrent}, max_failures=0)\n")


def best_curve(trials) -> list[tuple[float, float]]:
    """(cumulative trial-seconds, best micro-F1 so far), trials in the order they ended."""
    t = trials[trials["micro_f1"].notna()].sort_values("ended_at")
    seconds = t["wall_s"].fillna(0.0).cumsum().tolist()
    return list(zip(seconds, t["micro_f1"].cummax().tolist()))


def best_within(curve: list[tuple[float, float]], seconds: float) -> float:
    reached = [b for s, b in curve if s <= seconds + 1e-9]
    return reached[-1] if reached else float("nan")


def _start_ray(num_cpus: int, tries: int = 3) -> None:
    """Ray gives a starting node 30 s to register (fixed in its code); on a machine busy with
    other work that can run out, so a failed start is retried."""
    import ray

    for attempt in range(tries):
        try:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                     log_to_driver=False, configure_logging=True, logging_level="WARNING")
            return
        except Exception:
            ray.shutdown()
            if attempt == tries - 1:
                raise


def run_searches(args, train: str, tmp: Path) -> dict[str, list[dict]]:
    import pandas as pd
    import ray

    from relex.sweep.job import load_job
    from relex.sweep.runner import preflight, run

    runs: dict[str, list[dict]] = {"grid": [], "random": [], "tpe": []}
    prepared = None
    _start_ray(max(2, args.concurrent))
    try:
        for rep in range(args.reps):
            for method in runs:
                job_file = tmp / f"{method}-{rep}.py"
                job_file.write_text(_job_text(method, rep, train, args), encoding="utf-8")
                job = load_job(job_file)
                if prepared is None:  # one backbone and feature set serve every sweep
                    prepared, _ = preflight(job, tmp / "preflight")
                t0 = time.perf_counter()
                outcome = run(job, storage=tmp / "artifacts", prepared=prepared, live=False)
                trials = pd.read_parquet(outcome.sweep_dir / "trials.parquet")
                curve = best_curve(trials)
                runs[method].append({"rep": rep, "curve": curve, "run_s": time.perf_counter() - t0,
                                     "trials": len(trials), "counts": outcome.counts})
                print(f"  rep {rep} {method:6s}: {len(trials)} trials {outcome.counts}, best "
                      f"{curve[-1][1]:.2f} after {curve[-1][0]:.0f} trial-s "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
    finally:
        ray.shutdown()
    return runs


def summarize(runs: dict[str, list[dict]]) -> tuple[list[float], dict[str, list[tuple[float, float, float]]]]:
    """Checkpoints (trial-seconds) and, per method, (median, min, max) of the best at each."""
    grid_total = statistics.median(r["curve"][-1][0] for r in runs["grid"])
    marks = [share * grid_total for share in SHARES]
    out = {}
    for method, reps in runs.items():
        cells = []
        for s in marks + [math.inf]:
            values = [best_within(r["curve"], s) for r in reps]
            values = [v for v in values if not math.isnan(v)]
            cells.append((statistics.median(values), min(values), max(values)) if values
                         else (math.nan, math.nan, math.nan))
        out[method] = cells
    return marks, out


# ------------------------------------------------------------------ searcher cost
def suggestion_cost(finished: int, calls: int, tmp: Path) -> dict[str, float]:
    """Median ms of one suggestion of relex's searcher and of Ray Tune's OptunaSearch, each with
    ``finished`` told trials in its study."""
    import numpy as np
    import optuna
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from relex.sweep.job import load_job
    from relex.sweep.search import _searcher_class, distributions

    job_file = tmp / f"cost-{finished}.py"
    job_file.write_text("from relex.data.sample import SAMPLE_PATH\n"
                        "from relex.sweep import Sweep, loguniform, uniform\n"
                        f"sweep = Sweep(name='cost', train=SAMPLE_PATH, search='tpe', "
                        f"num_samples={finished + calls + 10}, space=dict({SPACE}))\n")
    job = load_job(job_file)
    sweep_dir = tmp / f"cost-{finished}"
    sweep_dir.mkdir()
    rng = np.random.default_rng(0)

    def fake_score(p):  # a smooth landscape: the cost does not depend on it
        return -abs(math.log10(p["lr"]) + 2.7) - p["weight_decay"] + rng.normal(0, 0.05)

    searcher = _searcher_class()(job, sweep_dir, {})
    dists = distributions(job.points[0])
    study = searcher.studies[0]
    points = [{k: d.to_external_repr(d.to_internal_repr(_draw(d, rng))) for k, d in dists.items()}
              for _ in range(finished)]
    with searcher.journal.step():  # the finished trials: one append
        study.add_trials([optuna.trial.create_trial(params=p, distributions=dists, value=fake_score(p))
                          for p in points])
    relex_ms = []
    for i in range(calls):
        t0 = time.perf_counter()
        spec = searcher.suggest(f"ray-{i}")["trial"]
        relex_ms.append(1000 * (time.perf_counter() - t0))
        cfg = spec["config"]
        searcher.on_trial_complete(f"ray-{i}", {searcher.metric: fake_score(cfg)})

    ray_space = {"lr": tune.loguniform(3e-4, 3e-2), "warmup_ratio": tune.uniform(0.0, 0.5),
                 "weight_decay": tune.uniform(0.0, 0.2)}
    baseline = OptunaSearch(ray_space, metric="score", mode="max", seed=0)
    baseline._ot_study.add_trials([optuna.trial.create_trial(
        params=p, distributions=OptunaSearch.convert_search_space(ray_space), value=fake_score(p))
        for p in points])
    ray_ms = []
    for i in range(calls):
        t0 = time.perf_counter()
        params = baseline.suggest(f"b-{i}")
        ray_ms.append(1000 * (time.perf_counter() - t0))
        baseline.on_trial_complete(f"b-{i}", {"score": fake_score(params)})
    return {"relex_ms": statistics.median(relex_ms), "optunasearch_ms": statistics.median(ray_ms)}


def _draw(dist, rng):
    if getattr(dist, "log", False):
        return float(math.exp(rng.uniform(math.log(dist.low), math.log(dist.high))))
    return float(rng.uniform(dist.low, dist.high))


def main(argv=None) -> int:
    p = C.parser(__doc__.split("\n\n")[0])
    p.set_defaults(data=None)
    p.add_argument("--rows", type=int, default=1500, help="KLUE rows sampled when --data is given")
    p.add_argument("--budget", type=int, default=8, help="trials per search (the grid: 2 x 2 x 2)")
    p.add_argument("--reps", type=int, default=5, help="repetitions (search seeds 0 .. reps-1)")
    p.add_argument("--steps", type=int, default=30, help="optimizer steps per trial")
    p.add_argument("--evals", type=int, default=6, help="evaluations per trial")
    p.add_argument("--concurrent", type=int, default=2)
    p.add_argument("--calls", type=int, default=30, help="suggestions timed per study size")
    p.add_argument("--cost-only", action="store_true", help="only the searcher's cost")
    args = p.parse_args(argv)
    if args.quick:
        args.reps, args.steps, args.evals, args.calls = 1, 12, 3, 5
    if not args.cost_only and args.budget != 8:
        p.error("--budget is 8: the grid is 2 x 2 x 2")
    info = C.machine()
    C.print_machine(info)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    result: dict = {"machine": info, "args": vars(args)}
    with tempfile.TemporaryDirectory(prefix="relex-bench-search-") as tmp:
        tmp = Path(tmp)
        cost = {n: suggestion_cost(n, args.calls, tmp) for n in (100, 1000)}
        print("\nmedian ms per suggestion (TPE, 3 axes)")
        print(C.table([[n, c["relex_ms"], c["optunasearch_ms"], c["relex_ms"] / c["optunasearch_ms"]]
                       for n, c in cost.items()],
                      ["finished trials", "relex searcher", "Ray OptunaSearch", "ratio"]))
        print(f"target: median < {COST_TARGET_MS:.0f} ms at 1,000 -> "
              f"{C.verdict(cost[1000]['relex_ms'], COST_TARGET_MS, higher_is_better=False)}")
        result["suggestion_cost"] = cost
        if not args.cost_only:
            if args.data:
                train = str(C.write_klue_subset(C.require_data(args.data), args.rows,
                                                tmp / "klue-slice.json", seed=1))
            else:
                from relex.data.sample import SAMPLE_PATH

                train = str(SAMPLE_PATH)
            t0 = time.perf_counter()
            runs = run_searches(args, train, tmp)
            marks, table = summarize(runs)
            heads = [f"best @ {m:.0f} trial-s ({s:.0%})" for m, s in zip(marks, SHARES)] + ["best at end"]
            print(f"\nbest validation micro-F1 reached: median [min, max] over {args.reps} repetitions")
            print(C.table([[m, *[f"{c[0]:.2f} [{c[1]:.2f}, {c[2]:.2f}]" for c in cells]]
                           for m, cells in table.items()], ["search", *heads]))
            totals = {m: statistics.median(r["curve"][-1][0] for r in reps) for m, reps in runs.items()}
            print("median trial-seconds per search: "
                  + ", ".join(f"{m} {s:.0f}" for m, s in totals.items())
                  + f"; all searches {time.perf_counter() - t0:.0f} s")
            result.update(marks=marks, table=table, totals=totals,
                          runs={m: [{k: v for k, v in r.items()} for r in reps] for m, reps in runs.items()})
    result["load_avg_1m_end"] = os.getloadavg()[0]
    C.write_json(args.json, json.loads(json.dumps(result, default=str)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

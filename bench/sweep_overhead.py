"""Benchmark 4: what relex's Ray Tune runner adds on top of the trials themselves.

A sweep of N short trials (tiny backbone, a few dozen optimizer steps each, no early stopping)
runs through ``relex.sweep.runner.run`` — the code behind ``relex sweep`` — on a generated job
file. The baseline is the trials' own time: the sum of each trial's ``wall_s`` (its
``relex.train.fit`` wall time, from ``trials.parquet``) divided by the parallelism P (trials at
once: ``min(max_concurrent, CPUs / CPUs per trial)``). The overhead per trial is

    (sweep wall time − Σ wall_s / P) / N

where the sweep wall time covers Ray's start, the Tuner, every trial's scheduling, reporting
and checkpoints, the Parquet writes and Ray's shutdown. The driver's one-off pre-flight (read
the data, resolve the backbone, build the features) is timed apart and shown both outside and
inside the figure.

Target: ≤ 1 s of overhead per trial.

    .venv/bin/python bench/sweep_overhead.py [--quick] [--data FILE] [--trials N]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import _common as C

TARGET_S = 1.0


def bare_ray(num_cpus: int) -> float:
    """Seconds of a bare ``ray.init()`` + ``ray.shutdown()`` on this machine (Ray's fixed cost)."""
    import time

    import ray

    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING")
    ray.shutdown()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = C.parser(__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--rows", type=int, default=1500, help="KLUE rows in the sweep's data (20%% valid)")
    p.add_argument("--steps", type=int, default=40, help="optimizer steps per trial")
    p.add_argument("--evals", type=int, default=4, help="evaluations (Tune reports) per trial")
    p.add_argument("--concurrent", type=int, default=2)
    args = p.parse_args(argv)
    if args.quick:
        args.trials, args.rows, args.steps, args.evals = 4, 600, 10, 2
    data = C.require_data(args.data)
    info = C.machine()
    C.print_machine(info)
    import os

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    threads = max(args.threads, 1)
    lrs = [round(1e-3 * (1 + i) / args.trials * 4, 6) for i in range(args.trials)]
    asha = "dict(metric='micro_f1', mode='max', grace_period=1000, reduction_factor=2)"  # never stops
    P = max(1, min(args.concurrent, (os.cpu_count() or 1)))
    sizes = [args.trials] if args.quick else [max(1, args.trials // 2), args.trials]

    def one(n: int, tmp: Path, train: Path) -> dict:
        space = (f"dict(lr=grid({lrs[:n]!r}), backbone='relex/tiny', tiny_hidden=64, max_length=128, "
                 f"batch_size=16, epochs=100, max_steps={args.steps}, "
                 f"eval_every={max(1, args.steps // args.evals)}, eval_batch_size=128, "
                 f"num_threads={threads}, amp='off')")
        job = tmp / f"overhead{n}.py"
        job.write_text(C.sweep_job_text(name=f"overhead{n}", train=train, labels=C.labels_file(data),
                                        valid=0.2, space=space, asha=asha,
                                        max_concurrent=args.concurrent), encoding="utf-8")
        res = C.run_sweep(job, tmp / "artifacts")
        trials = res["trials"]
        sum_wall = float(trials["wall_s"].sum())
        span = trials["ended_at"] - trials["started_at"]
        return {"n": len(trials), "counts": res["outcome"].counts, "run_s": res["run_s"],
                "preflight_s": res["preflight_s"], "sum_wall_s": sum_wall,
                "sum_span_s": float(span.sum()),
                "overhead_s": res["run_s"] - sum_wall / P,
                "trials": trials[["trial_id", "status", "lr", "wall_s", "started_at", "ended_at",
                                  "micro_f1"]].to_dict(orient="records")}

    with tempfile.TemporaryDirectory(prefix="relex-bench-") as tmp:
        tmp = Path(tmp)
        train = C.write_klue_subset(data, args.rows, tmp / "klue-subset.json")
        ray_s = bare_ray(P)
        sweeps = [one(n, tmp, train) for n in sizes]
    big = sweeps[-1]
    n = big["n"]
    per_trial = big["overhead_s"] / n
    per_trial_pre = (big["overhead_s"] + big["preflight_s"]) / n
    per_trial_fn = (big["run_s"] - big["sum_span_s"] / P) / n
    print(f"P={P} trials at once; {args.steps} steps and {args.evals} evaluations per trial; "
          f"bare ray.init()+shutdown(): {ray_s:.1f}s")
    rows = []
    for sw in sweeps:
        rows.append([sw["n"], sw["run_s"], sw["preflight_s"], sw["sum_wall_s"] / P, sw["overhead_s"],
                     sw["overhead_s"] / sw["n"], sw["run_s"] / (sw["sum_wall_s"] / P)])
    print(C.table(rows, ["trials", "sweep wall s", "pre-flight s", "Σ wall_s / P", "overhead s",
                         "overhead / trial", "wall ÷ (Σ wall_s / P)"]))
    marginal = None
    if len(sweeps) == 2 and sweeps[1]["n"] > sweeps[0]["n"]:
        a, b = sweeps
        marginal = (b["overhead_s"] - a["overhead_s"]) / (b["n"] - a["n"])
    print()
    print(f"overhead per trial, {n}-trial sweep (vs Σ fit wall_s / P): {per_trial:.2f}s "
          f"(target ≤ {TARGET_S:g}s: {C.verdict(per_trial, TARGET_S, higher_is_better=False)})")
    print(f"  with the pre-flight: {per_trial_pre:.2f}s; vs the trial functions' own time: {per_trial_fn:.2f}s")
    print(f"  without Ray's own start/stop ({ray_s:.1f}s): {(big['overhead_s'] - ray_s) / n:.2f}s")
    if marginal is not None:
        print(f"  marginal (fixed costs cancel: {sweeps[0]['n']} vs {n} trials): {marginal:.2f}s "
              f"-> {C.verdict(marginal, TARGET_S, higher_is_better=False)}")
    print("\nper trial (largest sweep): " + ", ".join(
        f"{t['trial_id']}: fit {t['wall_s']:.1f}s" for t in big["trials"]))
    C.write_json(args.json, {"machine": info, "args": vars(args), "P": P, "bare_ray_s": ray_s,
                             "sweeps": sweeps, "overhead_per_trial_s": per_trial,
                             "overhead_per_trial_with_preflight_s": per_trial_pre,
                             "marginal_overhead_per_trial_s": marginal,
                             "load_avg_1m_end": os.getloadavg()[0]})
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
    space = (f"dict(lr=grid({lrs!r}), backbone='relex/tiny', tiny_hidden=64, max_length=128, "
             f"batch_size=16, epochs=100, max_steps={args.steps}, "
             f"eval_every={max(1, args.steps // args.evals)}, eval_batch_size=128, "
             f"num_threads={threads}, amp='off')")
    asha = "dict(metric='micro_f1', mode='max', grace_period=1000, reduction_factor=2)"  # never stops
    with tempfile.TemporaryDirectory(prefix="relex-bench-") as tmp:
        tmp = Path(tmp)
        train = C.write_klue_subset(data, args.rows, tmp / "klue-subset.json")
        job = tmp / "overhead.py"
        job.write_text(C.sweep_job_text(name="overhead", train=train, labels=C.labels_file(data),
                                        valid=0.2, space=space, asha=asha,
                                        max_concurrent=args.concurrent), encoding="utf-8")
        res = C.run_sweep(job, tmp / "artifacts")
        trials = res["trials"]
        counts = res["outcome"].counts
    n = len(trials)
    P = max(1, min(args.concurrent, (os.cpu_count() or 1)))
    sum_wall = float(trials["wall_s"].sum())
    span = (trials["ended_at"] - trials["started_at"]) if "started_at" in trials else None
    sum_span = float(span.sum()) if span is not None else float("nan")
    run_s, pre_s = res["run_s"], res["preflight_s"]
    per_trial = (run_s - sum_wall / P) / n
    per_trial_pre = (run_s + pre_s - sum_wall / P) / n
    per_trial_fn = (run_s - sum_span / P) / n
    print(f"{n} trials ({counts}), {args.steps} steps and {args.evals} evaluations each, P={P}")
    rows = [
        ["sweep wall (Ray start → shutdown)", run_s, ""],
        ["pre-flight (data, backbone, features; once)", pre_s, ""],
        ["Σ trial wall_s (fit) / P  — baseline", sum_wall / P, ""],
        ["Σ trial function time (started→ended) / P", sum_span / P, ""],
        ["overhead per trial (vs fit wall_s)", per_trial,
         f"≤ {TARGET_S:g} s: {C.verdict(per_trial, TARGET_S, higher_is_better=False)}"],
        ["overhead per trial, pre-flight included", per_trial_pre, ""],
        ["overhead per trial (vs trial function time)", per_trial_fn, ""],
        ["sweep wall / (Σ wall_s / P)", run_s / (sum_wall / P), ""],
    ]
    print(C.table(rows, ["figure", "seconds", "target"]))
    print("\nper trial: " + ", ".join(f"{t}: fit {w:.1f}s" for t, w in zip(trials["trial_id"], trials["wall_s"])))
    C.write_json(args.json, {"machine": info, "args": vars(args), "n": n, "P": P, "run_s": run_s,
                             "preflight_s": pre_s, "sum_wall_s": sum_wall, "sum_span_s": sum_span,
                             "overhead_per_trial_s": per_trial,
                             "overhead_per_trial_with_preflight_s": per_trial_pre,
                             "trials": trials.to_dict(orient="records"),
                             "load_avg_1m_end": os.getloadavg()[0]})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark 5: how much compute ASHA saves on a real small sweep, and whether it keeps the winner.

The same 16-configuration grid (learning rate × head × ERPE on the tiny backbone, a stratified
KLUE-RE sample with a 15% stratified validation split, several evaluations per trial) runs
twice through relex's Ray Tune runner:

* the full grid: every trial trains to the end (ASHA's grace period beyond the last
  evaluation, so nothing is ever stopped) — the baseline, and the ranking of the configurations;
* ASHA as a job file sets it (grace period 1 evaluation, reduction factor 3).

Compute is counted in optimizer steps (the last evaluated step of each trial, from
``history.parquet``) and in trial seconds (``wall_s`` of ``trials.parquet``). The figure is
ASHA's total compute ÷ the grid's, and whether ASHA's best configuration is the grid's best
(else its rank in the grid). Training is deterministic on CPU, so a trial ASHA lets finish ends
exactly where the same trial of the grid ends.

Target: ASHA finds the grid's best with ≤ 40% of the grid's compute.

    .venv/bin/python bench/asha_savings.py [--quick] [--data FILE]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import _common as C

TARGET = 0.40


def main(argv=None) -> int:
    p = C.parser(__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=3000, help="KLUE rows sampled (15%% become validation)")
    p.add_argument("--steps", type=int, default=270, help="optimizer steps per trial")
    p.add_argument("--evals", type=int, default=9, help="evaluations per trial")
    p.add_argument("--grace", type=int, default=1, help="ASHA grace period (evaluations)")
    p.add_argument("--rf", type=float, default=3, help="ASHA reduction factor")
    p.add_argument("--concurrent", type=int, default=2)
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.steps, args.evals = 800, 24, 3
    data = C.require_data(args.data)
    info = C.machine()
    C.print_machine(info)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    threads = max(args.threads, 1)
    lrs = [3e-3, 1e-3, 3e-4, 1e-4]
    space = (f"dict(lr=grid({lrs!r}), head=grid(['marker', 'cls']), erpe=grid([False, True]), "
             f"backbone='relex/tiny', tiny_hidden=64, max_length=128, batch_size=32, epochs=100, "
             f"max_steps={args.steps}, eval_every={max(1, args.steps // args.evals)}, "
             f"warmup_ratio=0.1, eval_batch_size=128, num_threads={threads}, amp='off')")
    grid_asha = "dict(metric='micro_f1', mode='max', grace_period=1000, reduction_factor=3)"
    asha = (f"dict(metric='micro_f1', mode='max', grace_period={args.grace}, "
            f"reduction_factor={args.rf!r}, max_t={args.evals})")
    out = {}
    with tempfile.TemporaryDirectory(prefix="relex-bench-") as tmp:
        tmp = Path(tmp)
        train = C.write_klue_subset(data, args.rows, tmp / "klue-subset.json", seed=1)
        for name, a in (("grid", grid_asha), ("asha", asha)):
            job = tmp / f"{name}.py"
            job.write_text(C.sweep_job_text(name=name, train=train, labels=C.labels_file(data),
                                            valid=0.15, space=space, asha=a,
                                            max_concurrent=args.concurrent), encoding="utf-8")
            res = C.run_sweep(job, tmp / "artifacts", prepared_dir=tmp / "preflight")
            tr, hist = res["trials"], res["history"]
            steps = hist.groupby("trial_id")["step"].max()
            tr = tr.set_index("trial_id")
            tr["steps_run"] = steps.reindex(tr.index).fillna(0).astype(int)
            tr["evals_run"] = hist.groupby("trial_id")["iteration"].max().reindex(tr.index).fillna(0)
            out[name] = {"trials": tr, "run_s": res["run_s"], "counts": res["outcome"].counts}
            print(f"  {name}: {len(tr)} trials {res['outcome'].counts} in {res['run_s']:.0f}s", flush=True)

    g, a = out["grid"]["trials"], out["asha"]["trials"]
    ranking = g["micro_f1"].sort_values(ascending=False, kind="stable")
    grid_best = ranking.index[0]
    asha_best = a["micro_f1"].idxmax()
    rank = list(ranking.index).index(asha_best) + 1
    steps_ratio = a["steps_run"].sum() / g["steps_run"].sum()
    secs_ratio = a["wall_s"].sum() / g["wall_s"].sum()
    wall_ratio = out["asha"]["run_s"] / out["grid"]["run_s"]
    cols = ["lr", "head", "erpe"]
    rows = []
    for tid in ranking.index:
        rows.append([tid, *[g.loc[tid, c] for c in cols], g.loc[tid, "micro_f1"],
                     list(ranking.index).index(tid) + 1, a.loc[tid, "status"],
                     int(a.loc[tid, "evals_run"]), a.loc[tid, "micro_f1"],
                     int(g.loc[tid, "steps_run"]), int(a.loc[tid, "steps_run"])])
    print()
    print(C.table(rows, ["trial", *cols, "grid F1", "grid rank", "ASHA status", "ASHA evals",
                         "ASHA F1", "grid steps", "ASHA steps"]))
    same = asha_best == grid_best
    print(f"\ngrid best: {grid_best} (micro-F1 {g.loc[grid_best, 'micro_f1']:.2f}); ASHA best: {asha_best} "
          f"(micro-F1 {a.loc[asha_best, 'micro_f1']:.2f}) = grid rank {rank}")
    print(f"ASHA compute ÷ grid: {steps_ratio:.1%} of the optimizer steps, {secs_ratio:.1%} of the trial "
          f"seconds, {wall_ratio:.1%} of the sweep wall time")
    met = same and steps_ratio <= TARGET
    print(f"target: ASHA finds the grid's best with ≤ {TARGET:.0%} of the grid's compute -> "
          f"{'met' if met else 'NOT met'}")
    C.write_json(args.json, {
        "machine": info, "args": vars(args), "grid_best": grid_best, "asha_best": asha_best,
        "asha_best_grid_rank": rank, "steps_ratio": steps_ratio, "seconds_ratio": secs_ratio,
        "wall_ratio": wall_ratio, "grid_run_s": out["grid"]["run_s"], "asha_run_s": out["asha"]["run_s"],
        "grid": g.reset_index()[["trial_id", *cols, "status", "micro_f1", "steps_run", "wall_s"]].to_dict(orient="records"),
        "asha": a.reset_index()[["trial_id", *cols, "status", "micro_f1", "steps_run", "evals_run", "wall_s"]].to_dict(orient="records"),
        "load_avg_1m_end": os.getloadavg()[0]})
    return 0


if __name__ == "__main__":
    sys.exit(main())

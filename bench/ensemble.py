"""Benchmark 9: does an ensemble chosen by ``relex ensemble`` beat the best single trial?

A real sweep through the command line on the tiny backbone and a stratified KLUE-RE slice:
2 learning rates × 2 heads × 3 seeds (12 trials, nothing stopped early, every checkpoint kept
so that every trial is a candidate), a 25% stratified validation split. Then ``relex ensemble`` three times on the sweep:

* ``--top K``: the K best trials, equal weights;
* ``--select greedy``: greedy forward selection with replacement (Caruana et al. 2004);
* ``--config BEST``: the best single trial alone, with the same decisions fitted — the
  baseline that separates what the ensemble adds from what the decisions add.

Two comparisons, both on rows the choice never saw:

1. the honest scores ``relex ensemble`` reports: the validation rows split in two stratified
   halves, the members (and, the same way, the best single trial) chosen on one half and
   scored on the other, both ways — micro-F1 and AUPRC of the ensemble's plain weighted
   average next to the best single trial's;
2. a held-out file of KLUE rows the sweep never used: ``relex evaluate`` of each ensemble (with
   and without its fitted decisions) next to the checkpoint of the trial with the best
   validation micro-F1 (``relex evaluate`` on its checkpoint).

Last, ``relex predict`` with each ensemble on the held-out file without its labels, and the
submission checked: one row per input row in input order, columns ``id, pred_label, probs``,
30 probabilities per row summing to 1, ``pred_label`` their argmax.

Target: the ensemble's honest micro-F1 ≥ the best single trial's (issue 11's "Done when").

    .venv/bin/python bench/ensemble.py [--quick] [--data FILE]
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import _common as C

REPO = Path(__file__).resolve().parents[1]


def relex_cli(*args, log: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``relex ARGS`` in a fresh process of this interpreter (the tree this script is in)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [sys.executable, "-m", "relex.cli", *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if log is not None:
        log.write_text(done.stdout + "\n--- stderr\n" + done.stderr, encoding="utf-8")
    if done.returncode != 0:
        sys.exit(f"relex {' '.join(map(str, args))} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


def write_slices(data: Path, n_sweep: int, n_held: int, out: Path, seed: int) -> dict[str, Path]:
    """Disjoint stratified slices of the KLUE file: the sweep's rows, held-out rows (labelled,
    and the same rows without labels for ``relex predict``)."""
    from relex.data.split import split_indices

    records = json.loads(data.read_text(encoding="utf-8"))
    _, y = np.unique([r["label"] for r in records], return_inverse=True)
    _, keep = split_indices(y, (n_sweep + n_held) / len(records), seed)
    keep = keep[:n_sweep + n_held]
    sweep_pos, held_pos = split_indices(y[keep], n_held / len(keep), seed)
    sweep_rows = [records[i] for i in keep[sweep_pos]]
    held_rows = [records[i] for i in keep[held_pos]]
    paths = {"sweep": out / "klue-sweep.json", "held": out / "klue-held-out.json",
             "held_unlabelled": out / "klue-held-out-unlabelled.json"}
    for key, rows in (("sweep", sweep_rows), ("held", held_rows),
                      ("held_unlabelled", [{k: v for k, v in r.items() if k != "label"} for r in held_rows])):
        paths[key].write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return paths


def job_text(args, train: Path, labels: str | None, threads: int) -> str:
    space = (f"dict(lr=grid([3e-3, 1e-3]), head=grid(['marker', 'cls']), backbone='relex/tiny', "
             f"tiny_hidden=64, max_length=128, batch_size=32, epochs=100, max_steps={args.steps}, "
             f"eval_every={max(1, args.steps // args.evals)}, warmup_ratio=0.1, "
             f"eval_batch_size=128, num_threads={threads}, amp='off')")
    return ("from relex.sweep import Sweep, grid\n"
            f"sweep = Sweep(name='ens', train={str(train)!r}, valid={args.valid!r}, labels={labels!r},\n"
            f"              space={space}, seeds={list(range(1, args.seeds + 1))!r},\n"
            "              asha=dict(metric='micro_f1', mode='max', grace_period=1000),\n"
            f"              resources=dict(gpu=0, cpu=1), max_concurrent={args.concurrent},\n"
            # every trial's checkpoint kept: each is a candidate (the default keeps the best 5, a
            # pool chosen on all validation rows, the halves the honest scores are taken on too)
            "              max_failures=0, keep_checkpoints=0)\n")


def check_submission(path: Path, unlabelled: Path, names: list[str]) -> dict:
    """What ``relex predict`` wrote, against the file it read: row count and order, columns,
    probabilities (one per label, summing to 1, argmax = pred_label)."""
    import pandas as pd

    sub = pd.read_csv(path)
    ids = [r["guid"] for r in json.loads(unlabelled.read_text(encoding="utf-8"))]
    probs = np.array([ast.literal_eval(p) for p in sub["probs"]], dtype=float)
    checks = {
        "columns": list(sub.columns) == ["id", "pred_label", "probs"],
        "rows": len(sub) == len(ids),
        "ids_in_order": sub["id"].astype(str).tolist() == ids,
        "one_prob_per_label": probs.ndim == 2 and probs.shape[1] == len(names),
        "probs_sum_to_1": bool(np.allclose(probs.sum(1), 1.0, atol=1e-5)),
        "probs_in_0_1": bool(((probs >= 0) & (probs <= 1)).all()),
        "pred_label_is_argmax": [names[i] for i in probs.argmax(1)] == sub["pred_label"].tolist(),
    }
    return {"rows": len(sub), "max_sum_error": float(np.abs(probs.sum(1) - 1).max()),
            "checks": checks, "valid": all(checks.values())}


def evaluate(model: Path, file: Path, *extra: str) -> dict:
    out = json.loads(relex_cli("evaluate", model, file, "--json", *extra).stdout)
    return {"micro_f1": out["micro_f1"], "auprc": out["auprc"]}


def main(argv=None) -> int:
    p = C.parser(__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=4000, help="KLUE rows of the sweep (25%% become validation)")
    p.add_argument("--held-out", type=int, default=1000, help="KLUE rows the sweep never sees")
    p.add_argument("--valid", type=float, default=0.25, help="validation share of the sweep's rows")
    p.add_argument("--steps", type=int, default=375, help="optimizer steps per trial")
    p.add_argument("--evals", type=int, default=3, help="evaluations per trial")
    p.add_argument("--seeds", type=int, default=3, help="seeds per configuration")
    p.add_argument("--top", type=int, default=4, help="K of relex ensemble --top K")
    p.add_argument("--concurrent", type=int, default=2, help="trials at once (one CPU each)")
    p.add_argument("--keep", metavar="DIR", help="keep the sweep, ensembles and logs in DIR")
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.held_out, args.steps, args.evals, args.seeds = 800, 200, 24, 2, 1
    data = C.require_data(args.data)
    info = C.machine()
    C.print_machine(info)
    threads = max(args.threads, 1)
    labels = C.labels_file(data)
    with tempfile.TemporaryDirectory(prefix="relex-bench-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = run_all(args, data, labels, threads, work)
    result.update(machine=info, args=vars(args), load_avg_1m_end=os.getloadavg()[0])
    C.write_json(args.json, result)
    return 0


def run_all(args, data: Path, labels: str | None, threads: int, work: Path) -> dict:
    from relex.sweep.layout import SweepDir

    files = write_slices(data, args.rows, args.held_out, work, seed=0)
    job = work / "ens_job.py"
    job.write_text(job_text(args, files["sweep"], labels, threads), encoding="utf-8")
    t0 = time.perf_counter()
    relex_cli("sweep", job, "--storage", work / "artifacts", "--overwrite", log=work / "sweep.log")
    sweep_s = time.perf_counter() - t0
    sweep_dir = work / "artifacts" / "ens"
    trials = SweepDir(sweep_dir).trials()
    print(f"sweep: {len(trials)} trials {trials['status'].value_counts().to_dict()} in {sweep_s:.0f}s "
          f"({args.rows} rows, {args.valid:.0%} validation; held-out file {args.held_out} rows)", flush=True)
    best = trials.sort_values(["micro_f1", "trial_id"], ascending=[False, True]).iloc[0]

    ensembles = {"top": ["--top", str(args.top)], "greedy": ["--select", "greedy"],
                 "single": ["--config", best["trial_id"]]}
    reports: dict[str, dict] = {}
    for name, how in ensembles.items():
        out_dir = work / f"ens-{name}"
        t = time.perf_counter()
        relex_cli("ensemble", sweep_dir, "--out", out_dir, *how, log=work / f"ensemble-{name}.log")
        info = json.loads((out_dir / "ensemble.json").read_text(encoding="utf-8"))
        reports[name] = {"dir": out_dir, "info": info, "ensemble_s": time.perf_counter() - t}
    names = reports["top"]["info"]["label_names"]

    honest_rows, held_rows, payload = [], [], {"sweep_s": sweep_s, "best_trial": best["trial_id"],
                                                "trials": trials[["trial_id", "lr", "head", "seed", "status",
                                                                  "micro_f1", "auprc"]].to_dict(orient="records")}
    single_ckpt = evaluate(Path(best["checkpoint"]), files["held"])
    held_rows.append([f"best trial {best['trial_id']} (checkpoint)", "-", single_ckpt["micro_f1"],
                      single_ckpt["auprc"], "-", "-"])
    payload["held_out_best_trial"] = single_ckpt
    for name in ("top", "greedy", "single"):
        r = reports[name]
        sc, sel = r["info"]["scores"], r["info"]["selection"]
        members = ", ".join(f"{u} {w:.2f}" for u, w in sorted(sel["units"].items(), key=lambda kv: -kv[1]))
        if name != "single":
            honest_rows.append([f"--{'top ' + str(args.top) if name == 'top' else 'select greedy'}",
                                len(sel["units"]), sc["ensemble"]["micro_f1"], sc["best_single"]["micro_f1"],
                                sc["ensemble"]["micro_f1"] - sc["best_single"]["micro_f1"],
                                sc["ensemble"]["auprc"], sc["best_single"]["auprc"],
                                sc["ensemble"]["auprc"] - sc["best_single"]["auprc"]])
        plain = evaluate(r["dir"], files["held"], "--no-decisions")
        decided = evaluate(r["dir"], files["held"])
        sub = work / f"submission-{name}.csv"
        relex_cli("predict", r["dir"], files["held_unlabelled"], "--output", sub, log=work / f"predict-{name}.log")
        check = check_submission(sub, files["held_unlabelled"], names)
        label = {"top": f"--top {args.top}", "greedy": "--select greedy",
                 "single": f"--config {best['trial_id']} (decisions only)"}[name]
        held_rows.append([label, len(sel["units"]), plain["micro_f1"], plain["auprc"],
                          decided["micro_f1"], decided["auprc"]])
        payload[name] = {"members": sel["units"], "honest": {k: sc[k] for k in ("rows", "ensemble", "best_single")},
                         "in_sample": {"ensemble": sc["ensemble_in_sample"], "best_single": sc["best_single_in_sample"]},
                         "decisions_report": r["info"]["decisions"].get("report"),
                         "held_out": {"plain": plain, "with_decisions": decided}, "submission": check,
                         "ensemble_s": r["ensemble_s"]}
        print(f"{label}: {members}; submission {'valid' if check['valid'] else 'INVALID ' + str(check['checks'])}"
              f" ({check['rows']} rows)", flush=True)

    rows_honest = reports["top"]["info"]["scores"]["rows"]
    print(f"\nhonest scores (relex ensemble: chosen on one half of the {rows_honest} validation rows, "
          "scored on the other, both ways; plain weighted average):")
    print(C.table(honest_rows, ["ensemble", "members", "ens F1", "best single F1", "Δ F1",
                                "ens AUPRC", "best single AUPRC", "Δ AUPRC"]))
    print(f"\nheld-out file ({args.held_out} KLUE rows the sweep never used; relex evaluate):")
    print(C.table(held_rows, ["model", "members", "F1", "AUPRC", "F1 + decisions", "AUPRC + decisions"]))
    met = {n: payload[n]["honest"]["ensemble"]["micro_f1"] >= payload[n]["honest"]["best_single"]["micro_f1"]
           for n in ("top", "greedy")}
    valid = all(payload[n]["submission"]["valid"] for n in ("top", "greedy", "single"))
    print(f"\ntarget: ensemble's honest micro-F1 ≥ best single trial's -> "
          + "; ".join(f"{n}: {'met' if ok else 'NOT met'}" for n, ok in met.items())
          + f"; submissions valid: {valid}")
    payload.update(target_met=met, submissions_valid=valid)
    return payload


if __name__ == "__main__":
    sys.exit(main())

"""``relex ensemble``: choose an ensemble of a sweep's trials, fit decisions, report honest scores.

The ensemble directory it writes is a model wherever one is taken: ``relex evaluate`` /
``relex predict`` (:mod:`relex.inference`) and :func:`relex.load` read it through
:class:`relex.analysis.ensemble.Ensemble` and print which decisions were applied.
"""

from __future__ import annotations

import argparse

from relex.metrics import PRIMARY, SELECTION_METRICS
from relex.cli_args import positive_int


# ----------------------------------------------------------------------------- relex ensemble
def add_ensemble_args(p: argparse.ArgumentParser) -> None:
    p.usage = ("relex ensemble SWEEP_DIR --out DIR [--top K | --select greedy | --config ID] "
               "[--metric micro_f1|auprc]")
    p.add_argument("sweep_dir", metavar="SWEEP_DIR", help="a sweep directory (e.g. artifacts/smoke)")
    p.add_argument("--out", required=True, metavar="DIR", help="the ensemble directory to write")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--top", type=positive_int, metavar="K",
                     help="the K best trials (fold sweeps: configurations), equal weights")
    how.add_argument("--select", choices=("greedy",), default=None,
                     help="greedy forward selection with replacement (Caruana et al. 2004; the default)")
    how.add_argument("--config", metavar="ID",
                     help="one trial, or in a fold sweep one configuration's folds (e.g. t002)")
    p.add_argument("--metric", choices=SELECTION_METRICS, default=PRIMARY,
                   help=f"what the selection maximises (default: {PRIMARY})")
    p.add_argument("--rounds", type=positive_int, default=25, metavar="N",
                   help="greedy selection rounds (default: 25)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the split of the validation rows used for the honest scores")
    for flag, text in (("temperature", "temperature scaling"),
                       ("bias", "a no_relation bias maximising micro-F1"),
                       ("type-constraint", "no mass for labels never seen with a row's entity-type pair")):
        p.add_argument(f"--{flag}", dest=flag.replace("-", "_"), action=argparse.BooleanOptionalAction,
                       default=True, help=f"fit {text} (default: on)")


def _member_summary(ens) -> str:
    units = ens.info["selection"]["units"]
    return ", ".join(f"{u} {w:.2f}" for u, w in sorted(units.items(), key=lambda kv: -kv[1]))


def print_report(ens, out_dir) -> None:
    sel, sc = ens.info["selection"], ens.info["scores"]
    method = {"greedy": f"greedy selection on {sel['metric']}, at most {sel['rounds']} rounds",
              "top": f"top {sel['k']} by {sel['metric']}",
              "config": "one chosen"}[sel["method"]]
    kind = "configurations" if sel["unit"].startswith("configuration") else "trials"
    print(f"ensemble of {len(sel['units'])} {kind} ({len(ens.members)} checkpoints) from "
          f"{sel['sweep']} ({method}): {_member_summary(ens)}")
    for note in sel.get("notes") or []:
        print(f"note: {note}")
    print(f"honest scores on {sc['rows']} {'out-of-fold' if kind == 'configurations' else 'validation'} "
          f"rows (chosen on one half, scored on the other, both ways):")
    print(f"  {'':<22}{'micro-F1':>9}{'AUPRC':>8}")
    for label, key in (("ensemble", "ensemble"), ("best single " + kind[:-1], "best_single")):
        print(f"  {label:<22}{sc[key]['micro_f1']:>9.2f}{sc[key]['auprc']:>8.2f}")
    best = sc["best_single_in_sample"]
    print(f"  (in-sample, for reference: ensemble {sc['ensemble_in_sample']['micro_f1']:.2f}, "
          f"best single {best['id']} {best['micro_f1']:.2f})")
    d = ens.decisions
    print("decisions (fitted on all rows; effects cross-fitted like the scores):")
    print(f"  {'stage':<30}{'micro-F1':>9}{'AUPRC':>8}{'NLL':>8}{'ECE':>7}")
    shown = {"none": "none", "temperature": f"+ temperature {d.temperature or 0:.3f}",
             "type_constraint": "+ entity-type-pair constraint",
             "no_relation_bias": f"+ {ens.negative_label} bias {d.no_relation_bias or 0:+.3f}"}
    for r in d.report:
        print(f"  {shown[r['stage']]:<30}{r['micro_f1']:>9.2f}{r['auprc']:>8.2f}{r['nll']:>8.3f}{r['ece']:>7.3f}")
    from relex.analysis.decisions import ECE_TRUST_LIMIT

    trust = "trusted" if d.validation_ece is not None and d.validation_ece <= ECE_TRUST_LIMIT else "not trusted"
    print(f"label-shift EM (relex predict --label-shift): off by default; validation ECE "
          f"{d.validation_ece:.3f}, {trust} (limit {ECE_TRUST_LIMIT})")
    print(f"wrote {out_dir}/ensemble.json")


def ensemble(args: argparse.Namespace) -> int:
    from relex.analysis.ensemble import build

    method = "top" if args.top else "config" if args.config else "greedy"
    ens = build(args.sweep_dir, method=method, metric=args.metric, k=args.top or 0,
                rounds=args.rounds, config=args.config, seed=args.seed,
                temperature=args.temperature, bias=args.bias, type_constraint=args.type_constraint)
    out = ens.save(args.out)
    print_report(ens, out)
    return 0

"""``relex evaluate``, ``relex predict`` and ``relex export``: commands on a trained model.

MODEL is anything :func:`relex.api.load` takes: a checkpoint, a ``relex train --out`` run
directory (its ``best/`` is used) or an ensemble directory. Heavy imports happen inside the run
functions only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from relex.errors import RelexError
from relex.cli_args import one_line_errors, positive_int, warn_skipped

MODEL_HELP = "a checkpoint directory, a `relex train --out` directory (its best/) or an ensemble directory"


def _inference_args(p: argparse.ArgumentParser) -> None:
    from relex.config import AMP_MODES

    p.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                   help="inference batch size (default: the checkpoint's eval_batch_size)")
    p.add_argument("--amp", choices=AMP_MODES, default=None,
                   help="inference precision (default: float32, whatever the training run used, "
                        "so the numbers match its validation scores on any machine)")


def _decision_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-decisions", action="store_true",
                   help="ensembles: the plain weighted average, without the decisions `relex "
                        "ensemble` fitted (temperature, no_relation bias, type constraint)")
    p.add_argument("--label-shift", action="store_true",
                   help="ensembles: adapt to the file's class prior by EM (Saerens et al. 2002); "
                        "warns when validation calibration is too poor to trust it")


# ----------------------------------------------------------------------------- evaluate / predict
def add_evaluate_args(p: argparse.ArgumentParser) -> None:
    p.usage = ("relex evaluate MODEL FILE [--json] [--per-class] [--skip-bad-rows] [--no-decisions] "
               "[--amp MODE]")
    one_line_errors(p)
    p.add_argument("checkpoint", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("file", metavar="FILE", help="labelled data file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--per-class", action="store_true", help="add per-class precision/recall/F1")
    p.add_argument("--skip-bad-rows", action="store_true", help="drop invalid rows instead of stopping")
    _inference_args(p)
    _decision_args(p)


def add_predict_args(p: argparse.ArgumentParser) -> None:
    p.usage = ("relex predict MODEL FILE --output preds.csv [--skip-bad-rows] [--repair] "
               "[--no-decisions] [--label-shift] [--amp MODE]")
    one_line_errors(p)
    p.add_argument("checkpoint", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("file", metavar="FILE", help="data file; labels are not needed")
    p.add_argument("--output", "-o", required=True, metavar="CSV",
                   help="submission CSV to write: id, pred_label, probs")
    p.add_argument("--skip-bad-rows", action="store_true",
                   help="drop invalid rows instead of stopping (the submission then lacks their "
                        "ids; how many is printed)")
    p.add_argument("--repair", action="store_true",
                   help="predict every row through the repairs of `relex data fix` (one "
                        "submission row per input id)")
    _inference_args(p)
    _decision_args(p)


def _infer(args: argparse.Namespace, *, require_labels: bool):
    """Load the model, read the file under its label set; return (ds, probs, model)."""
    from relex import api
    from relex.data import read_dataset

    model = api.load(args.checkpoint, amp=args.amp)
    decisions = _decision_options(args, model)
    labels = model.labels()
    if getattr(args, "repair", False):
        from relex.data.repair import read_repaired

        ds, repair = read_repaired(Path(args.file), labels=labels, negative=labels.negative,
                                   skip_bad_rows=args.skip_bad_rows, require_labels=require_labels)
        if repair.changes:
            print(f"relex: {args.file}: {repair.summary()}, as `relex data fix` repairs them",
                  file=sys.stderr)
    else:
        ds = read_dataset(Path(args.file), labels=labels, negative=labels.negative,
                          skip_bad_rows=args.skip_bad_rows, require_labels=require_labels)
    warn_skipped(ds)
    if len(ds) == 0:
        raise RelexError(f"{args.file}: no rows to process")
    probs = model.predict_proba(ds, batch_size=args.batch_size, **decisions)
    if decisions:
        _say_decisions(model)
    return ds, probs, model


def _decision_options(args: argparse.Namespace, model) -> dict[str, bool]:
    """predict_proba's decision options: an ensemble's from the flags; a checkpoint has none,
    so the flags are a user mistake there."""
    from relex import api

    if isinstance(model, api.EnsemblePredictor):
        return {"decisions": not args.no_decisions, "label_shift": args.label_shift}
    if args.no_decisions or args.label_shift:
        flag = "--label-shift" if args.label_shift else "--no-decisions"
        raise RelexError(f"{flag}: {args.checkpoint} is a checkpoint, which has no fitted "
                         "decisions; build an ensemble directory with relex ensemble")
    return {}


def _say_decisions(model) -> None:
    """Which decisions shaped an ensemble's probabilities, on stderr (a submission's provenance)."""
    print(f"ensemble of {len(model.ensemble.members)} checkpoints; decisions applied: "
          f"{'; '.join(model.applied) if model.applied else 'none'}", file=sys.stderr)
    for w in model.warnings:
        print(f"relex: warning: {w}", file=sys.stderr)


def evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from relex import metrics as M

    ds, probs, model = _infer(args, require_labels=True)
    y = np.asarray(ds.label_ids())
    if (y < 0).any():
        raise RelexError(f"{args.file}: {int((y < 0).sum())} rows have no label; evaluate needs a labelled file")
    m = M.compute(y, probs, list(model.label_names), model.negative_label, per_class=args.per_class)
    ties = M.tie_effect(y, probs)
    m["auprc_tie_shift"] = ties["shift"]
    if args.json:
        out = {"checkpoint": str(args.checkpoint), "file": str(args.file), **m}
        print(json.dumps(out, ensure_ascii=False))
        return 0
    print(f"{args.file}: {m['n']} examples, model {args.checkpoint}")
    print(f"micro_f1  {m['micro_f1']:.2f}")
    print(f"auprc     {m['auprc']:.2f}" + (f"  (over {m['auprc_classes']} classes present)"
                                            if m["auprc_skipped"] else ""))
    print(f"mean_ap   {m['mean_ap']:.2f}  (tie-free average precision, beside KLUE's AUPRC)")
    print(f"accuracy  {m['accuracy']:.2f}")
    if abs(ties["shift"]) >= M.TIE_WARN_POINTS:
        print(f"warning: tied scores move AUPRC by {ties['shift']:+.2f} points (with ties broken at "
              f"random it is {ties['auprc_tie_broken']:.2f}); trust mean_ap", file=sys.stderr)
    if args.per_class:
        _per_class_table(m["per_class"])
    return 0


def _per_class_table(per_class: dict[str, dict[str, float]]) -> None:
    width = max(len("label"), *(len(k) for k in per_class))
    print(f"{'label':<{width}}  {'precision':>9}  {'recall':>7}  {'f1':>7}  {'support':>7}")
    for name, r in per_class.items():
        print(f"{name:<{width}}  {r['precision']:9.2f}  {r['recall']:7.2f}  {r['f1']:7.2f}  {r['support']:7d}")


def predict(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.is_dir():
        raise RelexError(f"--output {out}: is a directory; give a CSV file name")
    ds, probs, model = _infer(args, require_labels=False)
    import pandas as pd

    from relex import api
    from relex.io_utils import atomic_write_text

    names = model.label_names
    frame = pd.DataFrame({
        "id": ds.frame["id"].astype(str).tolist(),
        "pred_label": [names[i] for i in probs.argmax(axis=1)],
        "probs": [str([float(x) for x in row]) for row in probs],
    })
    atomic_write_text(out, frame.to_csv(index=False))
    print(f"wrote {len(frame)} predictions to {out} ({len(names)} labels)", file=sys.stderr)
    if not isinstance(model, api.EnsemblePredictor):
        print("decisions applied: none (a single checkpoint; relex ensemble fits decisions)",
              file=sys.stderr)
    if ds.skipped:
        ids = [b.id if b.id is not None else f"row {b.row}" for b in ds.bad_rows]
        shown = ", ".join(ids[:10]) + (f", ... ({len(ids) - 10} more)" if len(ids) > 10 else "")
        print(f"relex: the submission lacks {ds.skipped} of the {len(frame) + ds.skipped} input "
              f"ids (bad rows skipped: {shown}); `relex predict --repair` predicts the "
              f"repairable ones", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- export
def add_export_args(p: argparse.ArgumentParser) -> None:
    p.usage = "relex export CHECKPOINT --onnx OUT.onnx"
    one_line_errors(p)
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a checkpoint directory or a `relex train --out` directory (its best/)")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx",
                   help="write the encoder and head as one ONNX graph (dynamic batch and sequence "
                        "axes; outputs logits and probs); needs pip install 'relex[onnx]'")


def export(args: argparse.Namespace) -> int:
    from relex import api
    from relex.export import export_onnx

    out = Path(args.onnx)
    if out.is_dir():
        raise RelexError(f"--onnx {out}: is a directory; give a file name such as model.onnx")
    if api.is_ensemble(args.checkpoint):
        raise RelexError(f"{args.checkpoint}: an ensemble directory; export takes one checkpoint")
    info = export_onnx(api.checkpoint_dir(args.checkpoint), out)
    print(f"wrote {out} (inputs {', '.join(info['inputs'])}; outputs logits, probs over "
          f"{len(info['labels'])} labels)", file=sys.stderr)
    return 0

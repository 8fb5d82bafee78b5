"""KLUE-RE metrics, exactly as the KLUE benchmark defines them (scikit-learn underneath).

* ``micro_f1``: micro-averaged F1 over every label except the negative one, ×100.
* ``auprc``: mean over classes of the area (trapezoidal ``sklearn.metrics.auc``) under each
  one-vs-rest precision-recall curve of the class's probability column, ×100.
* ``accuracy``: fraction of argmax predictions equal to gold, ×100.

Classes absent from gold. KLUE's reference code gives NaN for a class with no gold example (its
precision-recall curve is undefined) and so a NaN AUPRC overall. relex instead averages AUPRC over
the classes that have at least one gold example, reports how many that was in
``auprc_classes``, and lists the skipped ones in ``auprc_skipped``. When every class is present
(the full KLUE sets) this is identical to KLUE's number. If no class has a gold example (an empty
set) every metric raises ``ValueError``: a NaN never reaches a leaderboard.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

# sklearn loads inside the functions: importing this module for the names below stays cheap.
# The figures of one evaluation, named as every report, table and Parquet file names them.
EVAL_METRICS = ("micro_f1", "auprc", "accuracy", "val_loss")


def micro_f1(labels: np.ndarray, preds: np.ndarray, num_classes: int, negative_id: int | None) -> float:
    from sklearn.metrics import f1_score

    positive = [i for i in range(num_classes) if i != negative_id]
    return float(f1_score(labels, preds, average="micro", labels=positive, zero_division=0) * 100.0)


def auprc(labels: np.ndarray, probs: np.ndarray) -> tuple[float, list[int]]:
    """Mean per-class area under the PR curve ×100, and the class ids skipped (no gold example)."""
    from sklearn.metrics import auc, precision_recall_curve

    areas, skipped = [], []
    for c in range(probs.shape[1]):
        target = labels == c
        if not target.any():
            skipped.append(c)
            continue
        precision, recall, _ = precision_recall_curve(target, probs[:, c])
        areas.append(auc(recall, precision))
    if not areas:
        raise ValueError("AUPRC is undefined: no class has a gold example")
    return float(np.mean(areas) * 100.0), skipped


def compute(
    labels: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    label_names: Sequence[str],
    negative: str | None = "no_relation",
    *,
    per_class: bool = True,
) -> dict[str, Any]:
    """KLUE-RE metrics for gold ids ``labels`` (n) and probabilities ``probs`` (n × C).

    ``negative`` names the label excluded from micro-F1 (``None``: exclude nothing). Returns
    ``micro_f1``, ``auprc``, ``accuracy`` on a 0–100 scale, ``auprc_classes``, ``auprc_skipped``
    (label names), ``n``, and with ``per_class`` a ``per_class`` dict of
    precision/recall/f1 (×100) and support per label name.
    """
    from sklearn.metrics import accuracy_score, classification_report

    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    names = list(label_names)
    if p.ndim != 2 or p.shape[0] != y.shape[0] or p.shape[1] != len(names):
        raise ValueError(f"probs must be (n={y.shape[0]}, C={len(names)}), got {p.shape}")
    if y.size == 0:
        raise ValueError("cannot compute metrics on an empty set")
    if y.min() < 0 or y.max() >= len(names):
        raise ValueError("gold label ids out of range")
    neg_id = names.index(negative) if negative is not None and negative in names else None
    preds = p.argmax(axis=1)
    area, skipped = auprc(y, p)
    out: dict[str, Any] = {
        "micro_f1": micro_f1(y, preds, len(names), neg_id),
        "auprc": area,
        "accuracy": float(accuracy_score(y, preds) * 100.0),
        "auprc_classes": len(names) - len(skipped),
        "auprc_skipped": [names[i] for i in skipped],
        "n": int(y.size),
    }
    if per_class:
        rep = classification_report(
            y, preds, labels=list(range(len(names))), target_names=names, output_dict=True, zero_division=0
        )
        out["per_class"] = {
            name: {
                "precision": rep[name]["precision"] * 100.0,
                "recall": rep[name]["recall"] * 100.0,
                "f1": rep[name]["f1-score"] * 100.0,
                "support": int(rep[name]["support"]),
            }
            for name in names
        }
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def mean_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of gold ids ``labels`` under ``logits`` (n × C), in float64
    (``val_loss``: no label smoothing or class weights, whatever the training loss was)."""
    z = np.asarray(logits, dtype=np.float64)
    zmax = z.max(axis=1)
    lse = zmax + np.log(np.exp(z - zmax[:, None]).sum(axis=1))
    return float(np.mean(lse - z[np.arange(len(z)), np.asarray(labels)]))

"""KLUE-RE metrics, exactly as the KLUE benchmark defines them (scikit-learn's definitions,
counted with numpy: scikit-learn's input checks cost ~10 ms a call, minutes in a report of 1,000
trials; the suite checks every figure against scikit-learn's).

* ``micro_f1``: micro-averaged F1 over every label except the negative one, ×100.
* ``auprc``: mean over classes of the area (trapezoidal ``sklearn.metrics.auc``) under each
  one-vs-rest precision-recall curve of the class's probability column, ×100.
* ``accuracy``: fraction of argmax predictions equal to gold, ×100.
* ``mean_ap``: not a KLUE metric; the tie-free companion of ``auprc``: the mean over classes of
  scikit-learn's ``average_precision_score`` (a step sum over thresholds, no interpolation), ×100.

Why both. KLUE's trapezoid draws a straight line between precision-recall points, and a block of
tied scores is one point: the line across it credits the whole block with the precision of its
best end. A text-blind predictor that scores each row by its entity-type pair alone (a few dozen
distinct scores) gets 39.4 KLUE-AUPRC on KLUE-RE dev but 11.8 mean average precision.
:func:`tie_effect` measures how much ties move AUPRC for a given set of scores.

Classes absent from gold. KLUE's reference code gives NaN for a class with no gold example (its
precision-recall curve is undefined) and so a NaN AUPRC overall. relex instead averages AUPRC over
the classes that have at least one gold example, reports how many that was in
``auprc_classes``, and lists the skipped ones in ``auprc_skipped``. When every class is present
(the full KLUE sets) this is identical to KLUE's number. If no class has a gold example (an empty
set) every metric raises ``ValueError``: a NaN never reaches a leaderboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from relex.config import NEGATIVE_LABEL


# KLUE-AUPRC points that ties may move before the report and `evaluate` warn about it
TIE_WARN_POINTS = 0.5



def confusion(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``[gold, predicted]`` over ids 0..C-1 (scikit-learn's ``confusion_matrix`` with
    those labels: a row whose gold id is outside them is not counted)."""
    y, p = np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    keep = (y >= 0) & (y < num_classes) & (p >= 0) & (p < num_classes)
    return np.bincount(y[keep] * num_classes + p[keep],
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _f1(tp, true, predicted):
    """scikit-learn's F-score (beta 1, zero_division 0): 2·tp / (true + predicted)."""
    tp, denom = np.asarray(tp, dtype=np.float64), np.asarray(true + predicted, dtype=np.float64)
    return np.divide(2.0 * tp, denom, out=np.zeros_like(denom), where=denom > 0)


def micro_f1(labels: np.ndarray, preds: np.ndarray, num_classes: int, negative_id: int | None) -> float:
    """Micro-F1 over every class but the negative one ×100 (scikit-learn's ``f1_score``, micro,
    with those labels), counted from the confusion matrix."""
    cm = confusion(labels, preds, num_classes)
    positive = np.arange(num_classes) != (-1 if negative_id is None else negative_id)
    tp = cm.diagonal()[positive].sum()
    return float(_f1(tp, cm[positive, :].sum(), cm[:, positive].sum()) * 100.0)


def per_class_scores(labels: np.ndarray, preds: np.ndarray, names: Sequence[str]) -> dict[str, dict]:
    """Precision, recall and F1 (×100) and support of each class (scikit-learn's
    ``classification_report``, zero_division 0)."""
    cm = confusion(labels, preds, len(names))
    tp, true, predicted = cm.diagonal(), cm.sum(axis=1), cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros(len(names)), where=predicted > 0)
    recall = np.divide(tp, true, out=np.zeros(len(names)), where=true > 0)
    f1 = _f1(tp, true, predicted)
    return {name: {"precision": float(precision[i] * 100.0), "recall": float(recall[i] * 100.0),
                   "f1": float(f1[i] * 100.0), "support": int(true[i])}
            for i, name in enumerate(names)}


def _pr_curve(target: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One class's precision-recall curve, point for point scikit-learn's
    ``precision_recall_curve`` (recall decreasing, the (0, 1) end added), for a target with at
    least one positive. Written out because scikit-learn's input checks cost ~10 ms a call: a
    report of 1,000 trials × 30 classes spent minutes in them."""
    scores = np.asarray(scores)
    order = np.argsort(scores, kind="mergesort")[::-1]
    ranked = np.asarray(target, dtype=np.float64)[order]
    ordered = scores[order]
    last_of_tie = np.flatnonzero(np.append(ordered[1:] != ordered[:-1], True))
    tps = np.cumsum(ranked)[last_of_tie]
    precision = tps / (last_of_tie + 1)  # predicted positives at each threshold
    recall = tps / tps[-1]
    return np.append(precision[::-1], 1.0), np.append(recall[::-1], 0.0)


def _trapezoid(precision: np.ndarray, recall: np.ndarray) -> float:
    """KLUE's rule: scikit-learn's ``auc`` of the curve (recall decreasing), 0–1."""
    return float(np.sum((recall[:-1] - recall[1:]) * (precision[:-1] + precision[1:]) / 2.0))


def _step_sum(precision: np.ndarray, recall: np.ndarray) -> float:
    """scikit-learn's ``average_precision_score`` of the curve: the step sum, 0–1."""
    return float(max(0.0, np.sum((recall[:-1] - recall[1:]) * precision[:-1])))


def _area(target: np.ndarray, scores: np.ndarray) -> float:
    """Trapezoidal area under one class's precision-recall curve, 0–1."""
    return _trapezoid(*_pr_curve(target, scores))


def _class_curves(labels: np.ndarray, probs: np.ndarray) -> tuple[list[float], list[float], list[int]]:
    """KLUE's area and the average precision (0–1) of each class with a gold example, both from
    its one precision-recall curve (the sort is the cost), and the class ids skipped."""
    areas, aps, skipped = [], [], []
    for c in range(probs.shape[1]):
        target = labels == c
        if not target.any():
            skipped.append(c)
            continue
        precision, recall = _pr_curve(target, probs[:, c])
        areas.append(_trapezoid(precision, recall))
        aps.append(_step_sum(precision, recall))
    return areas, aps, skipped


def _mean_percent(per_class: list[float], what: str) -> float:
    """The mean of a per-class figure (0–1) ×100, over the classes with a gold example."""
    if not per_class:
        raise ValueError(f"{what} is undefined: no class has a gold example")
    return float(np.mean(per_class) * 100.0)


def auprc(labels: np.ndarray, probs: np.ndarray) -> tuple[float, list[int]]:
    """Mean per-class area under the PR curve ×100, and the class ids skipped (no gold example)."""
    areas, _, skipped = _class_curves(labels, probs)
    return _mean_percent(areas, "AUPRC"), skipped


def mean_ap(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean over classes with a gold example of ``average_precision_score`` ×100 (tie-free)."""
    return _mean_percent(_class_curves(labels, probs)[1], "mean average precision")


def has_ties(probs: np.ndarray) -> bool:
    """Does any class column hold a score twice? Without, ties move no AUPRC."""
    ordered = np.sort(np.asarray(probs), axis=0)
    return bool((ordered[1:] == ordered[:-1]).any())


def _tied_share(column: np.ndarray) -> float:
    """Share of the rows whose score equals another row's score."""
    _, inverse, counts = np.unique(column, return_inverse=True, return_counts=True)
    return float((counts[inverse] > 1).mean())


def tie_effect(labels: Sequence[int] | np.ndarray, probs: np.ndarray, *, draws: int = 5,
               seed: int = 0) -> dict[str, float]:
    """How much tied scores move KLUE's AUPRC.

    Returns ``auprc`` (KLUE's), ``auprc_tie_broken`` (the same area with every tie broken at
    random, averaged over ``draws`` orders: what the scores are worth as a ranking), ``shift``
    (the difference, in AUPRC points) and ``tied_share`` (the share of scores, over all class
    columns, equal to another row's score in the same column). Only columns with ties are
    recomputed; without any, ``shift`` is 0.
    """
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    shares, areas, broken = [], [], []
    for c in range(p.shape[1]):
        share = _tied_share(p[:, c])
        shares.append(share)
        target = y == c
        if not target.any():
            continue  # skipped by AUPRC too
        area = _area(target, p[:, c])
        areas.append(area)
        if share == 0.0:
            broken.append(area)
            continue
        redone = []
        for _ in range(draws):
            order = np.lexsort((rng.random(len(y)), p[:, c]))  # by score, ties in random order
            ranks = np.empty(len(y))
            ranks[order] = np.arange(len(y))
            redone.append(_area(target, ranks))
        broken.append(float(np.mean(redone)))
    if not areas:
        raise ValueError("AUPRC is undefined: no class has a gold example")
    area, tie_broken = float(np.mean(areas) * 100.0), float(np.mean(broken) * 100.0)
    return {"auprc": area, "auprc_tie_broken": tie_broken, "shift": area - tie_broken,
            "tied_share": float(np.mean(shares))}


def compute(
    labels: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    label_names: Sequence[str],
    negative: str | None = NEGATIVE_LABEL,
    *,
    per_class: bool = True,
) -> dict[str, Any]:
    """KLUE-RE metrics for gold ids ``labels`` (n) and probabilities ``probs`` (n × C).

    ``negative`` names the label excluded from micro-F1 (``None``: exclude nothing). Returns
    ``micro_f1``, ``auprc``, ``mean_ap``, ``accuracy`` on a 0–100 scale, ``auprc_classes``, ``auprc_skipped``
    (label names), ``n``, and with ``per_class`` a ``per_class`` dict of
    precision/recall/f1 (×100) and support per label name.
    """
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
    areas, aps, skipped = _class_curves(y, p)  # one curve per class for both
    out: dict[str, Any] = {
        "micro_f1": micro_f1(y, preds, len(names), neg_id),
        "auprc": _mean_percent(areas, "AUPRC"),
        "mean_ap": _mean_percent(aps, "mean average precision"),
        "accuracy": float(np.mean(preds == y) * 100.0),
        "auprc_classes": len(names) - len(skipped),
        "auprc_skipped": [names[i] for i in skipped],
        "n": int(y.size),
    }
    if per_class:
        out["per_class"] = per_class_scores(y, preds, names)
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


def accuracy(labels: np.ndarray, probs: np.ndarray) -> float:
    """Fraction of argmax predictions equal to gold, ×100."""
    return float(np.mean(np.asarray(probs).argmax(axis=1) == np.asarray(labels)) * 100.0)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of gold ids under probabilities (clipped away from 0)."""
    p = np.clip(np.asarray(probs, dtype=np.float64)[np.arange(len(labels)), np.asarray(labels)], 1e-12, None)
    return float(-np.mean(np.log(p)))


# ----------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class Metric:
    """One figure of an evaluation, as every table, report, tracker and decision names it.

    ``score(labels, probs, negative_id)`` computes it from gold ids and probabilities;
    ``needs_probs`` says whether it reads the probabilities beyond their argmax.
    """
    name: str
    title: str  # table headers
    higher_is_better: bool
    needs_probs: bool
    score: Callable[[np.ndarray, np.ndarray, int | None], float]
    digits: int = 2
    long_title: str = ""  # the report's wording where a short header would be ambiguous
    column: bool = True  # a leaderboard column
    selectable: bool = False  # `relex ensemble --metric` may choose members by it
    effect: bool = False  # the report estimates each setting's effect on it

    @property
    def mode(self) -> str:
        """"max" or "min": which end of the scale is better (ASHA's and Ray's word)."""
        return "max" if self.higher_is_better else "min"

    @property
    def heading(self) -> str:
        return self.long_title or self.title

    def format(self, value: Any) -> str:
        """``value`` as tables print it; "-" for a missing or non-finite one."""
        try:
            f = float(value)
        except (TypeError, ValueError):
            return "-"
        return f"{f:.{self.digits}f}" if np.isfinite(f) else "-"

    def better(self, a: float, b: float) -> bool:
        """Is ``a`` strictly better than ``b``?"""
        return a > b if self.higher_is_better else a < b

    def sort_key(self, value: float) -> float:
        """Ascending order of this key is best first."""
        return -value if self.higher_is_better else value


REGISTRY: dict[str, Metric] = {m.name: m for m in (
    Metric("micro_f1", "micro-F1", True, False, selectable=True, effect=True,
           score=lambda y, p, neg: micro_f1(y, np.asarray(p).argmax(axis=1), np.asarray(p).shape[1], neg)),
    Metric("auprc", "AUPRC", True, True, long_title="AUPRC (KLUE)", selectable=True, effect=True,
           score=lambda y, p, neg: auprc(y, p)[0]),
    Metric("mean_ap", "mean AP", True, True, effect=True, score=lambda y, p, neg: mean_ap(y, p)),
    Metric("accuracy", "accuracy", True, False, score=lambda y, p, neg: accuracy(y, p)),
    Metric("val_loss", "val loss", False, True, digits=4, column=False,
           score=lambda y, p, neg: nll(p, y)),
)}

# The figures of one evaluation, named as every report, table and Parquet file names them.
EVAL_METRICS = tuple(REGISTRY)
# What a sweep ranks trials by and keeps each trial's best checkpoint for.
PRIMARY = "micro_f1"
COLUMN_METRICS = tuple(m for m, spec in REGISTRY.items() if spec.column)
SELECTION_METRICS = tuple(m for m, spec in REGISTRY.items() if spec.selectable)
EFFECT_METRICS = tuple(m for m, spec in REGISTRY.items() if spec.effect)


def metric(name: str) -> Metric:
    """The registry's entry for ``name`` (KeyError naming the known ones otherwise)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}: one of {', '.join(REGISTRY)}") from None

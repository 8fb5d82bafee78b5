"""Decisions fitted on validation (or out-of-fold) probabilities, applied at prediction time.

Each decision is switchable and is applied, in this order, to the probabilities of a checkpoint
or an ensemble:

1. **temperature scaling** — ``softmax(log p / T)`` with ``T`` minimising the validation NLL
   (Guo et al. 2017). It never changes the argmax; it makes the probabilities (and so the
   submission's ``probs`` column and AUPRC ties) better calibrated.
2. **entity-type-pair constraint** — a label never seen with a (subject type, object type) pair
   in the training data gets no probability mass for rows of that pair; the negative label is
   always allowed, and rows of a pair never seen in training are left as they are.
3. **label-shift adaptation** (off unless asked for at prediction time) — EM re-estimation of
   the class prior of an unlabelled file (Saerens, Latinne & Decaestecker 2002). It is only as
   good as the calibration of the probabilities it starts from, so the validation expected
   calibration error is stored and a warning is given when it is above
   :data:`ECE_TRUST_LIMIT`.
4. **no_relation bias** — a constant added to the negative label's log-probability, chosen to
   maximise validation micro-F1 (exactly: every breakpoint of the piecewise-constant F1 is
   tried; the midpoint of the best interval is kept, the one nearest 0 on ties).

All functions work on numpy arrays (n × C probabilities, rows summing to 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from relex.metrics import nll

ECE_TRUST_LIMIT = 0.05  # top-label ECE above this: EM label-shift estimates are not trusted
_EPS = 1e-12
DECISION_NAMES = ("temperature", "type_constraint", "label_shift", "no_relation_bias")


def _log(probs: np.ndarray) -> np.ndarray:
    """log p, with −inf where p is exactly 0 (a label the type constraint ruled out stays out)."""
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(probs, dtype=np.float64))


def _softmax(scores: np.ndarray) -> np.ndarray:
    z = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _renormalize(probs: np.ndarray) -> np.ndarray:
    return probs / probs.sum(axis=1, keepdims=True)


# ------------------------------------------------------------------------ temperature
def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    return _softmax(_log(probs) / float(temperature))


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The temperature in [0.05, 20] minimising the NLL of ``softmax(log p / T)``."""
    from scipy.optimize import minimize_scalar

    logp = _log(probs)
    y = np.asarray(y)
    res = minimize_scalar(lambda t: nll(_softmax(logp / math.exp(t)), y),
                          bounds=(math.log(0.05), math.log(20.0)), method="bounded",
                          options={"xatol": 1e-5})
    return float(math.exp(res.x))


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE: the mean |confidence − accuracy| over equal-width confidence bins,
    weighted by the rows in each bin."""
    p = np.asarray(probs, dtype=np.float64)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == np.asarray(y)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            ece += m.mean() * abs(conf[m].mean() - correct[m].mean())
    return float(ece)


# -------------------------------------------------------------------- type constraint
TypePairs = dict[tuple[str, str], frozenset[int]]


def fit_type_pairs(subj_types: Sequence[str], obj_types: Sequence[str], label_ids: Sequence[int]) -> TypePairs:
    """For every (subject type, object type) pair of the training rows, the label ids seen
    with it (unlabelled rows, id < 0, are ignored)."""
    seen: dict[tuple[str, str], set[int]] = {}
    for s, o, y in zip(subj_types, obj_types, label_ids):
        if int(y) >= 0:
            seen.setdefault((str(s), str(o)), set()).add(int(y))
    return {k: frozenset(v) for k, v in seen.items()}


def type_mask(pairs: TypePairs, subj_types: Sequence[str], obj_types: Sequence[str],
              n_labels: int, negative_id: int) -> np.ndarray:
    """Boolean (n × C): True where a row's label is allowed. Rows whose pair never occurred in
    training allow everything; the negative label is always allowed."""
    mask = np.ones((len(subj_types), n_labels), dtype=bool)
    for i, key in enumerate(zip(map(str, subj_types), map(str, obj_types))):
        allowed = pairs.get(key)
        if allowed is not None:
            mask[i] = False
            mask[i, list(allowed)] = True
            mask[i, negative_id] = True
    return mask


def apply_type_constraint(probs: np.ndarray, mask: np.ndarray, negative_id: int) -> np.ndarray:
    out = np.where(mask, np.asarray(probs, dtype=np.float64), 0.0)
    dead = out.sum(axis=1) <= 0  # every allowed label had exactly zero mass
    out[dead, negative_id] = 1.0
    return _renormalize(out)


# ------------------------------------------------------------------------ label shift
def em_label_shift(probs: np.ndarray, source_prior: np.ndarray, *, max_iter: int = 200,
                   tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray, int]:
    """Saerens et al. (2002): re-estimate the class prior of unlabelled rows by EM.

    ``probs`` are posteriors under ``source_prior`` (the training/validation class frequencies).
    Returns (adjusted posteriors, estimated prior, iterations used).
    """
    p = np.asarray(probs, dtype=np.float64)
    src = np.clip(np.asarray(source_prior, dtype=np.float64), _EPS, None)
    prior = src.copy()
    adjusted = p
    for it in range(1, max_iter + 1):
        weighted = p * (prior / src)
        lost = weighted.sum(axis=1) <= 0  # all of a row's mass on classes whose prior fell to 0
        weighted[lost] = p[lost]
        adjusted = _renormalize(weighted)
        new = adjusted.mean(axis=0)
        if np.abs(new - prior).max() < tol:
            return adjusted, new, it
        prior = new
    return adjusted, prior, max_iter


# ------------------------------------------------------------------- no_relation bias
def apply_bias(probs: np.ndarray, bias: float, negative_id: int) -> np.ndarray:
    scores = _log(probs)
    scores[:, negative_id] += float(bias)
    return _softmax(scores)


def fit_bias(probs: np.ndarray, y: np.ndarray, negative_id: int) -> tuple[float, float]:
    """(bias, micro-F1 ×100 with it): the bias on the negative log-probability maximising
    micro-F1 over the rows.

    A row is predicted negative exactly when ``bias >= d`` with ``d`` = (best positive
    log-probability) − (negative log-probability), so F1 only changes at the rows' ``d``; each
    interval between consecutive distinct ``d`` is scored once, in O(n log n).
    """
    logp = _log(probs)
    y = np.asarray(y)
    pos = logp.copy()
    pos[:, negative_id] = -np.inf
    best_pos = pos.argmax(axis=1)
    # ±1e6 stands for "always" / "never" negative (a row whose positives were all ruled out)
    d = np.clip(pos[np.arange(len(y)), best_pos] - logp[:, negative_id], -1e6, 1e6)
    gold_pos = int((y != negative_id).sum())
    hit = ((best_pos == y) & (y != negative_id)).astype(np.int64)
    order = np.argsort(d, kind="stable")
    d_sorted, hit_sorted = d[order], hit[order]
    # distinct cut points; after passing cut j, the first `upto[j]` rows (by d) are negative
    uniq, first = np.unique(d_sorted, return_index=True)
    upto = np.append(first[1:], len(d_sorted))
    n = len(y)
    cum_hit = np.concatenate([[0], np.cumsum(hit_sorted)])
    tp_all = int(hit.sum())
    switched = np.concatenate([[0], upto])  # 0: bias below every d, nothing switched
    tp = tp_all - cum_hit[switched]
    predicted = n - switched
    denom = predicted + gold_pos
    f1 = np.where(denom > 0, 2.0 * tp / np.maximum(denom, 1), 0.0) * 100.0
    # interval j: bias in [lows[j], highs[j]); its representative is 0 when it lies inside,
    # else the midpoint (0.5 beyond the last cut for the two unbounded intervals)
    lows = np.concatenate([[-np.inf], uniq])
    highs = np.concatenate([uniq, [np.inf]])
    reps = np.where(np.isfinite(lows) & np.isfinite(highs), (lows + highs) / 2.0,
                    np.where(np.isfinite(lows), lows + 0.5, highs - 0.5))
    reps = np.where((lows <= 0.0) & (0.0 < highs), 0.0, reps)
    best = f1.max()
    candidates = np.flatnonzero(f1 >= best - 1e-9)
    j = candidates[np.argmin(np.abs(reps[candidates]))]
    return float(reps[j]), float(best)


# -------------------------------------------------------------------- the decision set
@dataclass
class Decisions:
    """Fitted decision settings; ``None`` (or an empty pair table) means the decision is off."""

    temperature: float | None = None
    no_relation_bias: float | None = None
    type_pairs: dict[tuple[str, str], tuple[str, ...]] | None = None  # by label name
    source_prior: list[float] | None = None  # class frequencies of the fitting rows (for EM)
    validation_ece: float | None = None  # after temperature: how far EM can be trusted
    report: list[dict[str, Any]] = field(default_factory=list)  # honest effect of each stage

    # ---- JSON
    def to_dict(self) -> dict[str, Any]:
        pairs = None
        if self.type_pairs is not None:
            pairs = [{"subj_type": s, "obj_type": o, "labels": list(v)}
                     for (s, o), v in sorted(self.type_pairs.items())]
        return {"temperature": self.temperature, "no_relation_bias": self.no_relation_bias,
                "type_pairs": pairs, "source_prior": self.source_prior,
                "validation_ece": self.validation_ece, "report": self.report}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Decisions":
        pairs = data.get("type_pairs")
        table = None
        if pairs is not None:
            table = {(p["subj_type"], p["obj_type"]): tuple(p["labels"]) for p in pairs}
        return cls(temperature=data.get("temperature"), no_relation_bias=data.get("no_relation_bias"),
                   type_pairs=table, source_prior=data.get("source_prior"),
                   validation_ece=data.get("validation_ece"), report=list(data.get("report") or []))

    # ---- application
    def apply(self, probs: np.ndarray, label_names: Sequence[str], negative: str, *,
              subj_types: Sequence[str] | None = None, obj_types: Sequence[str] | None = None,
              label_shift: bool = False) -> tuple[np.ndarray, list[str], list[str]]:
        """(probabilities, what was applied, warnings)."""
        names = list(label_names)
        neg = names.index(negative)
        p = np.asarray(probs, dtype=np.float64)
        applied: list[str] = []
        warnings: list[str] = []
        if self.temperature is not None:
            p = apply_temperature(p, self.temperature)
            applied.append(f"temperature {self.temperature:.3f}")
        if self.type_pairs is not None and subj_types is not None and obj_types is not None:
            index = {n: i for i, n in enumerate(names)}
            pairs = {k: frozenset(index[n] for n in v if n in index) for k, v in self.type_pairs.items()}
            mask = type_mask(pairs, subj_types, obj_types, len(names), neg)
            p = apply_type_constraint(p, mask, neg)
            applied.append(f"entity-type-pair constraint ({len(pairs)} pairs)")
        if label_shift:
            if self.source_prior is None:
                warnings.append("label-shift adaptation needs a fitted source prior; skipped")
            else:
                if self.validation_ece is None or self.validation_ece > ECE_TRUST_LIMIT:
                    shown = "unknown" if self.validation_ece is None else f"{self.validation_ece:.3f}"
                    warnings.append(f"validation calibration error (ECE) is {shown}, above "
                                    f"{ECE_TRUST_LIMIT}: the label-shift estimate may be wrong")
                p, prior, iters = em_label_shift(p, np.asarray(self.source_prior))
                top = np.argsort(-np.abs(prior - np.asarray(self.source_prior)))[:1]
                applied.append(f"label-shift EM ({iters} iterations; largest prior change: "
                               f"{names[top[0]]} {self.source_prior[top[0]]:.3f} -> {prior[top[0]]:.3f})")
        if self.no_relation_bias is not None:
            p = apply_bias(p, self.no_relation_bias, neg)
            applied.append(f"{negative} bias {self.no_relation_bias:+.3f}")
        return p, applied, warnings


def fit_decisions(probs: np.ndarray, y: np.ndarray, label_names: Sequence[str], negative: str, *,
                  temperature: bool = True, bias: bool = True,
                  type_pairs: TypePairs | None = None,
                  subj_types: Sequence[str] | None = None,
                  obj_types: Sequence[str] | None = None) -> Decisions:
    """Fit the switched-on decisions on ``probs`` with gold ids ``y`` (in application order)."""
    names = list(label_names)
    neg = names.index(negative)
    y = np.asarray(y)
    out = Decisions()
    p = np.asarray(probs, dtype=np.float64)
    if temperature:
        out.temperature = fit_temperature(p, y)
        p = apply_temperature(p, out.temperature)
    out.validation_ece = expected_calibration_error(p, y)
    out.source_prior = [float(x) for x in np.bincount(y, minlength=len(names)) / len(y)]
    if type_pairs is not None:
        out.type_pairs = {k: tuple(names[i] for i in sorted(v)) for k, v in type_pairs.items()}
        if subj_types is not None and obj_types is not None:
            p = apply_type_constraint(p, type_mask(type_pairs, subj_types, obj_types, len(names), neg), neg)
    if bias:
        out.no_relation_bias, _ = fit_bias(p, y, neg)
    return out


def cross_fit_effects(probs: np.ndarray, y: np.ndarray, parts: Sequence[np.ndarray],
                      label_names: Sequence[str], negative: str, *, temperature: bool = True,
                      bias: bool = True,
                      type_pairs: TypePairs | Callable[[np.ndarray], TypePairs] | None = None,
                      subj_types: Sequence[str] | None = None,
                      obj_types: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The honest effect of each decision: for every part, the decisions are fitted on the
    other rows and applied to the part; metrics of the stitched probabilities after each stage
    (cumulative, in application order) are returned, first stage ``none``. ``type_pairs`` is
    the training pairs, or a function of the fitting rows' positions returning them (when the
    evaluated rows are training rows themselves, as out-of-fold rows are)."""
    from relex import metrics as M

    names = list(label_names)
    y = np.asarray(y)
    subj = None if subj_types is None else np.asarray(subj_types, dtype=object)
    obj = None if obj_types is None else np.asarray(obj_types, dtype=object)
    stages = ["none"] + [s for s, on in (("temperature", temperature),
                                         ("type_constraint", type_pairs is not None and subj is not None),
                                         ("no_relation_bias", bias)) if on]
    stitched = {s: np.zeros_like(probs, dtype=np.float64) for s in stages}
    for part in parts:
        rest = np.setdiff1d(np.arange(len(y)), part)
        pairs = type_pairs(rest) if callable(type_pairs) else type_pairs
        fitted = fit_decisions(probs[rest], y[rest], names, negative, temperature=temperature,
                               bias=bias, type_pairs=pairs,
                               subj_types=None if subj is None else subj[rest],
                               obj_types=None if obj is None else obj[rest])
        for k, stage in enumerate(stages):
            partial = _only(fitted, stages[1:k + 1])
            p, _, _ = partial.apply(probs[part], names, negative,
                                    subj_types=None if subj is None else subj[part],
                                    obj_types=None if obj is None else obj[part])
            stitched[stage][part] = p
    rows = []
    for stage in stages:
        m = M.compute(y, stitched[stage], names, negative, per_class=False)
        rows.append({"stage": stage, "micro_f1": m["micro_f1"], "auprc": m["auprc"],
                     "nll": nll(stitched[stage], y),
                     "ece": expected_calibration_error(stitched[stage], y)})
    return rows


def _only(fitted: Decisions, stages: Iterable[str]) -> Decisions:
    """A copy of ``fitted`` with only ``stages`` switched on."""
    keep = set(stages)
    return Decisions(temperature=fitted.temperature if "temperature" in keep else None,
                     no_relation_bias=fitted.no_relation_bias if "no_relation_bias" in keep else None,
                     type_pairs=fitted.type_pairs if "type_constraint" in keep else None,
                     source_prior=fitted.source_prior, validation_ece=fitted.validation_ece)

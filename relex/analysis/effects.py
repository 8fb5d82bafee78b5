"""Per-axis effects from matched pairs, with bootstrap confidence intervals, and interactions.

A *matched pair* for axis A and value v is two trials that differ only in A — v in one, A's
reference value (its first grid value) in the other — with the same seed and the same values of
every other axis (in a staged sweep also grown from the same base configuration, in a fold sweep
on the same fold). The effect of v is the mean over pairs of the metric difference (so over
seeds and over the other axes' values), with a 95% bootstrap interval of that mean
(``scipy.stats.bootstrap``, BCa, resampling pairs).

ASHA stops weak trials early, and a trial's best score after four evaluations is not comparable
with another's after twelve. Two rules (``budget``):

* ``equal`` (default): a pair where a trial was stopped early is compared at the evaluations both
  trials reached (the rung the earlier one stopped at): each trial's best checkpoint among its
  first that-many evaluations, from ``history.parquet``. Pairs that both ran to the end compare
  their final best.
* ``finished``: only pairs whose trials both ran to the end (status TERMINATED).

Interactions of two axes A and B (full-factorial grids): for values a, b against the references
a0, b0, the difference of differences y(a,b) − y(a0,b) − y(a,b0) + y(a0,b0) over matched
quadruples, with the same interval; four trials share the smallest budget among them.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from relex.analysis.defaults import BUDGETS
from relex.analysis.formats import finite
from relex.analysis.sweep_results import SweepResults
from relex.metrics import EFFECT_METRICS
from relex.sweep.results import TERMINATED

CONFIDENCE = 0.95
RESAMPLES = 9999
FEW_PAIRS = 6  # below this a bootstrap interval is too narrow to trust (said in the report)


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float | None  # None: one pair only, no interval
    high: float | None
    n: int

    @property
    def contains_zero(self) -> bool:
        return self.low is not None and self.low <= 0.0 <= self.high

    @property
    def verdict(self) -> str:
        if self.low is None:
            return "no interval (1 pair)"
        if self.contains_zero:
            return "CI includes 0"
        return "better" if self.estimate > 0 else "worse"


def bootstrap_mean(values: Sequence[float], *, seed: int = 0) -> Interval:
    """Mean of ``values`` with its 95% BCa bootstrap interval (percentile when BCa degenerates)."""
    from scipy.stats import bootstrap

    d = np.asarray(values, dtype=np.float64)
    est = float(d.mean())
    if d.size < 2:
        return Interval(est, None, None, int(d.size))
    if np.ptp(d) == 0.0:  # every pair agrees: the resampled means cannot differ
        return Interval(est, est, est, int(d.size))
    ci = None
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy's degenerate-data warnings; handled below
            res = bootstrap((d,), np.mean, confidence_level=CONFIDENCE, n_resamples=RESAMPLES,
                            method=method, rng=np.random.default_rng(seed))
        ci = res.confidence_interval
        if np.isfinite(ci.low) and np.isfinite(ci.high):
            break
    return Interval(est, float(ci.low), float(ci.high), int(d.size))


# ------------------------------------------------------------------------ equal budget
class Comparer:
    """Metric values of a group of trials, compared under one budget rule."""

    def __init__(self, res: SweepResults, budget: str = "equal"):
        if budget not in BUDGETS:
            raise ValueError(f"budget must be one of {BUDGETS}")
        self.budget = budget
        # the registry's effect metrics the sweep recorded (mean AP is missing from older sweeps)
        self.metrics = [m for m in EFFECT_METRICS
                        if m in res.trials.columns and res.scored[m].notna().any()]
        # plain arrays and dicts, built once: a report of 1,000 trials asks for thousands of pairs
        scored = res.scored
        self.status = dict(zip(scored["trial_id"], scored["status"]))
        self.final = {t: {m: finite(v) for m, v in zip(self.metrics, vals)}
                      for t, *vals in zip(scored["trial_id"], *(scored[m] for m in self.metrics))}
        self.curves: dict[str, tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]] = {}
        hist = res.history
        if not hist.empty:
            hist = hist.sort_values(["trial_id", "iteration"], kind="stable")
            ids = hist["trial_id"].to_numpy()
            starts = np.r_[0, np.flatnonzero(ids[1:] != ids[:-1]) + 1]
            iterations = hist["iteration"].to_numpy(dtype=np.int64)
            f1 = np.nan_to_num(hist["micro_f1"].to_numpy(dtype=float, na_value=np.nan), nan=-np.inf)
            columns = {m: hist[m].to_numpy(dtype=float, na_value=np.nan) if m in hist else
                       np.full(len(hist), np.nan) for m in self.metrics}
            for a, b in zip(starts, np.r_[starts[1:], len(hist)]):
                self.curves[ids[a]] = (iterations[a:b], f1[a:b],
                                       {m: c[a:b] for m, c in columns.items()})

    def evaluations(self, trial_id: str) -> int | None:
        curve = self.curves.get(trial_id)
        return None if curve is None or not len(curve[0]) else int(curve[0].max())

    def at_budget(self, trial_id: str, budget: int) -> dict[str, float] | None:
        """The trial's best checkpoint (first highest micro-F1) among its first ``budget``
        evaluations, as the trainer would have kept it then."""
        curve = self.curves.get(trial_id)
        if curve is None:
            return None
        iterations, f1, columns = curve
        seen = np.flatnonzero(iterations <= budget)
        if not seen.size:
            return None
        best = seen[int(np.argmax(f1[seen]))]
        return {m: finite(columns[m][best]) for m in self.metrics}

    def values(self, trial_ids: Sequence[str]) -> list[dict[str, float | None]] | None:
        """Each trial's metrics under the rule, or None when the group is not comparable."""
        if all(self.status[t] == TERMINATED for t in trial_ids):
            return [self.final[t] for t in trial_ids]
        if self.budget == "finished":
            return None
        reached = [self.evaluations(t) for t in trial_ids]
        if any(r is None for r in reached):
            return None
        out = [self.at_budget(t, min(reached)) for t in trial_ids]
        return None if any(v is None for v in out) else out

    def describe(self) -> str:
        if self.budget == "finished":
            return "only pairs whose trials both ran to the end (TERMINATED)"
        return ("pairs with a trial stopped early by ASHA are compared at the evaluations both "
                "reached (each trial's best checkpoint up to there); pairs that both ran to the "
                "end compare their final best")


# --------------------------------------------------------------------------- effects
@dataclass
class Effect:
    axis: str
    value: Any
    reference: Any
    stats: dict[str, Interval]  # metric -> mean difference (value − reference) and interval
    pairs: int
    contexts: int  # distinct values of the other axes among the pairs
    unmatched: int  # trials with this value but no scored partner
    not_comparable: int  # pairs the budget rule excludes


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def axis_values(res: SweepResults) -> dict[str, list[Any]]:
    """Each axis's values in first-appearance (grid) order; the first is the reference."""
    out = {}
    for a in res.axes:
        seen: list[Any] = []
        for v in res.trials[a]:
            v = _py(v)
            if v not in seen:
                seen.append(v)
        out[a] = seen
    return out


# what follows the axis values in an index key: a trial of a staged sweep pairs only with one
# grown from the same base configuration (the base's settings are not this stage's axes), a
# fold trial only with one on the same fold (the same training rows), and both share a seed
KEY_TAIL = ("lineage", "fold", "seed")


def _tail_value(row: pd.Series, column: str) -> Any:
    v = _py(row.get(column))
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else v


def _index(res: SweepResults) -> dict[tuple, str]:
    """(axis values..., lineage, fold, seed) -> trial id, over scored trials."""
    return {tuple(_py(r[a]) for a in res.axes) + tuple(_tail_value(r, c) for c in KEY_TAIL): r["trial_id"]
            for _, r in res.scored.iterrows()}


def _diffs(values: list[dict[str, float | None]], signs: Sequence[int], metrics) -> dict[str, float]:
    out = {}
    for m in metrics:
        parts = [v[m] for v in values]
        if all(p is not None for p in parts):
            out[m] = float(sum(s * p for s, p in zip(signs, parts)))
    return out


def axis_effects(res: SweepResults, comparer: Comparer) -> list[Effect]:
    index = _index(res)
    values = axis_values(res)
    effects = []
    for i, axis in enumerate(res.axes):
        ref = values[axis][0]
        for v in values[axis][1:]:
            effects.append(_effect(index, i, axis, v, ref, comparer))
    return effects


def _effect(index, i: int, axis: str, v, ref, comparer: Comparer) -> Effect:
    deltas: dict[str, list[float]] = {m: [] for m in comparer.metrics}
    unmatched = not_comparable = 0
    contexts = set()
    for key, tid in index.items():
        if key[i] != v:
            continue
        partner = index.get(key[:i] + (ref,) + key[i + 1:])
        if partner is None:
            unmatched += 1
            continue
        vals = comparer.values([tid, partner])
        if vals is None:
            not_comparable += 1
            continue
        for m, d in _diffs(vals, (1, -1), comparer.metrics).items():
            deltas[m].append(d)
        contexts.add(key[:i] + key[i + 1:-len(KEY_TAIL)])
    stats = {m: bootstrap_mean(d) for m, d in deltas.items() if d}
    pairs = max((len(d) for d in deltas.values()), default=0)
    return Effect(axis, v, ref, stats, pairs, len(contexts), unmatched, not_comparable)


# ----------------------------------------------------------------------- interactions
@dataclass
class Interaction:
    axes: tuple[str, str]
    values: tuple[Any, Any]
    references: tuple[Any, Any]
    stats: dict[str, Interval] = field(default_factory=dict)


def is_full_factorial(res: SweepResults) -> bool:
    """Every combination of the axes' values was run (as a trial, whatever its status)."""
    if len(res.axes) < 2:
        return False
    values = axis_values(res)
    present = {tuple(_py(r[a]) for a in res.axes) for _, r in res.trials.iterrows()}
    expected = set(itertools.product(*(values[a] for a in res.axes)))
    return present == expected


def interactions(res: SweepResults, comparer: Comparer) -> list[Interaction]:
    """Every two-axis interaction contrast, largest |micro-F1 interaction| first."""
    index = _index(res)
    values = axis_values(res)
    out = []
    for i, j in itertools.combinations(range(len(res.axes)), 2):
        ai, aj = res.axes[i], res.axes[j]
        ri, rj = values[ai][0], values[aj][0]
        for a, b in itertools.product(values[ai][1:], values[aj][1:]):
            found = _interaction(index, i, j, (a, b), (ri, rj), comparer)
            if found:
                out.append(Interaction((ai, aj), (a, b), (ri, rj), found))
    key = comparer.metrics[0]
    out.sort(key=lambda x: -abs(x.stats[key].estimate) if key in x.stats else 0.0)
    return out


def _interaction(index, i, j, vals, refs, comparer: Comparer) -> dict[str, Interval]:
    def at(key, vi, vj):
        k = list(key)
        k[i], k[j] = vi, vj
        return index.get(tuple(k))

    (a, b), (ri, rj) = vals, refs
    contrasts: dict[str, list[float]] = {m: [] for m in comparer.metrics}
    for key in index:
        if key[i] != a or key[j] != b:
            continue
        group = [at(key, a, b), at(key, ri, b), at(key, a, rj), at(key, ri, rj)]
        if None in group:
            continue
        scored = comparer.values(group)
        if scored is None:
            continue
        for m, d in _diffs(scored, (1, -1, -1, 1), comparer.metrics).items():
            contrasts[m].append(d)
    return {m: bootstrap_mean(c) for m, c in contrasts.items() if c}


def frame_of(effects: list[Effect]) -> pd.DataFrame:
    """Effects as a flat table (for tests and scripts)."""
    rows = []
    for e in effects:
        for m, s in e.stats.items():
            rows.append({"axis": e.axis, "value": e.value, "reference": e.reference, "metric": m,
                         "estimate": s.estimate, "low": s.low, "high": s.high, "pairs": s.n})
    return pd.DataFrame(rows)

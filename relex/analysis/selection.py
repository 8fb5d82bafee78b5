"""Choosing ensemble members from their validation probabilities, and scoring the choice honestly.

* :func:`top_k` — the K best candidates, equal weights.
* :func:`greedy` — Caruana et al. (2004) forward selection with replacement: start from the best
  candidate, repeatedly add (again, if it helps) the candidate whose addition gives the best
  averaged probabilities, for ``rounds`` rounds; keep the best bag seen. A candidate's weight is
  the share of the bag it holds.
* :func:`cross_fit` — the honest score of a selection rule: the validation rows are split into
  stratified parts; for each part the rule (and the "best single trial" rule) is fitted on the
  other rows and applied to the part; the stitched probabilities are scored on every row. No row
  is scored by a choice it took part in.

Scores are micro-F1 or AUPRC (×100, KLUE definitions); ties are broken by the lower NLL, so a
greedy step that leaves micro-F1 flat but improves the probabilities is still taken.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from relex import metrics as M
from relex.metrics import SELECTION_METRICS, nll

Weights = dict[str, float]


def score(probs: np.ndarray, y: np.ndarray, negative_id: int, metric: str) -> tuple[float, float]:
    """(metric ×100, −NLL): larger is better in both."""
    if metric not in SELECTION_METRICS:
        raise ValueError(f"unknown selection metric {metric!r}")
    return M.REGISTRY[metric].score(y, probs, negative_id), -nll(probs, y)


def average(candidates: Mapping[str, np.ndarray], weights: Weights, rows=None) -> np.ndarray:
    total = sum(weights.values())
    out = None
    for cid, w in weights.items():
        p = candidates[cid] if rows is None else candidates[cid][rows]
        out = p * (w / total) if out is None else out + p * (w / total)
    return out


def best_single(candidates: Mapping[str, np.ndarray], y, negative_id: int, metric: str) -> Weights:
    best = max(sorted(candidates), key=lambda c: score(candidates[c], y, negative_id, metric))
    return {best: 1.0}


def top_k(candidates: Mapping[str, np.ndarray], y, negative_id: int, metric: str, k: int) -> Weights:
    ranked = sorted(sorted(candidates), key=lambda c: score(candidates[c], y, negative_id, metric),
                    reverse=True)
    return {c: 1.0 / min(k, len(ranked)) for c in ranked[:k]}


def greedy(candidates: Mapping[str, np.ndarray], y, negative_id: int, metric: str,
           rounds: int = 25) -> Weights:
    names = sorted(candidates)
    first = next(iter(best_single(candidates, y, negative_id, metric)))
    bag = [first]
    total = candidates[first].astype(np.float64)
    best_bag, best_score = list(bag), score(total, y, negative_id, metric)
    for _ in range(rounds - 1):
        trial = {c: score((total + candidates[c]) / (len(bag) + 1), y, negative_id, metric) for c in names}
        pick = max(names, key=lambda c: trial[c])
        bag.append(pick)
        total = total + candidates[pick]
        if trial[pick] > best_score:
            best_bag, best_score = list(bag), trial[pick]
    counts: dict[str, int] = {}
    for c in best_bag:
        counts[c] = counts.get(c, 0) + 1
    return {c: n / len(best_bag) for c, n in sorted(counts.items())}


def cross_fit(candidates: Mapping[str, np.ndarray], y: np.ndarray, parts: Sequence[np.ndarray],
              rules: Mapping[str, Callable[[dict[str, np.ndarray], np.ndarray], Weights]]
              ) -> dict[str, np.ndarray]:
    """For each rule, the probabilities of every row from a choice fitted without that row's part."""
    out = {name: np.zeros_like(next(iter(candidates.values())), dtype=np.float64) for name in rules}
    for part in parts:
        rest = np.setdiff1d(np.arange(len(y)), part)
        fit_on = {c: p[rest] for c, p in candidates.items()}
        for name, rule in rules.items():
            out[name][part] = average(candidates, rule(fit_on, y[rest]), rows=part)
    return out

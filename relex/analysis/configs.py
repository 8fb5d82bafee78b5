"""Seeds as a first-class axis: one row per configuration, and results too identical to trust.

A *configuration* is a trial's config without its seed. :func:`by_config` groups finished trials
by configuration: mean, sample standard deviation and a 95% t-interval of the mean over seeds,
ranked by the mean. A configuration is *within noise of the top* when Welch's 95% interval for
the difference of its mean from the top configuration's contains 0 (both need two seeds or more;
with one seed the noise is unknown).

:func:`identical_results` finds distinct trials whose metrics agree to the last digit, or whose
validation probabilities are byte-identical: two different configurations (or seeds) should not
produce the same model, so such a group usually means a setting was not applied.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from relex.analysis.formats import finite
from relex.metrics import COLUMN_METRICS, EVAL_METRICS, PRIMARY
from relex.sweep.results import ERROR, RUNNING, SCORED, STOPPED_EARLY, TERMINATED



def config_fields() -> list[str]:
    from relex.config import TrialConfig

    return [f for f in TrialConfig.field_names() if f != "seed"]


def config_key(row: dict[str, Any], fields: Sequence[str]) -> tuple:
    return tuple(row.get(f) for f in fields)


@dataclass
class ConfigSummary:
    key: tuple
    config: dict[str, Any]
    trial_ids: list[str]
    seeds: list[int]
    values: dict[str, list[float]]  # metric -> one value per scored trial
    statuses: dict[str, int] = field(default_factory=dict)
    verdict: str = ""  # "top" | "within noise" | "below" | "? (1 seed)"
    lineage: list[str] = field(default_factory=list)  # staged sweeps: the base configuration(s) it grew from

    @property
    def n(self) -> int:
        return len(self.values.get(PRIMARY, []))

    def mean(self, metric: str = PRIMARY) -> float | None:
        v = self.values.get(metric) or []
        return float(np.mean(v)) if v else None

    def sd(self, metric: str = PRIMARY) -> float | None:
        v = self.values.get(metric) or []
        return float(np.std(v, ddof=1)) if len(v) > 1 else None

    def status_text(self) -> str:
        """"2 done, 1 stopped": how the configuration's trials ended."""
        short = {TERMINATED: "done", STOPPED_EARLY: "stopped", ERROR: "error", RUNNING: "running"}
        return ", ".join(f"{n} {short.get(s, s.lower())}" for s, n in sorted(self.statuses.items()))

    def ci(self, metric: str = PRIMARY) -> tuple[float, float] | None:
        """95% t-interval of the mean over seeds (None with fewer than two), kept inside the
        metrics' 0–100 range (a mean cannot leave it)."""
        from scipy import stats

        v = self.values.get(metric) or []
        if len(v) < 2:
            return None
        m, s = float(np.mean(v)), float(np.std(v, ddof=1))
        half = float(stats.t.ppf(0.975, len(v) - 1)) * s / math.sqrt(len(v))
        return max(m - half, 0.0), min(m + half, 100.0)


def lineage(row: dict[str, Any]) -> str | None:
    """A staged sweep's trial: the base configuration it grew from (``<base sweep>/<id>``)."""
    value = row.get("lineage")
    return value if isinstance(value, str) and value else None


def scored(rows: Sequence[dict[str, Any]], metric: str = PRIMARY) -> list[dict[str, Any]]:
    """The rows whose trial ended with a finite ``metric`` worth comparing."""
    return [r for r in rows if r.get("status") in SCORED and finite(r.get(metric)) is not None]


def metric_values(rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> dict[str, list[float]]:
    """Each metric's finite values over ``rows`` (a metric no row recorded is left out)."""
    out: dict[str, list[float]] = {}
    for m in metrics:
        values = [finite(r.get(m)) for r in rows]
        if any(v is not None for v in values):
            out[m] = [v for v in values if v is not None]
    return out


def by_config(rows: Sequence[dict[str, Any]], metric: str = PRIMARY) -> list[ConfigSummary]:
    """Finished trials grouped per configuration, best mean first, each with its verdict."""
    fields = config_fields()
    groups: dict[tuple, ConfigSummary] = {}
    members: dict[tuple, list[dict[str, Any]]] = {}
    for r in sorted(rows, key=lambda r: str(r.get("trial_id"))):
        key = config_key(r, fields)
        g = groups.setdefault(key, ConfigSummary(key, {f: r.get(f) for f in fields}, [], [], {}))
        g.statuses[str(r.get("status"))] = g.statuses.get(str(r.get("status")), 0) + 1
        grew_from = lineage(r)
        if grew_from and grew_from not in g.lineage:
            g.lineage.append(grew_from)
        members.setdefault(key, []).append(r)
    for key, g in groups.items():
        done = scored(members[key], metric)
        g.trial_ids = [str(r["trial_id"]) for r in done]
        g.seeds = [int(r["seed"]) for r in done]
        g.values = metric_values(done, COLUMN_METRICS)
    ranked = sorted((g for g in groups.values() if g.n), key=lambda g: -g.mean(metric))
    unscored = [g for g in groups.values() if not g.n]
    if ranked:
        ranked[0].verdict = "top"
        for g in ranked[1:]:
            g.verdict = noise_verdict(ranked[0].values[metric], g.values[metric])
    return ranked + unscored


def by_fold_configuration(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A fold sweep's rows, one per configuration: every metric's mean over its finished folds,
    micro-F1's standard deviation (``micro_f1_sd``), ``folds`` finished/total, the summed time.
    Rows of other sweeps are returned as they are."""
    import statistics

    if not any(r.get("fold") is not None for r in rows):
        return list(rows)
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(str(r.get("config_id") or r.get("trial_id")), []).append(r)
    out = []
    for cid, rs in groups.items():
        done = [r for r in rs if r.get("status") in SCORED]
        statuses = {r.get("status") for r in rs}
        row = {**rs[0], "trial_id": cid, "folds": f"{len(done)}/{len(rs)}",
               "wall_s": sum(finite(r.get("wall_s")) or 0.0 for r in rs), "best_step": None,
               "status": next((s for s in (ERROR, RUNNING) if s in statuses), rs[0].get("status"))}
        values = metric_values(done, EVAL_METRICS)
        for key in EVAL_METRICS:
            row[key] = statistics.fmean(values[key]) if key in values else None
        primary = values.get(PRIMARY, [])
        row[f"{PRIMARY}_sd"] = statistics.stdev(primary) if len(primary) > 1 else None
        out.append(row)
    return out


def noise_verdict(top: Sequence[float], other: Sequence[float]) -> str:
    """Is ``other``'s mean within the noise of ``top``'s? Welch's 95% interval of the difference."""
    from scipy import stats

    if len(top) < 2 or len(other) < 2:
        return "? (1 seed)"
    a, b = np.asarray(top, float), np.asarray(other, float)
    if np.ptp(a) == 0 and np.ptp(b) == 0:  # no spread at all: only an exact tie is noise
        return "within noise" if a[0] == b[0] else "below"
    res = stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(0.95)
    return "within noise" if ci.low <= 0.0 <= ci.high else "below"


# ------------------------------------------------------------------- identical results
@dataclass
class IdenticalGroup:
    trial_ids: list[str]
    what: str  # "metrics" or "validation probabilities"


def identical_results(rows: Sequence[dict[str, Any]],
                      probs_path: Callable[[str], Path | None] | None = None) -> list[IdenticalGroup]:
    """Groups of two or more trials with the same metrics to the last digit, or (when
    ``probs_path`` finds their files) byte-identical validation probabilities."""
    by_metrics: dict[tuple, list[str]] = {}
    by_probs: dict[str, list[str]] = {}
    for r in rows:
        if r.get("status") not in SCORED:
            continue
        tid = str(r["trial_id"])
        # every metric the trial recorded (a sweep from before mean AP has None there)
        sig = tuple(finite(r.get(m)) for m in EVAL_METRICS)
        if finite(r.get(PRIMARY)) is not None:
            by_metrics.setdefault(sig, []).append(tid)
        path = probs_path(tid) if probs_path else None
        if path is not None and path.exists():
            by_probs.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), []).append(tid)
    groups = [IdenticalGroup(sorted(t), "metrics") for t in by_metrics.values() if len(t) > 1]
    seen = {tuple(g.trial_ids) for g in groups}
    groups += [IdenticalGroup(sorted(t), "validation probabilities") for t in by_probs.values()
               if len(t) > 1 and tuple(sorted(t)) not in seen]
    return groups

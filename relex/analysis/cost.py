"""What a sweep cost, and what ASHA saved.

Trial-seconds are each trial's wall time (``wall_s``: from the start of its last attempt to its
last report); GPU-seconds multiply them by the GPUs the trial held (the ids in its ``gpu``
column; 0 on CPU). ASHA's saving is an estimate: each trial it stopped is scaled up to the
evaluations a trial of the same training budget ran to the end (or, with none such, by the
epochs planned over the epochs run), and the difference summed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from relex.analysis.formats import finite
from relex.analysis.sweep_results import SweepResults
from relex.sweep.results import STOPPED_EARLY, TERMINATED

# config fields that decide how many evaluations a trial runs
BUDGET_FIELDS = ("epochs", "max_steps", "eval_every", "batch_size", "grad_accum")


@dataclass
class Cost:
    by_status: pd.DataFrame  # status, trials, trial_s, gpu_s
    total_s: float
    total_gpu_s: float
    stopped: int  # trials ASHA stopped
    saved_s: float  # estimated trial-seconds ASHA saved
    saved_gpu_s: float

    @property
    def saved_share(self) -> float:
        """Saved seconds as a share (×100) of what running every trial to the end would take."""
        full = self.total_s + self.saved_s
        return 100.0 * self.saved_s / full if full else 0.0


def gpu_count(value) -> int:
    """GPUs in a ``gpu`` cell: "0,1:NVIDIA H100" -> 2; "" or None -> 0."""
    if not isinstance(value, str) or not value.strip():
        return 0
    return len([g for g in value.split(":", 1)[0].split(",") if g.strip()])


def _planned_evaluations(trials: pd.DataFrame) -> dict[tuple, int]:
    done = trials[trials["status"] == TERMINATED]
    fields = [f for f in BUDGET_FIELDS if f in trials.columns]
    out: dict[tuple, int] = {}
    for _, r in done.iterrows():
        ev = finite(r.get("evaluations"))
        if ev:
            key = tuple(r[f] for f in fields)
            out[key] = max(out.get(key, 0), int(ev))
    return out


def _full_run_factor(row, planned: dict[tuple, int], fields: list[str]) -> float | None:
    """How many times longer the stopped trial would have run to its end."""
    ev = finite(row.get("evaluations"))
    target = planned.get(tuple(row[f] for f in fields))
    if ev and target:
        return max(target / ev, 1.0)
    epochs, run = finite(row.get("epochs")), finite(row.get("epochs_run"))
    if epochs and run:
        return max(epochs / run, 1.0)
    return None


def sweep_cost(res: SweepResults) -> Cost:
    t = res.trials.copy()
    t["trial_s"] = t["wall_s"].map(lambda v: finite(v) or 0.0)
    t["gpu_s"] = t["trial_s"] * t.get("gpu", pd.Series([None] * len(t))).map(gpu_count)
    by_status = (t.groupby("status", sort=True)
                 .agg(trials=("trial_id", "count"), trial_s=("trial_s", "sum"), gpu_s=("gpu_s", "sum"))
                 .reset_index())
    planned = _planned_evaluations(t)
    fields = [f for f in BUDGET_FIELDS if f in t.columns]
    saved = saved_gpu = 0.0
    stopped = t[t["status"] == STOPPED_EARLY]
    for _, r in stopped.iterrows():
        factor = _full_run_factor(r, planned, fields)
        if factor is not None:
            saved += r["trial_s"] * (factor - 1.0)
            saved_gpu += r["gpu_s"] * (factor - 1.0)
    return Cost(by_status, float(t["trial_s"].sum()), float(t["gpu_s"].sum()), len(stopped),
                saved, saved_gpu)

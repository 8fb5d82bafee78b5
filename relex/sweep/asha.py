"""ASHA whose rung records survive a driver crash.

A resumed sweep is a new Tune run (:mod:`relex.sweep.runner`), and even ``Tuner.restore`` does
not restore a scheduler's state (ray#30838): ASHA would start with empty rungs and decide
differently. :class:`Rungs` is the whole of ASHA's state — for every rung, the metric each trial had when it
reached it, and each decision made — and each decision is written atomically to the sweep
directory *before* it is returned to Tune: one small file per decision in ``asha_decisions/``
(``<rung>-<trial_id>.json``), folded into ``asha_state.json`` when they outnumber the records it
holds and when the sweep ends, so a sweep of n trials writes O(n) bytes of ASHA state rather than
the whole state at every decision. :class:`PersistentASHA` is a Tune scheduler (FIFO order)
driven by it; on ``relex sweep --resume`` it reloads the file and the decisions beside it.

The rule is Ray's ``AsyncHyperBandScheduler`` with one bracket: rungs at
``grace_period · reduction_factor^k`` evaluations (below ``max_t`` when set); a trial reaching a
rung is stopped if its metric is below the ``1 − 1/reduction_factor`` percentile of the values
recorded at that rung *before it* (the first arrival always continues). A NaN metric counts as
the worst value. Trials are keyed by relex's stable trial id (its grid index), not Ray's id.

Determinism: ASHA is asynchronous, so a decision depends on which trials reached the rung first.
Two facts make a resumed sweep decide exactly as an uninterrupted one:

* decisions already made are never re-made: a trial replaying evaluations after a resume (it
  continues from its last checkpoint, which may be older than its last report) gets the recorded
  decision back for a rung it already reached;
* with ``max_concurrent=1`` trials run one at a time in grid order, so rung arrival order is the
  grid order in both runs. With more concurrent trials arrival order depends on timing — in an
  uninterrupted run just as much — and the persisted records still guarantee that nothing
  decided before the crash is forgotten.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np

from relex.io_utils import Compaction, atomic_write_text
from relex.sweep.layout import ASHA_DECISIONS_DIR
from relex.sweep.specs import tune_trial_id_or_none
from relex.sweep.trial import evaluation_of

CONTINUE, STOP = "CONTINUE", "STOP"


class Rungs:
    """ASHA's rung records and decisions, persisted to ``path`` (if given) on every change."""

    def __init__(self, *, grace_period: int, reduction_factor: float, max_t: int = 0,
                 mode: str = "max", path: str | Path | None = None, early_stop: bool = True):
        if grace_period < 1 or reduction_factor <= 1 or mode not in ("max", "min"):
            raise ValueError("grace_period >= 1, reduction_factor > 1, mode max|min")
        self.grace_period = int(grace_period)
        self.reduction_factor = float(reduction_factor)
        self.max_t = int(max_t)
        self.mode = mode
        self.early_stop = early_stop
        self.path = Path(path) if path else None
        # rung milestone (str, for JSON) -> list of [trial_id, value, decision] in arrival order
        self.records: dict[str, list[list[Any]]] = {}
        self.stopped: dict[str, int] = {}  # trial_id -> milestone where ASHA stopped it
        self._lock = threading.Lock()
        self._seq = 0  # arrival order of the decisions, kept by their files
        self._compaction = Compaction()  # asha_state.json and the decision files since
        self.decisions = self.path.parent / ASHA_DECISIONS_DIR if self.path else None
        if self.path and self.path.exists():
            self._load()
        if self.decisions is not None and self.decisions.is_dir():
            self._replay()

    # ------------------------------------------------------------------ rungs
    def milestones(self, upto: int) -> list[int]:
        """Rung milestones <= upto (and < max_t when max_t is set), ascending."""
        out, k = [], 0
        while True:
            m = self.grace_period * self.reduction_factor ** k
            m = int(math.ceil(m - 1e-9))
            if m > upto or (self.max_t and m >= self.max_t):
                return out
            if not out or m > out[-1]:
                out.append(m)
            k += 1

    def _score(self, value: float | None) -> float:
        if value is None or not math.isfinite(float(value)):
            return -math.inf
        return float(value) if self.mode == "max" else -float(value)

    def decide(self, trial_id: str, iteration: int, value: float | None) -> str:
        """The decision for ``trial_id`` after its ``iteration``-th evaluation."""
        with self._lock:
            if trial_id in self.stopped and self.stopped[trial_id] <= iteration:
                return STOP
            if self.max_t and iteration >= self.max_t:
                return STOP  # budget reached: a normal end, not an early stop
            if not self.early_stop:
                return CONTINUE
            rungs = self.milestones(iteration)
            if not rungs or rungs[-1] != iteration:
                return CONTINUE
            key = str(iteration)
            recorded = self.records.setdefault(key, [])
            for tid, _, decision in recorded:
                if tid == trial_id:  # a replayed evaluation after resume
                    return decision
            score = self._score(value)
            earlier = [s for _, s, _ in recorded if s is not None]  # finite scores only
            decision = CONTINUE
            if earlier:
                cutoff = float(np.percentile(earlier, (1 - 1 / self.reduction_factor) * 100))
                if score < cutoff:
                    decision = STOP
            record = [trial_id, score if math.isfinite(score) else None, decision]
            recorded.append(record)
            if decision == STOP:
                self.stopped[trial_id] = iteration
            self._save(key, record)
            return decision

    def was_stopped(self, trial_id: str) -> bool:
        return trial_id in self.stopped

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {"grace_period": self.grace_period, "reduction_factor": self.reduction_factor,
                "max_t": self.max_t, "mode": self.mode, "records": self.records,
                "stopped": self.stopped}

    def _save(self, rung: str, record: list[Any]) -> None:
        """One decision on disk; everything in asha_state.json when the decision files outnumber
        the records it holds (or it holds none yet)."""
        if not self.path:
            return
        self._seq += 1
        path = self.decisions / f"{rung}-{record[0]}.json"
        atomic_write_text(path, json.dumps({"rung": rung, "record": record, "seq": self._seq}))
        self._compaction.wrote(path)
        if self._compaction.due():
            self._compact()

    def compact(self) -> None:
        """Every decision in asha_state.json, no decision file left (the end of a sweep)."""
        with self._lock:
            if self.path and (self._compaction.journal or not self.path.exists()):
                self._compact()

    def _compact(self) -> None:
        # a crash before the decision files are deleted leaves decisions the state already
        # holds, which a reload skips
        atomic_write_text(self.path, json.dumps(self.to_dict(), indent=1, sort_keys=True))
        self._compaction.absorbed(sum(len(v) for v in self.records.values()))

    def _load(self) -> None:
        data = json.loads(self.path.read_text(encoding="utf-8"))
        same = (data.get("grace_period") == self.grace_period
                and float(data.get("reduction_factor", 0)) == self.reduction_factor
                and data.get("max_t") == self.max_t and data.get("mode") == self.mode)
        if not same:
            raise ValueError(f"{self.path}: ASHA settings differ from the job's")
        self.records = {k: [list(r) for r in v] for k, v in data.get("records", {}).items()}
        self.stopped = {k: int(v) for k, v in data.get("stopped", {}).items()}
        self._compaction.compacted = sum(len(v) for v in self.records.values())

    def _replay(self) -> None:
        """The decisions written since asha_state.json, in the order they were made; one it
        already holds (a crash during a compaction) is not added twice."""
        entries = []
        for path in self.decisions.glob("*.json"):
            try:
                entries.append((json.loads(path.read_text(encoding="utf-8")), path))
            except (OSError, ValueError):
                continue  # a decision file is written by rename: a partial one was never returned
        for entry, path in sorted(entries, key=lambda e: e[0]["seq"]):
            rung, record = entry["rung"], entry["record"]
            recorded = self.records.setdefault(rung, [])
            if not any(r[0] == record[0] for r in recorded):
                recorded.append(list(record))
                if record[2] == STOP:
                    self.stopped[record[0]] = int(rung)
            self._compaction.wrote(path)
            self._seq = max(self._seq, int(entry["seq"]))


def _trial_key(trial) -> str:
    return tune_trial_id_or_none(getattr(trial, "config", None)) or str(trial.trial_id)


def _make_scheduler_class():
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    class PersistentASHA(FIFOScheduler):
        """Tune scheduler: FIFO trial order, ASHA stopping from persisted :class:`Rungs`."""

        def __init__(self, rungs: Rungs, metric: str):
            super().__init__()
            self.rungs = rungs
            self._metric = metric
            self._mode = rungs.mode

        def set_search_properties(self, metric, mode, **spec) -> bool:
            return True

        budget = None  # a relex.sweep.budget.Budget when the job sets one

        def on_trial_result(self, tune_controller, trial, result: dict) -> str:
            if self.budget is not None:
                self.budget.on_report(_trial_key(trial), result)
            evaluation = evaluation_of(result)
            if not evaluation:
                return TrialScheduler.CONTINUE
            value = result.get(self._metric)
            decision = self.rungs.decide(_trial_key(trial), evaluation,
                                         None if value is None else float(value))
            return TrialScheduler.STOP if decision == STOP else TrialScheduler.CONTINUE

        def choose_trial_to_run(self, tune_controller):
            if self.budget is not None and self.budget.exhausted():
                running = [_trial_key(t) for t in tune_controller.get_live_trials()
                           if t.status == "RUNNING"]
                self.budget.wind_down(running)
                return None
            return super().choose_trial_to_run(tune_controller)

        def debug_string(self) -> str:
            return f"relex ASHA: {len(self.rungs.stopped)} stopped early"

        # Tune pickles the scheduler into the experiment's tuner.pkl: the pickle names the
        # registered scheduler (its rungs live in asha_state.json), so it neither copies the
        # rungs nor brings a stale copy back.
        def __reduce__(self):
            return (_registered_scheduler, ())

    return PersistentASHA


_REGISTRY: dict[str, Any] = {}


def register_scheduler(scheduler) -> None:
    _REGISTRY["scheduler"] = scheduler


def _registered_scheduler():
    if "scheduler" not in _REGISTRY:
        # Unpickled outside a relex run (e.g. Ray's own tooling reading tuner.pkl): a plain FIFO.
        from ray.tune.schedulers import FIFOScheduler
        return FIFOScheduler()
    return _REGISTRY["scheduler"]


def make_scheduler(asha: dict[str, Any], state_path: str | Path, *, early_stop: bool = True):
    """Build the Tune scheduler for a job's ASHA settings, reloading ``state_path`` if present.
    Without ``early_stop`` (fold sweeps) no trial is stopped before ``max_t``."""
    rungs = Rungs(grace_period=asha["grace_period"], reduction_factor=asha["reduction_factor"],
                  max_t=asha["max_t"], mode=asha["mode"], path=state_path, early_stop=early_stop)
    sched = _make_scheduler_class()(rungs, asha["metric"])
    register_scheduler(sched)
    return sched

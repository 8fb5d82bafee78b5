"""Budgets of a sweep: wall-clock time and GPU-hours, and what the sweep has used.

A job may set ``time_budget`` (``"2h"``, ``"90m"``, ``"45s"`` or seconds) and ``gpu_hours``.
Once either is reached the sweep starts no new trial; each running trial goes on to its next
evaluation, where its checkpoint is taken, and is paused there; then the sweep ends. Trials
never started are recorded as NOT_STARTED and paused ones as PAUSED, so ``relex sweep --resume``
continues them later (paused trials from their checkpoints).

* ``time_budget`` is the wall-clock time of one run of the driver: a resumed sweep gets it anew.
* ``gpu_hours`` is the sweep's total, over every run: GPUs per trial times each trial's running
  time up to its latest evaluation. On a cluster without GPUs the same is counted in CPU-hours
  (CPUs per trial), and ``gpu_hours`` caps those. To continue a sweep that used its GPU-hours,
  raise ``gpu_hours`` in the job file and ``--resume``.

The usage is kept in ``<sweep_dir>/usage.json`` (resource, hours), which the leaderboard's
footer shows with its cost when the job sets ``cost_per_gpu_hour``.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

from relex.errors import RelexError
from relex.io_utils import atomic_write_text
from relex.sweep.layout import SweepDir
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(value: Any, where: str) -> float | None:
    """Seconds from ``"2h"``, ``"90m"``, ``"45s"``, ``"1.5h"`` or a number of seconds."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise RelexError(f"{where}: time_budget={value!r} is invalid: use e.g. \"2h\", \"90m\"")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise RelexError(f"{where}: time_budget={value!r} is invalid: use e.g. \"2h\", \"90m\", "
                             "\"45s\" or a number of seconds")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if not math.isfinite(seconds) or seconds <= 0:
        raise RelexError(f"{where}: time_budget={value!r} is invalid: must be positive")
    return seconds


def positive(value: Any, what: str, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise RelexError(f"{where}: {what}={value!r} is invalid: must be a positive number")
    return float(value)


def read_usage(sweep_dir: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(SweepDir(sweep_dir).usage_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def usage_line(sweep_dir: str | Path) -> str | None:
    """The leaderboard's footer: what the sweep used, and what it cost."""
    usage = read_usage(sweep_dir)
    hours = usage.get("hours")
    if not isinstance(hours, (int, float)):
        return None
    line = f"compute: {hours:.2f} {usage.get('resource', 'GPU')}-hours"
    rate = usage.get("cost_per_gpu_hour")
    if isinstance(rate, (int, float)) and usage.get("resource") == "GPU":
        line += f", cost {hours * rate:,.2f} at {rate:g} per GPU-hour"
    return line


class Budget:
    """What a sweep may use and has used; the scheduler consults it."""

    def __init__(self, sweep_dir: str | Path, *, per_trial: float, resource: str,
                 time_budget_s: float | None = None, gpu_hours: float | None = None,
                 cost_per_gpu_hour: float | None = None, clock=time.time):
        self.path = SweepDir(sweep_dir).usage_file
        self.per_trial = float(per_trial)
        self.resource = resource  # "GPU" or "CPU": what per_trial counts
        self.time_budget_s = time_budget_s
        self.gpu_hours = gpu_hours
        self.cost_per_gpu_hour = cost_per_gpu_hour
        self.clock = clock
        self.started = clock()
        earlier = read_usage(sweep_dir)
        self.hours = float(earlier.get("hours", 0.0)) if earlier.get("resource") == resource else 0.0
        self._last: dict[str, tuple[Any, float]] = {}  # trial -> (attempt, elapsed at last report)
        self._lock = threading.Lock()
        self._usage_lock = threading.Lock()
        self.reason: str | None = None  # why the budget is used up (None: it is not)
        self._waiting: set[str] | None = None  # trials to reach their next checkpoint first
        self._checkpointed: set[str] = set()  # trials whose report used the budget up
        self.interrupted = False

    def on_report(self, trial_id: str, result: dict[str, Any]) -> None:
        """A trial reported an evaluation (and its checkpoint): count its time; once the budget
        is used up and every trial that was running has reached this point, end the sweep."""
        self.add_report(trial_id, result.get("attempt"), result.get("elapsed_s"))
        with self._lock:
            if self._waiting is not None:
                self._waiting.discard(trial_id)
            elif self.exhausted():
                self._checkpointed.add(trial_id)  # it ran out at this very checkpoint

    def wind_down(self, running: list[str]) -> None:
        """Called while the budget is used up (and no new trial is chosen): once each trial that
        was running when it ran out has reported, interrupt Tune the way Ctrl-C does, which
        saves the experiment's state with the unfinished trials resumable."""
        with self._lock:
            if self._waiting is None:
                self._waiting = set(running) - self._checkpointed
            else:
                self._waiting &= set(running)  # a trial that ended meanwhile is not waited for
            done = not self._waiting
        if done and not self.interrupted:
            self.interrupted = True
            # Tune ends its loop on SIGUSR1 as on SIGINT (a user's Ctrl-C stays theirs)
            os.kill(os.getpid(), signal.SIGUSR1)

    def add_report(self, trial_id: str, attempt: Any, elapsed_s: float | None) -> None:
        """Count a trial's running time up to this report (elapsed since its attempt started)."""
        if elapsed_s is None:
            return
        with self._usage_lock:
            prev_attempt, prev = self._last.get(trial_id, (None, 0.0))
            since = elapsed_s - prev if prev_attempt == attempt else elapsed_s
            self._last[trial_id] = (attempt, elapsed_s)
            self.hours += max(since, 0.0) * self.per_trial / 3600.0
            self.save()

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps({
            "resource": self.resource, "hours": self.hours, "per_trial": self.per_trial,
            "cost_per_gpu_hour": self.cost_per_gpu_hour}, sort_keys=True))

    def exhausted(self) -> str | None:
        if self.reason is None:
            ran = self.clock() - self.started
            if self.time_budget_s is not None and ran >= self.time_budget_s:
                self.reason = f"time budget of {_hms(self.time_budget_s)} reached"
            elif self.gpu_hours is not None and self.hours >= self.gpu_hours:
                self.reason = (f"budget of {self.gpu_hours:g} {self.resource}-hours reached "
                               f"({self.hours:.2f} used)")
        return self.reason


def _hms(seconds: float) -> str:
    h, rest = divmod(int(round(seconds)), 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")

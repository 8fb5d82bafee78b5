"""The Tune callback that records results and drives the live leaderboard.

Ray's new output engine ignores custom progress reporters (ray#38202), so everything the user
sees while a sweep runs comes from here: ``on_trial_result`` adds a history row and flushes the
results, ``on_trial_complete`` / ``on_trial_error`` write the trial's final row (each flush
writes only the trials that changed: :mod:`relex.sweep.results`). On a terminal the
leaderboard is a rich ``Live`` table that a thread of its own redraws at most twice a second,
and only when a result changed it: the best trials, the running ones and the counts by status,
so a redraw costs the same at 1,000 trials as at 10. Drawing a table of 30 rows with rich takes
tens of milliseconds of CPU, so the thread also waits after each redraw long enough to keep the
table's share of one core under ``LIVE_CPU_SHARE``. Elsewhere one line per finished trial.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from relex.metrics import PRIMARY
from relex.sweep.job import Sweep
from relex.sweep.layout import SweepDir
from relex.sweep.results import (ERROR, RUNNING, STOPPED_EARLY, TERMINATED, ResultsWriter,
                                 Tables)
from relex.sweep.specs import tune_trial_id
from relex.sweep.trial import TrialReport
from relex.sweep.retention import checkpoints_to_drop

LIVE_TOP = 20  # the best trials the live table shows
LIVE_RUNNING = 10  # running trials ranked below those, shown after them
REDRAW_S = 0.5  # the live table redraws at most this often, and only after a change
LIVE_CPU_SHARE = 0.03  # ... and a redraw that took d s of CPU waits d / LIVE_CPU_SHARE before the next


def _trial_id(trial) -> str:
    return tune_trial_id(trial.config)


def _error_line(text: str | None) -> str | None:
    """The last 'SomethingError: message' line of a traceback text."""
    if not text:
        return None
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        head = ln.split(":", 1)[0]
        if head.endswith(("Error", "Exception", "Diverged", "Interrupt")) and " " not in head:
            return ln
    return lines[-1] if lines else None


class SweepCallback(Callback):
    def __init__(self, job: Sweep, sweep_dir: Path, writer: ResultsWriter, rungs, *,
                 console=None, live: bool | None = None, tables: Tables | None = None):
        self.job = job
        self.sweep = SweepDir(sweep_dir)
        self.writer = writer
        self.rungs = rungs
        self.console = console
        self.tables = tables  # without: one line per finished trial, no live table
        if tables is None:
            live = False
        self.live_enabled = bool(console is not None and console.is_terminal) if live is None else live
        self._live = None
        self._redraw: threading.Thread | None = None
        self._stop_redraw = threading.Event()
        self._drawn = -1  # the writer's version the live table shows
        self.configs = {t.trial_id: {**t.config.to_dict(), "config_id": t.config_id or t.trial_id,
                                     "fold": t.fold, "lineage": t.lineage} for t in job.trials}
        self.previously_finished = writer.finished()  # recorded by an earlier (interrupted) run
        self.total = job.total

    # Tune pickles callbacks into tuner.pkl; on resume the runner registers a fresh callback
    # (writer reloaded from the Parquet files) and that one is used.
    def __reduce__(self):
        return (_registered_callback, ())

    # ------------------------------------------------------------------ helpers
    def _base_row(self, tid: str) -> dict[str, Any]:
        return {"trial_id": tid, **self.configs.get(tid, {})}

    def _learn_config(self, trial) -> None:
        """A searched trial's configuration arrives with the trial (its spec), not the job."""
        spec = trial.config["trial"]
        if isinstance(spec, dict) and spec["trial_id"] not in self.configs:
            self.configs[spec["trial_id"]] = {**spec["config"], "config_id": spec.get("config_id"),
                                              "fold": spec.get("fold"), "lineage": spec.get("lineage")}

    def _render(self):
        return self.tables.live(self.writer.rows(), name=self.job.name, total=self.total,
                                top=LIVE_TOP, running=LIVE_RUNNING)

    def _line(self, row: dict[str, Any]) -> None:
        if self.console is None or self.live_enabled:
            return
        done = len(self.writer.finished())
        f1 = row.get(PRIMARY)
        f1s = f"{PRIMARY}={f1:.2f}" if isinstance(f1, float) else f"{PRIMARY}=-"
        err = (f"  {row['error']} (traceback: {self.sweep.ray_dir / row['trial_id'] / 'error.txt'})"
               if row.get("error") else "")
        self.console.print(f"[{done}/{self.total}] {row['trial_id']} {row['status']} {f1s}{err}",
                           markup=False, highlight=False)

    def start_live(self) -> None:
        if self.live_enabled and self._live is None:
            from rich.live import Live

            self._drawn = self.writer.version
            self._live = Live(self._render(), console=self.console, auto_refresh=False,
                              transient=False)
            self._live.start(refresh=True)
            self._stop_redraw.clear()
            self._redraw = threading.Thread(target=self._redraw_loop, name="relex-live-table",
                                            daemon=True)
            self._redraw.start()

    def _redraw_loop(self) -> None:
        wait = REDRAW_S
        while not self._stop_redraw.wait(wait):
            cpu = time.thread_time()
            self.redraw_if_changed()
            wait = max(REDRAW_S, (time.thread_time() - cpu) / LIVE_CPU_SHARE)

    def redraw_if_changed(self) -> None:
        """Draw the live table again when a result changed the rows since the last draw."""
        version = self.writer.version
        if self._live is not None and version != self._drawn:
            self._drawn = version
            self._live.update(self._render(), refresh=True)

    def stop_live(self) -> None:
        if self._live is not None:
            self._stop_redraw.set()
            if self._redraw is not None:
                self._redraw.join()
                self._redraw = None
            self._live.update(self._render(), refresh=True)
            self._live.stop()
            self._live = None

    # ---------------------------------------------------------------- callbacks
    def setup(self, **info) -> None:
        self.start_live()

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        tid = _trial_id(trial)
        self._learn_config(trial)
        if tid in self.previously_finished:
            return
        self.writer.set_trial({**self._base_row(tid), "status": RUNNING, "error": None})

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        tid = _trial_id(trial)
        if tid in self.previously_finished:
            return
        report = TrialReport.from_result(result, tid)
        it = report.evaluation
        self.writer.add_history({"trial_id": tid, "iteration": it, "step": report.step,
                                 "epoch": report.epoch, "is_best": report.is_best, **report.metrics})
        row = {**self._base_row(tid), "status": RUNNING, "evaluations": it,
               "attempts": report.attempt, "epochs_run": report.epoch, "wall_s": report.elapsed_s,
               "started_at": report.started_at, "checkpoint": report.checkpoint,
               **report.where, **report.best, "best_step": report.best_step,
               "best_epoch": report.best_epoch}
        self.writer.set_trial(row)
        # Written at once: a resumed trial continues from the last evaluation recorded here
        # (relex.sweep.trial.continue_from), so a driver killed at any point loses none.
        self.writer.flush()

    def _finish(self, trial, status: str, error: str | None = None) -> dict[str, Any]:
        tid = _trial_id(trial)
        self._learn_config(trial)
        tdir = self.sweep.trial(tid)
        if tid in self.previously_finished:
            return self.writer.trials[tid]  # Ray re-ran a trial whose result was already recorded: keep it
        row = {**self._base_row(tid), "status": status, "error": error, "ended_at": time.time()}
        summary = tdir.summary() if status == TERMINATED else {}
        if summary:
            row.update({k: v for k, v in summary.items() if k != "trial_id"})
        if tdir.attempts_file.exists():
            row["attempts"] = tdir.attempts()
        probs = self.sweep.probs_file(tid)
        if probs.exists():
            row["valid_probs"] = str(probs)
        self.writer.set_trial(row)
        self.writer.flush()
        tdir.mark_final(status)
        # A finished trial is never resumed: drop its resumable training states (weights,
        # optimizer moments) and Tune's checkpoints that point to them; its best checkpoint
        # stays in trials/<id>/run/best. A failed one keeps them: --resume --retry-errors
        # continues it.
        if status != ERROR:
            for ck in (self.sweep.ray_dir / tid).glob("checkpoint_*"):
                shutil.rmtree(ck, ignore_errors=True)
            shutil.rmtree(tdir.states, ignore_errors=True)
        self._drop_checkpoints()
        full = self.writer.trials[tid]
        self._line(full)
        return full

    def _drop_checkpoints(self) -> None:
        """Delete the best checkpoints that ``keep_checkpoints`` and ``checkpoint_budget``
        leave out (see :mod:`relex.sweep.retention`); each row says why its checkpoint went."""
        drop = checkpoints_to_drop(self.writer.rows(), self.job.keep_checkpoints,
                                   self.job.asha["metric"], self.job.asha["mode"], self.job.folds,
                                   budget=self.job.checkpoint_budget)
        for tid, reason in drop.items():
            shutil.rmtree(self.writer.trials[tid]["checkpoint"], ignore_errors=True)
            self.writer.set_trial({"trial_id": tid, "checkpoint_dropped": reason})
        if drop:
            self.writer.flush()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        tid = _trial_id(trial)
        status = STOPPED_EARLY if self.rungs is not None and self.rungs.was_stopped(tid) else TERMINATED
        self._finish(trial, status)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        tid = _trial_id(trial)
        err = self.sweep.trial(tid).error()
        if not err:
            try:
                err = _error_line(trial.get_error())
            except Exception:
                err = None
        self._finish(trial, ERROR, err or "trial failed (no error message recorded)")

    def compact(self) -> None:
        """The results and ASHA's decisions each in their one file (the end of a run)."""
        self.writer.compact()
        if self.rungs is not None:
            self.rungs.compact()

    def on_experiment_end(self, trials, **info) -> None:
        self.compact()
        self.stop_live()


_REGISTRY: dict[str, Any] = {}


def register_callback(cb: SweepCallback) -> None:
    _REGISTRY["callback"] = cb


def _registered_callback():
    if "callback" not in _REGISTRY:
        return Callback()  # read outside a relex run: a no-op callback
    return _REGISTRY["callback"]

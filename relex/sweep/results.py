"""A sweep's results as Parquet, written atomically as trials end.

``<sweep_dir>/trials.parquet`` — one row per trial:
  trial_id, status (TERMINATED / STOPPED_EARLY / ERROR; RUNNING while it runs; PENDING when
  --retry-errors reopened it; PAUSED / NOT_STARTED when a budget ended the sweep), config_id (the
  trial id, or in a fold sweep the configuration its folds share), fold (fold sweeps: the fold held
  out), lineage (staged sweeps: ``<base sweep>/<base configuration>`` it grew from), every
  TrialConfig field as its own column, the best evaluation's micro_f1, auprc, mean_ap, accuracy,
  val_loss, best_step,
  best_epoch, epochs_run, evaluations, attempts, wall_s, node, node_id, gpu, error (text, for
  failures), checkpoint (the best checkpoint's directory), checkpoint_dropped (why the sweep
  deleted it, see :mod:`relex.sweep.retention`; empty while it is on disk), valid_probs (an ``.npy`` of the best
  checkpoint's validation-set probabilities: rows as in ``valid_index.parquet``, columns as in
  ``labels.json``), started_at, ended_at.

``<sweep_dir>/history.parquet`` — one row per evaluation:
  trial_id, iteration (1-based evaluation index), step, epoch, micro_f1, auprc, mean_ap, accuracy,
  val_loss, lr, train_loss, is_best.

Written in O(n): a flush writes only the trials that changed since the last one, each as a small
JSON fragment of its own (``results/<trial_id>.json``: its row, and its evaluations since the
last compaction), and readers overlay the fragments on the compacted Parquet files
(:meth:`relex.sweep.layout.SweepDir.trial_rows`). When the fragments outnumber the trials the
compacted files hold (or their evaluations the evaluations held), and when the sweep ends, the
writer compacts: it rewrites both Parquet files whole, then deletes the fragments they absorbed.
What is compacted at least doubles between two compactions, so the rows written in all stay
within a small multiple of the rows written as fragments. Fragments are JSON because a
one-row Parquet file of this schema costs milliseconds to write and to read again, a JSON one
a fraction of that. Every file goes through a temporary name and ``os.replace``: a crash at
any point leaves each trial's last flushed row in its fragment or in the compacted file.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa

from relex.io_utils import Compaction
# the file names and Parquet helpers live with the rest of the directory's layout
from relex.sweep.layout import HISTORY_FILE, TRIALS_FILE, SweepDir, read_rows, write_table  # noqa: F401
# the schemas live apart so that the layout's readers share them
from relex.sweep.schema import HISTORY_SCHEMA, METRIC_COLUMNS, TRIALS_SCHEMA, to_table  # noqa: F401

# A trial's status, the ``status`` column of trials.parquet.
TERMINATED = "TERMINATED"  # ran its whole budget
STOPPED_EARLY = "STOPPED_EARLY"  # stopped by ASHA at a rung
ERROR = "ERROR"
RUNNING = "RUNNING"
PENDING = "PENDING"  # reopened by --retry-errors
PAUSED = "PAUSED"  # a budget ended the sweep after the trial's checkpoint; --resume continues it
NOT_STARTED = "NOT_STARTED"  # a budget ended the sweep before its first evaluation
SCORED = (TERMINATED, STOPPED_EARLY)  # ended with a best evaluation worth ranking
FINISHED = (*SCORED, ERROR)  # will not run again unless --retry-errors reopens it


@dataclasses.dataclass(frozen=True)
class Tables:
    """How a sweep draws its results table: the caller's (``relex.leaderboard``'s), since the
    sweep layer imports no layer above it."""

    # (rows, *, name, total, top, running) -> a rich renderable: the counts by status, the best
    # ``top`` trials and up to ``running`` running ones
    live: Callable[..., Any]
    plain: Callable[..., str]  # (rows) -> the whole ranked table as plain text


def parquet_rows(path: Path) -> int:
    """How many rows a Parquet file holds (from its footer), 0 when it does not exist."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows if path.exists() else 0


def index_columns(frame) -> dict[str, pa.Array]:
    """The columns of an index of data rows (``valid_index.parquet``, ``folds.parquet``): row,
    then the data set's normalized columns in order (id, sentence, entities, label, source)."""
    from relex.data.io import COLUMNS, INT_COLUMNS

    columns = {"row": pa.array(range(len(frame)), pa.int64())}
    for c in COLUMNS:
        if c in INT_COLUMNS:
            columns[c] = pa.array([int(x) for x in frame[c]], pa.int64())
        else:
            columns[c] = pa.array([None if x is None else str(x) for x in frame[c]], pa.string())
    return columns


class ResultsWriter:
    """Keeps the rows of a sweep in memory; :meth:`flush` writes what changed, as fragments, and
    compacts them now and then; :meth:`compact` at the end."""

    def __init__(self, sweep_dir: str | Path):
        self.sweep = SweepDir(sweep_dir)
        self._lock = threading.Lock()
        self.trials: dict[str, dict[str, Any]] = {r["trial_id"]: r for r in self.sweep.trial_rows()}
        self._history: dict[str, dict[int, dict[str, Any]]] = {}
        for r in self.sweep.history_rows():
            self._history.setdefault(r["trial_id"], {})[int(r["iteration"])] = r
        self._dirty: set[str] = set()  # trials changed since the last flush
        # what the compacted files hold, and the evaluations written since (an interrupted
        # run's fragments are read back as such)
        fragments = self.sweep.fragments()
        self._compaction = Compaction(parquet_rows(self.sweep.trials_file), fragments.values())
        self._compacted_history = parquet_rows(self.sweep.history_file)
        # a fragment's trial rewrites all its evaluations: some may be compacted already, none
        # may be left out
        self._fresh: dict[str, set[int]] = {tid: set(self._history.get(tid, {})) for tid in fragments}
        self._fresh_rows = sum(len(v) for v in self._fresh.values())
        self.version = 0  # counts changes: a reader redraws only when it moved

    def set_trial(self, row: dict[str, Any]) -> None:
        with self._lock:
            old = self.trials.get(row["trial_id"], {})
            self.trials[row["trial_id"]] = {**old, **row}
            self._changed(row["trial_id"])

    def add_history(self, row: dict[str, Any]) -> None:
        """Add one evaluation; a replayed evaluation (after a resume) replaces the earlier row."""
        with self._lock:
            tid, it = row["trial_id"], int(row["iteration"])
            self._history.setdefault(tid, {})[it] = row
            fresh = self._fresh.setdefault(tid, set())
            if it not in fresh:
                fresh.add(it)
                self._fresh_rows += 1
            self._changed(tid)

    def _changed(self, trial_id: str) -> None:
        self._dirty.add(trial_id)
        self.version += 1

    def finished(self) -> set[str]:
        return {t for t, r in self.trials.items() if r.get("status") in FINISHED}

    def trial_rows(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(self.trials[k]) for k in sorted(self.trials)]

    def rows(self) -> list[dict[str, Any]]:
        """The current rows, uncopied: :meth:`set_trial` replaces a row, never changes it in
        place, so a reader on another thread (the live table) may keep them as they are."""
        with self._lock:
            return list(self.trials.values())

    def history_rows(self, trial_id: str) -> list[dict[str, Any]]:
        """A trial's evaluations in order."""
        with self._lock:
            evals = self._history.get(trial_id, {})
            return [evals[i] for i in sorted(evals)]

    def last_recorded(self) -> dict[str, int]:
        """Trial id -> the step of the last evaluation recorded for it: where a trial that runs
        again (a resumed sweep, a retry) continues from."""
        with self._lock:
            return {tid: int(evals[max(evals)]["step"] or 0)
                    for tid, evals in self._history.items() if evals}

    def flush(self) -> None:
        """Write every trial changed since the last flush as its fragment; compact when the
        fragments outnumber what is compacted (or nothing is compacted yet)."""
        with self._lock:
            self._write_dirty()
            if (self._compaction.due() or self._fresh_rows > self._compacted_history
                    or not self.sweep.trials_file.exists()):
                self._compact()

    def compact(self) -> None:
        """Everything in the compacted files, no fragment left (the end of a sweep)."""
        with self._lock:
            self._write_dirty()
            if self._compaction.journal or not self.sweep.trials_file.exists():
                self._compact()

    def _write_dirty(self) -> None:
        for tid in sorted(self._dirty):
            evals = self._history.get(tid, {})
            self.sweep.write_fragment(tid, self.trials.get(tid),
                                      [evals[i] for i in sorted(self._fresh.get(tid, ()))])
            self._compaction.wrote(self.sweep.fragment(tid))
        self._dirty.clear()

    def _compact(self) -> None:
        """Both compacted files whole, then the fragments they absorbed (relex.io_utils.Compaction)."""
        trials = [self.trials[k] for k in sorted(self.trials)]
        history = [row for tid in sorted(self._history)
                   for _, row in sorted(self._history[tid].items())]
        self.sweep.path.mkdir(parents=True, exist_ok=True)
        write_table(self.sweep.trials_file, to_table(trials, TRIALS_SCHEMA))
        write_table(self.sweep.history_file, to_table(history, HISTORY_SCHEMA))
        self._compaction.absorbed(len(trials))
        self._fresh.clear()
        self._fresh_rows = 0
        self._compacted_history = len(history)

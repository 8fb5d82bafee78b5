"""A sweep's results as Parquet, written atomically as trials end.

``<sweep_dir>/trials.parquet`` — one row per trial:
  trial_id, status (TERMINATED / STOPPED_EARLY / ERROR; RUNNING while it runs; PENDING when
  --retry-errors reopened it; PAUSED / NOT_STARTED when a budget ended the sweep), config_id (the
  trial id, or in a fold sweep the configuration its folds share), fold (fold sweeps: the fold held
  out), lineage (staged sweeps: ``<base sweep>/<base configuration>`` it grew from), every
  TrialConfig field as its own column, the best evaluation's micro_f1, auprc, mean_ap, accuracy,
  val_loss, best_step,
  best_epoch, epochs_run, evaluations, attempts, wall_s, node, node_id, gpu, error (text, for
  failures), checkpoint (the best checkpoint's directory), valid_probs (an ``.npy`` of the best
  checkpoint's validation-set probabilities: rows as in ``valid_index.parquet``, columns as in
  ``labels.json``), started_at, ended_at.

``<sweep_dir>/history.parquet`` — one row per evaluation:
  trial_id, iteration (1-based evaluation index), step, epoch, micro_f1, auprc, mean_ap, accuracy,
  val_loss, lr, train_loss, is_best.

Both files are rewritten whole through a temporary file and ``os.replace``: a crash leaves the
previous complete version, so every trial that had finished is kept.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from pathlib import Path
from typing import Any, Callable, Iterable

import pyarrow as pa

from relex.config import TrialConfig
from relex.metrics import EVAL_METRICS
# the file names and Parquet helpers live with the rest of the directory's layout
from relex.sweep.layout import HISTORY_FILE, TRIALS_FILE, SweepDir, read_rows, write_table  # noqa: F401

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
# every metric a trial reports after each evaluation (mean_ap: tie-free, see relex.metrics)
METRIC_COLUMNS = EVAL_METRICS

_PA_TYPES = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}


@dataclasses.dataclass(frozen=True)
class Tables:
    """How a sweep draws its results table: the caller's (``relex.leaderboard``'s), since the
    sweep layer imports no layer above it."""

    rich: Callable[..., Any]  # (rows, *, title=None, top=None) -> a rich renderable
    plain: Callable[..., str]  # (rows) -> the same table as plain text


def _config_fields() -> list[tuple[str, pa.DataType]]:
    out = []
    for f in dataclasses.fields(TrialConfig):
        typ = f.type if isinstance(f.type, str) else f.type.__name__
        out.append((f.name, _PA_TYPES[typ]))
    return out


TRIALS_SCHEMA = pa.schema(
    [("trial_id", pa.string()), ("status", pa.string()), ("config_id", pa.string()),
     ("fold", pa.int64()), ("lineage", pa.string())]
    + _config_fields()
    + [(m, pa.float64()) for m in METRIC_COLUMNS]
    + [("best_step", pa.int64()), ("best_epoch", pa.float64()), ("epochs_run", pa.float64()),
       ("evaluations", pa.int64()), ("attempts", pa.int64()), ("wall_s", pa.float64()),
       ("node", pa.string()), ("node_id", pa.string()), ("gpu", pa.string()),
       ("error", pa.string()), ("checkpoint", pa.string()), ("valid_probs", pa.string()),
       ("started_at", pa.float64()), ("ended_at", pa.float64())]
)

HISTORY_SCHEMA = pa.schema(
    [("trial_id", pa.string()), ("iteration", pa.int64()), ("step", pa.int64()),
     ("epoch", pa.float64())]
    + [(m, pa.float64()) for m in METRIC_COLUMNS]
    + [("lr", pa.float64()), ("train_loss", pa.float64()), ("is_best", pa.bool_())]
)


def _clean(value: Any, typ: pa.DataType) -> Any:
    if value is None:
        return None
    if pa.types.is_floating(typ):
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    if pa.types.is_integer(typ):
        try:
            f = float(value)
        except (TypeError, ValueError):
            return None
        return int(f) if math.isfinite(f) else None
    if pa.types.is_boolean(typ):
        return bool(value)
    return str(value)


def to_table(rows: Iterable[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    rows = list(rows)
    cols = {f.name: [_clean(r.get(f.name), f.type) for r in rows] for f in schema}
    return pa.table(cols, schema=schema)


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
    """Keeps the rows of a sweep in memory and rewrites the Parquet files atomically."""

    def __init__(self, sweep_dir: str | Path):
        self.sweep = SweepDir(sweep_dir)
        self._lock = threading.Lock()
        self.trials: dict[str, dict[str, Any]] = {r["trial_id"]: r for r in self.sweep.trial_rows()}
        self.history: dict[tuple[str, int], dict[str, Any]] = {
            (r["trial_id"], r["iteration"]): r for r in self.sweep.history_rows()}

    def set_trial(self, row: dict[str, Any]) -> None:
        with self._lock:
            old = self.trials.get(row["trial_id"], {})
            self.trials[row["trial_id"]] = {**old, **row}

    def add_history(self, row: dict[str, Any]) -> None:
        """Add one evaluation; a replayed evaluation (after a resume) replaces the earlier row."""
        with self._lock:
            self.history[(row["trial_id"], int(row["iteration"]))] = row

    def finished(self) -> set[str]:
        return {t for t, r in self.trials.items() if r.get("status") in FINISHED}

    def trial_rows(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(self.trials[k]) for k in sorted(self.trials)]

    def flush(self) -> None:
        with self._lock:
            trials = [self.trials[k] for k in sorted(self.trials)]
            history = [self.history[k] for k in sorted(self.history)]
            self.sweep.path.mkdir(parents=True, exist_ok=True)
            write_table(self.sweep.trials_file, to_table(trials, TRIALS_SCHEMA))
            write_table(self.sweep.history_file, to_table(history, HISTORY_SCHEMA))

"""A sweep directory: every path in it named once, its typed readers and its writers.

::

    <sweep_dir>/
      job.json               the resolved job (trials, data, ASHA settings)
      labels.json            {"names": [...], "negative": ...}: column order of every probability file
      valid_index.parquet    the validation rows, in probability-row order
      folds.parquet          fold sweeps: every row with the fold that holds it out
      trials.parquet         one row per trial (relex.sweep.schema.TRIALS_SCHEMA), as of the last compaction
      history.parquet        one row per evaluation, as of the last compaction
      results/<id>.json      a trial changed since then: its row and its evaluations since then (they win)
      asha_state.json        ASHA's rungs (relex.sweep.asha), as of its last compaction
      asha_decisions/        ASHA's decisions since then, one file each
      study.journal          TPE sweeps: the Optuna studies, one append per ask and tell (relex.sweep.journal)
      usage.json             resource-hours spent (relex.sweep.budget)
      driver.lease           the driver that owns the sweep (relex.sweep.lease)
      valid_probs/<id>.npy   each trial's best-checkpoint validation probabilities
      oof_probs/<config>.npy fold sweeps: out-of-fold probabilities per configuration
      trials/<id>/           relex's files of one trial (:class:`TrialDir`)
      ray/                   Ray Tune's experiment directory
      cache/                 backbones and features built by the pre-flight
      tensorboard/ mlruns/ wandb/   the trackers' files

Everything that reads or writes a sweep goes through :class:`SweepDir`. Sweeps written before a
file existed still read: a missing optional file reads as empty (``{}``, no rows, None).

A sweep's results are read as the compacted file plus the fragments of ``results/`` (see
:mod:`relex.sweep.results`): while a sweep runs, each flush writes only the trials that changed,
one small file each, and folds them into the compacted files now and then.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from relex.errors import RelexError
from relex.io_utils import atomic_path, atomic_write_text, json_default, read_json

DEFAULT_STORAGE = Path("artifacts")  # where sweeps go, and where commands look for the latest
JOB_FILE = "job.json"
LABELS_FILE = "labels.json"
VALID_INDEX_FILE = "valid_index.parquet"
FOLDS_FILE = "folds.parquet"
TRIALS_FILE = "trials.parquet"
HISTORY_FILE = "history.parquet"
RESULTS_DIR = "results"  # a fragment per trial changed since the last compaction: results/<id>.json
FRAGMENT_SUFFIX = ".json"
TRIALS_KEY = ("trial_id",)  # what identifies a row of trials.parquet, and of history.parquet
HISTORY_KEY = ("trial_id", "iteration")
ASHA_STATE_FILE = "asha_state.json"
ASHA_DECISIONS_DIR = "asha_decisions"
STUDY_FILE = "study.journal"
USAGE_FILE = "usage.json"
LEASE_FILE = "driver.lease"
VALID_PROBS_DIR = "valid_probs"
OOF_DIR = "oof_probs"
TRIALS_DIR = "trials"
RAY_DIR = "ray"  # kept apart from relex's files: on resume Tune writes back copies of its .json files
CACHE_DIR = "cache"
TRACKER_DIRS = {"tensorboard": "tensorboard", "mlflow": "mlruns", "wandb": "wandb"}  # logger -> dir
# everything relex writes in a sweep directory (a start that failed early leaves a subset)
ENTRIES = frozenset({JOB_FILE, LABELS_FILE, VALID_INDEX_FILE, FOLDS_FILE, TRIALS_FILE, HISTORY_FILE, RESULTS_DIR,
                     ASHA_STATE_FILE, ASHA_DECISIONS_DIR, STUDY_FILE, USAGE_FILE, LEASE_FILE, VALID_PROBS_DIR, OOF_DIR, TRIALS_DIR,
                     RAY_DIR, CACHE_DIR, *TRACKER_DIRS.values()})

# <sweep_dir>/trials/<trial_id>/
RUN_DIR = "run"  # fit's output directory; the best checkpoint is run/best
BEST_DIR = "best"
STATES_DIR = "states"  # resumable states step_<N> the Tune checkpoints point to
ATTEMPTS_FILE = "attempts.jsonl"  # one line per start of the trial function
SUMMARY_FILE = "summary.json"  # written when fit returns: best metrics, steps, wall time
ERROR_FILE = "error.json"  # the failure's one-line message, written by the failing trial
FINAL_FILE = "final.json"  # written by the driver once the trial's final row is recorded
POINTER_FILE = "pointer.json"  # a whole Tune checkpoint: {"state": <state dir, from the sweep dir>}


def write_table(path: Path, table) -> None:
    """A Parquet file, atomically (temp name + rename)."""
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """A Parquet file's rows as dicts; none when it does not exist; a damaged one is one clear
    error naming it."""
    import pyarrow.parquet as pq

    if not path.exists():
        return []
    try:
        return pq.read_table(path).to_pylist()
    except Exception as e:  # a damaged file is the user's to fix
        raise RelexError(f"{path}: cannot read ({type(e).__name__}: {e})") from None


def read_frame(path: Path):
    """A Parquet file as a DataFrame; a damaged one is one clear error naming it."""
    import pandas as pd

    try:
        return pd.read_parquet(path)
    except Exception as e:  # a damaged file is the user's to fix
        raise RelexError(f"{path}: cannot read ({type(e).__name__}: {e})") from None


def _json_or_empty(path: Path) -> dict[str, Any]:
    return read_json(path) if path.exists() else {}


def _json_or_empty_quiet(path: Path) -> dict[str, Any]:
    """A marker a trial may be writing right now: unreadable reads as empty."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def latest_sweep(root: Path = DEFAULT_STORAGE) -> Path:
    """The most recently updated sweep directory (one with results) under ``root``."""
    found = ({p.parent for p in root.glob(f"*/{TRIALS_FILE}")}
             | {p.parent for p in root.glob(f"*/{RESULTS_DIR}")}) if root.is_dir() else set()
    found = {p for p in found if SweepDir(p).has_results()}
    if not found:
        raise RelexError(f"{root}: no sweep results found (run `relex sweep JOB.py` first)")
    return max(found, key=lambda p: SweepDir(p).results_updated_at())


def _read_table(path: Path):
    """A Parquet file as a table; FileNotFoundError when it is gone, any other failure one clear
    error naming it."""
    import pyarrow.parquet as pq

    with open(path, "rb") as fh:
        try:
            return pq.read_table(fh)
        except Exception as e:  # a damaged file is the user's to fix
            raise RelexError(f"{path}: cannot read ({type(e).__name__}: {e})") from None


def _read_fragment(path: Path) -> dict[str, Any]:
    """A fragment: ``{"trial": row, "history": [evaluation rows]}``; FileNotFoundError when a
    compaction absorbed it, a damaged one one clear error naming it."""
    text = path.read_text(encoding="utf-8")
    try:
        fragment = json.loads(text)
        if not isinstance(fragment, dict) or not isinstance(fragment.get("history", []), list):
            raise ValueError("not a results fragment")
    except ValueError as e:
        raise RelexError(f"{path}: cannot read ({e})") from None
    return fragment


def _latest_per_key(tables: list, key: tuple[str, ...]):
    """The rows of ``tables`` in order, one per ``key`` (the last one wins), sorted by ``key``."""
    import pyarrow as pa

    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")
    if len(tables) > 1:
        last = {k: i for i, k in enumerate(zip(*(table.column(c).to_pylist() for c in key)))}
        table = table.take(sorted(last.values()))
    return table.sort_by([(c, "ascending") for c in key])


_READ_TRIES = 5  # reads that may meet a compaction of a running sweep before giving up


class TrialDir:
    """``<sweep_dir>/trials/<trial_id>/``: relex's files of one trial."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.run = self.path / RUN_DIR
        self.best = self.run / BEST_DIR
        self.states = self.path / STATES_DIR
        self.attempts_file = self.path / ATTEMPTS_FILE
        self.summary_file = self.path / SUMMARY_FILE
        self.error_file = self.path / ERROR_FILE
        self.final_file = self.path / FINAL_FILE

    # readers
    def summary(self) -> dict[str, Any]:
        return _json_or_empty_quiet(self.summary_file)

    def error(self) -> str | None:
        return _json_or_empty_quiet(self.error_file).get("error")

    def attempts(self) -> int:
        if not self.attempts_file.exists():
            return 0
        return len(self.attempts_file.read_text(encoding="utf-8").splitlines())

    def is_final(self) -> bool:
        return self.final_file.exists()

    # writers
    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.summary_file, json.dumps(summary, indent=1, default=json_default))

    def write_error(self, message: str) -> None:
        atomic_write_text(self.error_file, json.dumps({"error": message, "at": time.time()}))

    def mark_final(self, status: str) -> None:
        atomic_write_text(self.final_file, json.dumps({"status": status, "at": time.time()}))

    def reopen(self) -> None:
        """Drop the final and error markers so the trial runs again (``--retry-errors``)."""
        for marker in (self.final_file, self.error_file):
            marker.unlink(missing_ok=True)


class _Entry:
    """A path of the sweep directory, as an attribute: ``job_file = _Entry(JOB_FILE)``."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, sweep: "SweepDir", owner=None) -> Path:
        return sweep.path / self.name


class SweepDir:
    """The paths of one sweep directory, its readers and its writers."""

    job_file = _Entry(JOB_FILE)
    labels_file = _Entry(LABELS_FILE)
    valid_index_file = _Entry(VALID_INDEX_FILE)
    folds_file = _Entry(FOLDS_FILE)
    trials_file = _Entry(TRIALS_FILE)
    history_file = _Entry(HISTORY_FILE)
    asha_state_file = _Entry(ASHA_STATE_FILE)
    asha_decisions_dir = _Entry(ASHA_DECISIONS_DIR)
    study_file = _Entry(STUDY_FILE)
    usage_file = _Entry(USAGE_FILE)
    lease_file = _Entry(LEASE_FILE)
    valid_probs_dir = _Entry(VALID_PROBS_DIR)
    oof_dir = _Entry(OOF_DIR)
    trials_dir = _Entry(TRIALS_DIR)
    results_dir = _Entry(RESULTS_DIR)
    ray_dir = _Entry(RAY_DIR)
    cache_dir = _Entry(CACHE_DIR)

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"SweepDir({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    def trial(self, trial_id: str) -> TrialDir:
        return TrialDir(self.trials_dir / trial_id)

    def probs_file(self, trial_id: str) -> Path:
        return self.valid_probs_dir / f"{trial_id}.npy"

    def oof_file(self, config_id: str) -> Path:
        return self.oof_dir / f"{config_id}.npy"

    def tracker_dir(self, logger: str) -> Path:
        """Where the tracker ``logger`` (tensorboard, mlflow, wandb) writes."""
        return self.path / TRACKER_DIRS[logger]

    def fragment(self, trial_id: str) -> Path:
        """A trial's row and evaluations written since the last compaction."""
        return self.results_dir / f"{trial_id}{FRAGMENT_SUFFIX}"

    def fragments(self) -> dict[str, Path]:
        """Trial id -> its fragment, for every fragment on disk."""
        if not self.results_dir.is_dir():
            return {}
        return {p.name[:-len(FRAGMENT_SUFFIX)]: p
                for p in sorted(self.results_dir.glob(f"*{FRAGMENT_SUFFIX}"))}

    def has_results(self) -> bool:
        return self.trials_file.exists() or bool(self.fragments())

    def results_updated_at(self) -> float:
        """When the results last changed: the newest of the compacted file and the fragments."""
        files = [self.trials_file, *self.fragments().values()]
        return max((p.stat().st_mtime for p in files if p.exists()), default=0.0)

    def ray_started(self) -> bool:
        """Has Ray Tune started this sweep (its experiment state is there to restore)?"""
        return (self.ray_dir / "tuner.pkl").exists()

    # ------------------------------------------------------------------ readers
    def require_results(self) -> "SweepDir":
        """This directory, or one clear error when it holds no results to read."""
        if not self.path.is_dir():
            raise RelexError(f"{self.path}: no such sweep directory")
        if not self.has_results():
            raise RelexError(f"{self.path}: no {TRIALS_FILE} (not a sweep directory, or no trial "
                             "has finished yet)")
        return self

    def job(self) -> dict[str, Any]:
        """The resolved job (``{}`` when the sweep has none yet)."""
        return _json_or_empty(self.job_file)

    def labels(self) -> dict[str, Any]:
        """``{"names": [...], "negative": ...}`` (``{}`` for a sweep without one)."""
        return _json_or_empty(self.labels_file)

    def valid_index(self):
        """The validation rows in probability-row order (a DataFrame), or None."""
        if not self.valid_index_file.exists():
            return None
        return read_frame(self.valid_index_file).sort_values("row").reset_index(drop=True)

    def trials_table(self):
        """Every trial's latest row (trials.parquet overlaid with the fragments), by trial id;
        None before the first is recorded."""
        return self._results(self.trials_file, "trial", TRIALS_KEY)

    def history_table(self):
        """Every evaluation's latest row, by trial id and iteration; None when there is none."""
        return self._results(self.history_file, "history", HISTORY_KEY)

    def _results(self, compacted: Path, part: str, key: tuple[str, ...]):
        """The compacted file's rows overlaid with the fragments' ``part`` (a fragment's row
        wins). Fragments are listed before the compacted file is read: one that a compaction
        absorbed meanwhile is gone when opened, and the read starts again."""
        from relex.sweep.schema import HISTORY_SCHEMA, TRIALS_SCHEMA, to_table

        schema = TRIALS_SCHEMA if part == "trial" else HISTORY_SCHEMA
        for _ in range(_READ_TRIES):
            paths = list(self.fragments().values())
            try:
                tables = [_read_table(compacted)] if compacted.exists() else []
                fragments = [_read_fragment(p) for p in paths]
            except FileNotFoundError:
                continue
            rows = ([f["trial"] for f in fragments if f.get("trial")] if part == "trial"
                    else [h for f in fragments for h in f.get("history", [])])
            if rows:
                tables.append(to_table(rows, schema))
            return _latest_per_key(tables, key) if tables else None
        raise RelexError(f"{self.results_dir}: the results kept changing while being read; "
                         "read them again")

    def trial_rows(self) -> list[dict[str, Any]]:
        """The trials' rows (none before the first trial is recorded)."""
        table = self.trials_table()
        return [] if table is None else table.to_pylist()

    def history_rows(self) -> list[dict[str, Any]]:
        table = self.history_table()
        return [] if table is None else table.to_pylist()

    def trials(self):
        """The trials as a DataFrame ordered by trial id; one clear error when unreadable."""
        table = self.trials_table()
        if table is None:
            raise RelexError(f"{self.trials_file}: cannot read (no trial is recorded)")
        return table.to_pandas()

    def history(self):
        """The evaluations as a DataFrame (empty, with its key columns, when there is none)."""
        import pandas as pd

        from relex.metrics import PRIMARY

        table = self.history_table()
        if table is None:
            return pd.DataFrame(columns=["trial_id", "iteration", PRIMARY])
        return table.to_pandas()

    def probs(self, trial_id: str, recorded: str | None = None):
        """A trial's validation probabilities, or None when not saved. The directory's own copy
        comes first: a sweep copied from a cluster keeps its files, not the absolute paths
        recorded there (``recorded``)."""
        import numpy as np

        path = self.probs_file(trial_id)
        if not path.exists() and recorded:
            path = Path(recorded)
        if not path.exists():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise RelexError(f"{path}: cannot read validation probabilities ({e})") from None

    # ------------------------------------------------------------------ writers
    def write_job(self, resolved: dict[str, Any]) -> None:
        atomic_write_text(self.job_file, json.dumps(resolved, indent=1, sort_keys=True))

    def write_labels(self, labels) -> None:
        """``labels.json``: the column order of every probability file of the sweep."""
        atomic_write_text(self.labels_file, json.dumps(
            {"names": list(labels.names), "negative": labels.negative}, ensure_ascii=False))

    def write_fragment(self, trial_id: str, row: dict[str, Any] | None,
                       history: list[dict[str, Any]]) -> None:
        """A trial's fragment, atomically: its row and its evaluations since the last compaction."""
        atomic_write_text(self.fragment(trial_id), json.dumps(
            {"trial": row, "history": history}, ensure_ascii=False, default=json_default))

    def write_valid_index(self, table) -> None:
        write_table(self.valid_index_file, table)

    def write_probs(self, trial_id: str, probs) -> Path:
        """A trial's validation probabilities (float32 ``.npy``), atomically."""
        import numpy as np

        return _save_npy(self.probs_file(trial_id), np.asarray(probs).astype(np.float32))

    def write_oof(self, config_id: str, probs) -> Path:
        return _save_npy(self.oof_file(config_id), probs)


def _save_npy(path: Path, array) -> Path:
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)
    return path

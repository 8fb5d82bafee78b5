"""k-fold cross-validation sweeps: the data of each fold, the fold index, out-of-fold probabilities.

``Sweep(..., folds=5, fold_seed=0)`` splits the training file into 5 stratified folds
(:func:`relex.data.split.fold_assignment`); every configuration runs once per fold, trained on
the other four and validated on its own fold. Trial ids are ``<config id>-f<k>`` (``t003-f2``);
``trials.parquet`` has ``config_id`` and ``fold`` columns.

Files in the sweep directory:

* ``folds.parquet`` — every training row (row, id, sentence, entities, label, source, as in
  ``valid_index.parquet``) and the fold that holds it out;
* ``valid_probs/<trial id>.npy`` — a fold trial's probabilities of its own fold's rows (in the
  order of ``folds.parquet`` restricted to that fold);
* ``oof_probs/<config id>.npy`` — once every fold of a configuration has finished: its
  out-of-fold probabilities, one row per training row (row order of ``folds.parquet``), each
  predicted by the one model that did not train on it.

ASHA does not stop fold trials: stopping one fold early would leave its configuration with an
incomplete (or mixed-budget) out-of-fold set and a cross-validated score that does not compare
with the others. Every fold runs its full budget (``max_t`` still caps it). ``--resume``
resumes a fold sweep like any other: the fold assignment is a function of the data and
``fold_seed`` (both checked against ``job.json``), finished fold trials are kept, unfinished ones
continue from their last checkpoint, and out-of-fold files are assembled when the sweep ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from relex.errors import RelexError
from relex.sweep.layout import FOLDS_FILE, SweepDir, write_table


def fold_trial_id(config_id: str, fold: int) -> str:
    return f"{config_id}-f{fold}"


@dataclass
class SweepData:
    """The data of a sweep as every trial sees it."""

    full: Any  # the training file as read (a Dataset)
    train: Any  # plain sweeps: the training part
    valid: Any  # plain sweeps: the validation part
    splits: list[tuple[Any, Any]] | None = None  # fold sweeps: (train_k, valid_k) per fold
    assignment: Any = None  # fold sweeps: the fold of every row of ``full``
    skipped: dict[str, int] = field(default_factory=dict)  # data file -> bad rows dropped

    def for_fold(self, fold: int | None):
        """(train, valid) of a trial: its fold's split, or the sweep's one split."""
        if fold is None:
            return self.train, self.valid
        return self.splits[fold]


def read_sweep_data(train: str, valid: str | float, labels: str | None, negative: str,
                    split_seed: int, folds: int = 0, fold_seed: int = 0, *,
                    skip_bad_rows: bool = False) -> SweepData:
    """Read and split a sweep's data exactly as its trials see it (pre-flight and analysis)."""
    import numpy as np

    from relex.data import read_dataset, stratified_split
    from relex.data.split import fold_assignment

    full = read_dataset(str(train), labels=labels, negative=negative, skip_bad_rows=skip_bad_rows)
    skipped = {str(train): full.skipped}
    if folds:
        assignment = fold_assignment(full.label_ids(), folds, fold_seed)
        splits = [(full.subset(np.flatnonzero(assignment != k)), full.subset(np.flatnonzero(assignment == k)))
                  for k in range(folds)]
        return SweepData(full, full, None, splits, assignment, skipped)
    if isinstance(valid, float):
        tr, va = stratified_split(full, valid, split_seed)
    else:
        tr, va = full, read_dataset(str(valid), labels=full.labels, negative=negative,
                                    skip_bad_rows=skip_bad_rows)
        skipped[str(valid)] = va.skipped
    return SweepData(full, tr, va, skipped=skipped)


def read_job_data(resolved: dict[str, Any]) -> SweepData:
    """:func:`read_sweep_data` for a sweep's ``job.json``."""
    valid = resolved["valid"]
    return read_sweep_data(resolved["train"], float(valid) if isinstance(valid, (int, float)) else valid,
                           resolved.get("labels"), resolved["negative_label"],
                           int(resolved.get("split_seed", 0)), int(resolved.get("folds") or 0),
                           int(resolved.get("fold_seed") or 0),
                           skip_bad_rows=bool(resolved.get("skip_bad_rows", False)))


def write_fold_index(sweep_dir: Path, data: SweepData) -> None:
    """``folds.parquet``: the training rows (the columns of ``valid_index.parquet``) and the fold
    that holds each out."""
    import pyarrow as pa

    from relex.sweep.results import index_columns

    columns = index_columns(data.full.frame)
    columns["fold"] = pa.array(data.assignment, pa.int64())
    write_table(SweepDir(sweep_dir).folds_file, pa.table(columns))


def read_fold_index(sweep_dir: Path):
    import pyarrow.parquet as pq

    path = SweepDir(sweep_dir).folds_file
    if not path.exists():
        raise RelexError(f"{sweep_dir}: not a fold sweep (no {FOLDS_FILE})")
    return pq.read_table(path).to_pandas()


def assemble_oof(sweep_dir: Path, rows: Sequence[dict[str, Any]]) -> dict[str, Path]:
    """Write ``oof_probs/<config id>.npy`` for every configuration whose folds all finished with
    validation probabilities; returns {config id: path}. Each training row is filled exactly
    once, by the fold that held it out (checked)."""
    import numpy as np

    from relex.sweep.results import SCORED

    index = read_fold_index(sweep_dir)
    fold_of = index["fold"].to_numpy()
    folds = int(fold_of.max()) + 1
    by_config: dict[str, dict[int, str]] = {}
    for r in rows:
        if r.get("fold") is None or r.get("status") not in SCORED:
            continue
        if r.get("valid_probs") and Path(r["valid_probs"]).exists():
            by_config.setdefault(str(r["config_id"]), {})[int(r["fold"])] = r["valid_probs"]
    written: dict[str, Path] = {}
    for config_id, paths in sorted(by_config.items()):
        if len(paths) != folds:
            continue
        oof = None
        filled = np.zeros(len(fold_of), dtype=np.int64)
        for k, p in sorted(paths.items()):
            probs = np.load(p)
            rows_k = np.flatnonzero(fold_of == k)
            if probs.shape[0] != len(rows_k):
                raise RelexError(f"{p}: {probs.shape[0]} rows, fold {k} has {len(rows_k)}")
            if oof is None:
                oof = np.zeros((len(fold_of), probs.shape[1]), dtype=np.float32)
            oof[rows_k] = probs
            filled[rows_k] += 1
        if not (filled == 1).all():  # cannot happen with a valid fold index; never write a bad file
            raise RelexError(f"{sweep_dir}: out-of-fold rows of {config_id} not covered exactly once")
        path = SweepDir(sweep_dir).write_oof(config_id, oof)
        written[config_id] = path
    return written

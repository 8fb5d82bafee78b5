"""One sweep directory, loaded for analysis.

Reads what :mod:`relex.sweep.results` and the runner write: ``trials.parquet``,
``history.parquet``, ``job.json`` (axes, data, ASHA settings), ``labels.json`` and
``valid_index.parquet`` (the columns and rows of ``valid_probs/<trial_id>.npy``). Every file but
``trials.parquet`` is optional: a report says what it could not show and why.

Validation rows with their sentences come from ``valid_index.parquet`` when it carries them;
a sweep written before it did is matched against its data file again (``job.json``: train file,
validation share and split seed), checked id by id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from relex.config import NEGATIVE_LABEL
from relex.errors import RelexError
from relex.sweep.layout import LABELS_FILE, VALID_INDEX_FILE, SweepDir
from relex.sweep.results import SCORED

TEXT_COLUMNS = ("sentence", "subj_word", "subj_start", "subj_end", "subj_type",
                "obj_word", "obj_start", "obj_end", "obj_type", "source")


@dataclass
class SweepResults:
    sweep: SweepDir
    trials: pd.DataFrame  # one row per trial, ordered by trial id
    history: pd.DataFrame  # one row per evaluation
    job: dict[str, Any]
    axes: list[str]  # config fields that vary between trials, seed excluded, in grid order
    labels: list[str] | None = None  # column order of the probabilities
    negative: str | None = None
    valid: pd.DataFrame | None = None  # validation rows in probability-row order
    valid_note: str | None = None  # why validation text is missing, when it is
    rung_milestones: list[int] = field(default_factory=list)
    _probs: dict[str, np.ndarray | None] = field(default_factory=dict, repr=False)
    _recorded: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def dir(self) -> Path:
        return self.sweep.path

    @property
    def seeds(self) -> list[int]:
        return sorted({int(s) for s in self.trials["seed"].dropna()})

    @property
    def scored(self) -> pd.DataFrame:
        """Trials that ended normally with a micro-F1: the ones any comparison can use."""
        t = self.trials
        return t[t["status"].isin(SCORED) & t["micro_f1"].notna()]

    def probs(self, trial_id: str) -> np.ndarray | None:
        """The trial's best-checkpoint validation probabilities, or None when not saved."""
        if trial_id not in self._probs:
            self._probs[trial_id] = self._read_probs(trial_id)
        return self._probs[trial_id]

    def _read_probs(self, trial_id: str) -> np.ndarray | None:
        if self._recorded is None:  # each trial's recorded path, looked up once for all
            self._recorded = (dict(zip(self.trials["trial_id"], self.trials["valid_probs"]))
                              if "valid_probs" in self.trials else {})
        recorded = self._recorded.get(trial_id)
        probs = self.sweep.probs(trial_id, recorded if isinstance(recorded, str) else None)
        if probs is not None and self.labels is not None and (
                probs.ndim != 2 or probs.shape[1] != len(self.labels)):
            raise RelexError(f"{self.sweep.probs_file(trial_id)}: shape {probs.shape} does not "
                             f"match the {len(self.labels)} labels of {LABELS_FILE}")
        return probs

    def gold(self) -> np.ndarray | None:
        """Gold label ids of the validation rows (None when unknown)."""
        if self.valid is None or self.labels is None:
            return None
        index = {name: i for i, name in enumerate(self.labels)}
        return np.array([index.get(x, -1) for x in self.valid["label"]], dtype=np.int64)


# ------------------------------------------------------------------------------ loading
def _axes(trials: pd.DataFrame, job: dict[str, Any]) -> list[str]:
    """The grid axes that actually vary between trials, seed excluded."""
    from relex.config import TrialConfig

    candidates = [a for a in job.get("axes", []) if a != "seed"] or \
        [f for f in TrialConfig.field_names() if f != "seed"]
    return [a for a in candidates
            if a in trials.columns and trials[a].astype(str).nunique(dropna=False) > 1]


def _milestones(job: dict[str, Any], history: pd.DataFrame) -> list[int]:
    from relex.sweep.asha import Rungs

    asha = job.get("asha")
    if not asha or history.empty:
        return []
    rungs = Rungs(grace_period=int(asha["grace_period"]),
                  reduction_factor=float(asha["reduction_factor"]),
                  max_t=int(asha.get("max_t") or 0), mode=asha.get("mode", "max"))
    return rungs.milestones(int(history["iteration"].max()))


def load_sweep(sweep_dir: str | Path) -> SweepResults:
    sweep = SweepDir(sweep_dir).require_results()
    trials = sweep.trials()
    if trials.empty:
        raise RelexError(f"{sweep.trials_file}: the sweep has no trials yet")
    history = sweep.history()
    job = sweep.job()
    labels = sweep.labels()
    res = SweepResults(sweep=sweep, trials=trials, history=history, job=job, axes=_axes(trials, job),
                       labels=labels.get("names"), negative=labels.get("negative"),
                       rung_milestones=_milestones(job, history))
    res.valid, res.valid_note = _validation_rows(sweep, job, res.labels, res.negative)
    return res


def _validation_rows(sweep: SweepDir, job: dict[str, Any], labels, negative):
    index = sweep.valid_index()
    if index is None:
        return None, f"the sweep directory has no {VALID_INDEX_FILE}"
    if all(c in index.columns for c in TEXT_COLUMNS):
        return index, None
    text, why = _rows_from_data(job, labels, negative)
    if text is None:
        return index, why
    if list(text["id"].astype(str)) != list(index["id"].astype(str)):
        return index, (f"{job.get('train')}: its validation split no longer matches the sweep's "
                       "(the data file changed); sentences are not shown")
    return pd.concat([index, text[list(TEXT_COLUMNS)].reset_index(drop=True)], axis=1), None


def _rows_from_data(job: dict[str, Any], labels, negative):
    """The validation split rebuilt from the job's data file, or (None, why not)."""
    from relex.data import LabelSet, read_dataset, stratified_split

    train, valid = job.get("train"), job.get("valid")
    if not train or valid is None:
        return None, "job.json does not name the data file; sentences are not shown"
    labelset = LabelSet(tuple(labels), negative or NEGATIVE_LABEL) if labels else None
    try:
        if isinstance(valid, (int, float)) and not isinstance(valid, bool):
            full = read_dataset(train, labels=labelset, negative=negative)
            _, split = stratified_split(full, float(valid), int(job.get("split_seed", 0)))
        else:
            split = read_dataset(valid, labels=labelset, negative=negative)
    except RelexError as e:
        return None, f"sentences are not shown: {str(e).splitlines()[0]}"
    return split.frame, None


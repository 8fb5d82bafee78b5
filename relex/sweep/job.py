"""Job files: a sweep defined as a plain Python file.

A job file is executed and must bind one :class:`Sweep` to the name ``sweep``::

    from relex.sweep import Sweep, grid
    sweep = Sweep(
        name="ablation",
        train="data/klue-re/klue-re-v1.1_train.json", valid=0.1,
        space=dict(backbone=grid(["klue/roberta-base", "klue/bert-base"]),
                   head=grid(["cls", "marker"]), lr=3e-5, epochs=5),
        seeds=[42, 43],
        asha=dict(metric="micro_f1", grace_period=1, reduction_factor=3),
        resources=dict(gpu=1, cpu=4),
    )

Paths in a job file (``train``, ``valid`` when it is a file, ``labels``) are relative to the
current working directory, as for every other relex command: ``relex sweep jobs/x.py`` run from
the repository root reads ``data/...`` under the repository root. ``~`` is expanded.

Everything is validated here, before Ray starts: a syntax error names ``file:line``, an unknown
key gets a did-you-mean, every expanded trial is built into a :class:`~relex.config.TrialConfig`
(which rejects invalid values), every sampled axis is checked against its field
(:mod:`relex.sweep.space`), and data files must exist. Errors are :class:`RelexError`.

The :class:`Sweep` schema is declared once: each field carries its own check and whether
``job.json`` records it; :func:`load_job` runs the checks in field order, then the few that span
fields, then expands the trials (grid × samples × seeds × folds; a TPE sweep's trials come from
its searcher while it runs, :mod:`relex.sweep.search`).
"""

from __future__ import annotations

import difflib
import functools
import itertools
import math
import os
import re
import traceback
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from relex.config import NEGATIVE_LABEL, TrialConfig
from relex.data.split import DEFAULT_SPLIT_SEED, DEFAULT_VALID_FRACTION
from relex.metrics import EVAL_METRICS, PRIMARY, REGISTRY
from relex.errors import RelexError
from relex.sweep.folds import fold_trial_id
from relex.sweep.space import (Distribution, Narrow, check_distributions, choice, draw,
                               loguniform, narrow, randint, sampled_axes, uniform)
from relex.sweep.budget import parse_duration, positive
from relex.sweep.retention import parse_size, resolve_keep
from relex.tracking import check_loggers

ASHA_DEFAULTS: dict[str, Any] = {
    "metric": PRIMARY,
    "mode": REGISTRY[PRIMARY].mode,  # without a mode: the better end of the metric chosen
    "grace_period": 1,  # evaluations before a trial can be stopped
    "reduction_factor": 3,
    "max_t": 0,  # evaluations per trial at most; 0 = no cap (the trainer's epochs/max_steps decide)
}
METRICS = EVAL_METRICS  # what ASHA may decide on
RESOURCE_KEYS = ("gpu", "cpu")
SEARCHES = ("random", "tpe")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class Grid:
    """One axis of the grid: every trial takes one of ``values``."""

    def __init__(self, values: Sequence[Any]):
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise RelexError(f"grid() takes a list of values, got {values!r}")
        if len(values) == 0:
            raise RelexError("grid() needs at least one value")
        self.values = list(values)

    def __repr__(self) -> str:
        return f"grid({self.values!r})"


def grid(values: Sequence[Any]) -> Grid:
    """Mark a space entry as a grid axis (the sweep runs every combination of the axes)."""
    return Grid(values)


def _did_you_mean(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    if not close:
        close = [k for k in known if k.startswith(key) or key.startswith(k)][:1]
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_gpus_per_trial(gpu: float, where: str) -> None:
    """Ray shares a GPU only below one: 0.5 puts two trials on a GPU, 1.5 means nothing."""
    if gpu > 1 and not float(gpu).is_integer():
        raise RelexError(f"{where}: gpu={gpu:g} is invalid: use a whole number of GPUs or a "
                         "fraction below 1 (0.5, 0.25: that many trials share one GPU)")


def _reject_unknown_arguments(cls):
    """Job files get a did-you-mean for a mistyped argument instead of a TypeError."""
    init = cls.__init__
    names = [f.name for f in fields(cls) if f.init]

    @functools.wraps(init)
    def checked(self, *args: Any, **kwargs: Any) -> None:
        for k in kwargs:
            if k not in names:
                raise RelexError(f"Sweep(): unknown argument '{k}'{_did_you_mean(k, names)}")
        init(self, *args, **kwargs)

    cls.__init__ = checked
    return cls


@dataclass
class Trial:
    """One expanded trial: a stable id (its index in the grid) and its full config."""

    trial_id: str
    config: TrialConfig
    varying: dict[str, Any]  # the grid-axis values of this trial (including the seed)
    config_id: str = ""  # the configuration's id: its folds share it (default: the trial id)
    fold: int | None = None  # fold sweeps: the fold this trial holds out
    lineage: str | None = None  # staged sweeps: "<base sweep>/<base configuration id>"

    def spec(self) -> dict[str, Any]:
        """What the trial function receives (and job.json records)."""
        out: dict[str, Any] = {"trial_id": self.trial_id, "config": self.config.to_dict()}
        if self.fold is not None:
            out.update(config_id=self.config_id, fold=self.fold)
        if self.lineage is not None:
            out["lineage"] = self.lineage
        return out


# ---------------------------------------------------------------------------- the schema
# Each Sweep field declares its own check (raw value, where -> resolved value) and whether
# job.json records it; load_job runs them in field order, then the checks that span fields.
def _check_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise RelexError(f"{where}: name={value!r} is invalid: use letters, digits, '_', '-', '.'")
    return value


def _check_train(value: Any, where: str) -> Path:
    if value is None:
        raise RelexError(f"{where}: train is required (the training data file)")
    return _path(value, "train", where)


def _check_valid(value: Any, where: str) -> Path | float | None:
    if value is None:
        return None  # 0.1, or nothing in a fold sweep: decided with folds
    if isinstance(value, bool):
        raise RelexError(f"{where}: valid={value!r} is invalid: a file path or a fraction in (0, 1)")
    if isinstance(value, (int, float)):
        if not (0 < float(value) < 1):
            raise RelexError(f"{where}: valid={value!r} is invalid: a fraction must be in (0, 1)")
        return float(value)
    return _path(value, "valid", where)


def _check_labels(value: Any, where: str) -> Path | None:
    return None if value is None else _path(value, "labels", where)


def _check_negative_label(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise RelexError(f"{where}: negative_label={value!r} is invalid")
    return value


def _check_space(space: Any, where: str) -> dict[str, Any]:
    if not isinstance(space, dict):
        raise RelexError(f"{where}: space must be a dict of TrialConfig fields")
    if "seed" in space:
        raise RelexError(f"{where}: space: set seeds with Sweep(seeds=[...]), not space['seed']")
    if "negative_label" in space:
        raise RelexError(f"{where}: space: set negative_label on Sweep(...), not in space")
    if "workers" in space:
        raise RelexError(f"{where}: space: set Sweep(workers_per_trial=N), not space['workers']")
    known = TrialConfig.field_names()
    for k in space:
        if k not in known:
            raise RelexError(f"{where}: space: unknown config key '{k}'{_did_you_mean(k, known)}")
    check_distributions(space, where)
    return space


def _check_seeds(value: Any, where: str) -> list[int]:
    raw = value.values if isinstance(value, Grid) else value
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = [raw]
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise RelexError(f"{where}: seeds={value!r} is invalid: an int or a non-empty list of ints")
    seeds = [_int(s, "seeds", where, 0) for s in raw]
    if len(set(seeds)) != len(seeds):
        raise RelexError(f"{where}: seeds={seeds!r} has duplicates")
    return seeds


def _reject_unknown_keys(value: Any, known: Sequence[str], what: str, where: str) -> None:
    if not isinstance(value, dict):
        raise RelexError(f"{where}: {what} must be a dict ({', '.join(known)}), got {value!r}")
    unknown = [k for k in value if k not in known]
    if unknown:
        raise RelexError(f"{where}: {what}: unknown key '{unknown[0]}'{_did_you_mean(unknown[0], known)}")


def _check_asha(value: Any, where: str) -> dict[str, Any]:
    _reject_unknown_keys(value, list(ASHA_DEFAULTS), "asha", where)
    asha = {**ASHA_DEFAULTS, **value}
    if asha["metric"] not in METRICS:
        raise RelexError(f"{where}: asha: metric={asha['metric']!r} is invalid: choose one of {', '.join(METRICS)}")
    if "mode" not in value:
        asha["mode"] = REGISTRY[asha["metric"]].mode
    if asha["mode"] not in ("max", "min"):
        raise RelexError(f"{where}: asha: mode={asha['mode']!r} is invalid: choose max or min")
    asha["grace_period"] = _int(asha["grace_period"], "asha grace_period", where, 1)
    rf = asha["reduction_factor"]
    if isinstance(rf, bool) or not isinstance(rf, (int, float)) or not math.isfinite(rf) or rf <= 1:
        raise RelexError(f"{where}: asha: reduction_factor={rf!r} is invalid: must be a number > 1")
    asha["reduction_factor"] = float(rf)
    asha["max_t"] = _int(asha["max_t"], "asha max_t", where, 0)
    if asha["max_t"] and asha["max_t"] < asha["grace_period"]:
        raise RelexError(f"{where}: asha: max_t={asha['max_t']} is smaller than grace_period={asha['grace_period']}")
    return asha


def _check_resources(value: Any, where: str) -> dict[str, Any]:
    _reject_unknown_keys(value, RESOURCE_KEYS, "resources", where)
    resources: dict[str, Any] = {"gpu": None, "cpu": None}
    for k in RESOURCE_KEYS:
        v = value.get(k)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (k == "cpu" and v <= 0):
            raise RelexError(f"{where}: resources: {k}={v!r} is invalid: must be a number "
                             f"{'> 0' if k == 'cpu' else '>= 0'}")
        resources[k] = int(v) if float(v).is_integer() else float(v)
    if resources["gpu"] is not None:
        check_gpus_per_trial(resources["gpu"], f"{where}: resources")
    return resources


def _check_count(name: str, minimum: int = 0) -> Callable[[Any, str], int]:
    return lambda value, where: _int(value, name, where, minimum)


def _check_flag(name: str) -> Callable[[Any, str], bool]:
    def check(value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise RelexError(f"{where}: {name}={value!r} is invalid: True or False")
        return value

    return check


def _check_before_trial(value: Any, where: str):
    if value is not None and not callable(value):
        raise RelexError(f"{where}: before_trial must be a function f(cfg, trial_id)")
    return value


def _check_keep(value: Any, where: str) -> int | None:
    return None if value is None else _int(value, "keep_checkpoints", where, 0)


def _check_folds(value: Any, where: str) -> int:
    folds = _int(0 if value is None else value, "folds", where, 0)
    if folds == 1:
        raise RelexError(f"{where}: folds=1 is invalid: 0 (one validation split) or at least 2")
    return folds


def _check_base(value: Any, where: str) -> Path | None:
    return None if value is None else _path(value, "base", where)


def _check_search(value: Any, where: str) -> str:
    if value not in SEARCHES:
        raise RelexError(f"{where}: search={value!r} is invalid: choose one of "
                         f"{', '.join(SEARCHES)}{_did_you_mean(str(value), SEARCHES)}")
    return value


def _setting(default: Any = None, check: Callable[[Any, str], Any] | None = None, *,
             record: bool = True, recorded_with: str | None = None, factory=None) -> Any:
    """A Sweep field with its check; ``record``: written to job.json (``recorded_with``: only
    when that other field is set)."""
    meta = {"check": check, "record": record, "with": recorded_with}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@_reject_unknown_arguments
@dataclass
class Sweep:
    """A sweep: data, search space, seeds, ASHA settings, resources and failure policy.

    A job file builds one with the arguments below; :func:`load_job` returns the same kind of
    object validated and resolved (absolute paths, full ASHA settings, seeds as a list, durations
    in seconds, a base sweep's data settings filled in) with its expanded ``trials``. It is the
    one object from job file to driver: ``job.json`` and the ``--dry-run`` table derive from it.

    Args:
        name: the sweep's name; results go to ``<storage>/<name>/``.
        train: the training data file.
        valid: a validation data file, or a fraction in (0, 1) of ``train`` split off
            stratified by label (with ``split_seed``; the same split for every trial); default
            0.1. Not with ``folds``.
        labels: an optional label list file (e.g. KLUE's ``relation_list.json``); default: the
            labels found in ``train``.
        negative_label: the "no relation" label (excluded from micro-F1).
        space: TrialConfig fields to values; ``grid([...])`` values are grid axes,
            ``uniform`` / ``loguniform`` / ``randint`` / ``choice`` values are sampled (see
            :mod:`relex.sweep.space`), the rest fixed.
        seeds: the seed axis (an int or a list of ints); every grid point (and sampled
            configuration) runs once per seed.
        num_samples: sampled configurations per grid point (a space with distributions).
        search: how they are drawn: ``"random"`` (Ray Tune's sampling, all drawn up front from
            ``search_seed``) or ``"tpe"`` (Optuna's TPE through a study kept in the sweep
            directory; needs ``relex[search]``; see :mod:`relex.sweep.search`).
        search_seed: the seed of the sampler.
        asha: ASHA settings: metric, mode, grace_period, reduction_factor, max_t (in
            evaluations; 0 = no cap).
        resources: per trial: ``gpu`` (default: 1 if the cluster has GPUs, else 0) and ``cpu``;
            per worker when ``workers_per_trial`` > 1.
        workers_per_trial: data-parallel workers of each trial (a Ray Train run of that many
            workers, each with ``resources``; see :mod:`relex.train.workers`); sets every
            trial's ``workers``.
        max_concurrent: trials at once at most (0: as many as resources allow).
        max_failures: retries of a failed trial before it is recorded as ERROR.
        reuse_actors: reuse Ray actors between trials (saves start-up time of small trials).
        split_seed: the seed of the stratified validation split (default 0, as
            ``relex train --split-seed``; a trial's ``seed`` does not move it).
        before_trial: optional ``f(cfg: TrialConfig, trial_id: str)`` run inside each trial
            before training (per-trial set-up on the worker); an exception fails the trial.
        folds: k >= 2 for k-fold cross-validation (stratified by label, with ``fold_seed``):
            every configuration runs once per fold, and ASHA stops none of them (see
            :mod:`relex.sweep.folds`); 0 = one validation split.
        fold_seed: the seed of the fold assignment.
        base: an earlier sweep's directory: the grid runs around each of its ``top`` best
            configurations (see :mod:`relex.sweep.stages`); without ``train`` the base's data
            settings are used.
        top: how many of the base sweep's configurations to grow from.
        time_budget: wall-clock budget of one run of the sweep (``"2h"``, ``"90m"``, seconds);
            when reached no new trial starts and running ones stop at their next evaluation
            (see :mod:`relex.sweep.budget`).
        gpu_hours: the sweep's GPU-hours budget over all its runs (CPU-hours without GPUs).
        cost_per_gpu_hour: price of one GPU-hour, for the cost in the leaderboard's footer.
        skip_bad_rows: drop invalid data rows in pre-flight (how many per file is printed and
            recorded in ``job.json``) instead of stopping with the bad-row report.
        loggers: trackers every trial logs to: ``"tensorboard"``, ``"mlflow"``, ``"wandb"``
            (see :mod:`relex.tracking`).
        keep_checkpoints: best checkpoints kept on disk: those of the top K ended trials by
            the ASHA metric; the others are deleted as trials end. 0 keeps every one. Default:
            5, or no count limit when ``checkpoint_budget`` is set.
        checkpoint_budget: the disk the sweep's best checkpoints may take (``"50GB"``,
            ``"500MB"``, bytes): the best-ranked ended trials keep theirs until it is full.
            Running, paused and failed trials always keep theirs (see
            :mod:`relex.sweep.retention`).
    """

    name: str | None = _setting(None, _check_name)
    train: Path | str | os.PathLike | None = _setting(None, _check_train)
    valid: Path | str | os.PathLike | float | None = _setting(None, _check_valid)  # None: fold sweeps
    labels: Path | str | os.PathLike | None = _setting(None, _check_labels)
    negative_label: str = _setting(NEGATIVE_LABEL, _check_negative_label)
    # the trials stand for the space and seeds in job.json (a sampled space is recorded too)
    space: dict[str, Any] = _setting(check=_check_space, record=False, factory=dict)
    seeds: int | Sequence[int] = _setting((42,), _check_seeds, record=False)
    num_samples: int = _setting(1, _check_count("num_samples", 1), record=False)
    search: str = _setting("random", _check_search, record=False)
    search_seed: int = _setting(0, _check_count("search_seed"), record=False)
    asha: dict[str, Any] = _setting(check=_check_asha, factory=dict)
    resources: dict[str, Any] = _setting(check=_check_resources, factory=dict)  # None: at run time
    workers_per_trial: int = _setting(1, _check_count("workers_per_trial", 1))
    max_concurrent: int = _setting(0, _check_count("max_concurrent"))
    max_failures: int = _setting(0, _check_count("max_failures"))
    reuse_actors: bool = _setting(True, lambda value, where: bool(value))
    split_seed: int = _setting(DEFAULT_SPLIT_SEED, _check_count("split_seed"))
    before_trial: Callable[[TrialConfig, str], None] | None = _setting(
        None, _check_before_trial, record=False)  # code
    folds: int | None = _setting(None, _check_folds, recorded_with="folds")  # resolved: 0 = none
    fold_seed: int = _setting(0, _check_count("fold_seed"), recorded_with="folds")
    base: Path | str | os.PathLike | None = _setting(None, _check_base, recorded_with="base")
    top: int = _setting(4, recorded_with="base")  # resolved: 0 without a base
    skip_bad_rows: bool = _setting(False, _check_flag("skip_bad_rows"))
    loggers: Sequence[str] = _setting((), lambda value, where: check_loggers(value, where=f"{where}: loggers"))
    # the budget is recorded as one "budget" entry
    time_budget: str | float | None = _setting(None, parse_duration, record=False)  # resolved: s
    gpu_hours: float | None = _setting(
        None, lambda value, where: positive(value, "gpu_hours", where), record=False)
    cost_per_gpu_hour: float | None = _setting(
        None, lambda value, where: positive(value, "cost_per_gpu_hour", where), record=False)
    # resolved together (resolve_keep): 0 = no count limit
    keep_checkpoints: int | None = _setting(None, _check_keep)
    checkpoint_budget: str | int | None = _setting(None, parse_size)  # resolved: bytes
    # filled in by load_job
    path: Path | None = field(default=None, init=False, repr=False)  # the job file
    axes: list[str] = field(default_factory=list, init=False)  # varying fields (seed last)
    trials: list[Trial] = field(default_factory=list, init=False, repr=False)
    points: list[GridPoint] = field(default_factory=list, init=False, repr=False)
    missing_files: list[str] = field(default_factory=list, init=False, repr=False)  # dry runs

    def __repr__(self) -> str:
        return f"Sweep(name={self.name!r}, train={self.train!r}, {len(self.space)} space keys)"

    @property
    def budget(self) -> dict[str, float | None]:
        """time_budget_s, gpu_hours, cost_per_gpu_hour (None: no limit / no price)."""
        return {"time_budget_s": self.time_budget, "gpu_hours": self.gpu_hours,
                "cost_per_gpu_hour": self.cost_per_gpu_hour}

    @property
    def sampled(self) -> list[str]:
        """The space's sampled axes (empty for a grid sweep)."""
        return sampled_axes(self.space)

    @property
    def searched(self) -> bool:
        """Trials come from a searcher while the sweep runs (TPE), not expanded up front."""
        return bool(self.sampled) and self.search == "tpe"

    @property
    def total(self) -> int:
        """How many trials the sweep runs in all."""
        if self.searched:
            return len(self.points) * self.num_samples * len(self.seeds) * max(self.folds or 0, 1)
        return len(self.trials)

    def feature_configs(self) -> list[TrialConfig]:
        """Configurations covering every backbone and feature set the trials will need (a
        searched sweep's trials differ only in sampled fields, which shape no features)."""
        if not self.searched:
            return [t.config for t in self.trials]
        some = {k: self.space[k].bounds()[0] for k in self.sampled}
        return [TrialConfig.from_dict({**p.values, **some, "seed": self.seeds[0]}) for p in self.points]

    def specs(self) -> dict[str, dict[str, Any]]:
        """Each grid trial's spec by its id: what a trial that Tune knows by id runs."""
        return {t.trial_id: t.spec() for t in self.trials}

    def resolved(self) -> dict[str, Any]:
        """The loaded job as plain JSON-able data (what ran, with absolute paths): ``job.json``."""
        out: dict[str, Any] = {"job_file": str(self.path)}
        for f in fields(self):
            if f.init and f.metadata["record"] and (
                    f.metadata["with"] is None or getattr(self, f.metadata["with"])):
                value = getattr(self, f.name)
                out[f.name] = str(value) if isinstance(value, Path) else value
        out["loggers"] = list(self.loggers)
        out["budget"] = self.budget
        if self.sampled:
            out["search"] = self.search_settings()
        out["trials"] = [t.spec() for t in self.trials]
        return out

    def search_settings(self) -> dict[str, Any]:
        """The sampled space and how it is searched (job.json's ``search``)."""
        return {"method": self.search, "num_samples": self.num_samples, "seed": self.search_seed,
                "seeds": list(self.seeds),
                "space": {k: self.space[k].to_json() for k in self.sampled}}


# --------------------------------------------------------------------------------- loading
def _job_frame_line(tb, job_file: str) -> int | None:
    line = None
    for frame in traceback.extract_tb(tb):
        if os.path.abspath(frame.filename) == job_file:
            line = frame.lineno
    return line


def exec_job_file(path: str | os.PathLike) -> Sweep:
    """Execute a job file and return its ``sweep``; every failure is one RelexError line."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise RelexError(f"{path}: job file not found")
    shown = str(path)
    abspath = os.path.abspath(p)
    try:
        source = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RelexError(f"{shown}: cannot read job file ({e})") from None
    try:
        code = compile(source, abspath, "exec")
    except SyntaxError as e:
        raise RelexError(f"{shown}:{e.lineno}: syntax error: {e.msg}") from None
    namespace: dict[str, Any] = {"__name__": "relex_job", "__file__": abspath}
    try:
        exec(code, namespace)
    except RelexError as e:
        line = _job_frame_line(e.__traceback__, abspath)
        raise RelexError(f"{shown}{f':{line}' if line else ''}: {e}") from None
    except Exception as e:  # anything the job file itself raises
        line = _job_frame_line(e.__traceback__, abspath)
        raise RelexError(f"{shown}{f':{line}' if line else ''}: {type(e).__name__}: {e}") from None
    sweep = namespace.get("sweep")
    if sweep is None:
        raise RelexError(f"{shown}: no `sweep` object; the job file must define "
                         "`sweep = Sweep(...)` (from relex.sweep import Sweep, grid)")
    if not isinstance(sweep, Sweep):
        raise RelexError(f"{shown}: `sweep` is a {type(sweep).__name__}, expected relex.sweep.Sweep")
    return sweep


def _path(value: Any, what: str, where: str) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise RelexError(f"{where}: {what} must be a file path, got {value!r}")
    return Path(os.path.abspath(Path(value).expanduser()))


def _int(value: Any, what: str, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not value.is_integer()) or value < minimum:
        raise RelexError(f"{where}: {what}={value!r} is invalid: expected an integer >= {minimum}")
    return int(value)


def load_job(path: str | os.PathLike, *, check_files: bool = True) -> Sweep:
    """Execute, validate and expand a job file.

    With ``check_files`` a missing data file raises; without (dry runs) it is listed in
    ``missing_files``.
    """
    where = str(path)
    raw = _with_base_data(exec_job_file(path), where)
    job = replace(raw, **{f.name: f.metadata["check"](getattr(raw, f.name), where)
                          for f in fields(Sweep) if f.init and f.metadata["check"]})
    _check_together(job, raw, where)
    job.path = Path(os.path.abspath(Path(path).expanduser()))
    job.missing_files = [str(p) for p in (job.train, job.valid, job.labels)
                         if isinstance(p, Path) and not p.is_file()]
    if job.missing_files and check_files:
        raise RelexError(f"{where}: data file not found: {job.missing_files[0]}")
    job.points = _grid_points(job, where)
    job.axes = [*_varying_grid_axes(job.space), *job.sampled] + (["seed"] if len(job.seeds) > 1 else [])
    job.trials = [] if job.searched else _expand(job, where)
    return job


def _with_base_data(sweep: Sweep, where: str) -> Sweep:
    """A staged sweep without its own ``train`` takes the base sweep's data settings, so both
    stages see the same rows."""
    if sweep.base is None or sweep.train is not None:
        return sweep
    from relex.sweep.stages import read_base

    base_job, _ = read_base(_path(sweep.base, "base", where), where)
    data = {k: base_job.get(k, getattr(sweep, k))
            for k in ("train", "labels", "negative_label", "split_seed")}
    if sweep.valid is None:
        data["valid"] = base_job.get("valid")
    data["skip_bad_rows"] = sweep.skip_bad_rows or bool(base_job.get("skip_bad_rows", False))
    if sweep.folds is None:
        data["folds"] = base_job.get("folds", 0)
        data["fold_seed"] = base_job.get("fold_seed", sweep.fold_seed)
    return replace(sweep, **data)


def _check_together(job: Sweep, raw: Sweep, where: str) -> None:
    """The checks that span fields (each field's own ran from the schema)."""
    if job.folds and job.valid is not None:
        raise RelexError(f"{where}: valid={job.valid!r} and folds={job.folds}: a fold sweep "
                         "validates each fold on the rows it holds out; drop valid")
    if not job.folds and job.valid is None:
        job.valid = DEFAULT_VALID_FRACTION
    if job.folds and set(raw.asha) - {"metric", "mode"}:
        raise RelexError(f"{where}: asha: a fold sweep stops no trial early (every fold of a "
                         "configuration runs its full budget), so only metric and mode apply")
    job.top = _int(job.top, "top", where, 1) if job.base is not None else 0
    job.keep_checkpoints = resolve_keep(job.keep_checkpoints, job.checkpoint_budget)
    if not job.sampled and job.num_samples != 1:
        raise RelexError(f"{where}: num_samples={job.num_samples} needs a sampled axis in space "
                         "(uniform, loguniform, randint or choice)")
    narrowed = [k for k, v in job.space.items() if isinstance(v, Narrow)]
    if narrowed and job.base is None:
        raise RelexError(f"{where}: space: {narrowed[0]}=narrow(...) narrows around a base sweep's "
                         "configurations; set base=")
    if job.searched:
        _check_tpe(job, where)


def _check_tpe(job: Sweep, where: str) -> None:
    if job.folds:
        raise RelexError(f"{where}: search='tpe' runs on one validation split; use "
                         "search='random' for a fold sweep")
    from relex.sweep.search import require_optuna

    require_optuna(where)


def _varying_grid_axes(space: dict[str, Any]) -> list[str]:
    return [k for k, v in space.items() if isinstance(v, Grid) and len(v.values) > 1]


@dataclass
class GridPoint:
    """One combination of the grid axes (on a base configuration, in a staged sweep)."""

    values: dict[str, Any]  # constants, grid values and the base configuration's values
    lineage: str | None = None
    space: dict[str, Distribution] = field(default_factory=dict)  # what its samples draw from


def _grid_points(job: Sweep, where: str) -> list[GridPoint]:
    axes = [k for k, v in job.space.items() if isinstance(v, Grid)]
    fixed = {k: v for k, v in job.space.items() if not isinstance(v, (Grid, Distribution))}
    combos = list(itertools.product(*(job.space[k].values for k in axes)))
    bases: list[tuple[str | None, dict[str, Any]]] = [(None, {})]
    if job.base is not None:
        from relex.sweep.stages import top_configurations

        bases = top_configurations(job.base, job.top, job.asha["metric"], job.asha["mode"], where)
    points = [GridPoint({**base, **fixed, **dict(zip(axes, combo)),
                         "negative_label": job.negative_label, "workers": job.workers_per_trial},
                        lineage)
              for lineage, base in bases for combo in combos]
    for p in points:  # a narrowed axis draws around the value of the base configuration
        p.space = {k: d.around(p.values[k]) if isinstance(d, Narrow) else d
                   for k, d in job.space.items() if isinstance(d, Distribution)}
    return points


def _samples(job: Sweep) -> list[dict[str, Any]]:
    """The sampled values of every configuration of one grid point (random search draws them
    all up front: a seeded run draws the same ones)."""
    if not job.sampled:
        return [[{}] for _ in job.points]
    import numpy as np

    rng = np.random.RandomState(job.search_seed)
    return [[draw(p.space, rng) for _ in range(job.num_samples)] for p in job.points]


def _expand(job: Sweep, where: str) -> list[Trial]:
    """Every trial of a grid or random sweep, in order: grid point, sample, seed, fold."""
    per_point = _samples(job)
    n = sum(len(s) for s in per_point) * len(job.seeds)
    width = max(3, len(str(n - 1)))
    trials: list[Trial] = []
    seen: dict[str, str] = {}
    configs = 0
    for point, samples in zip(job.points, per_point):
        for sample in samples:
            for seed in job.seeds:
                cid = f"t{configs:0{width}d}"
                cfg = TrialConfig.from_dict({**point.values, **sample, "seed": seed},
                                            where=f"{where}: trial {cid}")
                key = cfg.to_json()
                if key in seen and not sample:  # two random draws may meet; grid points may not
                    if point.lineage is not None:
                        continue  # two base configurations meet once the new axes override them
                    raise RelexError(f"{where}: trials {seen[key]} and {cid} have the same config "
                                     "(a grid axis repeats a value)")
                seen[key] = cid
                configs += 1
                varying = {k: getattr(cfg, k) for k in job.axes}
                for fold in (range(job.folds) if job.folds else [None]):
                    tid = cid if fold is None else fold_trial_id(cid, fold)
                    trials.append(Trial(tid, cfg, varying, config_id=cid, fold=fold,
                                        lineage=point.lineage))
    return trials


__all__ = ["Sweep", "grid", "Grid", "Trial", "GridPoint", "load_job", "exec_job_file",
           "ASHA_DEFAULTS", "METRICS", "uniform", "loguniform", "randint", "choice", "narrow"]

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
(which rejects invalid values), and data files must exist. Errors are :class:`RelexError`.
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
        space: TrialConfig fields to values; ``grid([...])`` values are grid axes, the rest fixed.
        seeds: the seed axis (an int or a list of ints); every grid point runs once per seed.
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

    name: str | None = None
    train: Path | str | os.PathLike | None = None
    valid: Path | str | os.PathLike | float | None = None  # resolved: None in fold sweeps
    labels: Path | str | os.PathLike | None = None
    negative_label: str = NEGATIVE_LABEL
    space: dict[str, Any] = field(default_factory=dict)
    seeds: int | Sequence[int] = (42,)
    asha: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)  # resolved: gpu/cpu, None = at run time
    workers_per_trial: int = 1
    max_concurrent: int = 0
    max_failures: int = 0
    reuse_actors: bool = True
    split_seed: int = DEFAULT_SPLIT_SEED
    before_trial: Callable[[TrialConfig, str], None] | None = None
    folds: int | None = None  # resolved: 0 = one validation split
    fold_seed: int = 0
    base: Path | str | os.PathLike | None = None
    top: int = 4  # resolved: 0 without a base
    skip_bad_rows: bool = False
    loggers: Sequence[str] = ()
    time_budget: str | float | None = None  # resolved: seconds
    gpu_hours: float | None = None
    cost_per_gpu_hour: float | None = None
    keep_checkpoints: int | None = None  # resolved: 0 = no count limit
    checkpoint_budget: str | int | None = None  # resolved: bytes
    # filled in by load_job
    path: Path | None = field(default=None, init=False, repr=False)  # the job file
    axes: list[str] = field(default_factory=list, init=False)  # varying fields (seed last)
    trials: list[Trial] = field(default_factory=list, init=False, repr=False)
    missing_files: list[str] = field(default_factory=list, init=False, repr=False)  # dry runs

    def __repr__(self) -> str:
        return f"Sweep(name={self.name!r}, train={self.train!r}, {len(self.space)} space keys)"

    @property
    def budget(self) -> dict[str, float | None]:
        """time_budget_s, gpu_hours, cost_per_gpu_hour (None: no limit / no price)."""
        return {"time_budget_s": self.time_budget, "gpu_hours": self.gpu_hours,
                "cost_per_gpu_hour": self.cost_per_gpu_hour}

    def resolved(self) -> dict[str, Any]:
        """The loaded job as plain JSON-able data (what ran, with absolute paths): ``job.json``."""
        out: dict[str, Any] = {"job_file": str(self.path)}
        for f in fields(self):
            if self._in_job_json(f.name):
                value = getattr(self, f.name)
                out[f.name] = str(value) if isinstance(value, Path) else value
        out["loggers"] = list(self.loggers)
        out["budget"] = self.budget
        out["trials"] = [t.spec() for t in self.trials]
        return out

    def _in_job_json(self, name: str) -> bool:
        if name in _NOT_IN_JOB_JSON:
            return False
        owner = _RECORDED_WITH.get(name)
        return owner is None or bool(getattr(self, owner))


# job.json records what ran: the trials stand for the space, seeds and base configurations, and
# the budget for its three settings; the before_trial hook is code
_NOT_IN_JOB_JSON = {"space", "seeds", "before_trial", "time_budget", "gpu_hours",
                    "cost_per_gpu_hour", "path", "trials", "missing_files"}
# fold and staged sweeps only: a field recorded when another is set
_RECORDED_WITH = {"folds": "folds", "fold_seed": "folds", "base": "base", "top": "base"}


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
    sweep = exec_job_file(path)
    where = str(path)
    job_path = Path(os.path.abspath(Path(path).expanduser()))

    if not isinstance(sweep.name, str) or not _NAME_RE.match(sweep.name):
        raise RelexError(f"{where}: name={sweep.name!r} is invalid: use letters, digits, '_', '-', '.'")
    base_dir, top, data = _data_settings(sweep, where)
    folds = _int(data["folds"], "folds", where, 0)
    if folds == 1:
        raise RelexError(f"{where}: folds=1 is invalid: 0 (one validation split) or at least 2")
    fold_seed = _int(data["fold_seed"], "fold_seed", where, 0)
    if data["train"] is None:
        raise RelexError(f"{where}: train is required (the training data file)")
    train = _path(data["train"], "train", where)
    valid: Path | float | None
    raw_valid = data["valid"]
    if folds:
        if raw_valid is not None:
            raise RelexError(f"{where}: valid={raw_valid!r} and folds={folds}: a fold sweep "
                             "validates each fold on the rows it holds out; drop valid")
        valid = None
    elif raw_valid is None:
        valid = DEFAULT_VALID_FRACTION
    elif isinstance(raw_valid, bool):
        raise RelexError(f"{where}: valid={raw_valid!r} is invalid: a file path or a fraction in (0, 1)")
    elif isinstance(raw_valid, (int, float)):
        if not (0 < float(raw_valid) < 1):
            raise RelexError(f"{where}: valid={raw_valid!r} is invalid: a fraction must be in (0, 1)")
        valid = float(raw_valid)
    else:
        valid = _path(raw_valid, "valid", where)
    labels = _path(data["labels"], "labels", where) if data["labels"] is not None else None
    negative_label = data["negative_label"]
    if not isinstance(negative_label, str) or not negative_label:
        raise RelexError(f"{where}: negative_label={negative_label!r} is invalid")

    missing = [str(p) for p in (train, valid, labels) if isinstance(p, Path) and not p.is_file()]
    if missing and check_files:
        raise RelexError(f"{where}: data file not found: {missing[0]}")

    # ASHA
    if folds and set(sweep.asha) - {"metric", "mode"}:
        raise RelexError(f"{where}: asha: a fold sweep stops no trial early (every fold of a "
                         "configuration runs its full budget), so only metric and mode apply")
    unknown = [k for k in sweep.asha if k not in ASHA_DEFAULTS]
    if unknown:
        raise RelexError(f"{where}: asha: unknown key '{unknown[0]}'{_did_you_mean(unknown[0], list(ASHA_DEFAULTS))}")
    asha = {**ASHA_DEFAULTS, **sweep.asha}
    if asha["metric"] not in METRICS:
        raise RelexError(f"{where}: asha: metric={asha['metric']!r} is invalid: choose one of {', '.join(METRICS)}")
    if "mode" not in sweep.asha:
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

    # resources
    unknown = [k for k in sweep.resources if k not in RESOURCE_KEYS]
    if unknown:
        raise RelexError(f"{where}: resources: unknown key '{unknown[0]}'{_did_you_mean(unknown[0], RESOURCE_KEYS)}")
    resources: dict[str, Any] = {"gpu": None, "cpu": None}
    for k in RESOURCE_KEYS:
        if sweep.resources.get(k) is not None:
            v = sweep.resources[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (k == "cpu" and v <= 0):
                raise RelexError(f"{where}: resources: {k}={v!r} is invalid: must be a number "
                                 f"{'> 0' if k == 'cpu' else '>= 0'}")
            resources[k] = int(v) if float(v).is_integer() else float(v)
    if resources["gpu"] is not None:
        check_gpus_per_trial(resources["gpu"], f"{where}: resources")

    max_concurrent = _int(sweep.max_concurrent, "max_concurrent", where, 0)
    max_failures = _int(sweep.max_failures, "max_failures", where, 0)
    workers = _int(sweep.workers_per_trial, "workers_per_trial", where, 1)
    split_seed = _int(data["split_seed"], "split_seed", where, 0)
    checkpoint_budget = parse_size(sweep.checkpoint_budget, where)
    keep_checkpoints = resolve_keep(
        None if sweep.keep_checkpoints is None else _int(sweep.keep_checkpoints, "keep_checkpoints", where, 0),
        checkpoint_budget)
    if not isinstance(data["skip_bad_rows"], bool):
        raise RelexError(f"{where}: skip_bad_rows={data['skip_bad_rows']!r} is invalid: True or False")
    if sweep.before_trial is not None and not callable(sweep.before_trial):
        raise RelexError(f"{where}: before_trial must be a function f(cfg, trial_id)")
    loggers = check_loggers(sweep.loggers, where=f"{where}: loggers")

    # seeds
    seeds_raw = sweep.seeds
    if isinstance(seeds_raw, Grid):
        seeds_raw = seeds_raw.values
    if isinstance(seeds_raw, int) and not isinstance(seeds_raw, bool):
        seeds_raw = [seeds_raw]
    if not isinstance(seeds_raw, Sequence) or isinstance(seeds_raw, str) or not seeds_raw:
        raise RelexError(f"{where}: seeds={sweep.seeds!r} is invalid: an int or a non-empty list of ints")
    seeds = [_int(s, "seeds", where, 0) for s in seeds_raw]
    if len(set(seeds)) != len(seeds):
        raise RelexError(f"{where}: seeds={seeds!r} has duplicates")

    if not isinstance(sweep.space, dict):
        raise RelexError(f"{where}: space must be a dict of TrialConfig fields")
    if "seed" in sweep.space:
        raise RelexError(f"{where}: space: set seeds with Sweep(seeds=[...]), not space['seed']")
    if "negative_label" in sweep.space:
        raise RelexError(f"{where}: space: set negative_label on Sweep(...), not in space")
    if "workers" in sweep.space:
        raise RelexError(f"{where}: space: set Sweep(workers_per_trial=N), not space['workers']")
    known = TrialConfig.field_names()
    for k in sweep.space:
        if k not in known:
            raise RelexError(f"{where}: space: unknown config key '{k}'{_did_you_mean(k, known)}")

    axes = [k for k, v in sweep.space.items() if isinstance(v, Grid)]
    fixed = {k: v for k, v in sweep.space.items() if not isinstance(v, Grid)}
    axis_values = [sweep.space[k].values for k in axes]
    shown_axes = [a for a, vals in zip(axes, axis_values) if len(vals) > 1]
    if len(seeds) > 1:
        shown_axes.append("seed")
    combos = list(itertools.product(*axis_values)) if axes else [()]
    bases: list[tuple[str | None, dict[str, Any]]] = [(None, {})]
    if base_dir is not None:
        from relex.sweep.stages import top_configurations

        bases = top_configurations(base_dir, top, asha["metric"], asha["mode"], where)
    n = len(bases) * len(combos) * len(seeds)
    width = max(3, len(str(n - 1)))
    trials: list[Trial] = []
    seen: dict[str, str] = {}
    configs = 0
    for lineage, base_config in bases:
        for combo in combos:
            for seed in seeds:
                cid = f"t{configs:0{width}d}"
                values = {**base_config, **fixed, **dict(zip(axes, combo)), "seed": seed,
                          "negative_label": negative_label, "workers": workers}
                cfg = TrialConfig.from_dict(values, where=f"{where}: trial {cid}")
                key = cfg.to_json()
                if key in seen:
                    if lineage is not None:
                        continue  # two base configurations meet once the new axes override them
                    raise RelexError(f"{where}: trials {seen[key]} and {cid} have the same config "
                                     "(a grid axis repeats a value)")
                seen[key] = cid
                configs += 1
                varying = {k: getattr(cfg, k) for k in shown_axes}
                for fold in (range(folds) if folds else [None]):
                    tid = cid if fold is None else fold_trial_id(cid, fold)
                    trials.append(Trial(tid, cfg, varying, config_id=cid, fold=fold, lineage=lineage))

    job = replace(sweep, train=train, valid=valid, labels=labels, negative_label=negative_label,
                  seeds=seeds, asha=asha, resources=resources, max_concurrent=max_concurrent,
                  max_failures=max_failures, workers_per_trial=workers,
                  reuse_actors=bool(sweep.reuse_actors),
                  split_seed=split_seed, folds=folds, fold_seed=fold_seed, base=base_dir, top=top,
                  skip_bad_rows=data["skip_bad_rows"], loggers=loggers,
                  time_budget=parse_duration(sweep.time_budget, where),
                  gpu_hours=positive(sweep.gpu_hours, "gpu_hours", where),
                  cost_per_gpu_hour=positive(sweep.cost_per_gpu_hour, "cost_per_gpu_hour", where),
                  keep_checkpoints=keep_checkpoints, checkpoint_budget=checkpoint_budget)
    job.path, job.axes, job.trials, job.missing_files = job_path, shown_axes, trials, missing
    return job


def _data_settings(sweep: Sweep, where: str) -> tuple[Path | None, int, dict[str, Any]]:
    """(base sweep directory, top, data settings). A staged sweep without its own ``train``
    takes the base sweep's data settings, so both stages see the same rows."""
    data = {"train": sweep.train, "valid": sweep.valid, "labels": sweep.labels,
            "negative_label": sweep.negative_label, "split_seed": sweep.split_seed,
            "folds": 0 if sweep.folds is None else sweep.folds, "fold_seed": sweep.fold_seed,
            "skip_bad_rows": sweep.skip_bad_rows}
    if sweep.base is None:
        return None, 0, data
    from relex.sweep.stages import read_base

    base_dir = _path(sweep.base, "base", where)
    top = _int(sweep.top, "top", where, 1)
    base_job, _ = read_base(base_dir, where)
    if sweep.train is None:
        for k in ("train", "valid", "labels", "negative_label", "split_seed"):
            if k != "valid" or sweep.valid is None:
                data[k] = base_job.get(k, data[k])
        data["skip_bad_rows"] = sweep.skip_bad_rows or bool(base_job.get("skip_bad_rows", False))
        if sweep.folds is None:
            data["folds"] = base_job.get("folds", 0)
            data["fold_seed"] = base_job.get("fold_seed", sweep.fold_seed)
    return base_dir, top, data


__all__ = ["Sweep", "grid", "Grid", "Trial", "load_job", "exec_job_file", "ASHA_DEFAULTS",
           "METRICS"]

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
import itertools
import math
import os
import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from relex.config import TrialConfig
from relex.metrics import EVAL_METRICS
from relex.errors import RelexError
from relex.sweep.budget import parse_duration, positive
from relex.tracking import check_loggers

ASHA_DEFAULTS: dict[str, Any] = {
    "metric": "micro_f1",
    "mode": "max",
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


class Sweep:
    """A sweep: data, search space, seeds, ASHA settings, resources and failure policy.

    Args:
        name: the sweep's name; results go to ``<storage>/<name>/``.
        train: the training data file.
        valid: a validation data file, or a fraction in (0, 1) of ``train`` split off
            stratified by label (with ``split_seed``; the same split for every trial).
        labels: an optional label list file (e.g. KLUE's ``relation_list.json``); default: the
            labels found in ``train``.
        negative_label: the "no relation" label (excluded from micro-F1).
        space: TrialConfig fields to values; ``grid([...])`` values are grid axes, the rest fixed.
        seeds: the seed axis (an int or a list of ints); every grid point runs once per seed.
        asha: ASHA settings: metric, mode, grace_period, reduction_factor, max_t (in
            evaluations; 0 = no cap).
        resources: per trial: ``gpu`` (default: 1 if the cluster has GPUs, else 0) and ``cpu``.
        max_concurrent: trials at once at most (0: as many as resources allow).
        max_failures: retries of a failed trial before it is recorded as ERROR.
        reuse_actors: reuse Ray actors between trials (saves start-up time of small trials).
        split_seed: the seed of the stratified validation split.
        before_trial: optional ``f(cfg: TrialConfig, trial_id: str)`` run inside each trial
            before training (per-trial set-up on the worker); an exception fails the trial.
        time_budget: wall-clock budget of one run of the sweep (``"2h"``, ``"90m"``, seconds);
            when reached no new trial starts and running ones stop at their next evaluation
            (see :mod:`relex.sweep.budget`).
        gpu_hours: the sweep's GPU-hours budget over all its runs (CPU-hours without GPUs).
        cost_per_gpu_hour: price of one GPU-hour, for the cost in the leaderboard's footer.
        skip_bad_rows: drop invalid data rows in pre-flight (how many per file is printed and
            recorded in ``job.json``) instead of stopping with the bad-row report.
        loggers: trackers every trial logs to: ``"tensorboard"``, ``"mlflow"``, ``"wandb"``
            (see :mod:`relex.tracking`).
        keep_checkpoints: best checkpoints kept on disk: those of the top K finished trials by
            the ASHA metric (default 5, enough for an ensemble of the best); the others are
            deleted as trials end. 0 keeps every one.
    """

    FIELDS = ("name", "train", "valid", "labels", "negative_label", "space", "seeds", "asha",
              "resources", "max_concurrent", "max_failures", "reuse_actors", "split_seed",
              "before_trial", "skip_bad_rows", "loggers", "time_budget", "gpu_hours",
              "cost_per_gpu_hour", "keep_checkpoints")

    def __init__(self, name: str | None = None, train: str | os.PathLike | None = None,
                 valid: str | os.PathLike | float | None = 0.1, labels: str | os.PathLike | None = None,
                 negative_label: str = "no_relation", space: dict[str, Any] | None = None,
                 seeds: int | Sequence[int] = (42,), asha: dict[str, Any] | None = None,
                 resources: dict[str, Any] | None = None, max_concurrent: int = 0,
                 max_failures: int = 0, reuse_actors: bool = True, split_seed: int = 0,
                 before_trial: Callable[[TrialConfig, str], None] | None = None,
                 skip_bad_rows: bool = False, loggers: Sequence[str] = (),
                 time_budget: str | float | None = None, gpu_hours: float | None = None,
                 cost_per_gpu_hour: float | None = None, keep_checkpoints: int = 5,
                 **unknown: Any):
        if unknown:
            k = next(iter(unknown))
            raise RelexError(f"Sweep(): unknown argument '{k}'{_did_you_mean(k, self.FIELDS)}")
        self.name = name
        self.train = train
        self.valid = valid
        self.labels = labels
        self.negative_label = negative_label
        self.space = dict(space or {})
        self.seeds = seeds
        self.asha = dict(asha or {})
        self.resources = dict(resources or {})
        self.max_concurrent = max_concurrent
        self.max_failures = max_failures
        self.reuse_actors = reuse_actors
        self.split_seed = split_seed
        self.before_trial = before_trial
        self.time_budget = time_budget
        self.gpu_hours = gpu_hours
        self.cost_per_gpu_hour = cost_per_gpu_hour
        self.skip_bad_rows = skip_bad_rows
        self.loggers = loggers
        self.keep_checkpoints = keep_checkpoints

    def __repr__(self) -> str:
        return f"Sweep(name={self.name!r}, train={self.train!r}, {len(self.space)} space keys)"


@dataclass
class Trial:
    """One expanded trial: a stable id (its index in the grid) and its full config."""

    trial_id: str
    config: TrialConfig
    varying: dict[str, Any]  # the grid-axis values of this trial (including the seed)


@dataclass
class Job:
    """A loaded and validated job file."""

    path: Path
    sweep: Sweep
    name: str
    train: Path
    valid: Path | float
    labels: Path | None
    negative_label: str
    asha: dict[str, Any]
    resources: dict[str, Any]  # {"gpu": int|None, "cpu": int|None}; None = decided at run time
    max_concurrent: int
    max_failures: int
    reuse_actors: bool
    split_seed: int
    axes: list[str]  # varying config fields, in grid order (seed last when it varies)
    trials: list[Trial] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)
    # time_budget_s, gpu_hours, cost_per_gpu_hour (None: no limit / no price)
    budget: dict[str, float | None] = field(default_factory=dict)
    skip_bad_rows: bool = False
    loggers: tuple[str, ...] = ()  # trackers (relex.tracking.LOGGERS)
    keep_checkpoints: int = 5  # best checkpoints of the top K finished trials kept; 0 = all

    def resolved(self) -> dict[str, Any]:
        """The job as plain JSON-able data (what ran, with absolute paths)."""
        return {
            "job_file": str(self.path),
            "name": self.name,
            "train": str(self.train),
            "valid": self.valid if isinstance(self.valid, float) else str(self.valid),
            "labels": str(self.labels) if self.labels else None,
            "negative_label": self.negative_label,
            "asha": self.asha,
            "resources": self.resources,
            "max_concurrent": self.max_concurrent,
            "max_failures": self.max_failures,
            "reuse_actors": self.reuse_actors,
            "split_seed": self.split_seed,
            "skip_bad_rows": self.skip_bad_rows,
            "axes": self.axes,
            "budget": self.budget,
            "loggers": list(self.loggers),
            "keep_checkpoints": self.keep_checkpoints,
            "trials": [{"trial_id": t.trial_id, "config": t.config.to_dict()} for t in self.trials],
        }


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


def load_job(path: str | os.PathLike, *, check_files: bool = True) -> Job:
    """Execute, validate and expand a job file.

    With ``check_files`` a missing data file raises; without (dry runs) it is listed in
    ``Job.missing_files``.
    """
    sweep = exec_job_file(path)
    where = str(path)
    job_path = Path(os.path.abspath(Path(path).expanduser()))

    if not isinstance(sweep.name, str) or not _NAME_RE.match(sweep.name):
        raise RelexError(f"{where}: name={sweep.name!r} is invalid: use letters, digits, '_', '-', '.'")
    if sweep.train is None:
        raise RelexError(f"{where}: train is required (the training data file)")
    train = _path(sweep.train, "train", where)
    valid: Path | float
    if isinstance(sweep.valid, bool) or sweep.valid is None:
        raise RelexError(f"{where}: valid={sweep.valid!r} is invalid: a file path or a fraction in (0, 1)")
    if isinstance(sweep.valid, (int, float)):
        if not (0 < float(sweep.valid) < 1):
            raise RelexError(f"{where}: valid={sweep.valid!r} is invalid: a fraction must be in (0, 1)")
        valid = float(sweep.valid)
    else:
        valid = _path(sweep.valid, "valid", where)
    labels = _path(sweep.labels, "labels", where) if sweep.labels is not None else None
    if not isinstance(sweep.negative_label, str) or not sweep.negative_label:
        raise RelexError(f"{where}: negative_label={sweep.negative_label!r} is invalid")

    missing = [str(p) for p in (train, valid, labels) if isinstance(p, Path) and not p.is_file()]
    if missing and check_files:
        raise RelexError(f"{where}: data file not found: {missing[0]}")

    # ASHA
    unknown = [k for k in sweep.asha if k not in ASHA_DEFAULTS]
    if unknown:
        raise RelexError(f"{where}: asha: unknown key '{unknown[0]}'{_did_you_mean(unknown[0], list(ASHA_DEFAULTS))}")
    asha = {**ASHA_DEFAULTS, **sweep.asha}
    if asha["metric"] not in METRICS:
        raise RelexError(f"{where}: asha: metric={asha['metric']!r} is invalid: choose one of {', '.join(METRICS)}")
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

    max_concurrent = _int(sweep.max_concurrent, "max_concurrent", where, 0)
    max_failures = _int(sweep.max_failures, "max_failures", where, 0)
    split_seed = _int(sweep.split_seed, "split_seed", where, 0)
    keep_checkpoints = _int(sweep.keep_checkpoints, "keep_checkpoints", where, 0)
    if not isinstance(sweep.skip_bad_rows, bool):
        raise RelexError(f"{where}: skip_bad_rows={sweep.skip_bad_rows!r} is invalid: True or False")
    if sweep.before_trial is not None and not callable(sweep.before_trial):
        raise RelexError(f"{where}: before_trial must be a function f(cfg, trial_id)")
    budget = {"time_budget_s": parse_duration(sweep.time_budget, where),
              "gpu_hours": positive(sweep.gpu_hours, "gpu_hours", where),
              "cost_per_gpu_hour": positive(sweep.cost_per_gpu_hour, "cost_per_gpu_hour", where)}
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
    n = len(combos) * len(seeds)
    width = max(3, len(str(n - 1)))
    trials: list[Trial] = []
    seen: dict[str, str] = {}
    for combo in combos:
        for seed in seeds:
            tid = f"t{len(trials):0{width}d}"
            values = {**fixed, **dict(zip(axes, combo)), "seed": seed,
                      "negative_label": sweep.negative_label}
            cfg = TrialConfig.from_dict(values, where=f"{where}: trial {tid}")
            key = cfg.to_json()
            if key in seen:
                raise RelexError(f"{where}: trials {seen[key]} and {tid} have the same config "
                                 "(a grid axis repeats a value)")
            seen[key] = tid
            varying = {k: getattr(cfg, k) for k in shown_axes}
            trials.append(Trial(tid, cfg, varying))

    return Job(path=job_path, sweep=sweep, name=sweep.name, train=train, valid=valid, labels=labels,
               negative_label=sweep.negative_label, asha=asha, resources=resources,
               max_concurrent=max_concurrent, max_failures=max_failures, keep_checkpoints=keep_checkpoints,
               reuse_actors=bool(sweep.reuse_actors), split_seed=split_seed, axes=shown_axes,
               trials=trials, missing_files=missing, skip_bad_rows=sweep.skip_bad_rows,
               loggers=loggers, budget=budget)


__all__ = ["Sweep", "grid", "Grid", "Trial", "Job", "load_job", "exec_job_file", "ASHA_DEFAULTS",
           "METRICS"]

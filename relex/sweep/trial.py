"""The trial function Ray Tune runs: one TrialConfig through ``relex.train.fit``.

After every evaluation the trial reports the metrics (plus the best-so-far summary the results
writer needs if ASHA stops the trial there) with a Tune checkpoint. A trial Tune restarts within
a run (a failure, a lost node) continues from ``tune.get_checkpoint()``; one started by
``relex sweep --resume`` (a new Tune run: no Tune checkpoint) from its newest state at or before
the last evaluation the driver recorded (:func:`continue_from`).

The resumable training state is written once, straight into the sweep directory
(``states/step_<N>``, on the storage every node shares); the Tune checkpoint is only a pointer to
it (``pointer.json``). Ray Tune copies every checkpoint to storage, so a checkpoint holding the
state itself (weights and both Adam moments: 1.3 GB for a base-size model) would be written twice
per evaluation, and copied again to local disk to resume. The two newest states are kept: Tune
may still name the one before the newest when the trial is restarted.

Files of a trial live in ``<sweep_dir>/trials/<trial_id>/`` (:class:`relex.sweep.layout.TrialDir`):

* ``run/`` — fit's output directory (the best checkpoint is ``run/best``);
* ``states/`` — the resumable states the Tune checkpoints point to (dropped when the trial ends);
* ``attempts.jsonl`` — one line per start of the trial function (start time, node, resume step);
* ``summary.json`` — written when fit returns: best metrics, steps, wall time;
* ``error.json`` — the failure's one-line message, written before the exception reaches Tune;
* ``final.json`` — written by the driver once the trial's final row is recorded.

The validation-set probabilities of the best checkpoint go to
``<sweep_dir>/valid_probs/<trial_id>.npy``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from relex.io_utils import atomic_write_text
from relex.metrics import EVAL_METRICS
from relex.sweep.layout import POINTER_FILE, SweepDir
from relex.sweep.specs import tune_trial_spec


@dataclass
class Prepared:
    """What the driver's pre-flight hands every trial (sent once, through ``tune.with_parameters``):
    the data read and split once, each trial's resolved backbone and the features built for it."""

    sweep_dir: str = ""  # set by relex.sweep.runner.run
    train: Any = None  # relex.data.Dataset; None in fold sweeps
    valid: Any = None
    splits: list[tuple[Any, Any]] | None = None  # fold sweeps: (train, valid) of each fold
    backbones: dict[str, str] = field(default_factory=dict)  # backbone_key -> its directory
    features_cache: str | None = None
    before_trial: Callable[[Any, str], None] | None = None  # the job's per-trial hook
    # a trial on several workers (workers_per_trial > 1): each worker's cpu and gpu, and how
    # often Ray Train restarts a trial's workers after losing one
    worker_resources: dict[str, float] = field(default_factory=dict)
    worker_failures: int = 0
    skipped_bad_rows: dict[str, int] = field(default_factory=dict)  # data file -> rows dropped
    specs: dict[str, dict] = field(default_factory=dict)  # a grid trial's spec by its id (relex.sweep.specs)
    # trial id -> the step of its last evaluation the driver recorded before this run: a trial
    # started again continues from there (:func:`continue_from`)
    recorded: dict[str, int] = field(default_factory=dict)

    def split(self, fold: int | None) -> tuple[Any, Any]:
        """(train, valid) of a trial: a fold sweep's trial trains and validates on its fold."""
        return (self.train, self.valid) if fold is None else self.splits[fold]


def backbone_key(cfg) -> str:
    """What tells resolved backbones apart: the name, and the sizes of relex/tiny."""
    if cfg.backbone != "relex/tiny":
        return cfg.backbone
    return f"{cfg.backbone}:{cfg.tiny_hidden}x{cfg.tiny_layers}x{cfg.tiny_heads}:{cfg.tiny_vocab}"


@dataclass
class TrialReport:
    """What a trial tells the driver after each evaluation.

    It travels through ``tune.report`` as one flat dict (:meth:`to_result`: ASHA reads the
    metric at the top level; the best so far under ``best_<metric>``); the driver's callback
    reads it back with :meth:`from_result`. The best so far comes from the trainer, so it
    survives a resumed trial.
    """

    trial_id: str
    step: int
    epoch: float | None
    is_best: bool
    metrics: dict[str, float | None]  # this evaluation: EVAL_METRICS, train_loss, lr
    best: dict[str, float | None]  # the best evaluation so far: EVAL_METRICS
    best_step: int | None
    best_epoch: float | None
    checkpoint: str | None  # the best checkpoint's directory
    attempt: int | None = None
    evaluation: int | None = None  # the trial's evaluations so far, counted across restarts
    started_at: float | None = None
    elapsed_s: float | None = None
    where: dict[str, str] = field(default_factory=dict)  # node, node_id, gpu, ...

    CURRENT = (*EVAL_METRICS, "train_loss", "lr")

    def to_result(self) -> dict[str, Any]:
        return {**{k: _f(self.metrics.get(k)) for k in self.CURRENT},
                **{f"best_{k}": _f(self.best.get(k)) for k in EVAL_METRICS},
                "trial_id": self.trial_id, "step": self.step, "epoch": self.epoch,
                "is_best": self.is_best, "best_step": self.best_step, "best_epoch": self.best_epoch,
                "checkpoint": self.checkpoint, "attempt": self.attempt, EVALUATION: self.evaluation,
                "started_at": self.started_at, "elapsed_s": self.elapsed_s, **self.where}

    @classmethod
    def from_result(cls, result: dict[str, Any], trial_id: str) -> "TrialReport":
        where = {k: result.get(k) for k in ("node", "node_id", "gpu") if k in result}
        return cls(trial_id=trial_id, step=result.get("step"), epoch=result.get("epoch"),
                   is_best=bool(result.get("is_best")),
                   metrics={k: result.get(k) for k in cls.CURRENT},
                   best={k: result.get(f"best_{k}") for k in EVAL_METRICS},
                   best_step=result.get("best_step"), best_epoch=result.get("best_epoch"),
                   checkpoint=result.get("checkpoint"), attempt=result.get("attempt"),
                   evaluation=evaluation_of(result), started_at=result.get("started_at"),
                   elapsed_s=result.get("elapsed_s"), where=where)


EVALUATION = "evaluation"  # the result key of a trial's evaluation count


def evaluation_of(result: dict[str, Any]) -> int:
    """Which evaluation of its trial a Tune result reports. A relex trial counts them itself,
    across restarts: a resumed sweep is a new Tune run, whose ``training_iteration`` of a trial
    continuing from its third evaluation starts at 1 again. Tune's count for other trainables."""
    n = result.get(EVALUATION)
    return int(n if n is not None else result.get("training_iteration", 0))


def placement() -> dict[str, str]:
    """Where this trial runs: node address, Ray node id, GPUs (ids and device name)."""
    import ray

    ctx = ray.get_runtime_context()
    try:
        gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    except Exception:
        gpu_ids = []
    gpu = ",".join(gpu_ids)
    if gpu_ids:
        try:
            import torch

            if torch.cuda.is_available():
                gpu = f"{gpu}:{torch.cuda.get_device_name(0)}"
        except Exception:
            pass
    try:
        ip = ray.util.get_node_ip_address()
    except Exception:
        ip = socket.gethostname()
    return {"node": ip, "node_id": ctx.get_node_id() or "", "gpu": gpu,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "")}


def _f(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f


def short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _append_attempt(path: Path, record: dict[str, Any]) -> int:
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    lines.append(json.dumps(record, sort_keys=True))
    atomic_write_text(path, "\n".join(lines) + "\n")
    return len(lines)


def run_trial(config: dict[str, Any], prepared: Prepared) -> None:
    """Tune function trainable. ``config["trial"]`` = a trial id whose spec is in
    ``prepared.specs``, or a searched trial's spec (:meth:`relex.sweep.job.Trial.spec`: trial_id,
    config; in a fold sweep also config_id and fold); ``prepared`` comes from the driver's
    pre-flight (datasets and fold splits, resolved backbones, feature cache, sweep dir)."""
    from ray import tune

    from relex.config import TrialConfig
    from relex.train.fit import fit

    spec = tune_trial_spec(config, prepared.specs)
    trial_id = spec["trial_id"]
    cfg = TrialConfig.from_dict(spec["config"], where=f"trial {trial_id}")
    sweep = SweepDir(prepared.sweep_dir)
    sweep_dir = sweep.path
    tdir = sweep.trial(trial_id)
    tdir.path.mkdir(parents=True, exist_ok=True)
    if tdir.is_final():
        return  # recorded already (a resume runs only the trials without a final result)
    where = placement()
    started = time.time()

    ckpt = tune.get_checkpoint()
    tmp_root = Path(tempfile.mkdtemp(prefix=f"relex-{trial_id}-"))
    try:
        resume_dir = (_state_of(ckpt, sweep_dir, tmp_root) if ckpt is not None
                      else continue_from(tdir.states, prepared.recorded.get(trial_id)))
        backbone_path = prepared.backbones.get(backbone_key(cfg))  # resolved once by the driver
        attempt = _append_attempt(tdir.attempts_file, {
            "started_at": started,
            "resume_from": ckpt.path if ckpt is not None else (str(resume_dir) if resume_dir else None),
            "backbone_path": backbone_path, **where})

        evaluated = EvaluationRecord(trial_id, str(sweep_dir), attempt, started, where)

        def on_evaluate(ev) -> None:
            report, kept = evaluated(ev)
            pointer = None
            if kept is not None:  # on the sweep's storage already: Tune gets a pointer to it
                pointer = _pointer_to(kept, sweep_dir, tmp_root)
            tune.report(report,
                        checkpoint=tune.Checkpoint.from_directory(str(pointer)) if pointer else None)
            if pointer is not None:
                _prune_states(tdir.states, keep=2)

        if prepared.before_trial is not None:
            prepared.before_trial(cfg, trial_id)
        train, valid = prepared.split(spec.get("fold"))
        resume = str(resume_dir) if resume_dir else None
        if cfg.workers > 1:
            from relex.sweep.trial_workers import fit_on_workers

            outcome = fit_on_workers(cfg, train, valid, tdir, evaluated, resume, prepared, backbone_path,
                                     prune_states=lambda: _prune_states(tdir.states, keep=2))
            probs_path = sweep.probs_file(trial_id)  # written at the best evaluation
        else:
            result = fit(cfg, train, valid, str(tdir.run),
                         on_evaluate=on_evaluate, state_dir=tdir.states / "new",
                         resume_from=resume, features_cache=prepared.features_cache,
                         backbone_path=backbone_path, progress=False)
            outcome = result.summary()
            probs_path = None
            if getattr(result, "valid_probs", None) is not None:
                probs_path = sweep.write_probs(trial_id, result.valid_probs)
        summary = {
            "trial_id": trial_id, **{k: _f(outcome.get(k)) for k in EVAL_METRICS},
            "best_step": outcome["best_step"], "best_epoch": _f(outcome["best_epoch"]),
            "epochs_run": _f(outcome["epochs_run"]), "steps": outcome["steps"],
            "wall_s": _f(outcome["wall_s"]), "checkpoint": outcome.get("best_dir"),
            "valid_probs": str(probs_path) if probs_path and Path(probs_path).exists() else None,
            "started_at": started, "ended_at": time.time(), **where,
        }
        tdir.write_summary(summary)
    except Exception as e:
        tdir.write_error(short_error(e))
        raise
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)


class EvaluationRecord:
    """What a trial keeps of each evaluation, wherever it trains (in the Tune trial's process, or
    on the leader of its Ray Train workers): the best evaluation's validation probabilities (now:
    ASHA may stop the trial before fit returns) and the state fit wrote, moved to its own step
    directory. Returns the Tune result and the kept state (or None). Picklable."""

    def __init__(self, trial_id: str, sweep_dir: str, attempt: int, started: float,
                 where: dict[str, str]):
        self.trial_id, self.sweep_dir, self.attempt = trial_id, sweep_dir, attempt
        self.started, self.where = started, where

    def __call__(self, ev) -> tuple[dict[str, Any], Path | None]:
        report = TrialReport(
            trial_id=self.trial_id, step=int(ev.step), epoch=_f(ev.epoch), is_best=bool(ev.is_best),
            metrics=dict(ev.metrics), best=dict(ev.best_metrics), best_step=int(ev.best_step),
            best_epoch=_f(ev.best_epoch), checkpoint=str(ev.best_dir), attempt=self.attempt,
            evaluation=int(ev.evaluation), started_at=self.started,
            elapsed_s=time.time() - self.started, where=self.where)
        sweep = SweepDir(self.sweep_dir)
        if ev.is_best:
            sweep.write_probs(self.trial_id, ev.probs)
        kept = None
        if ev.state:
            kept = _keep_state(Path(ev.state), sweep.trial(self.trial_id).states, ev.step)
        return report.to_result(), kept


def _keep_state(written: Path, states: Path, step: int) -> Path:
    """Move the state fit just wrote (already on the sweep's storage) to its own step directory."""
    states.mkdir(parents=True, exist_ok=True)
    kept = states / f"step_{step:08d}"
    if kept.exists():  # a resumed attempt evaluating the same step again
        shutil.rmtree(kept)
    os.replace(written, kept)
    return kept


def _pointer_to(kept: Path, sweep_dir: Path, tmp_root: Path) -> Path:
    """A checkpoint directory that points to the state ``kept``."""
    from relex.train.workers import write_pointer

    return write_pointer(tmp_root / "pointer", kept, sweep_dir)


def continue_from(states: Path, recorded_step: int | None) -> Path | None:
    """The state a trial of a resumed sweep continues from (a new Tune run: no Tune checkpoint):
    the newest it wrote at or before its last evaluation the driver recorded. A trial runs up to
    one evaluation ahead of the driver, and a state past the record would leave that evaluation
    out of the results; training is exact from any state, so one before it replays the same
    evaluations. None (from the start) when nothing of the trial was recorded."""
    if recorded_step is None:
        return None
    kept = [p for p in sorted(states.glob("step_*")) if int(p.name.split("_")[1]) <= recorded_step]
    return kept[-1] if kept else None


def _prune_states(states: Path, keep: int) -> None:
    for old in sorted(states.glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _state_of(ckpt, sweep_dir: Path, tmp_root: Path) -> Path:
    """The state a Tune checkpoint points to (or holds, in sweeps started before pointers)."""
    local = Path(ckpt.to_directory(str(tmp_root / "resume")))
    if not (local / POINTER_FILE).exists():
        return local
    state = sweep_dir / json.loads((local / POINTER_FILE).read_text(encoding="utf-8"))["state"]
    if not state.is_dir():
        from relex.errors import RelexError

        raise RelexError(f"the resumable state {state} that checkpoint {ckpt.path} points to is "
                         "gone; restart this trial (relex sweep --overwrite, or a new --name)")
    return state


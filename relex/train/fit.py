"""``fit()``: train one TrialConfig, evaluate, keep the best — used by ``relex train`` and every
sweep trial.

Order of work::

    prepare: backbone → tokenizer + features (relex.train.inputs) → model → techniques →
             loss → AdamW over the techniques' parameter groups → warm-up schedule
    loop:    epochs of length-grouped batches; each optimizer step is relex.train.step;
             evaluation every ``eval_every`` steps (or each epoch end), and at the end

Evaluation keeps the best micro-F1's checkpoint in ``out_dir/best`` — written only when the
metric improves. With ``state_dir``, a resumable state (relex.train.state) is written there every
``cfg.checkpoint_every`` evaluations: model, optimizer, scheduler, scaler, RNGs, position and the
techniques' own state. It refers to ``best/`` by path instead of copying it, so an evaluation
writes about three model-sizes (weights and two Adam moments) at most. ``fit(...,
resume_from=state)`` continues exactly where the state was written. ``on_evaluate(ev)`` is called
after each evaluation (metrics, best so far, the state written if any): loggers, Ray Tune and
early-stopping schedulers hook in there. ``out_dir`` also receives ``history.jsonl`` (one line per
evaluation) and ``metrics.json`` (the summary), each written atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from relex.config import TrialConfig
from relex.errors import RelexError
from relex.io_utils import atomic_path, atomic_write_text, cache_root, json_default
from relex.metrics import EVAL_METRICS
from relex.train import amp as amp_mod
from relex.train import checkpoint as ckpt
from relex.train import state as state_io
from relex.train.predict import default_device, predict_logits, probs_from_logits
from relex.train.progress import Reporter
from relex.train.step import train_step

_SCHEDULERS = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}
# config fields that may differ between a saved state and the run that resumes it
_RESUME_FREE = ("num_threads", "checkpoint_every")
# how the batches are split between workers may change too, as long as the global batch stays
_RESHARDING_FREE = ("workers", "global_batch_size", "batch_size")


class TrainingDiverged(RelexError):
    """The training loss became NaN or infinite."""


@dataclass
class EvalEvent:
    """One evaluation, as ``on_evaluate`` sees it."""

    step: int
    epoch: float
    metrics: dict[str, float]  # EVAL_METRICS plus train_loss and lr
    is_best: bool
    best_dir: Path
    best_metrics: dict[str, float]
    best_step: int
    best_epoch: float
    probs: np.ndarray  # validation-set probabilities of this evaluation (N, C)
    state: Path | None = None  # the resumable state written at this evaluation, if one was
    evaluation: int = 0  # this run's evaluations so far, this one included (kept in the state)


@dataclass
class FitResult:
    best_metrics: dict[str, float]
    best_step: int
    best_epoch: float
    epochs_run: int
    steps: int
    wall_s: float
    best_dir: Path
    history: list[dict[str, Any]]
    valid_probs: np.ndarray
    examples_seen: int = 0
    train_s: float = 0.0  # seconds spent in training steps (no evaluation, no set-up)
    examples_per_s: float = 0.0  # examples_seen / train_s
    stop_reason: str = "completed"  # completed | early_stopping | max_steps
    amp: str = "off"
    device: str = "cpu"
    label_names: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        return {
            **{k: self.best_metrics.get(k) for k in EVAL_METRICS},
            "best_step": self.best_step, "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run, "steps": self.steps, "wall_s": self.wall_s,
            "train_s": self.train_s, "examples_seen": self.examples_seen,
            "examples_per_s": self.examples_per_s, "stop_reason": self.stop_reason,
            "amp": self.amp, "device": self.device, "best_dir": str(self.best_dir),
        }


@dataclass
class Position:
    """Where a run is and what it found so far (saved whole in the resumable state)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    examples_seen: int = 0
    evaluations: int = 0
    train_s: float = 0.0
    wall_s: float = 0.0  # wall seconds up to the last save (a resumed run adds its own)
    loss_sum: float = 0.0  # training loss since the last evaluation
    loss_steps: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_metrics: dict[str, float] | None = None
    best_step: int = -1
    best_epoch: float = 0.0
    best_probs: np.ndarray | None = None
    bad_evals: int = 0
    last_eval_step: int = -1
    stop_reason: str = "completed"
    stopping: bool = False  # the last evaluation asked to stop (early stopping)

    def state_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)


@dataclass
class Run:
    """Everything one training run holds; :func:`prepare` builds it, the step and the
    techniques read it."""

    cfg: TrialConfig
    out_dir: Path
    device: torch.device
    amp: amp_mod.Amp
    report: Reporter
    train_ds: Any
    valid_ds: Any
    labels: Any
    tokenizer: Any
    train_feats: Any
    valid_feats: Any
    model: torch.nn.Module
    techniques: dict[str, Any] = field(default_factory=dict)
    loss_fn: Any = None
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None
    scaler: torch.amp.GradScaler | None = None
    total_steps: int = 1
    pos: Position = field(default_factory=Position)
    state_dir: Path | None = None
    on_evaluate: Callable[[EvalEvent], None] | None = None
    t_start: float = field(default_factory=time.perf_counter)
    # data-parallel training (relex.train.distributed): this process's share of the run and the
    # DistributedDataParallel wrapper the training forward goes through; None on one worker
    dist: Any = None
    train_module: torch.nn.Module | None = None

    @property
    def best_dir(self) -> Path:
        return self.out_dir / "best"

    @property
    def train_labels(self) -> np.ndarray:
        return np.asarray(self.train_feats.labels, dtype=np.int64)

    def wall_s(self) -> float:
        return self.pos.wall_s + (time.perf_counter() - self.t_start)

    def lr(self) -> float:
        return float(max(g["lr"] for g in self.optimizer.param_groups))

    def forward(self, batch: dict) -> torch.Tensor:
        """The training forward: through the data-parallel wrapper when there is one, so the
        backward averages the gradients of every worker."""
        return (self.train_module if self.train_module is not None else self.model)(batch)


# ----------------------------------------------------------------------------- set-up
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def check_data(train_ds, valid_ds) -> None:
    if valid_ds is None or len(valid_ds) == 0:
        raise RelexError("training needs a non-empty validation set (a file or a fraction)")
    if len(train_ds) == 0:
        raise RelexError("the training set is empty")
    tl, vl = train_ds.labels, valid_ds.labels
    if tuple(tl.names) != tuple(vl.names) or tl.negative != vl.negative:
        raise RelexError("the training and validation sets use different label sets; read the "
                         "validation file with the training set's labels (or pass --labels "
                         "relation_list.json)")
    for name, ds in (("training", train_ds), ("validation", valid_ds)):
        ids = np.asarray(ds.label_ids())
        if (ids < 0).any():
            where = f" ({ds.path})" if getattr(ds, "path", None) else ""
            raise RelexError(f"the {name} set{where} has {int((ids < 0).sum())} rows without a label")


def prepare(cfg: TrialConfig, train_ds, valid_ds, out_dir: str | os.PathLike, *,
            progress: bool | str | None = False, features_cache: str | os.PathLike | None = None,
            backbone_path: str | os.PathLike | None = None,
            device: str | torch.device | None = None) -> Run:
    """Build a run ready for its first step (or for ``load_state``)."""
    from relex.model import build_model
    from relex.model.backbone import resolve_backbone
    from relex.model.quiet import quiet_transformers
    from relex.train import techniques
    from relex.train.inputs import tokenizer_and_features

    if not isinstance(cfg, TrialConfig):
        raise TypeError("cfg must be a TrialConfig")
    cfg.validate()
    check_data(train_ds, valid_ds)
    seed_everything(cfg.seed)
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    device = torch.device(device) if device is not None else default_device()
    amp = amp_mod.resolve(cfg.amp, device)
    report = Reporter(Reporter.pick(progress))
    report.log(f"device {device}, precision: {amp.describe()}"
               + ("; validation in fp32" if amp.enabled else ""))
    if backbone_path is None:
        backbone_path = resolve_backbone(cfg.backbone, corpus=train_ds.frame["sentence"].tolist(), cfg=cfg)
    cache = Path(features_cache) if features_cache is not None else cache_root() / "features"
    tokenizer, train_feats, valid_feats = tokenizer_and_features(cfg, train_ds, valid_ds, backbone_path, cache)
    windowed = int(getattr(train_feats, "n_windowed", 0) or 0)
    report.log(f"{len(train_feats)} training and {len(valid_feats)} validation examples, "
               f"{len(train_ds.labels)} labels, marker {cfg.marker}, max length {cfg.max_length}"
               + (f" ({windowed} training rows windowed)" if windowed else ""))

    torch.manual_seed(cfg.seed)  # the head's initialisation does not depend on what ran before
    with quiet_transformers():
        model = build_model(cfg.model_part(), backbone_path, len(train_ds.labels), len(tokenizer)).to(device)
    model.train()
    run = Run(cfg=cfg, out_dir=Path(out_dir), device=device, amp=amp, report=report,
              train_ds=train_ds, valid_ds=valid_ds, labels=train_ds.labels, tokenizer=tokenizer,
              train_feats=train_feats, valid_feats=valid_feats, model=model)
    run.techniques = techniques.active(cfg, run)
    counts = np.bincount(run.train_labels[run.train_labels >= 0], minlength=len(run.labels))
    run.loss_fn = _first(t.make_loss(counts) for t in run.techniques.values())
    groups = _first(t.param_groups(model) for t in run.techniques.values())
    # the fused kernel (CPU and CUDA, fp32 parameters): one op per step instead of a
    # per-parameter loop; 1.14x training throughput on the tiny model (BENCHMARKS.md)
    fused = device.type in ("cpu", "cuda") and all(p.is_floating_point() for g in groups for p in g["params"])
    run.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, fused=fused)
    run.scaler = amp.scaler()
    steps_per_epoch = math.ceil(len(epoch_batches(run, 0)) / cfg.grad_accum)
    total = cfg.epochs * steps_per_epoch
    run.total_steps = max(1, min(total, cfg.max_steps) if cfg.max_steps else total)
    from transformers import get_scheduler

    run.scheduler = get_scheduler(_SCHEDULERS[cfg.scheduler], run.optimizer,
                                  num_warmup_steps=int(cfg.warmup_ratio * run.total_steps),
                                  num_training_steps=run.total_steps)
    return run


def _first(values):
    for v in values:
        if v is not None:
            return v
    raise RuntimeError("no technique provides this seam")  # losses and llrd are always on


# ----------------------------------------------------------------------------- batches
def epoch_batches(run: Run, epoch: int) -> list[np.ndarray]:
    """The epoch's batches of row indices (length-grouped, shuffled by seed + epoch; resampled
    where a technique gives sampling weights)."""
    from relex.data.samplers import length_grouped_batches

    lengths = np.asarray(run.train_feats.lengths)
    kw: dict[str, Any] = {}
    for t in run.techniques.values():
        w = t.sampling_weights(len(lengths))
        if w is not None:
            kw = dict(weights=np.asarray(w, dtype=np.float64), num_samples=len(lengths))
    # the global batch: every worker draws the same batches and takes its share of each
    return length_grouped_batches(lengths, run.cfg.global_batch(), seed=run.cfg.seed + epoch, shuffle=True, **kw)


def example_weights(run: Run) -> torch.Tensor | None:
    """Per-example loss weights of the coming epoch (the techniques' product), or None."""
    weights = None
    for t in run.techniques.values():
        w = t.example_weights(len(run.train_feats))
        if w is not None:
            weights = np.asarray(w, dtype=np.float32) * (1.0 if weights is None else weights)
    return None if weights is None else torch.from_numpy(weights)


def micro_batch(run: Run, idx: np.ndarray, weights: torch.Tensor | None):
    from relex.data.features import collate

    options: dict[str, Any] = {}
    for t in run.techniques.values():
        options.update(t.batch_options())
    batch = {k: v.to(run.device, non_blocking=True) for k, v in collate(run.train_feats, idx, **options).items()}
    w = None if weights is None else weights[torch.from_numpy(np.asarray(idx, dtype=np.int64))].to(run.device)
    return batch, w


# ----------------------------------------------------------------------------- the loop
def train(run: Run) -> FitResult:
    """Run the epochs from ``run.pos`` to the end; evaluate; return the result."""
    cfg, pos = run.cfg, run.pos
    run.report.start(run.total_steps, pos.step)
    stop = pos.stopping  # a state saved at the evaluation that stopped the run
    if not stop and cfg.max_steps and pos.step >= cfg.max_steps:  # saved at the step limit
        stop, pos.stop_reason = True, "max_steps"
    try:
        while pos.epoch < cfg.epochs and not stop:
            batches = epoch_batches(run, pos.epoch)
            weights = example_weights(run)
            while pos.batch_in_epoch < len(batches) and not stop:
                group = batches[pos.batch_in_epoch:pos.batch_in_epoch + cfg.grad_accum]
                t0 = time.perf_counter()
                loss = float(_train_step(run, group, weights))
                if not math.isfinite(loss):  # float(): the step's one host sync
                    raise TrainingDiverged(
                        f"training diverged: the loss is {loss} at step {pos.step + 1} (epoch "
                        f"{pos.epoch + 1}); try a lower --lr, a --grad-clip, or --amp off")
                pos.step += 1
                pos.batch_in_epoch += len(group)
                pos.examples_seen += sum(len(idx) for idx in group)
                pos.loss_sum += loss
                pos.loss_steps += 1
                pos.train_s += time.perf_counter() - t0
                run.report.step(pos.step, pos.epoch + pos.batch_in_epoch / len(batches), loss, run.lr())
                stop = _after_step(run, len(batches))
            if not stop and pos.epoch < cfg.epochs - 1:
                _end_of_epoch(run)
            if not stop:
                pos.epoch, pos.batch_in_epoch = pos.epoch + 1, 0
        if pos.last_eval_step != pos.step or pos.evaluations == 0:
            # the last step was not evaluated yet (or nothing was): evaluate it
            _evaluate(run, max(1, len(epoch_batches(run, min(pos.epoch, cfg.epochs - 1)))))
    finally:
        run.report.close()
    if run.dist is not None and not run.dist.leader:
        return None  # the leader (rank 0) evaluated, wrote and holds the result
    return result(run)


def _train_step(run: Run, group: list[np.ndarray], weights: torch.Tensor | None) -> torch.Tensor:
    if run.dist is not None:
        return run.dist.train_step(run, group, weights)
    return train_step(run, [micro_batch(run, idx, weights) for idx in group])


def _end_of_epoch(run: Run) -> None:
    if run.dist is not None:
        run.dist.end_of_epoch(run)
        return
    for t in run.techniques.values():
        t.end_of_epoch(run)


def _evaluate(run: Run, n_batches: int) -> bool:
    if run.dist is not None:
        return run.dist.evaluate(run, n_batches)
    return evaluate(run, n_batches)


def _after_step(run: Run, n_batches: int) -> bool:
    """Evaluate when due; True when the run stops here."""
    cfg, pos = run.cfg, run.pos
    at_max = bool(cfg.max_steps) and pos.step >= cfg.max_steps
    end_of_epoch = pos.batch_in_epoch >= n_batches
    due = ((cfg.eval_every > 0 and pos.step % cfg.eval_every == 0)
           or (cfg.eval_every == 0 and end_of_epoch)
           or at_max or (end_of_epoch and pos.epoch == cfg.epochs - 1))
    stop = _evaluate(run, n_batches) if due else False
    if at_max and not stop:
        pos.stop_reason = "max_steps"
    return stop or at_max


def evaluate(run: Run, n_batches: int) -> bool:
    """Evaluate, keep the best, write the state when due, call the hook; True to stop early."""
    from relex import metrics as M

    cfg, pos = run.cfg, run.pos
    epoch = pos.epoch + (pos.batch_in_epoch / n_batches if n_batches else 0.0)
    with contextlib.ExitStack() as weights:
        for t in run.techniques.values():  # EMA: evaluate (and save) the averaged weights
            weights.enter_context(t.evaluation_weights(run))
        # scored in float32 whatever the training precision: relex evaluate of the saved
        # checkpoint reproduces these numbers on any machine (relex.train.amp)
        logits = predict_logits(run.model, run.valid_feats, batch_size=cfg.eval_batch_size,
                                amp=amp_mod.for_inference(None, run.device))
        probs = probs_from_logits(logits)
        labels = np.asarray(run.valid_feats.labels, dtype=np.int64)
        m = M.compute(labels, probs, run.labels.names, run.labels.negative, per_class=False)
        # val_loss from the logits in float64, not from the rounded probabilities
        metrics = {**{k: m[k] for k in EVAL_METRICS if k != "val_loss"},
                   "val_loss": M.mean_cross_entropy(logits, labels),
                   "train_loss": pos.loss_sum / pos.loss_steps if pos.loss_steps else float("nan"),
                   "lr": run.lr()}
        primary = M.REGISTRY[M.PRIMARY]
        is_best = pos.best_metrics is None or primary.better(metrics[M.PRIMARY], pos.best_metrics[M.PRIMARY])
        if is_best:
            ckpt.save(run.best_dir, run.model, run.tokenizer, cfg, run.labels,
                      info={"step": pos.step, "epoch": epoch, "metrics": metrics})
    if is_best:
        pos.best_metrics, pos.best_step, pos.best_epoch, pos.best_probs = dict(metrics), pos.step, epoch, probs
        pos.bad_evals = 0
    else:
        pos.bad_evals += 1
    pos.evaluations += 1
    pos.last_eval_step = pos.step
    pos.loss_sum, pos.loss_steps = 0.0, 0
    pos.history.append({"step": pos.step, "epoch": epoch, **metrics, "is_best": is_best, "wall_s": run.wall_s()})
    _write_history(run)
    run.report.log(f"eval step {pos.step} epoch {epoch:.2f}: micro_f1 {metrics['micro_f1']:.2f} auprc "
                   f"{metrics['auprc']:.2f} mean_ap {metrics['mean_ap']:.2f} acc {metrics['accuracy']:.2f} val_loss "
                   f"{metrics['val_loss']:.4f}" + (" (best)" if is_best else ""))
    pos.stopping = bool(cfg.patience) and pos.bad_evals >= cfg.patience
    if pos.stopping:
        pos.stop_reason = "early_stopping"
        run.report.log(f"early stopping: no better micro-F1 in {cfg.patience} evaluations")
    written = None
    if run.state_dir is not None and pos.evaluations % cfg.checkpoint_every == 0:
        written = save_state(run, run.state_dir)
    if run.on_evaluate is not None:
        run.on_evaluate(EvalEvent(step=pos.step, epoch=epoch, metrics=dict(metrics), is_best=is_best,
                                  best_dir=run.best_dir, best_metrics=dict(pos.best_metrics),
                                  best_step=pos.best_step, best_epoch=pos.best_epoch, probs=probs,
                                  state=written, evaluation=pos.evaluations))
    return pos.stopping


def _write_history(run: Run) -> None:
    text = "".join(json.dumps(h, default=json_default, ensure_ascii=False) + "\n" for h in run.pos.history)
    atomic_write_text(run.out_dir / "history.jsonl", text)


def result(run: Run) -> FitResult:
    pos = run.pos
    epochs_run = min(run.cfg.epochs, pos.epoch + (1 if pos.batch_in_epoch > 0 else 0))
    res = FitResult(
        best_metrics=dict(pos.best_metrics), best_step=pos.best_step, best_epoch=pos.best_epoch,
        epochs_run=max(epochs_run, 1), steps=pos.step, wall_s=run.wall_s(), best_dir=run.best_dir,
        history=list(pos.history), valid_probs=pos.best_probs, examples_seen=pos.examples_seen,
        train_s=pos.train_s, examples_per_s=pos.examples_seen / pos.train_s if pos.train_s > 0 else 0.0,
        stop_reason=pos.stop_reason, amp=run.amp.mode, device=str(run.device),
        label_names=tuple(run.labels.names))
    summary = {**res.summary(), "config": run.cfg.to_dict(), "labels": list(run.labels.names)}
    atomic_write_text(run.out_dir / "metrics.json", json.dumps(summary, default=json_default, indent=2) + "\n")
    run.report.log(f"done: best micro_f1 {res.best_metrics['micro_f1']:.2f} at step {res.best_step}, "
                   f"{res.steps} steps in {res.wall_s:.1f}s ({res.examples_per_s:.1f} examples/s); "
                   f"checkpoint {res.best_dir}")
    return res


# ----------------------------------------------------------------------------- state
def _state_objects(run: Run) -> dict[str, Any]:
    return {"model": run.model, "optimizer": run.optimizer, "scheduler": run.scheduler,
            "scaler": run.scaler, "random": state_io.RandomState(), "position": run.pos,
            **{f"technique.{name}": t for name, t in run.techniques.items()}}


def save_state(run: Run, path: str | os.PathLike) -> Path:
    """Write the resumable state of ``run`` to ``path``; ``best/`` is referred to, not copied."""
    run.pos.wall_s, run.t_start = run.wall_s(), time.perf_counter()
    meta = {"config": run.cfg.to_dict(), "best_dir": str(run.best_dir.resolve()),
            "train_hash": getattr(run.train_ds, "content_hash", None),
            "valid_hash": getattr(run.valid_ds, "content_hash", None)}
    return state_io.save(path, _state_objects(run), meta)


def check_state(path: Path, cfg: TrialConfig, train_ds, valid_ds) -> dict[str, Any]:
    """The meta data of the state in ``path`` if ``cfg`` and the data may continue it; else a
    RelexError naming what differs."""
    meta = state_io.read_meta(path)
    state_io.check_config(path, meta["config"], cfg, _RESUME_FREE + _RESHARDING_FREE)
    saved = TrialConfig.from_dict(meta["config"], where=str(path / state_io.STATE))
    if saved.global_batch() != cfg.global_batch():
        # the position counts global batches: the same batches must come, split any way
        raise RelexError(f"{path}: the state was trained with {saved.global_batch()} examples per "
                         f"batch over its {saved.workers} worker(s); resume it with "
                         f"--global-batch-size {saved.global_batch()} (or the same --batch-size and "
                         "--workers)")
    for key, ds in (("train_hash", train_ds), ("valid_hash", valid_ds)):
        h = getattr(ds, "content_hash", None)
        if meta.get(key) is not None and h is not None and meta[key] != h:
            which = "training" if key == "train_hash" else "validation"
            raise RelexError(f"{path}: the state was saved with a different {which} set")
    return meta


def load_state(run: Run, path: str | os.PathLike) -> None:
    """Continue ``run`` from the state in ``path`` exactly (same config and data required)."""
    path = Path(path)
    meta = check_state(path, run.cfg, run.train_ds, run.valid_ds)
    best = Path(meta["best_dir"])
    ckpt.check(best)  # the state refers to it: it must still be there
    state_io.load(path, _state_objects(run))
    run.t_start = time.perf_counter()
    if best.resolve() != run.best_dir.resolve():
        with atomic_path(run.best_dir, is_dir=True) as tmp:
            shutil.rmtree(tmp)
            shutil.copytree(best, tmp)
    if run.pos.history:
        _write_history(run)
    run.report.log(f"resumed from {path} at step {run.pos.step} (epoch {run.pos.epoch + 1}, "
                   f"batch {run.pos.batch_in_epoch})")


# ----------------------------------------------------------------------------- fit
@contextlib.contextmanager
def _torch_settings(device: torch.device):
    """Deterministic algorithms on CPU for the run; thread count and flags restored after."""
    threads = torch.get_num_threads()
    det, det_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(det, warn_only=det_warn)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def fit(
    cfg: TrialConfig,
    train_ds,
    valid_ds,
    out_dir: str | os.PathLike,
    *,
    on_evaluate: Callable[[EvalEvent], None] | None = None,
    state_dir: str | os.PathLike | None = None,
    resume_from: str | os.PathLike | None = None,
    progress: bool | str | None = None,
    features_cache: str | os.PathLike | None = None,
    backbone_path: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    dist=None,
) -> FitResult | None:
    """Train ``cfg`` on ``train_ds``, evaluate on ``valid_ds``, keep the best in ``out_dir/best``.

    ``state_dir``: write the resumable state there every ``cfg.checkpoint_every`` evaluations.
    ``resume_from``: a state directory to continue from. ``progress``: None (a rich bar on a
    terminal, plain lines otherwise), True / "rich", "plain", False / "off" (silent).
    ``features_cache``: feature cache directory (default ``cache_root()/features``).
    ``backbone_path``: an already resolved backbone directory (skips ``resolve_backbone``).
    ``device``: default CUDA when available, else CPU. ``dist``: this process's
    :class:`relex.train.distributed.Distributed` when several workers train the run (the
    process group already set up); only its leader writes and returns the result, the others
    return None.

    Deterministic under ``cfg.seed`` on CPU: two runs give identical metrics. Raises
    :class:`TrainingDiverged` when the training loss becomes NaN/inf.
    """
    target = torch.device(device) if device is not None else default_device()
    with _torch_settings(target):
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        run = prepare(cfg, train_ds, valid_ds, out_dir, progress=progress, features_cache=features_cache,
                      backbone_path=backbone_path, device=target)
        run.state_dir = Path(state_dir) if state_dir is not None else None
        run.on_evaluate = on_evaluate
        if dist is not None:
            dist.attach(run)
        if resume_from is not None:
            load_state(run, resume_from) if dist is None else dist.resume(run, resume_from)
        return train(run)

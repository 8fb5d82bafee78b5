"""The training loop: one function, :func:`fit`, used by ``relex train`` and every sweep trial.

Order of work::

    resolve backbone (corpus = training sentences) → tokenizer + marker tokens → featurize
    (cached) → model → loss (class counts of train) → AdamW over the LLRD parameter groups →
    warm-up schedule → epochs of length-grouped, dynamically padded batches

Each technique sits at one seam of the step:

* loss: ``losses.make_loss(cfg, class_counts)`` (CE / focal, label smoothing, class-balanced);
* R-Drop (``cfg.rdrop`` > 0): one forward of the doubled batch, ``rdrop_loss`` on the halves;
* FGM (``cfg.fgm`` > 0): after the backward, perturb the word embeddings, forward + backward
  again, restore;
* HNM (``cfg.hnm`` > 0): after every epoch but the last, a no-grad scoring pass over the
  training negatives feeds the miner, whose state sets the next epoch's per-example loss weights
  (``hnm_mode=weight``) or its re-sampled batches (``resample``);
* ERPE: the distances come with the batch (``collate(erpe_clip=...)``), the model adds them;
* LLRD: the optimizer's parameter groups; AMP: ``relex.train.amp``.

Evaluation runs every ``cfg.eval_every`` optimizer steps (or at the end of every epoch when 0)
and at the end of training. The best micro-F1 keeps its checkpoint in ``out_dir/best``;
``cfg.patience`` evaluations without improvement stop the run. ``on_evaluate(ev)`` is called
after each evaluation; ``ev.save_state(dir)`` (valid during the call) writes everything needed to
continue the run exactly with ``fit(..., resume_from=dir)``. ``out_dir`` also receives
``history.jsonl`` (one line per evaluation) and ``metrics.json`` (the summary), each written
atomically.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from relex.config import TrialConfig
from relex.errors import RelexError
from relex.io_utils import atomic_path, atomic_write_text, cache_root, json_default
from relex.train import amp as amp_mod
from relex.model.backbone import quiet_transformers
from relex.train import checkpoint as ckpt

STATE_FORMAT = "relex-train-state"
STATE_VERSION = 1
_SCHEDULERS = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}
# config fields that may differ between a saved state and the run that resumes it
_RESUME_FREE = ("num_threads",)


class TrainingDiverged(RelexError):
    """The training loss became NaN or infinite."""


@dataclass
class EvalEvent:
    """One evaluation, as ``on_evaluate`` sees it."""

    step: int
    epoch: float
    metrics: dict[str, float]
    is_best: bool
    best_dir: Path | None
    best_metrics: dict[str, float] | None = None
    best_step: int | None = None
    best_epoch: float | None = None
    _save: Callable[[str | os.PathLike], Path] | None = field(default=None, repr=False)

    def save_state(self, path: str | os.PathLike) -> Path:
        """Write the full resumable training state into directory ``path`` (replaced whole)."""
        if self._save is None:
            raise RuntimeError("save_state is only available during the on_evaluate call")
        return self._save(path)


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
            **{k: self.best_metrics.get(k) for k in ("micro_f1", "auprc", "mean_ap", "accuracy", "val_loss")},
            "best_step": self.best_step,
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "steps": self.steps,
            "wall_s": self.wall_s,
            "train_s": self.train_s,
            "examples_seen": self.examples_seen,
            "examples_per_s": self.examples_per_s,
            "stop_reason": self.stop_reason,
            "amp": self.amp,
            "device": self.device,
            "best_dir": str(self.best_dir),
        }


# ----------------------------------------------------------------------------- helpers
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _dumps(obj: Any, **kw) -> str:
    return json.dumps(obj, default=json_default, ensure_ascii=False, **kw)


# ----------------------------------------------------------------------------- progress
class _Reporter:
    """A rich progress bar on a terminal, plain log lines otherwise, or nothing."""

    def __init__(self, mode: str):
        self.mode = mode
        self._progress = None
        self._task = None
        self._every = 1
        self._total = 0

    @staticmethod
    def pick(progress: bool | str | None) -> str:
        if progress is None or progress == "auto":
            return "rich" if sys.stderr.isatty() else "plain"
        if progress is True:
            return "rich"
        if progress is False:
            return "off"
        if progress in ("rich", "plain", "off"):
            return progress
        raise ValueError(f"progress must be None, a bool, or one of auto/rich/plain/off, not {progress!r}")

    def log(self, msg: str) -> None:
        if self.mode == "off":
            return
        if self._progress is not None:
            self._progress.console.print(msg, highlight=False, markup=False)
        else:
            print(f"[relex] {msg}", file=sys.stderr, flush=True)

    def start(self, total: int, done: int) -> None:
        self._total = total
        self._every = max(1, total // 20)
        if self.mode == "rich":
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self._progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                console=Console(stderr=True), transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("train", total=total, completed=done, info="")

    def step(self, step: int, epoch: float, loss: float, lr: float) -> None:
        if self.mode == "rich" and self._progress is not None:
            self._progress.update(self._task, completed=step,
                                  info=f"epoch {epoch:.2f} loss {loss:.4f} lr {lr:.2e}")
        elif self.mode == "plain" and (step % self._every == 0 or step == self._total):
            self.log(f"step {step}/{self._total} epoch {epoch:.2f} loss {loss:.4f} lr {lr:.2e}")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


# ----------------------------------------------------------------------------- the trainer
class _Trainer:
    def __init__(self, cfg: TrialConfig, train_ds, valid_ds, out_dir, *, on_evaluate, progress,
                 features_cache, backbone_path, device):
        if not isinstance(cfg, TrialConfig):
            raise TypeError("cfg must be a TrialConfig")
        cfg.validate()
        self.t_start = time.perf_counter()
        self.cfg = cfg
        self.train_ds = train_ds
        self.valid_ds = valid_ds
        self.out_dir = Path(out_dir)
        self.best_dir = self.out_dir / "best"
        self.on_evaluate = on_evaluate
        self.report = _Reporter(_Reporter.pick(progress))
        self.device = torch.device(device) if device is not None else default_device()
        self.features_cache = Path(features_cache) if features_cache is not None else cache_root() / "features"
        self.backbone_path = backbone_path

        # training state (what save_state writes)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.examples_seen = 0
        self.train_s = 0.0
        self.wall_before = 0.0  # wall seconds of earlier (resumed-from) runs
        self.history: list[dict[str, Any]] = []
        self.best_metrics: dict[str, float] | None = None
        self.best_step = -1
        self.best_epoch = 0.0
        self.best_probs: np.ndarray | None = None
        self.bad_evals = 0
        self.last_eval_step = -1
        self.loss_sum = 0.0
        self.loss_steps = 0
        self.stop_reason = "completed"
        self.stopping = False  # the last evaluation asked to stop (early stopping)

    # ------------------------------------------------------------------ set-up
    def setup(self) -> None:
        from relex.data.features import featurize
        from relex.data.markers import entity_types, prepare_tokenizer
        from relex.model import build_model
        from relex.model.backbone import load_tokenizer, resolve_backbone
        from relex.train import llrd, losses

        cfg = self.cfg
        self._check_data()
        seed_everything(cfg.seed)
        if cfg.num_threads > 0:
            torch.set_num_threads(cfg.num_threads)
        self.amp = amp_mod.resolve(cfg.amp, self.device)
        self.report.log(f"device {self.device}, precision: {self.amp.describe()}")

        if self.backbone_path is None:
            corpus = self.train_ds.frame["sentence"].tolist()
            self.backbone_path = resolve_backbone(cfg.backbone, corpus=corpus, cfg=cfg)
        self.tokenizer = load_tokenizer(self.backbone_path)
        prepare_tokenizer(self.tokenizer, cfg.marker, entity_types(self.train_ds, self.valid_ds))
        self.train_feats = featurize(self.train_ds, self.tokenizer, cfg.marker, cfg.max_length,
                                     cache_dir=self.features_cache)
        self.valid_feats = featurize(self.valid_ds, self.tokenizer, cfg.marker, cfg.max_length,
                                     cache_dir=self.features_cache)
        self.labels = self.train_ds.labels
        self.num_labels = len(self.labels)
        self.train_labels = np.asarray(self.train_feats.labels, dtype=np.int64)
        self.valid_labels = np.asarray(self.valid_feats.labels, dtype=np.int64)
        n_trunc = int(getattr(self.train_feats, "n_windowed", 0) or 0)
        self.report.log(
            f"{len(self.train_feats)} training and {len(self.valid_feats)} validation examples, "
            f"{self.num_labels} labels, marker {cfg.marker}, max length {cfg.max_length}"
            + (f" ({n_trunc} training rows windowed)" if n_trunc else "")
        )

        torch.manual_seed(cfg.seed)  # the head's initialisation does not depend on what ran before
        with quiet_transformers():
            self.model = build_model(cfg, self.backbone_path, self.num_labels, len(self.tokenizer)).to(self.device)
        self.model.train()

        counts = np.bincount(self.train_labels[self.train_labels >= 0], minlength=self.num_labels)
        self.class_counts = counts
        self.loss_fn = losses.make_loss(cfg, counts)
        groups = llrd.param_groups(self.model, cfg.lr, cfg.llrd, cfg.weight_decay)
        # the fused kernel (CPU and CUDA, fp32 parameters): one op per step instead of a
        # per-parameter loop; 1.14x training throughput on the tiny model (BENCHMARKS.md)
        fused = self.device.type in ("cpu", "cuda") and all(
            p.is_floating_point() for g in groups for p in g["params"])
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, fused=fused)
        self.scaler = self.amp.scaler()

        self.fgm = None
        if cfg.fgm > 0:
            from relex.train.fgm import FGM

            self.fgm = FGM(self.model, cfg.fgm)
        self.miner = None
        if cfg.hnm > 0:
            from relex.train.hnm import HardNegativeMiner

            self.miner = HardNegativeMiner(self.labels.negative_id, cfg.hnm, cfg.hnm_weight, cfg.hnm_mode)
        self.erpe_clip = cfg.erpe_clip if cfg.erpe else None

        n_batches = len(self.epoch_batches(0))
        self.steps_per_epoch = math.ceil(n_batches / cfg.grad_accum)
        total = cfg.epochs * self.steps_per_epoch
        if cfg.max_steps:
            total = min(total, cfg.max_steps)
        self.total_steps = max(1, total)
        from transformers import get_scheduler

        self.scheduler = get_scheduler(
            _SCHEDULERS[cfg.scheduler], self.optimizer,
            num_warmup_steps=int(cfg.warmup_ratio * self.total_steps),
            num_training_steps=self.total_steps,
        )

    def _check_data(self) -> None:
        if self.valid_ds is None or len(self.valid_ds) == 0:
            raise RelexError("training needs a non-empty validation set (a file or a fraction)")
        if len(self.train_ds) == 0:
            raise RelexError("the training set is empty")
        tl, vl = self.train_ds.labels, self.valid_ds.labels
        if tuple(tl.names) != tuple(vl.names) or tl.negative != vl.negative:
            raise RelexError(
                "the training and validation sets use different label sets; read the validation "
                "file with the training set's labels (or pass --labels relation_list.json)"
            )
        for name, ds in (("training", self.train_ds), ("validation", self.valid_ds)):
            ids = np.asarray(ds.label_ids())
            if (ids < 0).any():
                where = f" ({ds.path})" if getattr(ds, "path", None) else ""
                raise RelexError(f"the {name} set{where} has {int((ids < 0).sum())} rows without a label")

    # ------------------------------------------------------------------ batches
    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        from relex.data.samplers import length_grouped_batches

        cfg = self.cfg
        lengths = np.asarray(self.train_feats.lengths)
        kw: dict[str, Any] = {}
        if self.miner is not None and cfg.hnm_mode == "resample" and self.miner.updates:
            kw = dict(weights=np.asarray(self.miner.sampling_weights(len(lengths)), dtype=np.float64),
                      num_samples=len(lengths))
        return length_grouped_batches(lengths, cfg.batch_size, seed=cfg.seed + epoch, shuffle=True, **kw)

    def example_weights(self) -> torch.Tensor | None:
        if self.miner is None or self.cfg.hnm_mode != "weight" or not self.miner.updates:
            return None
        w = np.asarray(self.miner.weights(len(self.train_feats)), dtype=np.float32)
        return torch.from_numpy(w)

    def _batch(self, feats, idx) -> dict[str, torch.Tensor]:
        from relex.data.features import collate

        b = collate(feats, np.asarray(idx), erpe_clip=self.erpe_clip)
        return {k: v.to(self.device, non_blocking=True) for k, v in b.items()}

    # ------------------------------------------------------------------ one step
    def _loss(self, batch: dict, weights: torch.Tensor | None) -> torch.Tensor:
        labels = batch["labels"]
        if self.cfg.rdrop > 0:
            from relex.train.rdrop import double_batch, rdrop_loss, split_logits

            with self.amp.autocast():
                logits = self.model(double_batch(batch))
            l1, l2 = split_logits(logits.float())
            return rdrop_loss(l1, l2, labels, self.cfg.rdrop, self.loss_fn, weights)
        with self.amp.autocast():
            logits = self.model(batch)
        return self.loss_fn(logits.float(), labels, weights)

    def _micro_step(self, idx: np.ndarray, scale: float, weights_all: torch.Tensor | None) -> torch.Tensor:
        """Forward and backward of one micro-batch; the detached loss stays on the device (no
        host sync here, so an accelerator's queue keeps running through the backward pass)."""
        batch = self._batch(self.train_feats, idx)
        w = None
        if weights_all is not None:
            w = weights_all[torch.as_tensor(np.asarray(idx), dtype=torch.long)].to(self.device)
        loss = self._loss(batch, w)
        self.scaler.scale(loss * scale).backward()
        if self.fgm is not None:
            if self.fgm.attack():
                adv = self._loss(batch, w)
                self.scaler.scale(adv * scale).backward()
            self.fgm.restore()
        self.examples_seen += len(idx)
        return loss.detach()

    def _optimizer_step(self) -> None:
        cfg = self.cfg
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def current_lr(self) -> float:
        return float(max(g["lr"] for g in self.optimizer.param_groups))

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, n_batches: int) -> bool:
        """Evaluate, keep the best, call the hook; True when training should stop early."""
        from relex import metrics as M

        cfg = self.cfg
        logits = ckpt.predict_logits(self.model, self.valid_feats, batch_size=cfg.eval_batch_size,
                                     erpe_clip=self.erpe_clip, amp=self.amp)
        probs = ckpt.probs_from_logits(logits)
        m = M.compute(self.valid_labels, probs, self.labels.names, self.labels.negative, per_class=False)
        z = logits.astype(np.float64)
        zmax = z.max(axis=1)
        lse = zmax + np.log(np.exp(z - zmax[:, None]).sum(axis=1))
        val_loss = float(np.mean(lse - z[np.arange(len(z)), self.valid_labels]))
        train_loss = self.loss_sum / self.loss_steps if self.loss_steps else float("nan")
        epoch_f = self.epoch + (self.batch_in_epoch / n_batches if n_batches else 0.0)
        metrics = {
            "micro_f1": m["micro_f1"], "auprc": m["auprc"], "mean_ap": m["mean_ap"], "accuracy": m["accuracy"],
            "val_loss": val_loss, "train_loss": train_loss, "lr": self.current_lr(),
        }
        is_best = self.best_metrics is None or metrics["micro_f1"] > self.best_metrics["micro_f1"]
        if is_best:
            self.best_metrics = dict(metrics)
            self.best_step = self.step
            self.best_epoch = epoch_f
            self.best_probs = probs
            self.bad_evals = 0
            ckpt.save(self.best_dir, self.model, self.tokenizer, self.cfg, self.labels,
                      info={"step": self.step, "epoch": epoch_f, "metrics": metrics})
        else:
            self.bad_evals += 1
        self.last_eval_step = self.step
        self.loss_sum, self.loss_steps = 0.0, 0
        entry = {"step": self.step, "epoch": epoch_f, **metrics, "is_best": is_best,
                 "wall_s": self.wall_s()}
        self.history.append(entry)
        self._write_history()
        self.report.log(
            f"eval step {self.step} epoch {epoch_f:.2f}: micro_f1 {metrics['micro_f1']:.2f} "
            f"auprc {metrics['auprc']:.2f} mean_ap {metrics['mean_ap']:.2f} acc {metrics['accuracy']:.2f} "
            f"val_loss {val_loss:.4f}"
            + (" (best)" if is_best else "")
        )
        stop = bool(cfg.patience) and self.bad_evals >= cfg.patience
        self.stopping = stop
        if self.on_evaluate is not None:
            ev = EvalEvent(step=self.step, epoch=epoch_f, metrics=dict(metrics), is_best=is_best,
                           best_dir=self.best_dir, best_metrics=dict(self.best_metrics),
                           best_step=self.best_step, best_epoch=self.best_epoch, _save=self.save_state)
            try:
                self.on_evaluate(ev)
            finally:
                ev._save = None
        if stop:
            self.stop_reason = "early_stopping"
            self.report.log(f"early stopping: no better micro-F1 in {cfg.patience} evaluations")
        return stop

    def wall_s(self) -> float:
        return self.wall_before + (time.perf_counter() - self.t_start)

    def _write_history(self) -> None:
        text = "".join(_dumps(h) + "\n" for h in self.history)
        atomic_write_text(self.out_dir / "history.jsonl", text)

    # ------------------------------------------------------------------ HNM
    @torch.no_grad()
    def hnm_update(self) -> None:
        neg = np.flatnonzero(self.train_labels == self.labels.negative_id)
        if len(neg) == 0:
            return
        sub = self.train_feats.subset(neg)
        logits = ckpt.predict_logits(self.model, sub, batch_size=self.cfg.eval_batch_size,
                                     erpe_clip=self.erpe_clip, amp=self.amp)
        lab = self.train_labels[neg]
        per = self.loss_fn.per_example(torch.from_numpy(logits), torch.from_numpy(lab)).numpy()
        self.miner.update(neg.astype(np.int64), per, lab)
        self.report.log(f"hard-negative mining: scored {len(neg)} negatives after epoch {self.epoch + 1}")

    # ------------------------------------------------------------------ the loop
    def run(self) -> FitResult:
        cfg = self.cfg
        self.report.start(self.total_steps, self.step)
        stop = self.stopping  # a state saved at the evaluation that stopped the run
        if stop:
            self.stop_reason = "early_stopping"
        elif cfg.max_steps and self.step >= cfg.max_steps:  # a state saved at the step limit
            stop = True
            self.stop_reason = "max_steps"
        try:
            while self.epoch < cfg.epochs and not stop:
                batches = self.epoch_batches(self.epoch)
                n = len(batches)
                weights = self.example_weights()
                while self.batch_in_epoch < n:
                    t0 = time.perf_counter()
                    start = self.batch_in_epoch
                    group = batches[start:min(start + cfg.grad_accum, n)]
                    losses = [self._micro_step(idx, 1.0 / len(group), weights) for idx in group]
                    self._optimizer_step()
                    loss = float(torch.stack(losses).float().mean())  # the step's one host sync
                    if not math.isfinite(loss):
                        raise TrainingDiverged(
                            f"training diverged: the loss is {loss} at step {self.step + 1} "
                            f"(epoch {self.epoch + 1}); try a lower --lr, a --grad-clip, or --amp off")
                    self.step += 1
                    self.batch_in_epoch = start + len(group)
                    self.loss_sum += loss
                    self.loss_steps += 1
                    self.train_s += time.perf_counter() - t0
                    epoch_f = self.epoch + self.batch_in_epoch / n
                    self.report.step(self.step, epoch_f, loss, self.current_lr())
                    at_max = bool(cfg.max_steps) and self.step >= cfg.max_steps
                    end_of_epoch = self.batch_in_epoch >= n
                    due = (
                        (cfg.eval_every > 0 and self.step % cfg.eval_every == 0)
                        or (cfg.eval_every == 0 and end_of_epoch)
                        or at_max
                        or (end_of_epoch and self.epoch == cfg.epochs - 1)
                    )
                    if due:
                        stop = self.evaluate(n)
                    if at_max:
                        if not stop:
                            self.stop_reason = "max_steps"
                        stop = True
                    if stop:
                        break
                if stop:
                    break
                if self.miner is not None and self.epoch < cfg.epochs - 1:
                    self.hnm_update()
                self.epoch += 1
                self.batch_in_epoch = 0
            if self.last_eval_step != self.step or self.best_metrics is None:
                # the last step was not evaluated yet (or nothing was): evaluate it
                self.evaluate(max(1, len(self.epoch_batches(min(self.epoch, cfg.epochs - 1)))))
        finally:
            self.report.close()
        return self.result()

    def result(self) -> FitResult:
        epochs_run = min(self.cfg.epochs, self.epoch + (1 if self.batch_in_epoch > 0 else 0))
        res = FitResult(
            best_metrics=dict(self.best_metrics),
            best_step=self.best_step,
            best_epoch=self.best_epoch,
            epochs_run=max(epochs_run, 1),
            steps=self.step,
            wall_s=self.wall_s(),
            best_dir=self.best_dir,
            history=list(self.history),
            valid_probs=self.best_probs,
            examples_seen=self.examples_seen,
            train_s=self.train_s,
            examples_per_s=self.examples_seen / self.train_s if self.train_s > 0 else 0.0,
            stop_reason=self.stop_reason,
            amp=self.amp.mode,
            device=str(self.device),
            label_names=tuple(self.labels.names),
        )
        atomic_write_text(self.out_dir / "metrics.json",
                          _dumps({**res.summary(), "config": self.cfg.to_dict(),
                                  "labels": list(self.labels.names)}, indent=2) + "\n")
        self.report.log(
            f"done: best micro_f1 {res.best_metrics['micro_f1']:.2f} at step {res.best_step}, "
            f"{res.steps} steps in {res.wall_s:.1f}s ({res.examples_per_s:.1f} examples/s); "
            f"checkpoint {res.best_dir}"
        )
        return res

    # ------------------------------------------------------------------ state
    def save_state(self, path: str | os.PathLike) -> Path:
        """Everything needed to continue exactly: weights, optimizer, scheduler, scaler, RNG,
        position, HNM, best so far (with its checkpoint). No pickle."""
        from safetensors.torch import save_file, save_model

        path = Path(path)
        with atomic_path(path, is_dir=True) as tmp:
            save_model(self.model, str(tmp / "model.safetensors"))
            opt = self.optimizer.state_dict()
            tensors: dict[str, torch.Tensor] = {}
            scalars: dict[str, dict[str, Any]] = {}
            for pid, st in opt["state"].items():
                for name, v in st.items():
                    if isinstance(v, torch.Tensor):
                        tensors[f"{pid}.{name}"] = v.detach().cpu().contiguous()
                    else:
                        scalars.setdefault(str(pid), {})[name] = v
            save_file(tensors, str(tmp / "optimizer.safetensors"))
            rng = {"torch": torch.get_rng_state()}
            if torch.cuda.is_available():
                for i, s in enumerate(torch.cuda.get_rng_state_all()):
                    rng[f"cuda.{i}"] = s
            np_state = np.random.get_state()
            rng["numpy"] = torch.from_numpy(np.asarray(np_state[1], dtype=np.uint32).view(np.int32).copy())
            save_file(rng, str(tmp / "rng.safetensors"))
            if self.best_probs is not None:
                save_file({"probs": torch.from_numpy(np.ascontiguousarray(self.best_probs))},
                          str(tmp / "best_probs.safetensors"))
            if self.best_dir.is_dir():
                shutil.copytree(self.best_dir, tmp / "best")
            py_state = random.getstate()
            state = {
                "format": STATE_FORMAT, "version": STATE_VERSION,
                "config": self.cfg.to_dict(),
                "train_hash": getattr(self.train_ds, "content_hash", None),
                "valid_hash": getattr(self.valid_ds, "content_hash", None),
                "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "examples_seen": self.examples_seen, "train_s": self.train_s, "wall_s": self.wall_s(),
                "history": self.history, "best_metrics": self.best_metrics, "best_step": self.best_step,
                "best_epoch": self.best_epoch, "bad_evals": self.bad_evals,
                "last_eval_step": self.last_eval_step, "loss_sum": self.loss_sum,
                "loss_steps": self.loss_steps,
                "hnm": self.miner.state_dict() if self.miner is not None else None,
                "optimizer_param_groups": opt["param_groups"], "optimizer_scalars": scalars,
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "python_random": [py_state[0], list(py_state[1]), py_state[2]],
                "numpy_random": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
                "stop_reason": self.stop_reason, "stopping": self.stopping,
            }
            (tmp / "state.json").write_text(_dumps(state, indent=1) + "\n", encoding="utf-8")
            (tmp / "config.json").write_text(self.cfg.to_json() + "\n", encoding="utf-8")
        return path

    def load_state(self, path: str | os.PathLike) -> None:
        from safetensors.torch import load_file, load_model

        path = Path(path)
        sfile = path / "state.json"
        if not sfile.is_file():
            raise RelexError(f"{path}: not a relex training state (no state.json)")
        state = json.loads(sfile.read_text(encoding="utf-8"))
        if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
            raise RelexError(f"{path}: unsupported training state format")
        saved = TrialConfig.from_dict(state["config"], where=str(sfile))
        diff = [k for k in TrialConfig.field_names()
                if k not in _RESUME_FREE and getattr(saved, k) != getattr(self.cfg, k)]
        if diff:
            raise RelexError(f"{path}: the state was saved with a different configuration "
                             f"({', '.join(f'{k}={getattr(saved, k)!r}' for k in diff)})")
        for key, ds in (("train_hash", self.train_ds), ("valid_hash", self.valid_ds)):
            h = getattr(ds, "content_hash", None)
            if state.get(key) is not None and h is not None and state[key] != h:
                which = "training" if key == "train_hash" else "validation"
                raise RelexError(f"{path}: the state was saved with a different {which} set")

        load_model(self.model, str(path / "model.safetensors"), device=str(self.device))
        tensors = load_file(str(path / "optimizer.safetensors"))
        opt_state: dict[int, dict[str, Any]] = {}
        for key, v in tensors.items():
            pid, name = key.split(".", 1)
            opt_state.setdefault(int(pid), {})[name] = v
        for pid, d in state["optimizer_scalars"].items():
            opt_state.setdefault(int(pid), {}).update(d)
        groups = state["optimizer_param_groups"]
        for g in groups:
            if "betas" in g and isinstance(g["betas"], list):
                g["betas"] = tuple(g["betas"])
        self.optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])

        if self.miner is not None and state.get("hnm") is not None:
            self.miner.load_state_dict(state["hnm"])

        for k in ("step", "epoch", "batch_in_epoch", "examples_seen", "train_s", "history",
                  "best_metrics", "best_step", "best_epoch", "bad_evals", "last_eval_step",
                  "loss_sum", "loss_steps", "stop_reason", "stopping"):
            setattr(self, k, state[k])
        self.wall_before = float(state["wall_s"])
        self.t_start = time.perf_counter()
        if (path / "best_probs.safetensors").exists():
            self.best_probs = load_file(str(path / "best_probs.safetensors"))["probs"].numpy()
        if (path / "best").is_dir() and (path / "best").resolve() != self.best_dir.resolve():
            with atomic_path(self.best_dir, is_dir=True) as tmp:
                shutil.rmtree(tmp)
                shutil.copytree(path / "best", tmp)
        if self.history:
            self._write_history()

        rng = load_file(str(path / "rng.safetensors"))
        py = state["python_random"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        npm = state["numpy_random"]
        np.random.set_state((npm[0], rng["numpy"].numpy().view(np.uint32), npm[1], npm[2], npm[3]))
        torch.set_rng_state(rng["torch"])
        if torch.cuda.is_available():
            cuda = [rng[f"cuda.{i}"] for i in range(torch.cuda.device_count()) if f"cuda.{i}" in rng]
            if cuda:
                torch.cuda.set_rng_state_all(cuda)
        self.report.log(f"resumed from {path} at step {self.step} (epoch {self.epoch + 1}, "
                        f"batch {self.batch_in_epoch})")


def fit(
    cfg: TrialConfig,
    train_ds,
    valid_ds,
    out_dir: str | os.PathLike,
    *,
    on_evaluate: Callable[[EvalEvent], None] | None = None,
    resume_from: str | os.PathLike | None = None,
    progress: bool | str | None = None,
    features_cache: str | os.PathLike | None = None,
    backbone_path: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
) -> FitResult:
    """Train ``cfg`` on ``train_ds``, evaluate on ``valid_ds``, keep the best in ``out_dir/best``.

    ``progress``: None (a rich bar on a terminal, plain lines otherwise), True / "rich",
    "plain", False / "off" (silent). ``features_cache``: feature cache directory (default
    ``cache_root()/features``). ``backbone_path``: an already resolved backbone directory
    (skips ``resolve_backbone``). ``device``: default CUDA when available, else CPU.

    Deterministic under ``cfg.seed`` on CPU: two runs give identical metrics. Raises
    :class:`TrainingDiverged` when the training loss becomes NaN/inf.
    """
    trainer = _Trainer(cfg, train_ds, valid_ds, out_dir, on_evaluate=on_evaluate, progress=progress,
                       features_cache=features_cache, backbone_path=backbone_path, device=device)
    threads_before = torch.get_num_threads()
    det_before = torch.are_deterministic_algorithms_enabled()
    det_warn_before = torch.is_deterministic_algorithms_warn_only_enabled()
    if trainer.device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        trainer.out_dir.mkdir(parents=True, exist_ok=True)
        trainer.setup()
        if resume_from is not None:
            trainer.load_state(resume_from)
        return trainer.run()
    finally:
        torch.use_deterministic_algorithms(det_before, warn_only=det_warn_before)
        if torch.get_num_threads() != threads_before:
            torch.set_num_threads(threads_before)

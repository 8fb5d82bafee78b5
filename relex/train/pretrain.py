"""``pretrain()``: task-adaptive masked-language-model pretraining of a backbone on a corpus.

Order of work::

    prepare: corpus → held-out sentences (cfg.held_out) → backbone (relex/tiny: vocabulary
             learned from the training sentences) with its masked-LM head → token ids, word
             offsets, entity token spans → AdamW → warm-up then constant rate
    loop:    length-grouped batches; each batch is masked by transformers'
             DataCollatorForLanguageModeling (tokens, or whole words), then relex's entity-span
             masking; each optimizer step is relex.train.step.train_step; every
             ``cfg.save_every`` steps and at the end: held-out MLM loss and masked-token
             accuracy, the pretrained directory, the resumable state

The output directory is a ``save_pretrained`` directory (weights with the masked-LM head,
config, tokenizer) plus :data:`INFO_FILE` (what it was trained on and for how long) and
``history.jsonl`` (one line per evaluation): ``--backbone OUT`` loads it in ``relex train``,
sweeps and ``relex pretrain`` itself. ``OUT/state`` is the resumable state (relex.train.state):
``pretrain(..., resume=True)`` continues exactly where it was written. The held-out set is
masked under a fixed seed, the same at every evaluation, without touching the training's random
generators, so evaluating changes nothing in the run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from relex.config import PretrainConfig
from relex.errors import RelexError
from relex.io_utils import UMASK, atomic_write_text, json_default
from relex.train import amp as amp_mod
from relex.train import state as state_io
from relex.train.predict import default_device
from relex.train.progress import Reporter
from relex.train.step import train_step

INFO_FILE = "relex_pretrain.json"
INFO_FORMAT = "relex-pretrained"
STATE_DIR = "state"
EVAL_SEED = 20240611  # the held-out masks: the same at every evaluation of every run
# config fields that may differ between a saved state and the run that resumes it
_RESUME_FREE = ("num_threads", "save_every")


@dataclass
class PretrainPosition:
    """Where a pretraining run is (saved whole in the resumable state)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    tokens: int = 0  # non-padding input tokens trained on
    train_s: float = 0.0
    wall_s: float = 0.0
    loss_sum: float = 0.0
    loss_steps: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)


class MaskedLM(torch.nn.Module):
    """A ``...ForMaskedLM`` model as relex's step calls it: ``forward(batch)`` gives the logits
    of the masked positions only (``labels != -100``, row-major). Where the head is a separate
    module (RoBERTa's ``lm_head``, BERT's ``cls``) only those positions go through it: the
    vocabulary projection is most of a tiny model's compute, and 85% of positions need none."""

    def __init__(self, mlm: torch.nn.Module):
        super().__init__()
        self.mlm = mlm
        self._head = getattr(mlm, "lm_head", None) or getattr(mlm, "cls", None)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        masked = batch["labels"] != -100
        if self._head is None:
            out = self.mlm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            return out.logits[masked]
        hidden = self.mlm.base_model(input_ids=batch["input_ids"],
                                     attention_mask=batch["attention_mask"]).last_hidden_state
        return self._head(hidden[masked])


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor, weights=None) -> torch.Tensor:
    """Mean cross-entropy over the masked positions (``logits`` from :class:`MaskedLM`)."""
    return torch.nn.functional.cross_entropy(logits, labels[labels != -100])


@dataclass
class Encoded:
    """The corpus as token ids, with what masking needs."""

    input_ids: list[list[int]]
    offsets: list[list[tuple[int, int]]]
    special: list[list[int]]
    entity_tokens: list[list[np.ndarray]]  # per sentence, the token positions of each entity span

    @property
    def lengths(self) -> np.ndarray:
        return np.asarray([len(x) for x in self.input_ids])


def encode(tokenizer, sentences: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]],
           max_length: int) -> Encoded:
    """Tokenize ``sentences`` (with their offsets) and map each entity span to its tokens."""
    enc = tokenizer(list(sentences), truncation=True, max_length=max_length,
                    return_offsets_mapping=True, return_special_tokens_mask=True)
    entity = [[entity_token_positions(offs, sp, special) for sp in sent_spans]
              for offs, special, sent_spans in zip(enc["offset_mapping"], enc["special_tokens_mask"], spans)]
    return Encoded(enc["input_ids"], [list(map(tuple, o)) for o in enc["offset_mapping"]],
                   enc["special_tokens_mask"], entity)


def entity_token_positions(offsets, span: tuple[int, int], special) -> np.ndarray:
    """Positions of the tokens that overlap the character span ``(start, end inclusive)``
    (special tokens excluded; empty when truncation cut the span off)."""
    start, end = span
    return np.asarray([i for i, ((a, b), sp) in enumerate(zip(offsets, special))
                       if not sp and a <= end and b > start], dtype=np.int64)


def mask_entity_spans(input_ids: torch.Tensor, labels: torch.Tensor, original: torch.Tensor,
                      spans: Sequence[Sequence[np.ndarray]], probability: float,
                      mask_id: int) -> None:
    """Mask each entity span whole, in place, with ``probability`` per span: every token of a
    chosen span becomes ``mask_id`` and is predicted (its label is the original token).

    One draw per span from torch's generator, in sentence then span order (part of the run's
    saved random state).
    """
    for row, row_spans in enumerate(spans):
        if not row_spans:
            continue
        draws = torch.rand(len(row_spans))
        for chosen, positions in zip(draws.tolist(), row_spans):
            if chosen < probability and len(positions):
                pos = torch.from_numpy(positions)
                input_ids[row, pos] = mask_id
                labels[row, pos] = original[row, pos]


@dataclass
class PretrainRun:
    """Everything one pretraining run holds; :func:`prepare` builds it."""

    cfg: PretrainConfig
    out_dir: Path
    device: torch.device
    amp: amp_mod.Amp
    report: Reporter
    corpus: Any  # the relex.data.corpus.Corpus read
    tokenizer: Any
    model: MaskedLM
    train: Encoded
    held_out: Encoded
    collator: Any
    backbone_path: str
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None
    scaler: torch.amp.GradScaler | None = None
    total_steps: int = 1
    batches_per_epoch: int = 1
    pos: PretrainPosition = field(default_factory=PretrainPosition)
    techniques: dict[str, Any] = field(default_factory=dict)  # the step's hooks: none here
    loss_fn: Callable = masked_lm_loss
    on_evaluate: Callable[[dict[str, float]], None] | None = None
    t_start: float = field(default_factory=time.perf_counter)

    @property
    def state_dir(self) -> Path:
        return self.out_dir / STATE_DIR

    def forward(self, batch: dict) -> torch.Tensor:
        """The training forward the step calls (one worker: the model itself)."""
        return self.model(batch)

    def wall_s(self) -> float:
        return self.pos.wall_s + (time.perf_counter() - self.t_start)

    def lr(self) -> float:
        return float(max(g["lr"] for g in self.optimizer.param_groups))


# ----------------------------------------------------------------------------- set-up
def held_out_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) sentence positions, each sorted; at least one held out."""
    if n < 2:
        raise RelexError(f"pretraining corpus: {n} distinct sentence(s); at least 2 are needed "
                         "(one is held out for the MLM loss)")
    order = np.random.default_rng(seed).permutation(n)
    k = min(n - 1, max(1, int(round(fraction * n))))
    return np.sort(order[k:]), np.sort(order[:k])


def prepare(cfg: PretrainConfig, corpus, out_dir: str | os.PathLike, *,
            progress: bool | str | None = False, device: str | torch.device | None = None) -> PretrainRun:
    """Build a run ready for its first step (or for :func:`load_state`)."""
    from transformers import DataCollatorForLanguageModeling, get_scheduler

    from relex.model.backbone import load_masked_lm, load_tokenizer, resolve_backbone

    cfg.validate()
    _seed_everything(cfg.seed)
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    device = torch.device(device) if device is not None else default_device()
    amp = amp_mod.resolve(cfg.amp, device)
    report = Reporter(Reporter.pick(progress), title="pretrain")
    report.log(f"device {device}, precision: {amp.describe()}")
    report.log(f"corpus: {corpus.describe()}")
    train_idx, held_idx = held_out_split(len(corpus), cfg.held_out, cfg.seed)
    train_c, held_c = corpus.subset(train_idx), corpus.subset(held_idx)
    # relex/tiny learns its vocabulary from the training sentences only
    path = resolve_backbone(cfg.backbone, corpus=train_c.sentences, cfg=cfg)
    torch.manual_seed(cfg.seed)  # a head the backbone lacks starts the same in every run
    model = MaskedLM(load_masked_lm(path, cfg.backbone)).to(device)
    model.train()
    tokenizer = load_tokenizer(path)
    if tokenizer.mask_token is None:
        raise RelexError(f"backbone '{cfg.backbone}': its tokenizer has no mask token")
    # whole words are always replaced by [MASK] (transformers does no random replacement there)
    replace = dict(mask_replace_prob=1.0, random_replace_prob=0.0) if cfg.whole_word else {}
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=cfg.mlm_probability,
                                               whole_word_mask=cfg.whole_word, **replace)
    run = PretrainRun(cfg=cfg, out_dir=Path(out_dir), device=device, amp=amp, report=report,
                      corpus=corpus, tokenizer=tokenizer, model=model,
                      train=encode(tokenizer, train_c.sentences, train_c.spans, cfg.max_length),
                      held_out=encode(tokenizer, held_c.sentences, held_c.spans, cfg.max_length),
                      collator=collator, backbone_path=path)
    if cfg.entity_masking > 0 and not any(any(len(p) for p in s) for s in run.train.entity_tokens):
        raise RelexError("--entity-masking: the corpus has no entity spans (plain text files "
                         "have none; give relation files such as the training set)")
    n_params = sum(p.numel() for p in model.parameters())
    report.log(f"backbone {cfg.backbone}: {n_params / 1e6:.2f}M parameters, vocabulary "
               f"{len(tokenizer)}; {len(train_idx)} training and {len(held_idx)} held-out sentences")
    fused = device.type in ("cpu", "cuda")
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]  # biases, norms
    run.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, fused=fused)
    run.scaler = amp.scaler()
    run.batches_per_epoch = len(epoch_batches(run, 0))
    run.total_steps = cfg.steps or cfg.epochs * run.batches_per_epoch
    run.scheduler = get_scheduler("constant_with_warmup", run.optimizer,
                                  num_warmup_steps=min(cfg.warmup_steps, run.total_steps // 10))
    return run


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- batches
def epoch_batches(run: PretrainRun, epoch: int) -> list[np.ndarray]:
    from relex.data.samplers import length_grouped_batches

    return length_grouped_batches(run.train.lengths, run.cfg.batch_size, seed=run.cfg.seed + epoch,
                                  shuffle=True)


def masked_batch(run: PretrainRun, enc: Encoded, idx: np.ndarray) -> dict[str, torch.Tensor]:
    """The collator's masked batch of rows ``idx``, then the entity spans masked whole."""
    examples = [{"input_ids": enc.input_ids[i], "special_tokens_mask": enc.special[i]} for i in idx]
    if run.cfg.whole_word:  # the collator finds words by offsets; tokenizer.pad does not pad them
        width = max(len(enc.input_ids[i]) for i in idx)
        for ex, i in zip(examples, idx):
            ex["offset_mapping"] = enc.offsets[i] + [(0, 0)] * (width - len(enc.offsets[i]))
    batch = run.collator(examples)
    if run.cfg.entity_masking > 0:
        original = torch.full_like(batch["input_ids"], run.tokenizer.pad_token_id)
        for row, i in enumerate(idx):
            original[row, :len(enc.input_ids[i])] = torch.tensor(enc.input_ids[i])
        mask_entity_spans(batch["input_ids"], batch["labels"], original,
                          [enc.entity_tokens[i] for i in idx], run.cfg.entity_masking,
                          run.tokenizer.mask_token_id)
    if "attention_mask" not in batch:
        lengths = torch.tensor([len(enc.input_ids[i]) for i in idx])
        batch["attention_mask"] = (torch.arange(batch["input_ids"].shape[1])[None, :] < lengths[:, None]).long()
    return {k: batch[k].to(run.device, non_blocking=True) for k in ("input_ids", "attention_mask", "labels")}


# ----------------------------------------------------------------------------- the loop
def train(run: PretrainRun) -> dict[str, Any]:
    """Run from ``run.pos`` to the last step, evaluating and saving; return the info written."""
    cfg, pos = run.cfg, run.pos
    run.report.start(run.total_steps, pos.step)
    try:
        while pos.step < run.total_steps:
            batches = epoch_batches(run, pos.epoch)
            while pos.batch_in_epoch < len(batches) and pos.step < run.total_steps:
                idx = batches[pos.batch_in_epoch]
                t0 = time.perf_counter()
                batch = masked_batch(run, run.train, idx)
                if not bool((batch["labels"] != -100).any()):
                    pos.batch_in_epoch += 1  # nothing was masked (tiny batch): nothing to learn
                    continue
                loss = float(train_step(run, [(batch, None)]))
                if not math.isfinite(loss):
                    raise RelexError(f"pretraining diverged: the MLM loss is {loss} at step "
                                     f"{pos.step + 1}; try a lower --lr or --amp off")
                pos.step += 1
                pos.batch_in_epoch += 1
                pos.tokens += int(batch["attention_mask"].sum())
                pos.loss_sum += loss
                pos.loss_steps += 1
                pos.train_s += time.perf_counter() - t0
                rate = pos.tokens / pos.train_s if pos.train_s > 0 else 0.0
                run.report.step(pos.step, _epoch(run), loss, run.lr(), extra=f"{rate:,.0f} tokens/s")
                if pos.step % cfg.save_every == 0 and pos.step < run.total_steps:
                    checkpoint(run)
            if pos.batch_in_epoch >= len(batches):
                pos.epoch, pos.batch_in_epoch = pos.epoch + 1, 0
        if not pos.history or pos.history[-1]["step"] != pos.step:
            checkpoint(run)
    finally:
        run.report.close()
    return read_info(run.out_dir)


def _epoch(run: PretrainRun) -> float:
    return run.pos.epoch + run.pos.batch_in_epoch / max(1, run.batches_per_epoch)


def checkpoint(run: PretrainRun) -> dict[str, float]:
    """Evaluate on the held-out sentences, write the pretrained directory and the state."""
    pos = run.pos
    metrics = evaluate(run)
    metrics.update(train_loss=pos.loss_sum / pos.loss_steps if pos.loss_steps else float("nan"),
                   lr=run.lr(), tokens_per_s=pos.tokens / pos.train_s if pos.train_s > 0 else 0.0,
                   epoch=_epoch(run))
    pos.loss_sum, pos.loss_steps = 0.0, 0
    pos.history.append({"step": pos.step, **metrics, "tokens": pos.tokens, "wall_s": run.wall_s()})
    run.report.log(f"eval step {pos.step} epoch {metrics['epoch']:.2f}: held-out MLM loss "
                   f"{metrics['mlm_loss']:.4f}, masked-token accuracy {metrics['mlm_accuracy']:.2f}%")
    save_output(run)
    save_state(run)
    if run.on_evaluate is not None:
        run.on_evaluate({"step": pos.step, **metrics})
    return metrics


@torch.no_grad()
def evaluate(run: PretrainRun) -> dict[str, float]:
    """Held-out MLM loss (mean over masked tokens) and masked-token accuracy (%), masked under
    :data:`EVAL_SEED` without touching the training's random generators."""
    from relex.data.samplers import length_grouped_batches

    run.model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    devices = [run.device.index or 0] if run.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(EVAL_SEED)
        for idx in length_grouped_batches(run.held_out.lengths, run.cfg.batch_size, seed=0, shuffle=False):
            batch = masked_batch(run, run.held_out, idx)
            if not bool((batch["labels"] != -100).any()):
                continue
            with run.amp.autocast():
                logits = run.model(batch)
            target = batch["labels"][batch["labels"] != -100]
            loss_sum += float(torch.nn.functional.cross_entropy(logits.float(), target, reduction="sum"))
            correct += int((logits.argmax(-1) == target).sum())
            count += int(target.numel())
    run.model.train()
    return {"mlm_loss": loss_sum / count if count else float("nan"),
            "mlm_accuracy": 100.0 * correct / count if count else float("nan")}


# ----------------------------------------------------------------------------- output
def info(run: PretrainRun) -> dict[str, Any]:
    """What the pretrained directory was trained on and for how long."""
    from relex import __version__

    pos, corpus = run.pos, run.corpus
    last = pos.history[-1] if pos.history else {}
    return {"format": INFO_FORMAT, "version": 1, "relex": __version__,
            "backbone": run.cfg.backbone, "config": run.cfg.to_dict(),
            "corpus": {"files": corpus.files, "sentences": len(corpus),
                       "training_sentences": len(run.train.input_ids),
                       "held_out_sentences": len(run.held_out.input_ids),
                       "rows_read": corpus.read, "dropped_duplicates": corpus.dropped_duplicates,
                       "dropped_empty": corpus.dropped_empty, "sha256": corpus.content_hash},
            "steps": pos.step, "total_steps": run.total_steps, "epochs": round(_epoch(run), 4),
            "tokens": pos.tokens, "train_s": round(pos.train_s, 3), "wall_s": round(run.wall_s(), 3),
            "tokens_per_s": round(pos.tokens / pos.train_s, 1) if pos.train_s > 0 else 0.0,
            "device": str(run.device), "amp": run.amp.mode,
            "held_out": {k: last.get(k) for k in ("mlm_loss", "mlm_accuracy")}}


def save_output(run: PretrainRun) -> None:
    """Write the pretrained directory into ``out_dir``: each file under a temporary name, renamed
    into place (weights first, :data:`INFO_FILE` last), so every file is whole at any moment."""
    from relex.model.quiet import quiet_transformers

    out = run.out_dir
    with tempfile.TemporaryDirectory(prefix=".pretrained.", dir=out) as name:
        tmp = Path(name)
        with quiet_transformers():
            run.model.mlm.save_pretrained(str(tmp))
        run.tokenizer.save_pretrained(str(tmp))
        for p in sorted(tmp.iterdir(), key=lambda p: p.name == "config.json"):
            os.chmod(p, 0o666 & ~UMASK)  # safetensors writes owner-only files
            os.replace(p, out / p.name)
    text = "".join(json.dumps(h, default=json_default) + "\n" for h in run.pos.history)
    atomic_write_text(out / "history.jsonl", text)
    atomic_write_text(out / INFO_FILE, json.dumps(info(run), indent=2, default=json_default) + "\n")


def read_info(path: str | os.PathLike) -> dict[str, Any]:
    from relex.io_utils import read_json

    return read_json(Path(path) / INFO_FILE)


# ----------------------------------------------------------------------------- state
def _state_objects(run: PretrainRun) -> dict[str, Any]:
    return {"model": run.model, "optimizer": run.optimizer, "scheduler": run.scheduler,
            "scaler": run.scaler, "random": state_io.RandomState(), "position": run.pos}


def save_state(run: PretrainRun) -> Path:
    run.pos.wall_s, run.t_start = run.wall_s(), time.perf_counter()
    meta = {"kind": "pretrain", "config": run.cfg.to_dict(), "corpus_hash": run.corpus.content_hash}
    return state_io.save(run.state_dir, _state_objects(run), meta)


def load_state(run: PretrainRun) -> None:
    """Continue ``run`` exactly from ``OUT/state`` (same config and corpus required)."""
    path = run.state_dir
    meta = state_io.read_meta(path)
    if meta.get("kind") != "pretrain":
        raise RelexError(f"{path}: not the state of a relex pretrain run")
    state_io.check_config(path, meta["config"], run.cfg, _RESUME_FREE)
    if meta.get("corpus_hash") != run.corpus.content_hash:
        raise RelexError(f"{path}: the state was saved with a different corpus")
    state_io.load(path, _state_objects(run))
    run.t_start = time.perf_counter()
    run.report.log(f"resumed from {path} at step {run.pos.step} (epoch {run.pos.epoch + 1})")


# ----------------------------------------------------------------------------- pretrain
def pretrain(cfg: PretrainConfig, corpus, out_dir: str | os.PathLike, *, resume: bool = False,
             progress: bool | str | None = None, device: str | torch.device | None = None,
             on_evaluate: Callable[[dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Pretrain ``cfg.backbone`` on ``corpus`` (a relex.data.corpus.Corpus) into ``out_dir``.

    ``resume``: continue from ``out_dir/state``. ``on_evaluate(metrics)`` is called after each
    evaluation (trackers hook in there). Deterministic under ``cfg.seed`` on CPU. Returns the
    info written to ``out_dir/`` :data:`INFO_FILE`.
    """
    from relex.train.fit import _torch_settings

    target = torch.device(device) if device is not None else default_device()
    out = Path(out_dir)
    if resume and not (out / STATE_DIR / state_io.STATE).is_file():
        raise RelexError(f"--resume: {out / STATE_DIR}: no pretraining state to resume")
    with _torch_settings(target):
        out.mkdir(parents=True, exist_ok=True)
        run = prepare(cfg, corpus, out, progress=progress, device=target)
        run.on_evaluate = on_evaluate
        if resume:
            load_state(run)
        return train(run)

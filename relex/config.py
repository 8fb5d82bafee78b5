"""The one trial configuration.

A trial's whole configuration is one :class:`TrialConfig`. A sweep's job file produces it, the
trial receives it, the trainer consumes it, a checkpoint stores it as JSON, and ``relex train``
builds the same object from flags. Unknown keys and invalid values raise :class:`RelexError`
before any work starts.

Its keys are flat (job files and flags name them directly) but it is made of two parts:

* :class:`ModelConfig` — what rebuilds the model (backbone, marker, max_length, head, ERPE, the
  tiny backbone's sizes). A checkpoint stores this part with a format version and needs nothing
  else to load.
* :class:`TrainingConfig` — everything else. A checkpoint keeps it for the record only; keys a
  later or earlier version does not know are ignored with one warning when it loads.

Each field carries its ``--help`` text (``metadata["help"]``) and whether the leaderboard
always shows it (``metadata["column"]``): flags, help and columns come from here.

A technique is off at its neutral value: ``fgm=0`` (ε), ``awp=0`` (γ), ``rdrop=0`` (α),
``llrd=1`` (decay), ``ema=0`` (decay), ``hnm=0`` (fraction), ``class_balanced=0`` (β),
``erpe=False``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, fields
from typing import Any

from relex.errors import RelexError

MARKER_STYLES = (
    "entity_mask",
    "entity_marker",
    "entity_marker_punct",
    "typed_entity_marker",
    "typed_entity_marker_punct",
)
# The label excluded from micro-F1 when a data set, job or command names none (KLUE-RE's negative
# class); every default of a negative label in relex is this one.
NEGATIVE_LABEL = "no_relation"
HEADS = ("cls", "marker", "rbert")
LOSSES = ("ce", "focal")
SCHEDULERS = ("linear", "cosine", "constant")
AMP_MODES = ("auto", "off", "bf16", "fp16")
HNM_MODES = ("weight", "resample")
RBERT_LAYERS = ("shared", "split")
# the fields whose value is one of a fixed set
CHOICES = {
    "marker": MARKER_STYLES,
    "head": HEADS,
    "loss": LOSSES,
    "scheduler": SCHEDULERS,
    "amp": AMP_MODES,
    "hnm_mode": HNM_MODES,
    "rbert_layers": RBERT_LAYERS,
}


class _Fields:
    """Dict/JSON conversion and validation shared by every config dataclass."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "config") -> "Self":
        """Build and validate; unknown keys and bad values raise RelexError naming ``where``."""
        known = {f.name: f for f in fields(cls)}
        unknown = [k for k in data if k not in known]
        if unknown:
            msgs = []
            for k in unknown:
                close = difflib.get_close_matches(k, known, n=1)
                msgs.append(f"'{k}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            raise RelexError(f"{where}: unknown config key {', '.join(msgs)}")
        kwargs = {}
        for k, v in data.items():
            kwargs[k] = _coerce(k, v, known[k], where)
        cfg = cls(**kwargs)
        cfg.validate(where=where)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, where: str = "config") -> "Self":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise RelexError(f"{where}: not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise RelexError(f"{where}: expected a JSON object")
        return cls.from_dict(data, where=where)

    def replace(self, **changes: Any):
        return type(self).from_dict({**self.to_dict(), **changes})

    def validate(self, *, where: str = "config") -> None:
        raise NotImplementedError


def _field(default: Any, help: str, *, column: bool = False) -> Any:
    """A config field with its ``--help`` text; ``column=True`` puts it in every leaderboard."""
    return dataclasses.field(default=default, metadata={"help": help, "column": column})


@dataclass
class ModelConfig(_Fields):
    """What a checkpoint needs to rebuild its model: backbone, input representation, head, ERPE.

    A checkpoint stores exactly these fields (``checkpoint.json``, key ``model``); every other
    field is training-only and may change between relex versions without breaking a checkpoint.
    """

    backbone: str = _field("relex/tiny", "encoder: 'relex/tiny' (embedded, offline), "
                           "'relex/tiny-<H>x<L>', a local save_pretrained directory, or a "
                           "model-hub id such as klue/roberta-base")
    marker: str = _field("typed_entity_marker_punct", "entity representation", column=True)
    max_length: int = _field(256, "maximum tokens per example (long sentences are windowed "
                             "around the entities)")
    head: str = _field("marker", "classification head: [CLS], the entity start markers, or "
                       "R-BERT", column=True)
    head_dropout: float = _field(0.1, "dropout in the head")
    rbert_layers: str = _field("split", "R-BERT entity layers shared or split between subject "
                               "and object")
    rbert_extra: bool = _field(False, "add |e1-e2| and e1*e2 to the R-BERT features")
    erpe: bool = _field(False, "entity-relative position embeddings", column=True)
    erpe_clip: int = _field(32, "ERPE distance clip")
    # the embedded backbone's size (relex/tiny only)
    tiny_hidden: int = _field(128, "hidden size of relex/tiny")
    tiny_layers: int = _field(2, "layers of relex/tiny")
    tiny_heads: int = _field(2, "attention heads of relex/tiny")
    tiny_vocab: int = _field(8000, "tokenizer vocabulary size of relex/tiny")

    def validate(self, *, where: str = "config") -> None:
        bad = _complainer(self, where)
        for name in ("marker", "head", "rbert_layers"):
            _check_choice(self, name, bad)
        if not self.backbone or not isinstance(self.backbone, str):
            bad("backbone", "a model name or directory is required")
        for name in ("max_length", "tiny_hidden", "tiny_layers", "tiny_heads", "tiny_vocab",
                     "erpe_clip"):
            if getattr(self, name) < 1:
                bad(name, "must be at least 1")
        if self.max_length < 16:
            bad("max_length", "must be at least 16 tokens to hold two marked entities")
        if not (0 <= self.head_dropout < 1):
            bad("head_dropout", "must be in [0, 1)")
        if self.tiny_hidden % self.tiny_heads:
            bad("tiny_hidden", f"must be divisible by tiny_heads={self.tiny_heads}")


@dataclass
class TrainingConfig(_Fields):
    """How a model is trained: techniques, loss, optimisation, evaluation, runtime."""

    # adversarial training / regularisation / averaging
    fgm: float = _field(0.0, "FGM adversarial epsilon on the word embeddings (0 = off)", column=True)
    awp: float = _field(0.0, "AWP: adversarial weight perturbation, relative size gamma "
                        "(0 = off)", column=True)
    rdrop: float = _field(0.0, "R-Drop alpha (0 = off)", column=True)
    llrd: float = _field(1.0, "layer-wise learning-rate decay (1 = off)", column=True)
    ema: float = _field(0.0, "decay of the exponential moving average of the weights, which are "
                        "evaluated and saved instead of the raw ones (0 = off; e.g. 0.999)",
                        column=True)
    # hard-negative mining
    hnm: float = _field(0.0, "fraction of negatives mined as hard after each epoch (0 = off)",
                        column=True)
    hnm_weight: float = _field(2.0, "loss weight (weight mode) or sampling multiplier (resample "
                               "mode) of hard negatives")
    hnm_mode: str = _field("weight", "how hard negatives are used")
    # loss
    loss: str = _field("ce", "classification loss", column=True)
    label_smoothing: float = _field(0.0, "label smoothing")
    focal_gamma: float = _field(2.0, "focal loss gamma")
    class_balanced: float = _field(0.0, "class-balanced loss beta (0 = off)")
    # optimisation
    lr: float = _field(5e-5, "peak learning rate")
    weight_decay: float = _field(0.01, "AdamW weight decay")
    batch_size: int = _field(32, "examples per micro-batch")
    grad_accum: int = _field(1, "micro-batches per optimizer step")
    epochs: int = _field(3, "training epochs")
    max_steps: int = _field(0, "stop after this many optimizer steps (0 = no limit)")
    warmup_ratio: float = _field(0.1, "fraction of steps of linear warm-up")
    scheduler: str = _field("linear", "learning-rate schedule after warm-up")
    grad_clip: float = _field(1.0, "gradient-norm clip (0 = off)")
    # evaluation and checkpoints
    eval_every: int = _field(0, "optimizer steps between evaluations (0 = once per epoch)")
    patience: int = _field(0, "evaluations without a better micro-F1 before stopping (0 = off)")
    eval_batch_size: int = _field(128, "examples per evaluation batch")
    checkpoint_every: int = _field(1, "evaluations between resumable training states, when "
                                   "states are kept (relex train --save-state, every sweep "
                                   "trial); 1 suits GPU sweeps, which evaluate once per epoch: a "
                                   "lost trial repeats at most one epoch, for a state of about "
                                   "three model sizes per epoch (the best weights are written "
                                   "only when they improve, whatever this is)")
    # runtime
    seed: int = _field(42, "random seed (runs with the same seed give the same metrics on CPU)")
    amp: str = _field("auto", "mixed precision: auto = bf16/fp16 on CUDA, bf16 on CPUs with native "
                              "bf16 (AVX512-BF16, AMX), else off")
    num_threads: int = _field(0, "torch CPU threads (0 = torch's default)")
    # labels
    negative_label: str = _field(NEGATIVE_LABEL, "the label excluded from micro-F1 (KLUE: "
                                 "no_relation)")

    def validate(self, *, where: str = "config") -> None:
        bad = _complainer(self, where)
        for name in ("loss", "scheduler", "amp", "hnm_mode"):
            _check_choice(self, name, bad)
        for name in ("batch_size", "grad_accum", "epochs", "eval_batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                bad(name, "must be at least 1")
        for name in ("max_steps", "eval_every", "patience", "num_threads"):
            if getattr(self, name) < 0:
                bad(name, "must be 0 or more")
        for name in ("fgm", "awp", "rdrop", "weight_decay", "grad_clip", "focal_gamma"):
            if not (getattr(self, name) >= 0 and math.isfinite(getattr(self, name))):
                bad(name, "must be a finite number >= 0")
        if not (0 < self.lr < 1):
            bad("lr", "must be in (0, 1)")
        if not (0 < self.llrd <= 1):
            bad("llrd", "decay must be in (0, 1]; 1 turns LLRD off")
        if not (0 <= self.ema < 1):
            bad("ema", "decay must be in [0, 1); 0 turns EMA off")
        if not (0 <= self.hnm <= 1):
            bad("hnm", "fraction must be in [0, 1]; 0 turns HNM off")
        if not (math.isfinite(self.hnm_weight) and self.hnm_weight >= 1):
            bad("hnm_weight", "must be at least 1")
        if not (0 <= self.class_balanced < 1):
            bad("class_balanced", "beta must be in [0, 1); 0 turns it off")
        for name in ("label_smoothing", "warmup_ratio"):
            if not (0 <= getattr(self, name) < 1):
                bad(name, "must be in [0, 1)")


def _complainer(cfg: Any, where: str):
    def bad(name: str, why: str) -> None:
        raise RelexError(f"{where}: {name}={getattr(cfg, name)!r} is invalid: {why}")

    return bad


def _check_choice(cfg: Any, name: str, bad) -> None:
    if getattr(cfg, name) not in CHOICES[name]:
        bad(name, f"choose one of {', '.join(CHOICES[name])}")


MODEL_FIELDS = tuple(f.name for f in fields(ModelConfig))
TRAINING_FIELDS = tuple(f.name for f in fields(TrainingConfig))


@dataclass
class TrialConfig(TrainingConfig, ModelConfig):
    """The model part and the training part as one flat set of keys (job files, flags)."""

    def validate(self, *, where: str = "config") -> None:
        ModelConfig.validate(self, where=where)
        TrainingConfig.validate(self, where=where)

    @classmethod
    def from_saved(cls, data: dict[str, Any], model: "ModelConfig", *,
                   where: str = "config") -> tuple["TrialConfig", list[str]]:
        """The config of a checkpoint written by any relex version: ``model`` (already checked
        strictly) wins over ``data``; keys of ``data`` this version does not know are training
        keys of another version and are dropped (returned, sorted, as the second value)."""
        known = {k: v for k, v in data.items() if k in TRAINING_FIELDS}
        dropped = sorted(k for k in data if k not in TRAINING_FIELDS and k not in MODEL_FIELDS)
        return cls.from_dict({**known, **model.to_dict()}, where=where), dropped

    def model_part(self) -> ModelConfig:
        return ModelConfig(**{k: getattr(self, k) for k in MODEL_FIELDS})

    def training_part(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in TRAINING_FIELDS}

    # A short label for leaderboards and trial names: only what differs from the defaults.
    def short_name(self, keys: list[str] | None = None) -> str:
        base = TrialConfig()
        keys = keys or [k for k in self.field_names() if getattr(self, k) != getattr(base, k)]
        return ",".join(f"{k}={getattr(self, k)}" for k in keys) or "default"


def _coerce(name: str, value: Any, f: dataclasses.Field, where: str) -> Any:
    """Accept JSON/CLI-ish values (e.g. '3e-5', 1 for True) but reject wrong kinds clearly."""
    typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if typ == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, (int, float)) and value in (0, 1):
                return bool(value)
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                return value.lower() in ("true", "1", "yes", "on")
            raise ValueError
        if typ == "int":
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                return int(value)
            return int(value)
        if typ == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if typ == "str":
            if not isinstance(value, str):
                raise ValueError
            return value
    except (TypeError, ValueError):
        raise RelexError(f"{where}: {name}={value!r} is invalid: expected {typ}") from None
    return value


# Flags of `relex train` map one to one onto these fields (dashes for underscores).
CONFIG_FIELDS = TrialConfig.field_names()
DEFAULTS = TrialConfig()

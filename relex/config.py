"""The one trial configuration.

A trial's whole configuration is one :class:`TrialConfig`. A sweep's job file produces it, the
trial receives it, the trainer consumes it, a checkpoint stores it as JSON, and ``relex train``
builds the same object from flags. Unknown keys and invalid values raise :class:`RelexError`
before any work starts.

A technique is off at its neutral value: ``fgm=0`` (ε), ``rdrop=0`` (α), ``llrd=1`` (decay),
``hnm=0`` (fraction), ``class_balanced=0`` (β), ``erpe=False``.
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


@dataclass
class TrialConfig:
    # backbone and input representation
    backbone: str = "relex/tiny"
    marker: str = "typed_entity_marker_punct"
    max_length: int = 256
    # head
    head: str = "marker"
    head_dropout: float = 0.1
    rbert_layers: str = "split"
    rbert_extra: bool = False  # add |e1-e2| and e1*e2 to the R-BERT features
    # entity-relative position embeddings
    erpe: bool = False
    erpe_clip: int = 32
    # adversarial training / regularisation
    fgm: float = 0.0  # epsilon; 0 = off
    rdrop: float = 0.0  # alpha; 0 = off
    llrd: float = 1.0  # layer-wise decay; 1 = off
    # hard-negative mining
    hnm: float = 0.0  # fraction of negatives treated as hard after each epoch; 0 = off
    hnm_weight: float = 2.0  # loss weight (mode "weight") or sampling multiplier (mode "resample")
    hnm_mode: str = "weight"
    # loss
    loss: str = "ce"
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    class_balanced: float = 0.0  # beta of the effective-number weights; 0 = off
    # optimisation
    lr: float = 5e-5
    weight_decay: float = 0.01
    batch_size: int = 32
    grad_accum: int = 1
    epochs: int = 3
    max_steps: int = 0  # stop after this many optimizer steps; 0 = no limit
    warmup_ratio: float = 0.1
    scheduler: str = "linear"
    grad_clip: float = 1.0
    # evaluation
    eval_every: int = 0  # optimizer steps between evaluations; 0 = once per epoch
    patience: int = 0  # evaluations without improvement before stopping; 0 = off
    eval_batch_size: int = 128
    # runtime
    seed: int = 42
    amp: str = "auto"  # auto: CUDA bf16 (else fp16); CPU bf16 where native, else off
    num_threads: int = 0  # torch intra-op threads on CPU; 0 = leave torch's default
    # labels
    negative_label: str = "no_relation"
    # embedded default backbone size (only for relex/tiny)
    tiny_hidden: int = 128
    tiny_layers: int = 2
    tiny_heads: int = 2
    tiny_vocab: int = 8000

    # ------------------------------------------------------------------ helpers
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "config") -> "TrialConfig":
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
    def from_json(cls, text: str, *, where: str = "config") -> "TrialConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise RelexError(f"{where}: not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise RelexError(f"{where}: expected a JSON object")
        return cls.from_dict(data, where=where)

    def replace(self, **changes: Any) -> "TrialConfig":
        return TrialConfig.from_dict({**self.to_dict(), **changes})

    def validate(self, *, where: str = "config") -> None:
        def bad(name: str, why: str) -> None:
            raise RelexError(f"{where}: {name}={getattr(self, name)!r} is invalid: {why}")

        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                bad(name, f"choose one of {', '.join(allowed)}")
        if not self.backbone or not isinstance(self.backbone, str):
            bad("backbone", "a model name or directory is required")
        positive_ints = ("max_length", "batch_size", "grad_accum", "epochs", "eval_batch_size",
                         "tiny_hidden", "tiny_layers", "tiny_heads", "tiny_vocab", "erpe_clip")
        for name in positive_ints:
            if getattr(self, name) < 1:
                bad(name, "must be at least 1")
        for name in ("max_steps", "eval_every", "patience", "num_threads"):
            if getattr(self, name) < 0:
                bad(name, "must be 0 or more")
        if self.max_length < 16:
            bad("max_length", "must be at least 16 tokens to hold two marked entities")
        for name in ("fgm", "rdrop", "weight_decay", "grad_clip", "focal_gamma"):
            if not (getattr(self, name) >= 0 and math.isfinite(getattr(self, name))):
                bad(name, "must be a finite number >= 0")
        if not (0 < self.lr < 1):
            bad("lr", "must be in (0, 1)")
        if not (0 < self.llrd <= 1):
            bad("llrd", "decay must be in (0, 1]; 1 turns LLRD off")
        if not (0 <= self.hnm <= 1):
            bad("hnm", "fraction must be in [0, 1]; 0 turns HNM off")
        if not (math.isfinite(self.hnm_weight) and self.hnm_weight >= 1):
            bad("hnm_weight", "must be at least 1")
        if not (0 <= self.class_balanced < 1):
            bad("class_balanced", "beta must be in [0, 1); 0 turns it off")
        if not (0 <= self.label_smoothing < 1):
            bad("label_smoothing", "must be in [0, 1)")
        for name in ("head_dropout", "warmup_ratio"):
            if not (0 <= getattr(self, name) < 1):
                bad(name, "must be in [0, 1)")
        if self.tiny_hidden % self.tiny_heads:
            bad("tiny_hidden", f"must be divisible by tiny_heads={self.tiny_heads}")

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

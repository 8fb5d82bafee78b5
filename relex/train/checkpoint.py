"""Checkpoints: what ``relex train`` keeps and ``relex evaluate`` / ``relex predict`` load.

A checkpoint directory holds, with no pickle anywhere::

    model.safetensors   the relex parameters outside the encoder (head, ERPE), keys as in
                        RelexModel.state_dict()
    encoder/            the encoder as transformers saves it (config.json + model.safetensors):
                        ``AutoModel.from_pretrained(ckpt / "encoder")`` loads it as is
    tokenizer/          the tokenizer with its marker tokens (save_pretrained)
    checkpoint.json     format and version, the model part of the config (``model``: all that
                        rebuilding the model needs), and the step/epoch/metrics it came from
    config.json         the whole TrialConfig the run trained with (flat; ``relex train
                        --config`` takes it), kept for the record
    labels.json         {"names": [...], "negative": "..."} (the label order of the probabilities)

Loading is forward and backward compatible: the model is rebuilt from the model part alone; of
``config.json`` only the training keys this version knows are used (others are ignored with one
warning line on stderr). A model key this version does not know, or a format newer than it
reads, fails with one line. Format 1 (before the model/training split; no ``model`` entry)
loads too: its model part is read from ``config.json``.

The encoder's weights are stored once, in ``encoder/``, so the checkpoint of a base-size model is
not twice its size. Directories are written under a temporary name and renamed into place.
Inference on a loaded checkpoint: :mod:`relex.train.predict`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load_file, save_file

from relex.config import MODEL_FIELDS, ModelConfig, TrialConfig
from relex.errors import RelexError
from relex.io_utils import atomic_path, json_default, read_json
from relex.model.quiet import quiet_transformers

FORMAT = "relex-checkpoint"
VERSION = 2
ENCODER_PREFIX = "encoder."
REQUIRED = ("model.safetensors", "config.json", "labels.json", "tokenizer", "encoder/config.json")


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def head_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's parameters and buffers outside ``model.encoder``."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith(ENCODER_PREFIX)}


def write_into(path: Path, model, tokenizer, cfg: TrialConfig, labels, info: dict[str, Any] | None = None) -> None:
    """Write the checkpoint files into an existing (temporary) directory ``path``."""
    path = Path(path)
    save_file(_contiguous(head_state(model)), str(path / "model.safetensors"), metadata={"format": "pt"})
    with quiet_transformers():
        model.encoder.save_pretrained(str(path / "encoder"))
    tokenizer.save_pretrained(str(path / "tokenizer"))
    (path / "config.json").write_text(cfg.to_json() + "\n", encoding="utf-8")
    (path / "labels.json").write_text(
        json.dumps({"names": list(labels.names), "negative": labels.negative}, ensure_ascii=False, indent=2) + "\n",
        encoding="utf-8",
    )
    meta = {"format": FORMAT, "version": VERSION, "model": cfg.model_part().to_dict(), **(info or {})}
    (path / "checkpoint.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=json_default) + "\n",
                                          encoding="utf-8")


def save(path: str | os.PathLike, model, tokenizer, cfg: TrialConfig, labels, info: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint to ``path`` atomically (an existing one is replaced whole)."""
    path = Path(path)
    with atomic_path(path, is_dir=True) as tmp:
        write_into(tmp, model, tokenizer, cfg, labels, info)
    return path


def read_info(path: str | os.PathLike) -> dict[str, Any]:
    """checkpoint.json of a checkpoint (format, version, step, epoch, metrics)."""
    p = Path(path) / "checkpoint.json"
    return read_json(p) if p.exists() else {}


def check(path: str | os.PathLike) -> Path:
    """Raise RelexError unless ``path`` is a complete checkpoint directory."""
    path = Path(path)
    if not path.is_dir():
        raise RelexError(f"{path}: checkpoint directory not found")
    missing = [name for name in REQUIRED if not (path / name).exists()]
    if missing:
        raise RelexError(f"{path}: not a relex checkpoint (missing {', '.join(missing)})")
    return path


def load_labels(path: str | os.PathLike):
    from relex.data import LabelSet

    p = Path(path) / "labels.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        return LabelSet(tuple(data["names"]), data["negative"])
    except (ValueError, KeyError, TypeError) as e:
        raise RelexError(f"{p}: not a valid labels file ({e})") from None


def load_config(path: str | os.PathLike) -> TrialConfig:
    """The checkpoint's TrialConfig: its model part exactly, the training keys this version
    knows (one warning line on stderr names those it ignores)."""
    path = Path(path)
    model = load_model_config(path)
    p = path / "config.json"
    cfg, ignored = TrialConfig.from_saved(read_json(p), model, where=str(p))
    if ignored:
        print(f"relex: warning: {path}: ignoring training settings this relex version does not "
              f"know: {', '.join(ignored)}", file=sys.stderr)
    return cfg


def load_model_config(path: str | os.PathLike) -> ModelConfig:
    """The model part of a checkpoint (format 2: ``checkpoint.json``; format 1: ``config.json``)."""
    path = Path(path)
    info = read_info(path)
    version = info.get("version", 1)
    if info.get("format", FORMAT) != FORMAT or not isinstance(version, int):
        raise RelexError(f"{path / 'checkpoint.json'}: not a relex checkpoint description")
    if version > VERSION:
        raise RelexError(f"{path}: checkpoint format {version} is newer than this relex reads "
                         f"({VERSION}); upgrade relex to load it")
    if version >= 2:
        where = f"{path / 'checkpoint.json'} (model)"
        model = info.get("model")
        if not isinstance(model, dict):
            raise RelexError(f"{where}: missing the model configuration")
        unknown = [k for k in model if k not in MODEL_FIELDS]
        if unknown:
            raise RelexError(f"{where}: model setting '{unknown[0]}' is unknown to this relex "
                             "version; load the checkpoint with a relex that has it")
        return ModelConfig.from_dict(model, where=where)
    data = read_json(path / "config.json")
    return ModelConfig.from_dict({k: v for k, v in data.items() if k in MODEL_FIELDS},
                                 where=str(path / "config.json"))


def load_weights(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Load a checkpoint's saved parameters (encoder and head) into ``model``, every one of them."""
    path = Path(path)
    own = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    state.update(load_file(str(path / "model.safetensors")))
    for f in sorted((path / "encoder").glob("*.safetensors")):
        state.update({ENCODER_PREFIX + k: v for k, v in load_file(str(f)).items()})
    missing = [k for k in own if k not in state]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise RelexError(f"{path}: checkpoint does not match its model ({len(missing)} missing tensors: {shown})")
    extra = [k for k in state if k not in own]
    for k in extra:
        del state[k]
    model.load_state_dict(state, strict=True)


class Loaded(NamedTuple):
    """A checkpoint ready for inference (unpacks as ``model, tokenizer, cfg, labels``)."""

    model: torch.nn.Module
    tokenizer: Any
    cfg: TrialConfig
    labels: Any


def load(path: str | os.PathLike, *, device: str | torch.device | None = None) -> Loaded:
    """The model (in eval mode), tokenizer, config and label set of a checkpoint directory."""
    from relex.model import build_model
    from relex.model.backbone import load_tokenizer

    path = check(path)
    cfg = load_config(path)
    labels = load_labels(path)
    tokenizer = load_tokenizer(str(path / "tokenizer"))
    with quiet_transformers():
        model = build_model(cfg.model_part(), str(path / "encoder"), len(labels), len(tokenizer),
                            pretrained=False)
    load_weights(model, path)
    if device is not None:
        model.to(device)
    model.eval()
    return Loaded(model, tokenizer, cfg, labels)

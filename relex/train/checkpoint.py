"""Checkpoints: what ``relex train`` keeps and ``relex evaluate`` / ``relex predict`` load.

A checkpoint directory holds, with no pickle anywhere::

    model.safetensors   the relex parameters outside the encoder (head, ERPE), keys as in
                        RelexModel.state_dict()
    encoder/            the encoder as transformers saves it (config.json + model.safetensors):
                        ``AutoModel.from_pretrained(ckpt / "encoder")`` loads it as is
    tokenizer/          the tokenizer with its marker tokens (save_pretrained)
    config.json         the TrialConfig
    labels.json         {"names": [...], "negative": "..."} (the label order of the probabilities)
    checkpoint.json     format version, and the step/epoch/metrics of the evaluation it came from

The encoder's weights are stored once, in ``encoder/``, so the checkpoint of a base-size model is
not twice its size. Directories are written under a temporary name and renamed into place.

:func:`predict_probs` is the one inference path: the trainer's evaluation and the ``evaluate``
and ``predict`` commands all call it, batching rows in the same length-sorted order, so a
checkpoint evaluated later reproduces the trainer's numbers exactly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from relex.config import TrialConfig
from relex.errors import RelexError
from relex.io_utils import atomic_path, json_default
from relex.model.backbone import quiet_transformers

FORMAT = "relex-checkpoint"
VERSION = 1
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
    meta = {"format": FORMAT, "version": VERSION, **(info or {})}
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
    if not p.exists():
        return {}
    return json.loads(p.read_text(encoding="utf-8"))


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
    p = Path(path) / "config.json"
    return TrialConfig.from_json(p.read_text(encoding="utf-8"), where=str(p))


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


def load(path: str | os.PathLike, *, device: str | torch.device | None = None):
    """``(model, tokenizer, cfg, labels)`` of a checkpoint; the model is in eval mode."""
    from relex.model import build_model
    from relex.model.backbone import load_tokenizer

    path = check(path)
    cfg = load_config(path)
    labels = load_labels(path)
    tokenizer = load_tokenizer(str(path / "tokenizer"))
    model = build_model(cfg, str(path / "encoder"), len(labels), len(tokenizer), pretrained=False)
    load_weights(model, path)
    if device is not None:
        model.to(device)
    model.eval()
    return model, tokenizer, cfg, labels


def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def eval_order(lengths: np.ndarray) -> np.ndarray:
    """Row order of inference batches: by length (stable), so padding is small and fixed."""
    return np.argsort(np.asarray(lengths), kind="stable")


@torch.no_grad()
def predict_logits(model, feats, *, batch_size: int = 128, erpe_clip: int | None = None, amp=None) -> np.ndarray:
    """Logits (N, C) float32 of every row of ``feats``, in row order.

    ``erpe_clip`` defaults to the model's configuration (``model.cfg``); ``amp`` is a
    :class:`relex.train.amp.Amp` (default: off).
    """
    from relex.data.features import collate

    cfg = getattr(model, "cfg", None)
    if erpe_clip is None and cfg is not None and getattr(cfg, "erpe", False):
        erpe_clip = cfg.erpe_clip
    device = _model_device(model)
    was_training = model.training
    model.eval()
    n = len(feats)
    order = eval_order(feats.lengths)
    out: np.ndarray | None = None
    try:
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            batch = collate(feats, idx, erpe_clip=erpe_clip)
            batch = {k: v.to(device) for k, v in batch.items()}
            if amp is not None:
                with amp.autocast():
                    logits = model(batch)
            else:
                logits = model(batch)
            logits = logits.float().cpu().numpy()
            if out is None:
                out = np.zeros((n, logits.shape[1]), dtype=np.float32)
            out[idx] = logits
    finally:
        model.train(was_training)
    if out is None:
        raise RelexError("nothing to predict: the data set is empty")
    return out


def probs_from_logits(logits: np.ndarray) -> np.ndarray:
    """Softmax in float64 (the probabilities every metric and submission uses)."""
    from relex.metrics import softmax

    return softmax(np.asarray(logits, dtype=np.float64))


def predict_probs(model, feats, *, batch_size: int = 128, erpe_clip: int | None = None, amp=None) -> np.ndarray:
    """Class probabilities (N, C) float64 of every row of ``feats``, in the checkpoint's label order."""
    return probs_from_logits(predict_logits(model, feats, batch_size=batch_size, erpe_clip=erpe_clip, amp=amp))


def dataset_probs(path: str | os.PathLike, ds, *, batch_size: int | None = None,
                  device: str | torch.device | None = None) -> np.ndarray:
    """Probabilities (N, C) of the checkpoint at ``path`` for every row of the Dataset ``ds``
    (features cached under the relex cache); ``batch_size`` defaults to the checkpoint's
    ``eval_batch_size``, ``device`` to CUDA when available."""
    from relex.data.features import featurize
    from relex.io_utils import cache_root
    from relex.train import amp as amp_mod

    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    model, tokenizer, cfg, _ = load(path, device=device)
    feats = featurize(ds, tokenizer, cfg.marker, cfg.max_length, cache_dir=cache_root() / "features")
    bs = cfg.eval_batch_size if batch_size is None else batch_size
    return predict_probs(model, feats, batch_size=bs, amp=amp_mod.resolve(cfg.amp, device))

"""Inference: class probabilities of a model for features or a whole Dataset.

:func:`predict_probs` is the one inference path: the trainer's evaluation, the ``evaluate`` and
``predict`` commands, and any caller holding a loaded checkpoint all use it, batching rows in the
same length-sorted order, so a checkpoint evaluated later reproduces the trainer's numbers
exactly. :func:`dataset_probs` goes from a loaded checkpoint and a Dataset to probabilities::

    from relex.train import checkpoint, predict
    loaded = checkpoint.load("out/best")
    probs = predict.dataset_probs(loaded, dataset)   # (N, C), columns in loaded.labels order
"""

from __future__ import annotations

import os

import numpy as np
import torch

from relex.errors import RelexError


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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


def dataset_probs(loaded, ds, *, batch_size: int | None = None, amp=None,
                  features_cache: str | os.PathLike | None = None) -> np.ndarray:
    """Probabilities (N, C) float64 of every row of ``ds`` under a loaded checkpoint
    (:func:`relex.train.checkpoint.load`); ``batch_size`` defaults to the checkpoint's
    ``eval_batch_size``, ``amp`` (an :class:`~relex.train.amp.Amp`) to fp32, ``features_cache``
    to ``cache_root()/features``."""
    from relex.data.features import featurize
    from relex.io_utils import cache_root

    cache = features_cache if features_cache is not None else cache_root() / "features"
    feats = featurize(ds, loaded.tokenizer, loaded.cfg.marker, loaded.cfg.max_length, cache_dir=cache)
    bs = loaded.cfg.eval_batch_size if batch_size is None else batch_size
    return predict_probs(loaded.model, feats, batch_size=bs, amp=amp)

"""Classification losses: cross-entropy (+ label smoothing), focal (γ), class-balanced weights.

Per example ``i`` with label ``y``, logits ``z`` over ``C`` classes, ``p = softmax(z)`` and the
smoothed target ``q = (1−ε)·onehot(y) + ε/C`` (ε = ``label_smoothing``):

- ``ce``:    ``ℓ_i = −Σ_c q_c log p_c`` (torch's ``cross_entropy(..., label_smoothing=ε)``).
- ``focal``: ``ℓ_i = −Σ_c q_c (1−p_c)^γ log p_c`` (Lin et al. 2017). With ε=0 this is
  ``−(1−p_y)^γ log p_y``; with γ=0 it is exactly ``ce``.
- class-balanced (Cui et al. 2019), β = ``class_balanced`` > 0: ``ℓ_i ← w_y ℓ_i`` with
  ``w_c = (1−β)/(1−β^{n_c})`` (the inverse effective number of the class's ``n_c`` training
  examples), normalised so the weights of the classes present in training sum to ``C``. A class
  with ``n_c = 0`` never occurs in training; its weight is defined as 0 (its effective number is
  0, the formula would divide by zero).

Reduction: ``LossFn(logits, labels, weights=None) = (1/B) Σ_i weights_i · ℓ_i`` — a plain mean
over the ``B`` examples (weights default to 1), *not* divided by the sum of the weights. This is
the reduction of Cui et al.'s reference code for class-balanced losses, and it makes an HNM
weight of 2 mean "this example counts twice". Losses are computed in float32 whatever the
logits' dtype (AMP).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from relex.train.techniques import Technique


def class_balanced_weights(class_counts, beta: float) -> np.ndarray:
    """``w_c = (1−β)/(1−β^{n_c})`` for ``n_c > 0``, 0 for ``n_c = 0``; present classes sum to C."""
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError("class_counts must be a non-empty 1-D array")
    if np.any(counts < 0):
        raise ValueError("class_counts must be >= 0")
    if not (0 <= beta < 1):
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    present = counts > 0
    if not present.any():
        raise ValueError("class_counts are all zero: no training labels to weight by")
    w = np.zeros_like(counts)
    # 1 − β^n computed as −expm1(n·log β) keeps precision for β close to 1
    eff = -np.expm1(counts[present] * math.log(beta)) if beta > 0 else np.ones(present.sum())
    w[present] = (1.0 - beta) / eff
    w *= counts.size / w.sum()
    return w


class LossFn:
    """``loss(logits, labels, weights=None) -> scalar``; ``.per_example(logits, labels) -> (B,)``."""

    def __init__(self, kind: str = "ce", *, label_smoothing: float = 0.0, gamma: float = 0.0,
                 class_weights=None):
        if kind not in ("ce", "focal"):
            raise ValueError(f"unknown loss {kind!r}; choose ce or focal")
        if not (0 <= label_smoothing < 1):
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if not (gamma >= 0 and math.isfinite(gamma)):
            raise ValueError(f"focal gamma must be a finite number >= 0, got {gamma}")
        self.kind = kind
        self.label_smoothing = float(label_smoothing)
        self.gamma = float(gamma)
        self.class_weights = (None if class_weights is None
                              else torch.as_tensor(np.asarray(class_weights), dtype=torch.float32))

    def __repr__(self) -> str:
        cb = "" if self.class_weights is None else ", class_balanced"
        return (f"LossFn({self.kind}, label_smoothing={self.label_smoothing}, "
                f"gamma={self.gamma}{cb})")

    def per_example(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        labels = labels.long()
        if self.kind == "ce" or self.gamma == 0.0:
            loss = F.cross_entropy(logits, labels, reduction="none",
                                   label_smoothing=self.label_smoothing)
        else:
            logp = F.log_softmax(logits, dim=-1)
            # 1 − p computed as −expm1(log p): exact near p = 1; the clamp keeps the gradient of
            # (1−p)^γ finite (γ < 1) where p rounds to 1
            one_minus_p = (-torch.expm1(logp)).clamp_min(1e-12)
            term = one_minus_p.pow(self.gamma) * logp  # (B,C)
            C = logits.size(-1)
            eps = self.label_smoothing
            picked = term.gather(1, labels.unsqueeze(1)).squeeze(1)
            loss = -((1.0 - eps) * picked + (eps / C) * term.sum(-1)) if eps else -picked
        if self.class_weights is not None:
            loss = loss * self.class_weights.to(loss.device)[labels]
        return loss

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor,
                 weights: torch.Tensor | None = None) -> torch.Tensor:
        loss = self.per_example(logits, labels)
        if weights is not None:
            loss = loss * torch.as_tensor(weights, dtype=loss.dtype, device=loss.device)
        return loss.mean()


def make_loss(cfg, class_counts=None) -> LossFn:
    """The loss ``cfg`` asks for (``loss``, ``label_smoothing``, ``focal_gamma``,
    ``class_balanced``); ``class_counts`` (C,) are the training examples per class id, needed
    only when ``class_balanced`` > 0."""
    weights = None
    if cfg.class_balanced > 0:
        if class_counts is None:
            raise ValueError("class_balanced > 0 needs the training class counts")
        weights = class_balanced_weights(class_counts, cfg.class_balanced)
    return LossFn(cfg.loss, label_smoothing=cfg.label_smoothing,
                  gamma=cfg.focal_gamma if cfg.loss == "focal" else 0.0, class_weights=weights)


class Loss(Technique):
    """The loss seam: always on; builds the one loss function of the run."""

    @classmethod
    def enabled(cls, cfg) -> bool:
        return True

    def make_loss(self, class_counts) -> LossFn:
        return make_loss(self.cfg, class_counts)

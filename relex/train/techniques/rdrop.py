"""R-Drop (Liang et al. 2021): two dropout passes and a symmetric KL between them.

One forward of the doubled batch (``double_batch``) gives both passes: every row appears twice
and dropout draws independent masks for the two copies. ``split_logits`` cuts the (2B,C) logits
into the two (B,C) halves.

``rdrop_loss`` =  ½·(L(z1) + L(z2))  +  α · (1/B) Σ_i ½·(KL(p1_i‖p2_i) + KL(p2_i‖p1_i))

with ``L = loss_fn(logits, labels, weights)`` (already a scalar: the mean over the batch,
weighted per example when ``weights`` is given), ``p = softmax(z)`` and
``KL(p‖q) = Σ_c p_c (log p_c − log q_c)`` summed over classes. The KL term is a plain mean over
the B examples: the per-example (HNM) weights apply to the supervised part only. (The authors'
code sums the KL over the batch instead of averaging; α here is per example, so an α tuned with
that code corresponds to α·B here.) Computed in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from relex.train.techniques import Technique


def double_batch(batch: dict) -> dict:
    """Every tensor concatenated with itself along dim 0 (rows 0..B−1, then the same again)."""
    out = {}
    for k, v in batch.items():
        out[k] = torch.cat([v, v], dim=0) if isinstance(v, torch.Tensor) and v.dim() > 0 else v
    return out


def split_logits(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(2B,C) logits of a doubled batch → the two (B,C) passes."""
    if logits.size(0) % 2:
        raise ValueError(f"logits of a doubled batch must have an even length, got {logits.size(0)}")
    b = logits.size(0) // 2
    return logits[:b], logits[b:]


def symmetric_kl(logits1: torch.Tensor, logits2: torch.Tensor) -> torch.Tensor:
    """(B,) ½·(KL(p1‖p2) + KL(p2‖p1)) per example."""
    lp1 = F.log_softmax(logits1.float(), dim=-1)
    lp2 = F.log_softmax(logits2.float(), dim=-1)
    kl12 = (lp1.exp() * (lp1 - lp2)).sum(-1)
    kl21 = (lp2.exp() * (lp2 - lp1)).sum(-1)
    return 0.5 * (kl12 + kl21)


def rdrop_loss(logits1: torch.Tensor, logits2: torch.Tensor, labels: torch.Tensor, alpha: float,
               loss_fn, weights: torch.Tensor | None = None) -> torch.Tensor:
    task = 0.5 * (loss_fn(logits1, labels, weights) + loss_fn(logits2, labels, weights))
    if alpha == 0:
        return task
    return task + alpha * symmetric_kl(logits1, logits2).mean()


class RDrop(Technique):
    @classmethod
    def enabled(cls, cfg) -> bool:
        return cfg.rdrop > 0

    def forward_loss(self, run, batch: dict, weights) -> torch.Tensor:
        with run.amp.autocast():
            logits = run.forward(double_batch(batch))
        first, second = split_logits(logits.float())
        return rdrop_loss(first, second, batch["labels"], self.cfg.rdrop, run.loss_fn, weights)

"""Entity-relative position embeddings (ERPE).

Each token gets two learned vectors: one for its clipped relative distance to the subject span and
one for its distance to the object span. For a span ``[start, end]`` (inclusive) and token ``t``
the distance is ``t - start`` before the span, ``0`` inside it and ``t - end`` after it, clipped
to ``[-clip, clip]`` (``relex.data.features.relative_distance``). The collate function hands the
distances over already shifted by ``+clip`` (``subj_dist``/``obj_dist`` in ``0..2*clip``), which
index the two tables here directly.

The sum of the two vectors is added to the word embeddings and the result goes to the encoder as
``inputs_embeds``, so the encoder still adds its own absolute position and token-type embeddings
and applies its own LayerNorm.

Initialisation: both tables start at exactly zero. At step 0 a model with ERPE therefore computes
the same function as the same model without it (a pretrained encoder is not disturbed by random
vectors it has never seen), and an ERPE-on versus ERPE-off comparison starts from identical
outputs. Zero init does not stall learning: the gradient of an additive embedding is the gradient
of the encoder input at that token, which does not depend on the table's current value.
"""

from __future__ import annotations

import torch
from torch import nn


class EntityRelativePositions(nn.Module):
    """Two ``nn.Embedding(2*clip+1, dim)`` tables, one per entity, zero-initialised."""

    def __init__(self, clip: int, dim: int):
        super().__init__()
        if clip < 1:
            raise ValueError(f"ERPE clip must be at least 1, got {clip}")
        self.clip = int(clip)
        self.subj = nn.Embedding(2 * self.clip + 1, dim)
        self.obj = nn.Embedding(2 * self.clip + 1, dim)
        nn.init.zeros_(self.subj.weight)
        nn.init.zeros_(self.obj.weight)

    def forward(self, subj_dist: torch.Tensor, obj_dist: torch.Tensor) -> torch.Tensor:
        """(B,T) shifted distances in ``0..2*clip`` → (B,T,dim) embedding to add to the input."""
        hi = 2 * self.clip
        if subj_dist.numel() and subj_dist.device.type == "cpu" and not torch.compiler.is_compiling():
            # checked where it is free (CPU tensors: no device sync); on an accelerator the hot
            # path skips it: collate produces these distances already clipped into range. A
            # traced graph (torch.export, ONNX) cannot branch on values, so tracing skips it too
            lo_s, hi_s, lo_o, hi_o = torch.stack(
                [subj_dist.min(), subj_dist.max(), obj_dist.min(), obj_dist.max()]).tolist()
            for name, lo, top in (("subj_dist", lo_s, hi_s), ("obj_dist", lo_o, hi_o)):
                if lo < 0 or top > hi:
                    raise ValueError(
                        f"{name} must hold distances shifted into 0..{hi} (clip {self.clip}); "
                        f"got values in {lo}..{top} — was collate called with "
                        f"erpe_clip={self.clip}?")
        return self.subj(subj_dist) + self.obj(obj_dist)


def span_distances(spans: torch.Tensor, length: int, clip: int) -> torch.Tensor:
    """Shifted distances (B,T) for a batch of inclusive spans (B,2), as collate would give them.

    Used only when a batch arrives without ``subj_dist``/``obj_dist``: it delegates the per-token
    rule to ``relex.data.features.relative_distance`` so the rule lives in one place.
    """
    from relex.data.features import relative_distance

    d = relative_distance(int(length), spans[:, 0], spans[:, 1], int(clip))
    return torch.as_tensor(d, dtype=torch.long, device=spans.device) + clip

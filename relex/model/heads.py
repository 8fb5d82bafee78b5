"""Classification heads over the encoder's last hidden states.

Every head maps ``(hidden (B,T,H), batch) -> logits (B,C)``; ``head_dropout`` is the dropout
probability everywhere below.

- ``cls``: the [CLS] (first token) state → dropout → dense(H,H) → tanh → dropout → linear(H,C),
  the same shape as transformers' sequence-classification head.
- ``marker`` (Zhou & Chen 2021): the states at the subject and object start markers
  (``subj_pos``/``obj_pos``) concatenated → dropout → dense(2H,H) → ReLU → dropout → linear(H,C).
- ``rbert`` (Wu & He 2019, R-BERT): [CLS] and the mean of each entity's tokens (inclusive
  ``subj_span``/``obj_span``) each go through dropout → tanh → linear(H,H). The entity layer is
  one module applied to both entities (``shared``) or one per entity (``split``). With
  ``extra`` the features |e1−e2| and e1*e2 (of the transformed entity vectors) are appended.
  The concatenation → dropout → linear(kH, C), k = 3 (or 5 with extra).
"""

from __future__ import annotations

import torch
from torch import nn


def gather_positions(hidden: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """hidden (B,T,H), pos (B,) → (B,H): the state at token ``pos[b]`` of row ``b``."""
    idx = pos.long().view(-1, 1, 1).expand(-1, 1, hidden.size(-1))
    return hidden.gather(1, idx).squeeze(1)


def span_mean(hidden: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
    """hidden (B,T,H), span (B,2) inclusive → (B,H): mean of the states inside the span."""
    t = torch.arange(hidden.size(1), device=hidden.device).unsqueeze(0)
    mask = (t >= span[:, :1]) & (t <= span[:, 1:2])
    mask = mask.to(hidden.dtype).unsqueeze(-1)
    count = mask.sum(1).clamp_min(1.0)
    return (hidden * mask).sum(1) / count


class ClsHead(nn.Module):
    def __init__(self, hidden: int, num_labels: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, num_labels)

    def forward(self, hidden: torch.Tensor, batch: dict) -> torch.Tensor:
        x = self.dropout(hidden[:, 0])
        x = torch.tanh(self.dense(x))
        return self.out_proj(self.dropout(x))


class MarkerHead(nn.Module):
    def __init__(self, hidden: int, num_labels: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(2 * hidden, hidden)
        self.out_proj = nn.Linear(hidden, num_labels)

    def forward(self, hidden: torch.Tensor, batch: dict) -> torch.Tensor:
        subj = gather_positions(hidden, batch["subj_pos"])
        obj = gather_positions(hidden, batch["obj_pos"])
        x = self.dropout(torch.cat([subj, obj], dim=-1))
        x = torch.relu(self.dense(x))
        return self.out_proj(self.dropout(x))


class FCLayer(nn.Module):
    """R-BERT's block: dropout → (tanh) → linear."""

    def __init__(self, d_in: int, d_out: int, dropout: float, activation: bool = True):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.activation = activation
        self.linear = nn.Linear(d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(x)
        if self.activation:
            x = torch.tanh(x)
        return self.linear(x)


class RBertHead(nn.Module):
    def __init__(self, hidden: int, num_labels: int, dropout: float, layers: str = "split",
                 extra: bool = False):
        super().__init__()
        if layers not in ("shared", "split"):
            raise ValueError(f"rbert layers must be 'shared' or 'split', got {layers!r}")
        self.layers = layers
        self.extra = extra
        self.cls_fc = FCLayer(hidden, hidden, dropout)
        # shared: one module for both entities (registered once, so the state dict holds no
        # aliased tensors and saves to safetensors); split: one module per entity
        if layers == "shared":
            self.entity_fc = FCLayer(hidden, hidden, dropout)
        else:
            self.subj_fc = FCLayer(hidden, hidden, dropout)
            self.obj_fc = FCLayer(hidden, hidden, dropout)
        k = 5 if extra else 3
        self.classifier = FCLayer(k * hidden, num_labels, dropout, activation=False)

    def forward(self, hidden: torch.Tensor, batch: dict) -> torch.Tensor:
        cls = self.cls_fc(hidden[:, 0])
        subj_fc, obj_fc = ((self.entity_fc, self.entity_fc) if self.layers == "shared"
                           else (self.subj_fc, self.obj_fc))
        e1 = subj_fc(span_mean(hidden, batch["subj_span"]))
        e2 = obj_fc(span_mean(hidden, batch["obj_span"]))
        feats = [cls, e1, e2]
        if self.extra:
            feats += [(e1 - e2).abs(), e1 * e2]
        return self.classifier(torch.cat(feats, dim=-1))


def make_head(kind: str, hidden: int, num_labels: int, dropout: float, *,
              rbert_layers: str = "split", rbert_extra: bool = False) -> nn.Module:
    if kind == "cls":
        return ClsHead(hidden, num_labels, dropout)
    if kind == "marker":
        return MarkerHead(hidden, num_labels, dropout)
    if kind == "rbert":
        return RBertHead(hidden, num_labels, dropout, rbert_layers, rbert_extra)
    raise ValueError(f"unknown head {kind!r}; choose cls, marker or rbert")

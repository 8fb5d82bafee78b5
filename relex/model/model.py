"""The relation classifier: a transformers encoder + (optional) ERPE + one head.

``build_model`` loads any encoder that ``AutoModel.from_pretrained`` loads (BERT, RoBERTa,
ELECTRA, XLM-R families and the tiny local default), grows its word embeddings for the marker
tokens the tokenizer gained, and puts the head that ``cfg.head`` names on top.

``RelexModel.forward(batch) -> logits (B, num_labels)``. The batch is the dict that
``relex.data.features.collate`` produces: ``input_ids``, ``attention_mask`` (B,T), ``subj_pos``,
``obj_pos`` (B,), ``subj_span``, ``obj_span`` (B,2) and, with ERPE, ``subj_dist``/``obj_dist``
(B,T). Other keys (``labels``, ``index``) are ignored.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from relex.errors import RelexError
from relex.model.backbone import check_max_length, load_encoder
from relex.model.erpe import EntityRelativePositions, span_distances
from relex.model.heads import make_head


class RelexModel(nn.Module):
    def __init__(self, cfg, encoder: nn.Module, num_labels: int):
        super().__init__()
        if num_labels < 1:
            raise ValueError(f"num_labels must be at least 1, got {num_labels}")
        self.cfg = cfg
        self.num_labels = int(num_labels)
        self.encoder = encoder
        self.hidden_size = int(encoder.config.hidden_size)
        emb_dim = self.word_embeddings().embedding_dim  # ELECTRA: embedding_size, not hidden
        self.erpe = EntityRelativePositions(cfg.erpe_clip, emb_dim) if cfg.erpe else None
        self.head = make_head(cfg.head, self.hidden_size, self.num_labels, cfg.head_dropout,
                              rbert_layers=cfg.rbert_layers, rbert_extra=cfg.rbert_extra)

    def word_embeddings(self) -> nn.Embedding:
        """The encoder's word-embedding table (what FGM perturbs)."""
        return self.encoder.get_input_embeddings()

    def _position_ids(self, input_ids: torch.Tensor) -> torch.Tensor | None:
        # RoBERTa-style embeddings derive positions from input_ids (pads keep padding_idx). With
        # inputs_embeds they would count pads too, so compute them the input_ids way here: the
        # ERPE path then sees exactly the positions the plain path sees.
        emb = getattr(self.encoder, "embeddings", None)
        fn = getattr(emb, "create_position_ids_from_input_ids", None)
        if fn is None and emb is not None:  # transformers 4.x: a function of the modeling module
            fn = getattr(sys.modules.get(type(emb).__module__), "create_position_ids_from_input_ids", None)
        pad = getattr(emb, "padding_idx", None)
        if fn is None or pad is None:
            return None
        return fn(input_ids, pad)

    def encoder_inputs(self, batch: dict) -> dict:
        """The keyword arguments given to the encoder for this batch."""
        input_ids = batch["input_ids"]
        kwargs = {"attention_mask": batch["attention_mask"]}
        if "token_type_ids" in batch:
            kwargs["token_type_ids"] = batch["token_type_ids"]
        if self.erpe is None:
            kwargs["input_ids"] = input_ids
            return kwargs
        clip = self.erpe.clip
        length = input_ids.size(1)
        subj_dist = batch.get("subj_dist")
        obj_dist = batch.get("obj_dist")
        if subj_dist is None:
            subj_dist = span_distances(batch["subj_span"], length, clip)
        if obj_dist is None:
            obj_dist = span_distances(batch["obj_span"], length, clip)
        kwargs["inputs_embeds"] = self.word_embeddings()(input_ids) + self.erpe(subj_dist, obj_dist)
        position_ids = self._position_ids(input_ids)
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        return kwargs

    def encode(self, batch: dict) -> torch.Tensor:
        """Last hidden states (B,T,H)."""
        out = self.encoder(**self.encoder_inputs(batch))
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]

    def forward(self, batch: dict) -> torch.Tensor:
        return self.head(self.encode(batch), batch)


def build_model(cfg, backbone_path: str | Path, num_labels: int, vocab_size: int, *,
                pretrained: bool = True) -> RelexModel:
    """Encoder from ``backbone_path`` + ERPE (``cfg.erpe``) + head (``cfg.head``).

    The word embeddings grow to ``vocab_size`` (``len(tokenizer)`` after the marker tokens were
    added). They never shrink: a model whose table is already larger than the tokenizer (vocab
    padded to a multiple of 8, say) keeps its table, which still covers every token id.
    """
    encoder = load_encoder(backbone_path, pretrained=pretrained)
    check_max_length(encoder.config, cfg.max_length, cfg.backbone)
    if encoder.get_input_embeddings() is None:
        raise RelexError(f"cannot load backbone '{backbone_path}': it has no input embeddings")
    current = encoder.get_input_embeddings().num_embeddings
    if vocab_size > current:
        encoder.resize_token_embeddings(int(vocab_size))
    return RelexModel(cfg, encoder, num_labels)

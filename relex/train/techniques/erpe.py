"""ERPE, entity-relative position embeddings: the training side of a model technique.

The model part (``relex.model.erpe``: the distance tables added to the word embeddings in
``RelexModel.encoder_inputs``) is built from ``cfg.erpe``/``cfg.erpe_clip``. Here the seam is
the batch: training batches carry the clipped distances to both entity spans
(``collate(erpe_clip=...)``), computed on the host with the rest of the batch. Inference batches
get them the same way from the model's own config (``relex.train.predict``).
"""

from __future__ import annotations

from typing import Any

from relex.train.techniques import Technique


class ERPE(Technique):
    @classmethod
    def enabled(cls, cfg) -> bool:
        return cfg.erpe

    def batch_options(self) -> dict[str, Any]:
        return {"erpe_clip": self.cfg.erpe_clip}

"""Backbones, heads, ERPE and the relation classifier.

``build_model`` and ``RelexModel`` load lazily, so importing ``relex.model`` (or
``relex.model.backbone``) does not pull in torch and transformers until they are needed.
"""

from __future__ import annotations

__all__ = ["build_model", "RelexModel"]


def __getattr__(name: str):
    if name in __all__:
        from relex.model import model as _model

        return getattr(_model, name)
    raise AttributeError(f"module 'relex.model' has no attribute {name!r}")

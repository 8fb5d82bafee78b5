"""Training: the loop (:func:`fit`), checkpoints, AMP, and the train/evaluate/predict commands.

``fit``, ``FitResult``, ``EvalEvent`` and ``TrainingDiverged`` load lazily, so importing
``relex.train`` (as the CLI does to build its parser) does not import torch.
"""

from __future__ import annotations

__all__ = ["fit", "FitResult", "EvalEvent", "TrainingDiverged"]


def __getattr__(name: str):
    if name in __all__:
        from relex.train import loop as _loop

        return getattr(_loop, name)
    raise AttributeError(f"module 'relex.train' has no attribute {name!r}")

"""The technique seam: one module per technique, one small interface, called at fixed points.

A technique is a subclass of :class:`Technique` in a module of this package. :func:`active`
finds every subclass in the package's modules (no list to edit), keeps those whose
``enabled(cfg)`` is true, and orders them by module name. ``fit`` and ``step`` call the hooks
below; every hook has a do-nothing default, so a technique overrides only the points it needs:

====================  ================================  =========================================
hook                  called by                          used by
====================  ================================  =========================================
make_loss             fit, once (class counts)          losses (the loss function)
param_groups          fit, once (the optimizer)         llrd (layer-wise rates, weight decay)
batch_options         fit, every batch (collate)        erpe (distance features)
forward_loss          step, instead of the plain         rdrop (doubled batch + symmetric KL)
                      forward → loss
after_backward        step, after each micro-batch's     fgm (embeddings), awp (weights):
                      backward; ``again()`` repeats      perturb, ``again()``, restore
                      forward → loss → backward
after_optimizer_step  step, after optimizer+scheduler    ema (update the average)
example_weights,      fit, at each epoch start           hnm (loss weights / resampling)
sampling_weights
end_of_epoch          fit, after every epoch but last    hnm (mine hard negatives)
evaluation_weights    fit, around each evaluation and    ema (evaluate and save the average)
                      the best checkpoint's save
state_dict,           the resumable state (state.py)     ema (the average), hnm (the hard set)
load_state_dict
====================  ================================  =========================================

Adding one — EMA is the worked example (``ema.py``, about 80 lines): add the config field to
``relex.config.TrainingConfig`` (``ema: float = _field(0.0, "help", column=True)``; the flag,
``--help`` line, job-file key and leaderboard column follow from it), then write the module::

    class EMATechnique(Technique):
        @classmethod
        def enabled(cls, cfg): return cfg.ema > 0
        def __init__(self, cfg, run): self.ema = EMA(run.model, cfg.ema)
        def after_optimizer_step(self, run): self.ema.update()
        def evaluation_weights(self, run): return self.ema.swapped_in()
        def state_dict(self): return self.ema.state_dict()
        def load_state_dict(self, state): self.ema.load_state_dict(state)

``run`` is the :class:`relex.train.fit.Run` (cfg, model, amp, loss_fn, optimizer, scaler,
train_feats, labels, device, report, and ``pos``: step, epoch, the best so far). Tensors a technique keeps in ``state_dict`` are saved to safetensors
and plain values to JSON, so a resumed run continues exactly.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from typing import Any, Callable, ContextManager


class Technique:
    """Base class: every hook is a no-op; override the ones the technique needs."""

    @classmethod
    def enabled(cls, cfg) -> bool:
        """Whether ``cfg`` switches this technique on."""
        return False

    def __init__(self, cfg, run) -> None:
        self.cfg = cfg

    # ------------------------------------------------------------------ set-up (fit)
    def make_loss(self, class_counts):
        """The loss function (``LossFn``), or None to leave it to another technique."""
        return None

    def param_groups(self, model) -> list[dict] | None:
        """The optimizer's parameter groups, or None."""
        return None

    def batch_options(self) -> dict[str, Any]:
        """Extra keyword arguments of ``collate`` for training batches."""
        return {}

    # ------------------------------------------------------------------ the step
    def forward_loss(self, run, batch: dict, weights) -> Any:
        """The loss of ``batch`` computed this technique's way, or None for the plain forward."""
        return None

    def after_backward(self, run, again: Callable[[], Any]) -> None:
        """After a micro-batch's backward; ``again()`` runs forward → loss → backward once more."""

    def after_optimizer_step(self, run) -> None:
        """After the optimizer and the scheduler stepped (gradients already cleared)."""

    # ------------------------------------------------------------------ epochs
    def example_weights(self, n: int):
        """(n,) per-example loss weights for the coming epoch, or None."""
        return None

    def sampling_weights(self, n: int):
        """(n,) relative sampling weights for the coming epoch's batches, or None."""
        return None

    def end_of_epoch(self, run) -> None:
        """After every epoch but the last."""

    # ------------------------------------------------------------------ evaluation
    def evaluation_weights(self, run) -> ContextManager:
        """A context the evaluation and the best checkpoint's save run inside."""
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


def all_techniques() -> list[type[Technique]]:
    """Every Technique subclass defined in this package's modules, ordered by module name."""
    found: list[type[Technique]] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if (isinstance(obj, type) and issubclass(obj, Technique) and obj is not Technique
                    and obj.__module__ == module.__name__):
                found.append(obj)
    return found


def active(cfg, run) -> dict[str, Technique]:
    """The techniques ``cfg`` switches on, built for ``run``, keyed by module name."""
    return {cls.__module__.rsplit(".", 1)[1]: cls(cfg, run)
            for cls in all_techniques() if cls.enabled(cfg)}

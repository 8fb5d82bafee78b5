"""FGM, the fast gradient method (Miyato et al. 2017) on the word embeddings.

In the training step::

    loss.backward()                  # normal gradients
    if fgm.attack():                 # E ← E + ε·g/‖g‖ (g: gradient of the embedding table)
        adv_loss(model(batch)).backward()   # gradients of the perturbed model accumulate
    fgm.restore()                    # E back, bit for bit
    optimizer.step()

``g`` is the gradient of the whole word-embedding table (``model.word_embeddings().weight``)
and ``‖g‖`` its Frobenius norm. ``attack`` perturbs only when ``‖g‖`` is finite and positive
(with AMP an overflowed step has inf/nan gradients; the scaler will skip that step anyway) and
returns whether it did, so the loop skips the adversarial backward otherwise. The norm makes the
perturbation independent of a gradient scaler's factor. With gradient accumulation ``g`` is the
gradient accumulated so far, as in the usual FGM implementations.
"""

from __future__ import annotations

import math

import torch

from relex.train.techniques import Technique


class FGM:
    def __init__(self, model, epsilon: float):
        if not (epsilon >= 0 and math.isfinite(epsilon)):
            raise ValueError(f"FGM epsilon must be a finite number >= 0, got {epsilon}")
        self.model = model
        self.epsilon = float(epsilon)
        self._backup: torch.Tensor | None = None

    def _weight(self) -> torch.nn.Parameter:
        return self.model.word_embeddings().weight

    @torch.no_grad()
    def attack(self) -> bool:
        """Add ε·g/‖g‖ to the word embeddings; True if they were perturbed."""
        if self._backup is not None:
            raise RuntimeError("FGM.attack() called twice without restore()")
        w = self._weight()
        g = w.grad
        if g is None or self.epsilon == 0:
            return False
        norm = torch.linalg.vector_norm(g.float())
        n = norm.item()  # the one host sync of an attack
        if not math.isfinite(n) or n == 0:
            return False
        self._backup = w.detach().clone()
        w.add_((self.epsilon * g.float() / norm).to(w.dtype))
        return True

    @torch.no_grad()
    def restore(self) -> None:
        """Put the saved embeddings back exactly; a no-op if ``attack`` did not perturb."""
        if self._backup is None:
            return
        self._weight().copy_(self._backup)
        self._backup = None


class FGMTechnique(Technique):
    @classmethod
    def enabled(cls, cfg) -> bool:
        return cfg.fgm > 0

    def __init__(self, cfg, run) -> None:
        super().__init__(cfg, run)
        self.fgm = FGM(run.model, cfg.fgm)

    def after_backward(self, run, again) -> None:
        if self.fgm.attack():
            again()
        self.fgm.restore()

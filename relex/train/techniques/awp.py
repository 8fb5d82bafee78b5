"""AWP, adversarial weight perturbation (Wu et al. 2020), as FGM's cousin in the weight space.

In the step, after a micro-batch's backward::

    if awp.attack():       # W ← W + γ·‖W‖·g/‖g‖ for every weight matrix W (g: its gradient)
        again()            # forward → loss → backward of the perturbed model; gradients add up
    awp.restore()          # every W back, bit for bit

The perturbation of each matrix is scaled to its own norm (the paper's layer-wise relative
size ``‖δ_W‖ = γ‖W‖``), so one ``γ`` suits every layer; Kaggle solutions use γ ≈ 1e-3–1e-2.
Weight matrices are the parameters of two or more dimensions (linear layers, embedding
tables); biases and normalisation weights are left alone. A matrix without a gradient, or with
a zero one, is not perturbed. When any gradient is inf/nan (an fp16 overflow the scaler will
skip anyway) nothing is perturbed and ``attack`` returns False — one host sync per attack. As
in FGM, with gradient accumulation ``g`` is the gradient accumulated so far.
"""

from __future__ import annotations

import math

import torch

from relex.train.techniques import Technique


class AWP:
    def __init__(self, model: torch.nn.Module, gamma: float):
        if not (gamma >= 0 and math.isfinite(gamma)):
            raise ValueError(f"AWP gamma must be a finite number >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.matrices = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
        self._backup: list[tuple[torch.nn.Parameter, torch.Tensor]] = []

    @torch.no_grad()
    def attack(self) -> bool:
        """Perturb every weight matrix that has a gradient; True if any was perturbed."""
        if self._backup:
            raise RuntimeError("AWP.attack() called twice without restore()")
        with_grad = [p for p in self.matrices if p.grad is not None]
        if not with_grad or self.gamma == 0:
            return False
        grad_norms = torch.stack([torch.linalg.vector_norm(p.grad.float()) for p in with_grad])
        if not bool(torch.isfinite(grad_norms).all()):  # the one host sync
            return False
        for p, g_norm in zip(with_grad, grad_norms):
            self._backup.append((p, p.detach().clone()))
            scale = self.gamma * torch.linalg.vector_norm(p.float()) / g_norm.clamp_min(1e-30)
            p.add_((p.grad.float() * scale).to(p.dtype))
        return True

    @torch.no_grad()
    def restore(self) -> None:
        """Put every perturbed matrix back exactly; a no-op after an attack that did nothing."""
        for p, saved in self._backup:
            p.copy_(saved)
        self._backup = []


class AWPTechnique(Technique):
    @classmethod
    def enabled(cls, cfg) -> bool:
        return cfg.awp > 0

    def __init__(self, cfg, run) -> None:
        super().__init__(cfg, run)
        self.awp = AWP(run.model, cfg.awp)

    def after_backward(self, run, again) -> None:
        if self.awp.attack():
            again()
        self.awp.restore()

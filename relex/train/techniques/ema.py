"""EMA: an exponential moving average of the weights, evaluated and saved instead of them.

After every optimizer step ``t`` (weights ``θ_t``), with decay ``d``::

    a_0 = θ_0                     (the weights before training)
    a_t = d · a_{t-1} + (1 − d) · θ_t

so after ``k`` steps ``a_k = d^k θ_0 + (1 − d) Σ_{i=1..k} d^{k−i} θ_i``. Training itself uses
the raw weights; every evaluation, and the best checkpoint written there, uses the average
(swapped into the model for the duration and swapped back exactly). Every floating-point
parameter is averaged, in float32 (parameters are float32 under AMP too). ``d`` is typically
0.99–0.9999: the average spans about ``1/(1−d)`` steps, so a run much shorter than that
evaluates weights still close to the initial ones.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from relex.train.techniques import Technique


class EMA:
    def __init__(self, model: torch.nn.Module, decay: float):
        if not (0 <= decay < 1):
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.params = {n: p for n, p in model.named_parameters() if p.is_floating_point()}
        self.average = {n: p.detach().clone() for n, p in self.params.items()}

    @torch.no_grad()
    def update(self) -> None:
        """``a ← d·a + (1−d)·θ`` for every parameter."""
        for name, p in self.params.items():
            self.average[name].mul_(self.decay).add_(p.detach(), alpha=1.0 - self.decay)

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The model holds the average inside the block and its own weights, exactly, after."""
        raw = {n: p.detach().clone() for n, p in self.params.items()}
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(self.average[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, p in self.params.items():
                    p.copy_(raw[name])

    def state_dict(self) -> dict:
        return {"decay": self.decay, "average": dict(self.average)}

    def load_state_dict(self, state: dict) -> None:
        if state["decay"] != self.decay:
            raise ValueError(f"EMA state has decay {state['decay']}, this run {self.decay}")
        with torch.no_grad():
            for name, avg in self.average.items():
                avg.copy_(state["average"][name])


class EMATechnique(Technique):
    @classmethod
    def enabled(cls, cfg) -> bool:
        return cfg.ema > 0

    def __init__(self, cfg, run) -> None:
        super().__init__(cfg, run)
        self.ema = EMA(run.model, cfg.ema)

    def after_optimizer_step(self, run) -> None:
        self.ema.update()

    def evaluation_weights(self, run):
        return self.ema.swapped_in()

    def state_dict(self) -> dict:
        return self.ema.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.ema.load_state_dict(state)

"""EMA of the weights: the closed form after k steps, the exact swap, the state."""

from __future__ import annotations

import pytest
import torch

from relex.train.techniques.ema import EMA


def test_average_equals_the_closed_form_after_k_steps():
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    d, k = 0.9, 7
    thetas = [{n: p.detach().double().clone() for n, p in model.named_parameters()}]  # θ_0
    ema = EMA(model, d)
    for _ in range(k):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        thetas.append({n: p.detach().double().clone() for n, p in model.named_parameters()})
        ema.update()
    for name in thetas[0]:
        # a_k = d^k θ_0 + (1 − d) Σ_{i=1..k} d^{k−i} θ_i
        closed = d ** k * thetas[0][name] + (1 - d) * sum(d ** (k - i) * thetas[i][name] for i in range(1, k + 1))
        torch.testing.assert_close(ema.average[name].double(), closed, rtol=1e-6, atol=1e-6)


def test_swap_in_and_back_is_exact():
    model = torch.nn.Linear(4, 2)
    ema = EMA(model, 0.5)
    with torch.no_grad():
        model.weight.mul_(3.0)
    ema.update()
    raw = {n: p.detach().clone() for n, p in model.named_parameters()}
    with ema.swapped_in():
        assert torch.equal(model.weight, ema.average["weight"])
        assert not torch.equal(model.weight, raw["weight"])
    assert all(torch.equal(p, raw[n]) for n, p in model.named_parameters())


def test_state_round_trip_and_decay_check():
    model = torch.nn.Linear(4, 2)
    a = EMA(model, 0.8)
    with torch.no_grad():
        model.weight.add_(1.0)
    a.update()
    b = EMA(model, 0.8)
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.average["weight"], a.average["weight"])
    with pytest.raises(ValueError, match="decay"):
        EMA(model, 0.9).load_state_dict(a.state_dict())
    with pytest.raises(ValueError):
        EMA(model, 1.0)

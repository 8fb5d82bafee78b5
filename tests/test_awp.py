"""AWP: the size of the weight perturbation and the exact restore."""

from __future__ import annotations

import pytest
import torch

from relex.train.techniques.awp import AWP


def model_with_grads():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(10, 6), torch.nn.Linear(6, 4), torch.nn.LayerNorm(4))
    out = model[2](model[1](model[0](torch.tensor([[1, 2, 3]])))).sum()
    out.backward()
    return model


def test_each_matrix_moves_by_gamma_times_its_norm_along_its_gradient():
    model = model_with_grads()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    gamma = 0.01
    awp = AWP(model, gamma)
    assert awp.attack()
    for name, p in model.named_parameters():
        delta = p.detach() - before[name]
        if p.dim() >= 2:  # the embedding table and the linear weight
            assert torch.linalg.vector_norm(delta).item() == pytest.approx(
                gamma * torch.linalg.vector_norm(before[name]).item(), rel=1e-4)
            # the direction is the gradient's
            cos = torch.nn.functional.cosine_similarity(delta.flatten(), p.grad.flatten(), dim=0)
            assert cos.item() == pytest.approx(1.0, abs=1e-5)
        else:  # biases and the LayerNorm are left alone
            assert torch.equal(p, before[name]), name
    awp.restore()
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name  # bit for bit


def test_no_attack_without_finite_gradients():
    model = model_with_grads()
    model[1].weight.grad[0, 0] = float("inf")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    awp = AWP(model, 0.1)
    assert awp.attack() is False
    awp.restore()
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    fresh = torch.nn.Linear(3, 3)
    assert AWP(fresh, 0.1).attack() is False  # no gradients yet


def test_attack_twice_is_an_error_and_gamma_is_checked():
    awp = AWP(model_with_grads(), 0.01)
    awp.attack()
    with pytest.raises(RuntimeError):
        awp.attack()
    with pytest.raises(ValueError):
        AWP(torch.nn.Linear(2, 2), float("nan"))

"""FGM: the perturbation is exactly ε·g/‖g‖ on the word embeddings, and restore is bit-exact."""

from __future__ import annotations

import pytest
import torch
import transformers

from relex.config import TrialConfig
from relex.model import build_model
from relex.train.techniques.fgm import FGM
from relex.train.techniques.losses import LossFn

VOCAB = 60


@pytest.fixture
def model(tmp_path):
    kw = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
              intermediate_size=37, max_position_embeddings=320)
    torch.manual_seed(0)
    transformers.RobertaModel(transformers.RobertaConfig(**kw)).save_pretrained(tmp_path / "r")
    return build_model(TrialConfig(head="marker"), tmp_path / "r", 3, VOCAB + 4)


def batch():
    ids = torch.randint(5, VOCAB + 4, (4, 10), generator=torch.Generator().manual_seed(1))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
            "subj_pos": torch.tensor([1, 2, 3, 4]), "obj_pos": torch.tensor([6, 7, 5, 8]),
            "subj_span": torch.tensor([[2, 2]] * 4), "obj_span": torch.tensor([[7, 7]] * 4),
            "labels": torch.tensor([0, 1, 2, 0])}


def test_attack_adds_eps_times_normalised_gradient_and_restore_is_bit_exact(model):
    loss_fn = LossFn("ce")
    b = batch()
    loss_fn(model(b), b["labels"]).backward()
    w = model.word_embeddings().weight
    before = w.detach().clone()
    others = {k: v.clone() for k, v in model.state_dict().items()
              if k != "encoder.embeddings.word_embeddings.weight"}
    g = w.grad.detach().clone()
    eps = 0.7
    fgm = FGM(model, eps)
    assert fgm.attack() is True
    delta = w.detach() - before
    assert torch.allclose(delta, eps * g / g.norm(), atol=1e-6)
    assert torch.isclose(delta.norm(), torch.tensor(eps), rtol=1e-4)
    # only the word embeddings moved
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in others.items())
    # the adversarial backward accumulates on top of the clean gradient
    loss_fn(model(b), b["labels"]).backward()
    fgm.restore()
    assert torch.equal(w.detach(), before)
    assert not torch.equal(w.grad, g)


def test_no_attack_without_a_usable_gradient(model):
    w = model.word_embeddings().weight
    before = w.detach().clone()
    fgm = FGM(model, 1.0)
    assert fgm.attack() is False  # no gradient yet
    w.grad = torch.zeros_like(w)
    assert fgm.attack() is False
    w.grad = torch.full_like(w, float("nan"))
    assert fgm.attack() is False
    w.grad = torch.full_like(w, float("inf"))
    assert fgm.attack() is False
    fgm.restore()
    assert torch.equal(w.detach(), before)


def test_attack_twice_without_restore_is_an_error(model):
    w = model.word_embeddings().weight
    w.grad = torch.ones_like(w)
    fgm = FGM(model, 0.1)
    assert fgm.attack()
    with pytest.raises(RuntimeError):
        fgm.attack()
    fgm.restore()


def test_perturbation_ignores_gradient_scale(model):
    w = model.word_embeddings().weight
    before = w.detach().clone()
    g = torch.randn_like(w)
    results = []
    for scale in (1.0, 65536.0):
        w.grad = g * scale
        fgm = FGM(model, 0.5)
        fgm.attack()
        results.append(w.detach() - before)
        fgm.restore()
    assert torch.allclose(results[0], results[1], atol=1e-6)

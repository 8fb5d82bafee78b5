"""The math of CE, focal and class-balanced losses, and their reductions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from relex.config import TrialConfig
from relex.train.techniques.losses import LossFn, class_balanced_weights, make_loss


def fixed(B=6, C=4):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(B, C, generator=g, dtype=torch.float64) * 2
    labels = torch.tensor([0, 1, 2, 3, 0, 2])[:B]
    return logits.float(), labels


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_focal_with_gamma_zero_equals_ce_exactly(eps):
    logits, labels = fixed()
    ce = LossFn("ce", label_smoothing=eps)
    focal = LossFn("focal", label_smoothing=eps, gamma=0.0)
    assert torch.equal(focal.per_example(logits, labels), ce.per_example(logits, labels))
    assert torch.allclose(ce(logits, labels),
                          F.cross_entropy(logits, labels, label_smoothing=eps))


def test_ce_label_smoothing_by_hand():
    logits, labels = fixed()
    eps, C = 0.2, logits.size(1)
    logp = torch.log_softmax(logits.double(), -1)
    q = torch.full_like(logp, eps / C)
    q[torch.arange(len(labels)), labels] += 1 - eps
    want = -(q * logp).sum(-1)
    got = LossFn("ce", label_smoothing=eps).per_example(logits, labels)
    assert torch.allclose(got.double(), want, atol=1e-6)


@pytest.mark.parametrize("gamma", [0.5, 2.0, 5.0])
def test_focal_is_ce_scaled_by_one_minus_pt_to_gamma(gamma):
    logits, labels = fixed()
    p = torch.softmax(logits.double(), -1)
    pt = p[torch.arange(len(labels)), labels]
    want = -((1 - pt) ** gamma) * torch.log(pt)
    got = LossFn("focal", gamma=gamma).per_example(logits, labels)
    assert torch.allclose(got.double(), want, rtol=1e-5, atol=1e-7)
    ce = LossFn("ce").per_example(logits, labels).double()
    assert torch.allclose(got.double() / ce, (1 - pt) ** gamma, rtol=1e-4)


def test_focal_down_weights_easy_examples_more_than_hard_ones():
    logits = torch.tensor([[6.0, 0.0, 0.0], [0.3, 0.0, 0.0]])  # easy, hard (both label 0)
    labels = torch.tensor([0, 0])
    ce = LossFn("ce").per_example(logits, labels)
    fl = LossFn("focal", gamma=2.0).per_example(logits, labels)
    ratio = fl / ce
    assert ratio[0] < 1e-4 < ratio[1] < 1


def test_focal_with_label_smoothing_by_hand():
    logits, labels = fixed()
    eps, gamma, C = 0.1, 2.0, logits.size(1)
    p = torch.softmax(logits.double(), -1)
    q = torch.full_like(p, eps / C)
    q[torch.arange(len(labels)), labels] += 1 - eps
    want = -(q * (1 - p) ** gamma * torch.log(p)).sum(-1)
    got = LossFn("focal", gamma=gamma, label_smoothing=eps).per_example(logits, labels)
    assert torch.allclose(got.double(), want, rtol=1e-5)


def test_focal_gradient_is_finite_for_saturated_logits():
    logits = torch.tensor([[80.0, -80.0, 0.0]], requires_grad=True)
    LossFn("focal", gamma=0.5)(logits, torch.tensor([0])).backward()
    assert torch.isfinite(logits.grad).all()


def test_class_balanced_weights_by_effective_number():
    counts = np.array([1000, 100, 10, 0, 1])
    beta = 0.99
    raw = np.array([(1 - beta) / (1 - beta ** n) if n else 0.0 for n in counts])
    want = raw / raw.sum() * len(counts)
    got = class_balanced_weights(counts, beta)
    assert np.allclose(got, want, rtol=1e-12)
    assert got[3] == 0.0
    assert np.isclose(got.sum(), len(counts))
    assert got[0] < got[1] < got[2] < got[4]
    # beta -> 0 gives equal weights over the present classes
    w0 = class_balanced_weights(counts, 0.0)
    assert np.allclose(w0[counts > 0], len(counts) / 4)


@pytest.mark.parametrize("kind", ["ce", "focal"])
def test_class_balanced_loss_is_mean_of_class_weighted_losses(kind):
    logits, labels = fixed()
    counts = np.array([50, 5, 20, 2])
    cfg = TrialConfig(loss=kind, class_balanced=0.9, focal_gamma=2.0)
    loss = make_loss(cfg, counts)
    plain = make_loss(cfg.replace(class_balanced=0.0), counts)
    w = torch.tensor(class_balanced_weights(counts, 0.9), dtype=torch.float32)
    assert torch.allclose(loss.per_example(logits, labels), plain.per_example(logits, labels) * w[labels])
    assert torch.allclose(loss(logits, labels), (plain.per_example(logits, labels) * w[labels]).mean())


def test_per_example_weights_reduce_as_weighted_sum_over_batch_size():
    logits, labels = fixed()
    loss = LossFn("ce")
    weights = torch.tensor([1.0, 2.0, 1.0, 1.0, 3.0, 1.0])
    want = (loss.per_example(logits, labels) * weights).sum() / len(labels)
    assert torch.allclose(loss(logits, labels, weights), want)
    assert torch.allclose(loss(logits, labels, torch.ones(6)), loss(logits, labels))


def test_make_loss_reads_the_config():
    logits, labels = fixed()
    assert make_loss(TrialConfig(loss="ce", focal_gamma=3.0)).gamma == 0.0
    fl = make_loss(TrialConfig(loss="focal", focal_gamma=3.0, label_smoothing=0.05))
    assert (fl.kind, fl.gamma, fl.label_smoothing) == ("focal", 3.0, 0.05)
    with pytest.raises(ValueError, match="class counts"):
        make_loss(TrialConfig(class_balanced=0.9), None)


def test_half_precision_logits_are_scored_in_float32():
    logits, labels = fixed()
    loss = LossFn("focal", gamma=2.0)
    got = loss.per_example(logits.bfloat16(), labels)
    assert got.dtype == torch.float32
    assert torch.allclose(got, loss.per_example(logits.bfloat16().float(), labels))

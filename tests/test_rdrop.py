"""R-Drop: the loss equals the mean task loss of both passes + α·symmetric KL, by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import transformers

from relex.config import TrialConfig
from relex.model import build_model
from relex.train.techniques.losses import LossFn
from relex.train.techniques.rdrop import double_batch, rdrop_loss, split_logits, symmetric_kl


def fixed():
    g = torch.Generator().manual_seed(0)
    l1 = torch.randn(5, 4, generator=g)
    l2 = l1 + 0.5 * torch.randn(5, 4, generator=g)
    labels = torch.tensor([0, 3, 1, 2, 0])
    return l1, l2, labels


def kl(p_logits, q_logits):
    """KL(p‖q) per example, via F.kl_div(log q, p) summed over classes."""
    return F.kl_div(F.log_softmax(q_logits, -1), F.softmax(p_logits, -1), reduction="none").sum(-1)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 4.0])
def test_rdrop_loss_by_hand(alpha):
    l1, l2, labels = fixed()
    want = 0.5 * (F.cross_entropy(l1, labels) + F.cross_entropy(l2, labels)) \
        + alpha * (0.5 * (kl(l1, l2) + kl(l2, l1))).mean()
    got = rdrop_loss(l1, l2, labels, alpha, LossFn("ce"))
    assert torch.allclose(got, want, atol=1e-6)


def test_explicit_sums_agree_with_kl_div():
    l1, l2, _ = fixed()
    p, q = l1.softmax(-1), l2.softmax(-1)
    by_sum = 0.5 * ((p * (p.log() - q.log())).sum(-1) + (q * (q.log() - p.log())).sum(-1))
    assert torch.allclose(symmetric_kl(l1, l2), by_sum, atol=1e-6)
    assert torch.allclose(symmetric_kl(l1, l1), torch.zeros(5), atol=1e-7)
    assert (symmetric_kl(l1, l2) > 0).all()


def test_per_example_weights_apply_to_the_task_loss_only():
    l1, l2, labels = fixed()
    w = torch.tensor([1.0, 2.0, 1.0, 3.0, 1.0])
    ce = lambda z: (F.cross_entropy(z, labels, reduction="none") * w).mean()  # noqa: E731
    want = 0.5 * (ce(l1) + ce(l2)) + 2.0 * (0.5 * (kl(l1, l2) + kl(l2, l1))).mean()
    assert torch.allclose(rdrop_loss(l1, l2, labels, 2.0, LossFn("ce"), w), want, atol=1e-6)


def test_double_batch_and_split_are_inverse_and_one_forward_gives_two_dropout_passes(tmp_path):
    kw = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
              intermediate_size=37, max_position_embeddings=320, hidden_dropout_prob=0.3)
    transformers.BertModel(transformers.BertConfig(**kw)).save_pretrained(tmp_path / "b")
    model = build_model(TrialConfig(head="cls", head_dropout=0.3), tmp_path / "b", 3, 50)
    ids = torch.randint(0, 50, (3, 8), generator=torch.Generator().manual_seed(0))
    b = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
         "subj_pos": torch.tensor([1, 1, 1]), "obj_pos": torch.tensor([3, 3, 3]),
         "subj_span": torch.tensor([[1, 2]] * 3), "obj_span": torch.tensor([[3, 4]] * 3),
         "labels": torch.tensor([0, 1, 2])}
    d = double_batch(b)
    for k, v in b.items():
        assert torch.equal(d[k], torch.cat([v, v]))
    torch.manual_seed(1)
    first, second = split_logits(model.train()(d))
    assert first.shape == second.shape == (3, 3)
    assert not torch.allclose(first, second)  # independent dropout masks
    with torch.no_grad():
        e1, e2 = split_logits(model.eval()(d))
        assert torch.allclose(e1, e2, atol=1e-6)
        assert torch.allclose(e1, model(b), atol=1e-6)
    with pytest.raises(ValueError):
        split_logits(torch.zeros(3, 2))

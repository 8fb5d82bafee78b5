"""Hard-negative mining: picks the highest-loss negatives, never positives; weights persist."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from relex.train.techniques.hnm import HardNegativeMiner, hardest_negatives

NEG = 0


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    labels[:3] = [NEG, 1, 2]
    losses = rng.random(n) * 3
    losses[labels != NEG] += 10  # positives are far harder: they must still never be picked
    return losses, labels


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 1.0])
def test_hardest_negatives_are_the_top_ceil_fraction_by_loss(fraction):
    losses, labels = data()
    neg = np.flatnonzero(labels == NEG)
    k = math.ceil(fraction * len(neg))
    got = hardest_negatives(losses, labels, NEG, fraction)
    assert len(got) == k
    assert (labels[got] == NEG).all()
    want = neg[np.argsort(-losses[neg])][:k]
    assert list(got) == list(want)
    if k < len(neg):  # every picked negative is at least as hard as every unpicked one
        rest = np.setdiff1d(neg, got)
        assert losses[got].min() >= losses[rest].max()


def test_count_rule_edges():
    labels = np.array([NEG] * 10 + [1] * 5 + [-1])
    losses = np.arange(16, dtype=float)
    assert len(hardest_negatives(losses, labels, NEG, 0.0)) == 0
    assert len(hardest_negatives(losses, labels, NEG, 0.01)) == 1   # ceil: at least one
    assert len(hardest_negatives(losses, labels, NEG, 0.3)) == 3    # 0.3*10 is not 4
    assert len(hardest_negatives(losses, labels, NEG, 0.31)) == 4
    assert len(hardest_negatives(np.ones(3), np.array([1, 2, -1]), NEG, 0.5)) == 0
    # ties: lower position first; NaN counts as easiest
    tied = np.array([1.0, 2.0, 2.0, np.nan])
    assert list(hardest_negatives(tied, np.zeros(4, int), NEG, 0.75)) == [1, 2, 0]


def test_accepts_torch_tensors():
    losses, labels = data()
    a = hardest_negatives(torch.tensor(losses, dtype=torch.bfloat16), torch.tensor(labels), NEG, 0.2)
    assert (labels[a] == NEG).all() and len(a) == math.ceil(0.2 * (labels == NEG).sum())


def test_weight_mode_upweights_hard_negatives_in_the_loss_only():
    losses, labels = data()
    n = 100
    indices = np.arange(60, 60 + len(labels))  # scored rows are a slice of a larger set
    m = HardNegativeMiner(NEG, 0.25, 3.0, "weight")
    assert (m.weights(n) == 1).all() and (m.sampling_weights(n) == 1).all()
    hard = m.update(indices, losses, labels)
    assert set(hard) == set(indices[hardest_negatives(losses, labels, NEG, 0.25)])
    w = m.weights(n)
    assert w.dtype == np.float32 and w.shape == (n,)
    assert set(np.flatnonzero(w == 3.0)) == set(hard)
    assert (np.delete(w, hard) == 1.0).all()
    assert (m.sampling_weights(n) == 1).all()
    # the next epoch's update replaces the hard set
    losses2 = losses[::-1].copy()
    hard2 = m.update(indices, losses2, labels)
    assert set(np.flatnonzero(m.weights(n) == 3.0)) == set(hard2)
    with pytest.raises(ValueError):
        m.weights(50)  # hard rows beyond the dataset


def test_resample_mode_changes_sampling_weights_only():
    losses, labels = data()
    m = HardNegativeMiner(NEG, 0.5, 4.0, "resample")
    hard = m.update(np.arange(len(labels)), losses, labels)
    s = m.sampling_weights(len(labels))
    assert set(np.flatnonzero(s == 4.0)) == set(hard)
    assert (labels[s == 4.0] == NEG).all()
    assert (m.weights(len(labels)) == 1).all()


def test_state_round_trips_through_json():
    losses, labels = data()
    m = HardNegativeMiner(NEG, 0.3, 2.0, "weight")
    m.update(np.arange(len(labels)), losses, labels)
    state = json.loads(json.dumps(m.state_dict()))
    m2 = HardNegativeMiner(NEG, 0.3, 2.0, "weight")
    m2.load_state_dict(state)
    assert np.array_equal(m2.weights(len(labels)), m.weights(len(labels)))
    assert m2.updates == 1
    with pytest.raises(ValueError, match="mode"):
        HardNegativeMiner(NEG, 0.3, 2.0, "resample").load_state_dict(state)


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError):
        HardNegativeMiner(NEG, 0.3, 2.0, "boost")
    with pytest.raises(ValueError):
        HardNegativeMiner(NEG, 1.5, 2.0)
    with pytest.raises(ValueError):
        HardNegativeMiner(NEG, 0.3, 0.5)

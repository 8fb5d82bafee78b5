"""Member selection on synthetic validation probabilities with a known right answer."""

from __future__ import annotations

import numpy as np
import pytest

from relex.analysis import selection as S


def _onehot(pred, c, conf=0.9):
    p = np.full((len(pred), c), (1 - conf) / (c - 1))
    p[np.arange(len(pred)), pred] = conf
    return p


def _pool():
    """Labels 0..2 (0 negative), 60 rows. 'a' is right on rows 0-39, 'b' on rows 20-59 and
    confident-right where 'a' is wrong; 'bad' is always wrong."""
    rng = np.random.default_rng(0)
    y = rng.integers(1, 3, size=60)
    wrong = 3 - y
    a = _onehot(np.where(np.arange(60) < 40, y, wrong), 3, 0.6)
    b = _onehot(np.where(np.arange(60) >= 20, y, wrong), 3, 0.9)
    bad = _onehot(wrong, 3, 0.9)
    return {"a": a, "b": b, "bad": bad}, y


def test_top_k_ranks_by_the_metric():
    cands, y = _pool()
    assert S.top_k(cands, y, 0, "micro_f1", 2) == {"a": 0.5, "b": 0.5}
    assert S.best_single(cands, y, 0, "micro_f1") in ({"a": 1.0}, {"b": 1.0})
    assert S.top_k(cands, y, 0, "micro_f1", 10).keys() == {"a", "b", "bad"}  # K above the pool


def test_greedy_finds_the_complementary_pair_and_never_adds_a_bad_model():
    cands, y = _pool()
    w = S.greedy(cands, y, 0, "micro_f1", rounds=10)
    assert "bad" not in w and set(w) == {"a", "b"} and sum(w.values()) == pytest.approx(1.0)
    ens = S.average(cands, w)
    single = max(S.score(cands[c], y, 0, "micro_f1") for c in cands)
    assert S.score(ens, y, 0, "micro_f1") >= single
    # with replacement: weights are multiples of 1/bag size
    sizes = {round(1 / min(w.values()))}
    assert all(abs(v * max(sizes) - round(v * max(sizes))) < 1e-9 for v in w.values())


def test_cross_fit_scores_each_row_with_a_choice_made_without_it():
    y = np.array([1, 2] * 10)
    # 'left' is perfect on the first half only, 'right' on the second half only
    left = _onehot(np.where(np.arange(20) < 10, y, 3 - y), 3)
    right = _onehot(np.where(np.arange(20) >= 10, y, 3 - y), 3)
    parts = [np.arange(10), np.arange(10, 20)]
    out = S.cross_fit({"left": left, "right": right}, y, parts,
                      {"single": lambda c, yy: S.best_single(c, yy, 0, "micro_f1")})
    # fitted on the other half, each half picks the model that is wrong on it: honest 0
    assert (out["single"].argmax(1) != y).all()
    # in-sample, the same rule looks perfect on each half
    assert (S.average({"left": left}, {"left": 1.0})[:10].argmax(1) == y[:10]).all()

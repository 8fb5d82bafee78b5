"""Length-grouped batching and weighted re-sampling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relex.data.samplers import length_grouped_batches


@settings(max_examples=100, deadline=None)
@given(n=st.integers(0, 700), batch_size=st.integers(1, 40), seed=st.integers(0, 2**31),
       mega=st.integers(1, 60), shuffle=st.booleans())
def test_every_index_exactly_once_per_epoch(n, batch_size, seed, mega, shuffle):
    lengths = np.random.default_rng(seed).integers(3, 300, size=n)
    batches = length_grouped_batches(lengths, batch_size, seed=seed, shuffle=shuffle, mega_factor=mega)
    allidx = np.concatenate(batches) if batches else np.empty(0, np.int64)
    assert sorted(allidx.tolist()) == list(range(n))
    assert all(1 <= len(b) <= batch_size for b in batches)
    assert all(b.dtype == np.int64 for b in batches)
    # within a mega-batch only its last batch may be short
    n_mega = -(-n // (batch_size * mega))
    assert sum(len(b) < batch_size for b in batches) <= n_mega


def test_batches_are_length_homogeneous():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 500, size=2000)
    bs = 16
    batches = length_grouped_batches(lengths, bs, seed=1, mega_factor=200)  # one mega-batch
    # one mega-batch sorted and cut: the batches' length ranges do not interleave
    ranges = sorted((int(lengths[b].min()), int(lengths[b].max())) for b in batches)
    for (lo1, hi1), (lo2, hi2) in zip(ranges, ranges[1:]):
        assert hi1 <= lo2
    # and padding is far below that of random batches of the same size
    def padding(bs_list):
        return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in bs_list)

    perm = rng.permutation(len(lengths))
    random_batches = [perm[i : i + bs] for i in range(0, len(perm), bs)]
    assert padding(batches) * 10 < padding(random_batches)
    # with the default mega-batches (50 x 16 = 800 rows) each batch is still sorted within
    default = length_grouped_batches(lengths, bs, seed=1)
    assert padding(default) * 5 < padding(random_batches)
    for b in default:
        assert np.all(np.diff(lengths[b]) <= 0)  # longest first


def test_deterministic_per_seed_and_shuffled_across_seeds():
    lengths = np.random.default_rng(3).integers(1, 100, size=500)
    a = length_grouped_batches(lengths, 8, seed=7)
    b = length_grouped_batches(lengths, 8, seed=7)
    c = length_grouped_batches(lengths, 8, seed=8)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_no_shuffle_keeps_order_of_mega_batches():
    lengths = np.array([1, 5, 3, 9, 2, 8, 7, 4])
    got = length_grouped_batches(lengths, 2, seed=0, shuffle=False, mega_factor=2)
    # mega-batches of 4 rows in order, each sorted longest first, batch order kept
    assert [b.tolist() for b in got] == [[3, 1], [2, 0], [5, 6], [7, 4]]
    again = length_grouped_batches(lengths, 2, seed=99, shuffle=False, mega_factor=2)
    assert [b.tolist() for b in again] == [b.tolist() for b in got]


def test_weighted_resampling_follows_the_weights():
    n = 10
    lengths = np.arange(n) + 1
    w = np.zeros(n)
    w[2], w[7] = 1.0, 3.0
    batches = length_grouped_batches(lengths, 32, seed=0, weights=w, num_samples=20_000)
    drawn = np.concatenate(batches)
    assert len(drawn) == 20_000
    assert set(drawn.tolist()) == {2, 7}
    assert abs(np.mean(drawn == 7) - 0.75) < 0.02
    # defaults: as many draws as rows; with uniform weights rows repeat (with replacement)
    u = np.concatenate(length_grouped_batches(np.ones(1000), 10, seed=1, weights=np.ones(1000)))
    assert len(u) == 1000 and len(set(u.tolist())) < 1000
    # deterministic
    again = np.concatenate(length_grouped_batches(lengths, 32, seed=0, weights=w, num_samples=20_000))
    np.testing.assert_array_equal(drawn, again)


def test_hard_negative_upweighting_shifts_the_mix():
    lengths = np.full(100, 10)
    w = np.ones(100)
    w[:10] = 5.0  # ten "hard" rows get five times the weight
    drawn = np.concatenate(length_grouped_batches(lengths, 10, seed=4, weights=w, num_samples=50_000))
    share = np.mean(drawn < 10)
    assert abs(share - 50 / 140) < 0.01


@pytest.mark.parametrize("kwargs, match", [
    (dict(weights=np.ones(3)), "shape"),
    (dict(weights=-np.ones(4)), "non-negative"),
    (dict(weights=np.zeros(4)), "zero"),
    (dict(weights=np.array([1, np.nan, 1, 1])), "finite"),
    (dict(num_samples=-1), "num_samples"),
])
def test_bad_weights_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        length_grouped_batches(np.ones(4), 2, seed=0, **kwargs)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="batch_size"):
        length_grouped_batches(np.ones(4), 0, seed=0)
    with pytest.raises(ValueError, match="one-dimensional"):
        length_grouped_batches(np.ones((2, 2)), 2, seed=0)

"""The shifted split: held-out rows whose subject entity the training rows never mention."""

from __future__ import annotations

import numpy as np
import pytest

from relex.data import read_dataset
from relex.data.sample import SAMPLE_PATH
from relex.data.split import unseen_subject_split
from relex.errors import RelexError


@pytest.mark.parametrize("seed", [0, 1])
def test_held_out_subjects_never_occur_in_training_rows(seed):
    ds = read_dataset(SAMPLE_PATH)
    train, held, dropped = unseen_subject_split(ds, 0.1, seed)
    f = ds.frame
    # every row is in exactly one of the three parts
    assert sorted(np.concatenate([train, held, dropped]).tolist()) == list(range(len(ds)))
    held_subjects = set(f["subj_word"].iloc[held])
    seen = set(f["subj_word"].iloc[train]) | set(f["obj_word"].iloc[train])
    assert held_subjects and not held_subjects & seen
    # whole subjects are held out: no held-out subject has a row left in training
    assert len(held) >= 0.1 * len(ds)
    # dropped rows are exactly those that mention a held-out subject as their object
    rest = np.setdiff1d(np.arange(len(ds)), held)
    mentions = rest[np.isin(f["obj_word"].to_numpy()[rest], list(held_subjects))]
    assert dropped.tolist() == mentions.tolist()


def test_seeds_differ_and_repeat():
    ds = read_dataset(SAMPLE_PATH)
    a = unseen_subject_split(ds, 0.1, 0)[1]
    assert np.array_equal(a, unseen_subject_split(ds, 0.1, 0)[1])
    assert not np.array_equal(a, unseen_subject_split(ds, 0.1, 1)[1])


def test_bad_fraction_is_one_clear_error():
    with pytest.raises(RelexError, match="between 0 and 1"):
        unseen_subject_split(read_dataset(SAMPLE_PATH), 1.5, 0)

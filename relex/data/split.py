"""Stratified train/validation split of a Dataset (scikit-learn's ``train_test_split``), and
stratified k-fold assignment (``StratifiedKFold``) for cross-validation.

Classes with a single example cannot be stratified; they stay in train. Unlabelled rows form a
class of their own. When the validation share is too small to hold every class (scikit-learn
refuses), the split falls back to a plain shuffled split with the same seed. Both parts keep
the file order of their rows.
"""

from __future__ import annotations

from relex.errors import RelexError

# The held-out validation split of one training file, the same for `relex train` (--valid-fraction,
# --split-seed) and a sweep (Sweep(valid=..., split_seed=...)): a configuration validates on the
# same rows however it is run. The split seed is a data setting, apart from a trial's seed.
DEFAULT_VALID_FRACTION = 0.1
DEFAULT_SPLIT_SEED = 0


def split_indices(label_ids, fraction: float, seed: int):
    """(train, valid) row positions, each sorted; about ``fraction`` of the rows go to valid,
    class by class. Classes with one example go to train."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    y = np.asarray(label_ids)
    n = len(y)
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 < fraction < 1:
        raise RelexError(f"validation fraction must be between 0 and 1 (exclusive); got {fraction!r}")
    values, counts = np.unique(y, return_counts=True)
    singletons = np.isin(y, values[counts == 1])
    forced_train = np.flatnonzero(singletons)
    pool = np.flatnonzero(~singletons)
    n_valid = int(np.ceil(fraction * n))
    if n_valid < 1 or n - n_valid < 1 or len(pool) < 2 or n_valid >= len(pool):
        raise RelexError(f"cannot split {n} rows with validation fraction {fraction}: "
                         f"{len(pool)} rows of classes with at least two examples, "
                         f"{n_valid} wanted for validation")
    try:
        tr, va = train_test_split(pool, test_size=n_valid, random_state=seed, shuffle=True,
                                  stratify=y[pool])
    except ValueError:  # fewer validation rows than classes
        tr, va = train_test_split(pool, test_size=n_valid, random_state=seed, shuffle=True)
    train = np.sort(np.concatenate([tr, forced_train]).astype(np.int64))
    valid = np.sort(np.asarray(va, dtype=np.int64))
    return train, valid


def stratified_split(ds, fraction: float, seed: int):
    """Split ``ds`` into (train, valid) Datasets, ``fraction`` of the rows to valid, stratified
    by label (see the module notes)."""
    train, valid = split_indices(ds.label_ids(), fraction, seed)
    return ds.subset(train), ds.subset(valid)


def fold_assignment(label_ids, folds: int, seed: int):
    """Fold id (0..folds-1) of every row: stratified k-fold by label (scikit-learn's
    ``StratifiedKFold``, shuffled with ``seed``). Every row is in exactly one fold. A class with
    fewer rows than folds is spread over as many folds as it has rows."""
    import warnings

    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(label_ids)
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise RelexError(f"folds must be an integer >= 2; got {folds!r}")
    if len(y) < folds:
        raise RelexError(f"cannot split {len(y)} rows into {folds} folds")
    out = np.full(len(y), -1, dtype=np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "the least populated class has only N members"
        warnings.simplefilter("ignore", UserWarning)
        for k, (_, held_out) in enumerate(splitter.split(np.zeros(len(y)), y)):
            out[held_out] = k
    return out


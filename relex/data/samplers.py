"""Length-grouped batching (less padding per batch) with optional weighted re-sampling (HNM).

:func:`length_grouped_batches` shuffles the rows, cuts the shuffled order into mega-batches of
``mega_factor × batch_size`` rows, sorts each mega-batch by length (longest first), splits it
into batches and finally shuffles the order of the batches. Batches thus hold rows of similar
length (little padding), while which rows meet in a batch and the order of the batches stay
random. Everything is drawn from ``numpy.random.default_rng(seed)``: the same seed gives the same
batches.

With ``weights`` (one non-negative number per row) the epoch's rows are first drawn WITH
replacement, ``num_samples`` of them (default: as many as there are rows), row ``i`` with
probability ``weights[i] / sum(weights)`` — how hard-negative mining re-samples the negatives
the model finds hardest — and then grouped as above.
"""

from __future__ import annotations

import numpy as np

MEGA_FACTOR = 50


def length_grouped_batches(
    lengths,
    batch_size: int,
    *,
    seed: int,
    shuffle: bool = True,
    weights=None,
    num_samples: int | None = None,
    mega_factor: int = MEGA_FACTOR,
) -> list[np.ndarray]:
    """Batches (int64 arrays of row indices) grouped by ``lengths``.

    ``shuffle=False`` (evaluation) takes the rows in order, still sorts each mega-batch by length
    and keeps the batch order: deterministic whatever the seed. Without ``weights`` every row
    appears exactly once; the last batch of each mega-batch may be smaller than ``batch_size``.
    ``num_samples`` without ``weights`` draws uniformly with replacement.
    """
    lengths = np.asarray(lengths)
    if lengths.ndim != 1:
        raise ValueError(f"lengths must be one-dimensional, got shape {lengths.shape}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
    if mega_factor < 1:
        raise ValueError(f"mega_factor must be at least 1, not {mega_factor!r}")
    batch_size = int(batch_size)
    n = len(lengths)
    rng = np.random.default_rng(seed)

    if weights is not None or num_samples is not None:
        m = n if num_samples is None else int(num_samples)
        if m < 0:
            raise ValueError(f"num_samples must be 0 or more, not {num_samples!r}")
        if weights is None:
            w = np.ones(n, dtype=np.float64)
        else:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (n,):
                raise ValueError(f"weights has shape {w.shape}, expected ({n},) like lengths")
            if not np.all(np.isfinite(w)) or np.any(w < 0):
                raise ValueError("weights must be finite and non-negative")
        total = w.sum()
        if m and (n == 0 or total <= 0):
            raise ValueError("cannot draw samples: all weights are zero (or there are no rows)")
        order = rng.choice(n, size=m, replace=True, p=w / total) if m else np.empty(0, np.int64)
        order = order.astype(np.int64)
    elif shuffle:
        order = rng.permutation(n).astype(np.int64)
    else:
        order = np.arange(n, dtype=np.int64)

    mega = batch_size * int(mega_factor)
    batches: list[np.ndarray] = []
    for start in range(0, len(order), mega):
        chunk = order[start : start + mega]
        # longest first; stable, so equal lengths keep their (shuffled) order
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    if shuffle and len(batches) > 1:
        perm = rng.permutation(len(batches))
        batches = [batches[i] for i in perm]
    return batches

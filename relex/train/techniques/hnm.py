"""Hard-negative mining (HNM) for the negative class (``no_relation``).

After an epoch the loop scores the training examples (per-example loss, no dropout) and calls
``miner.update(indices, losses, labels)``. The hardest negatives — the
``k = ceil(fraction · n_neg)`` negative examples with the highest loss (at least one whenever
``fraction > 0`` and there are negatives; ties broken by lower position) — become the hard set
for the next epoch, replacing the previous one. Positives and unlabeled rows (−1) are never
chosen.

- mode ``weight``: ``weights(N)`` is ``weight`` for hard negatives and 1 elsewhere — the loop
  multiplies each example's loss by it; ``sampling_weights(N)`` stays uniform (all 1).
- mode ``resample``: ``sampling_weights(N)`` is ``weight`` for hard negatives and 1 elsewhere —
  a hard negative is drawn ``weight`` times as often by the sampler; ``weights(N)`` stays 1.

So the loop may always use both. Before the first ``update`` both are all ones.
``state_dict()``/``load_state_dict()`` hold plain Python values (JSON-safe) for resumable
checkpoints.
"""

from __future__ import annotations

import math

import numpy as np

from relex.train.techniques import Technique

MODES = ("weight", "resample")


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)


def hardest_negatives(losses, labels, negative_id: int, fraction: float) -> np.ndarray:
    """Positions (into ``losses``/``labels``) of the ``ceil(fraction · n_neg)`` highest-loss
    negatives, hardest first. NaN losses count as the easiest."""
    if not (0 <= fraction <= 1):
        raise ValueError(f"hnm fraction must be in [0, 1], got {fraction}")
    losses = _numpy(losses).astype(np.float64).reshape(-1)
    labels = _numpy(labels).reshape(-1)
    if losses.shape != labels.shape:
        raise ValueError(f"losses {losses.shape} and labels {labels.shape} differ in shape")
    neg = np.flatnonzero(labels == negative_id)
    k = max(1, math.ceil(fraction * neg.size - 1e-9)) if fraction > 0 and neg.size else 0
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    key = np.where(np.isnan(losses[neg]), -np.inf, losses[neg])
    order = np.argsort(-key, kind="stable")  # stable: equal losses keep the lower position first
    return neg[order[:k]].astype(np.int64)


class HardNegativeMiner:
    def __init__(self, negative_id: int, fraction: float, weight: float = 2.0,
                 mode: str = "weight"):
        if mode not in MODES:
            raise ValueError(f"hnm mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not (0 <= fraction <= 1):
            raise ValueError(f"hnm fraction must be in [0, 1], got {fraction}")
        if not weight >= 1:
            raise ValueError(f"hnm weight must be at least 1, got {weight}")
        self.negative_id = int(negative_id)
        self.fraction = float(fraction)
        self.weight = float(weight)
        self.mode = mode
        self.hard = np.zeros(0, dtype=np.int64)  # dataset row indices of the current hard set
        self.updates = 0

    def update(self, indices, losses, labels) -> np.ndarray:
        """Mine from one scoring pass: ``indices`` are the dataset rows of ``losses``/``labels``.
        Returns the new hard set (dataset row indices, hardest first)."""
        indices = _numpy(indices).astype(np.int64).reshape(-1)
        pos = hardest_negatives(losses, labels, self.negative_id, self.fraction)
        if indices.shape[0] != _numpy(labels).reshape(-1).shape[0]:
            raise ValueError("indices, losses and labels must have the same length")
        self.hard = indices[pos]
        self.updates += 1
        return self.hard

    def _marked(self, n: int, active: bool) -> np.ndarray:
        w = np.ones(n, dtype=np.float32)
        if active and self.hard.size:
            if self.hard.max() >= n:
                raise ValueError(f"hard negative index {int(self.hard.max())} out of range for "
                                 f"{n} examples")
            w[self.hard] = self.weight
        return w

    def weights(self, n: int) -> np.ndarray:
        """(n,) per-example loss weights (mode ``weight``; all 1 in mode ``resample``)."""
        return self._marked(n, self.mode == "weight")

    def sampling_weights(self, n: int) -> np.ndarray:
        """(n,) relative sampling weights (mode ``resample``; all 1 in mode ``weight``)."""
        return self._marked(n, self.mode == "resample")

    def state_dict(self) -> dict:
        return {"negative_id": self.negative_id, "fraction": self.fraction,
                "weight": self.weight, "mode": self.mode, "hard": self.hard.tolist(),
                "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        for key in ("negative_id", "fraction", "weight", "mode"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(f"HNM state has {key}={state[key]!r}, this miner has "
                                 f"{getattr(self, key)!r}")
        self.hard = np.asarray(state.get("hard", []), dtype=np.int64).reshape(-1)
        self.updates = int(state.get("updates", 0))


class HNM(Technique):
    """Scores the training negatives after every epoch but the last; the miner's hard set sets
    the next epoch's loss weights (``hnm_mode=weight``) or its resampled batches (``resample``)."""

    @classmethod
    def enabled(cls, cfg) -> bool:
        return cfg.hnm > 0

    def __init__(self, cfg, run) -> None:
        super().__init__(cfg, run)
        self.miner = HardNegativeMiner(run.labels.negative_id, cfg.hnm, cfg.hnm_weight, cfg.hnm_mode)

    def example_weights(self, n: int):
        return self.miner.weights(n) if self.cfg.hnm_mode == "weight" and self.miner.updates else None

    def sampling_weights(self, n: int):
        return (self.miner.sampling_weights(n)
                if self.cfg.hnm_mode == "resample" and self.miner.updates else None)

    def end_of_epoch(self, run) -> None:
        import torch

        from relex.train.predict import predict_logits

        labels = run.train_labels
        neg = np.flatnonzero(labels == run.labels.negative_id)
        if len(neg) == 0:
            return
        logits = predict_logits(run.model, run.train_feats.subset(neg),
                                batch_size=self.cfg.eval_batch_size, amp=run.amp)
        per = run.loss_fn.per_example(torch.from_numpy(logits), torch.from_numpy(labels[neg]))
        self.miner.update(neg.astype(np.int64), per.numpy(), labels[neg])
        run.report.log(f"hard-negative mining: scored {len(neg)} negatives after epoch "
                       f"{run.pos.epoch + 1}")

    def state_dict(self) -> dict:
        return self.miner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.miner.load_state_dict(state)

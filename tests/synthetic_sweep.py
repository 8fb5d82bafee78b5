"""Sweep directories with known answers, written through relex's own writers.

``make_sweep`` lays out what ``relex sweep`` leaves behind — trials.parquet, history.parquet,
job.json, labels.json, valid_index.parquet and valid_probs/ — for a grid whose metrics follow a
formula: each trial's micro-F1 at evaluation i is ``curve(i) + effect(config) + noise``, so an
axis's true effect is the same at every evaluation (what an equal-budget comparison must find),
and AUPRC follows micro-F1 with its own noise. ``stop(config, seed)`` returns the evaluation
where ASHA "stopped" a trial (None: it ran to the end); ``lineage(config)`` makes it a staged
sweep (the base configuration each trial grew from) and ``job_fields`` overrides job.json.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable

import numpy as np

from relex.config import TrialConfig
from relex.data.io import read_dataset
from relex.data.sample import SAMPLE_PATH
from relex.data.split import stratified_split
from relex.metrics import softmax
from relex.sweep.layout import SweepDir, write_table
from relex.sweep.results import HISTORY_SCHEMA, TRIALS_SCHEMA, to_table
from relex.sweep.runner import write_valid_index

EVALUATIONS = 8


def curve(i: int) -> float:
    """The shared learning curve: rises fast, then flattens (micro-F1 points)."""
    return 60.0 - 40.0 * np.exp(-i / 2.0)


def make_sweep(root: Path, *, axes: dict[str, list[Any]], seeds: list[int],
               effect: Callable[[dict[str, Any]], float], noise: float = 0.5,
               stop: Callable[[dict[str, Any], int], int | None] = lambda c, s: None,
               rng_seed: int = 0, probs: bool = True, name: str = "synthetic",
               lineage: Callable[[dict[str, Any]], str] | None = None,
               job_fields: dict[str, Any] | None = None) -> Path:
    rng = np.random.default_rng(rng_seed)
    d = root / name
    d.mkdir(parents=True)
    valid = _validation_set(d) if probs else None
    trials, history = [], []
    combos = list(itertools.product(*axes.values()))
    for k, (combo, seed) in enumerate(itertools.product(combos, seeds)):
        tid = f"t{k:03d}"
        cfg = TrialConfig(**dict(zip(axes, combo)), seed=seed, epochs=EVALUATIONS, eval_every=0)
        values = dict(zip(axes, combo))
        stopped_at = stop(values, seed)
        n_eval = stopped_at or EVALUATIONS
        shift = effect(values)
        f1 = [curve(i) + shift + rng.normal(0, noise) for i in range(1, n_eval + 1)]
        auprc = [v + 5.0 + rng.normal(0, noise) for v in f1]
        for i in range(n_eval):
            history.append({"trial_id": tid, "iteration": i + 1, "step": 10 * (i + 1),
                            "epoch": float(i + 1), "micro_f1": f1[i], "auprc": auprc[i],
                            "accuracy": f1[i], "val_loss": 1.0, "lr": 1e-4, "train_loss": 0.5,
                            "is_best": f1[i] >= max(f1[: i + 1])})
        best = int(np.argmax(f1))
        row = {"trial_id": tid, "status": "STOPPED_EARLY" if stopped_at else "TERMINATED",
               **cfg.to_dict(), "micro_f1": f1[best], "auprc": auprc[best], "accuracy": f1[best],
               "val_loss": 1.0, "best_step": 10 * (best + 1), "best_epoch": float(best + 1),
               "epochs_run": float(n_eval), "evaluations": n_eval, "attempts": 1,
               "wall_s": 10.0 * n_eval, "gpu": "0:Test GPU", "node": "10.0.0.1",
               "lineage": lineage(values) if lineage else None}
        if valid is not None:
            row["valid_probs"] = str(_write_probs(d, tid, valid, quality=f1[best], rng=rng))
        trials.append(row)
    sweep = SweepDir(d)
    write_table(sweep.trials_file, to_table(trials, TRIALS_SCHEMA))
    write_table(sweep.history_file, to_table(history, HISTORY_SCHEMA))
    job = {"name": name, "train": str(SAMPLE_PATH), "valid": 0.2, "split_seed": 0,
           "axes": list(axes) + (["seed"] if len(seeds) > 1 else []),
           "asha": {"metric": "micro_f1", "mode": "max", "grace_period": 2,
                    "reduction_factor": 2.0, "max_t": 0}, **(job_fields or {})}
    sweep.write_job(job)
    return d


def _validation_set(d: Path):
    full = read_dataset(SAMPLE_PATH)
    _, valid = stratified_split(full, 0.2, 0)
    write_valid_index(d, valid)
    return valid


def _write_probs(d: Path, tid: str, valid, *, quality: float, rng) -> Path:
    """Probabilities whose argmax is right for about ``quality``% of the rows."""
    gold = valid.label_ids()
    logits = rng.normal(0, 1.0, size=(len(gold), len(valid.labels)))
    right = rng.random(len(gold)) < quality / 100.0
    logits[np.arange(len(gold))[right], gold[right]] += 4.0
    return SweepDir(d).write_probs(tid, softmax(logits))

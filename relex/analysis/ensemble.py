"""Ensembles of a sweep's trials: choosing members, the ensemble directory, predicting with it.

An ensemble directory holds one file, ``ensemble.json``::

    format, version         "relex-ensemble", 1
    label_names, negative_label   the column order of every probability it produces
    members                 [{name, checkpoint, checkpoint_relative, weight, config_id, fold}]
    selection               how the members were chosen (sweep, method, metric, units, seed)
    scores                  the honest scores: ensemble and best single trial, cross-fitted
    decisions               the fitted decisions (relex.analysis.decisions) and their effects

``Ensemble.predict_proba`` runs every member (on the GPU when there is one), averages their
probabilities with the weights and applies the decisions. Everything that takes a checkpoint
takes an ensemble directory; it is recognised by its ``ensemble.json``.

Choosing members (``relex ensemble SWEEP_DIR``): the candidates are the finished trials with
saved validation probabilities and a best checkpoint — or, in a fold sweep, the configurations
whose folds all finished, each with its out-of-fold probabilities (every training row predicted
by the fold model that did not see it); a chosen configuration brings all its fold checkpoints,
its weight split evenly between them. Members are chosen on all validation rows; the reported
scores come from cross-fitting (:func:`relex.analysis.selection.cross_fit`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from relex import metrics as M
from relex.analysis import selection as S
from relex.analysis.decisions import Decisions, cross_fit_effects, fit_decisions, fit_type_pairs
from relex.errors import RelexError
from relex.io_utils import atomic_path, read_json

ENSEMBLE_FILE = "ensemble.json"
FORMAT = "relex-ensemble"
VERSION = 1
HONEST_PARTS = 2


def is_ensemble(path: str | os.PathLike) -> bool:
    return (Path(path) / ENSEMBLE_FILE).is_file()


@dataclass
class Member:
    name: str
    checkpoint: Path
    weight: float
    config_id: str | None = None
    fold: int | None = None


@dataclass
class Ensemble:
    """Weighted members with one label order and fitted decisions."""

    members: list[Member]
    label_names: list[str]
    negative_label: str
    decisions: Decisions = field(default_factory=Decisions)
    info: dict[str, Any] = field(default_factory=dict)  # selection and scores, as written
    applied: list[str] = field(default_factory=list)  # decisions applied by the last prediction
    warnings: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RelexError(f"--out {path}: exists and is not a directory")
        if path.is_dir() and any(path.iterdir()) and not is_ensemble(path):
            raise RelexError(f"--out {path}: exists and is not an ensemble directory; choose another")
        data = {
            "format": FORMAT, "version": VERSION, "label_names": self.label_names,
            "negative_label": self.negative_label,
            "members": [{"name": m.name, "checkpoint": str(Path(m.checkpoint).resolve()),
                         "checkpoint_relative": os.path.relpath(Path(m.checkpoint).resolve(), path.resolve()),
                         "weight": m.weight, "config_id": m.config_id, "fold": m.fold}
                        for m in self.members],
            **self.info, "decisions": self.decisions.to_dict(),
        }
        with atomic_path(path, is_dir=True) as tmp:
            (tmp / ENSEMBLE_FILE).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Ensemble":
        """Read an ensemble directory; a missing member checkpoint or a member whose label order
        differs from the ensemble's is a RelexError naming it."""
        from relex.train import checkpoint as ckpt

        path = Path(path)
        file = path / ENSEMBLE_FILE
        if not file.is_file():
            raise RelexError(f"{path}: not an ensemble directory (no {ENSEMBLE_FILE})")
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
            if int(data.get("version", 0)) > VERSION:
                raise ValueError(f"version {data['version']} is newer than this relex reads ({VERSION})")
            names, negative = list(data["label_names"]), str(data["negative_label"])
            raw = data["members"]
            decisions = Decisions.from_dict(data.get("decisions") or {})
        except (ValueError, KeyError, TypeError) as e:
            raise RelexError(f"{file}: not a valid ensemble file ({e})") from None
        if not raw:
            raise RelexError(f"{file}: the ensemble has no members")
        members = []
        for m in raw:
            where = _member_path(path, m)
            try:
                ckpt.check(where)
            except RelexError as e:
                raise RelexError(f"{file}: member {m.get('name')}: {e}") from None
            own = list(ckpt.load_labels(where).names)
            if own != names:
                raise RelexError(f"{file}: member {m.get('name')} ({where}) has a different label "
                                 f"order from the ensemble's (first difference at position "
                                 f"{next(i for i, (a, b) in enumerate(zip(own + [''], names + [''])) if a != b)})")
            members.append(Member(str(m["name"]), where, float(m["weight"]), m.get("config_id"), m.get("fold")))
        info = {k: v for k, v in data.items() if k in ("selection", "scores")}
        return cls(members, names, negative, decisions, info)

    # ------------------------------------------------------------- prediction
    def member_probs(self, dataset, *, batch_size: int | None = None, device=None,
                     amp: str | None = None) -> np.ndarray:
        """The weighted average of the members' probabilities (float64), before decisions;
        ``device`` defaults to CUDA when there is one, ``amp`` (inference precision) to float32.
        Members are loaded one at a time."""
        import torch

        from relex.train import amp as amp_mod
        from relex.train import checkpoint as ckpt
        from relex.train.predict import dataset_probs, default_device

        device = torch.device(device) if device is not None else default_device()
        precision = amp_mod.for_inference(amp, device)
        total = sum(m.weight for m in self.members)
        out = None
        for m in self.members:
            loaded = ckpt.load(m.checkpoint, device=device)
            p = dataset_probs(loaded, dataset, batch_size=batch_size, amp=precision) * (m.weight / total)
            out = p if out is None else out + p
            del loaded
        return out

    def predict_proba(self, dataset, *, batch_size: int | None = None, device=None,
                      decisions: bool = True, label_shift: bool = False,
                      amp: str | None = None) -> np.ndarray:
        """Probabilities (n × C, float32, rows summing to 1) of every row of ``dataset``, in
        ``label_names`` order, with the fitted decisions applied (``decisions=False``: the plain
        weighted average). ``applied`` and ``warnings`` say what was done."""
        probs = self.member_probs(dataset, batch_size=batch_size, device=device, amp=amp)
        self.applied, self.warnings = [], []
        if decisions:
            frame = dataset.frame
            probs, self.applied, self.warnings = self.decisions.apply(
                probs, self.label_names, self.negative_label, subj_types=frame["subj_type"].tolist(),
                obj_types=frame["obj_type"].tolist(), label_shift=label_shift)
        out = probs.astype(np.float32)
        return out / out.sum(axis=1, keepdims=True)

    @property
    def labels(self):
        from relex.data import LabelSet

        return LabelSet(tuple(self.label_names), self.negative_label)


def _member_path(ens_dir: Path, m: dict[str, Any]) -> Path:
    """A member's checkpoint: its absolute path, else its path relative to the ensemble (the
    sweep and the ensemble moved together)."""
    absolute = Path(m["checkpoint"])
    if absolute.exists() or not m.get("checkpoint_relative"):
        return absolute
    relative = (ens_dir / m["checkpoint_relative"]).resolve()
    return relative if relative.exists() else absolute


# ----------------------------------------------------------------- a sweep's pool
@dataclass
class Pool:
    """What a sweep offers an ensemble: candidate probabilities on the same rows, their
    checkpoints, gold labels, and the entity types of the rows and of the training data."""

    sweep_dir: Path
    names: list[str]
    negative: str
    y: np.ndarray
    candidates: dict[str, np.ndarray]
    members: dict[str, list[Member]]  # candidate id -> its checkpoints (weights sum to 1)
    folds: int
    subj_types: np.ndarray | None = None
    obj_types: np.ndarray | None = None
    type_pairs: Any = None  # fixed training pairs, or a function of the rows fitted on (folds)
    notes: list[str] = field(default_factory=list)


def read_pool(sweep_dir: str | os.PathLike, *, types: bool = True) -> Pool:
    """The candidates of a finished (or partly finished) sweep; see the module notes."""
    from relex.sweep.folds import read_fold_index
    from relex.sweep.layout import JOB_FILE, TRIALS_FILE, SweepDir
    from relex.sweep.results import SCORED
    from relex.train import checkpoint as ckpt

    sweep = SweepDir(sweep_dir)
    sweep_dir = sweep.path
    if not sweep.has_results() or not sweep.job_file.is_file():
        raise RelexError(f"{sweep_dir}: not a sweep directory (no {TRIALS_FILE} or {JOB_FILE})")
    resolved = read_json(sweep.job_file)
    label_file = read_json(sweep.labels_file)
    names, negative = list(label_file["names"]), label_file["negative"]
    index = {n: i for i, n in enumerate(names)}
    rows = [r for r in sweep.trial_rows() if r.get("status") in SCORED]
    folds = int(resolved.get("folds") or 0)
    notes: list[str] = []

    def usable(r: dict[str, Any]) -> bool:
        try:
            ckpt.check(r.get("checkpoint") or "")
            return True
        except RelexError:
            why = (f"the sweep dropped its best checkpoint ({r['checkpoint_dropped']})"
                   if r.get("checkpoint_dropped") else f"no best checkpoint at {r.get('checkpoint')}")
            notes.append(f"{r['trial_id']}: {why}; left out")
            return False

    candidates: dict[str, np.ndarray] = {}
    members: dict[str, list[Member]] = {}
    if folds:
        frame = read_fold_index(sweep_dir)
        by_config: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_config.setdefault(str(r["config_id"]), []).append(r)
        for cid, rs in sorted(by_config.items()):
            oof = sweep.oof_file(cid)
            if not oof.exists() or len(rs) != folds or not all(usable(r) for r in rs):
                continue
            candidates[cid] = np.load(oof).astype(np.float64)
            members[cid] = [Member(r["trial_id"], Path(r["checkpoint"]), 1.0 / folds, cid, int(r["fold"]))
                            for r in sorted(rs, key=lambda r: r["fold"])]
    else:
        frame = sweep.valid_index()
        if frame is None:
            raise RelexError(f"{sweep.valid_index_file}: missing; the sweep's validation rows are unknown")
        for r in rows:
            probs = sweep.probs(r["trial_id"], r.get("valid_probs"))
            if probs is not None and usable(r):
                candidates[r["trial_id"]] = probs.astype(np.float64)
                members[r["trial_id"]] = [Member(r["trial_id"], Path(r["checkpoint"]), 1.0, r.get("config_id"))]
    if not candidates:
        raise RelexError(f"{sweep_dir}: no finished trial has validation probabilities and a checkpoint"
                         + (" for every fold" if folds else ""))
    y = np.array([index.get(str(v), -1) for v in frame["label"]], dtype=np.int64)
    if (y < 0).any():
        raise RelexError(f"{sweep_dir}: {int((y < 0).sum())} validation rows have no known label")
    pool = Pool(sweep_dir, names, negative, y, candidates, members, folds, notes=notes)
    if types:
        _add_types(pool, resolved, frame)
    return pool


def _add_types(pool: Pool, resolved: dict[str, Any], frame) -> None:
    """Entity types of the validation rows, and the training pairs, from the sweep's data."""
    from relex.sweep.folds import read_job_data

    try:
        data = read_job_data(resolved)
    except RelexError as e:
        pool.notes.append(f"entity-type-pair constraint unavailable: the sweep's data cannot be read ({e})")
        return
    rows = data.full if pool.folds else data.valid
    if [str(x) for x in rows.frame["id"]] != [str(x) for x in frame["id"]]:
        pool.notes.append("entity-type-pair constraint unavailable: the sweep's data file changed "
                          "since the sweep ran")
        return
    pool.subj_types = rows.frame["subj_type"].to_numpy(dtype=object)
    pool.obj_types = rows.frame["obj_type"].to_numpy(dtype=object)
    if pool.folds:
        # every row is a training row of the other folds: pairs come from the rows fitted on
        pool.type_pairs = lambda idx: fit_type_pairs(pool.subj_types[idx], pool.obj_types[idx], pool.y[idx])
    else:
        tr = data.train.frame
        pool.type_pairs = fit_type_pairs(tr["subj_type"].tolist(), tr["obj_type"].tolist(),
                                         data.train.label_ids())


# ------------------------------------------------------------------- building
def selection_rule(method: str, metric: str, negative_id: int, *, k: int = 5, rounds: int = 25,
                   config: str | None = None) -> Callable[[dict[str, np.ndarray], np.ndarray], S.Weights]:
    if method == "top":
        return lambda c, y: S.top_k(c, y, negative_id, metric, k)
    if method == "greedy":
        return lambda c, y: S.greedy(c, y, negative_id, metric, rounds)
    if method == "config":
        return lambda c, y: {config: 1.0}
    raise ValueError(method)


def build(sweep_dir: str | os.PathLike, *, method: str = "greedy", metric: str = M.PRIMARY,
          k: int = 5, rounds: int = 25, config: str | None = None, seed: int = 0,
          temperature: bool = True, bias: bool = True, type_constraint: bool = True) -> Ensemble:
    """Choose members from a sweep, fit the decisions, score both honestly (see module notes)."""
    from relex.data.split import fold_assignment

    pool = read_pool(sweep_dir, types=type_constraint)
    if config is not None and config not in pool.candidates:
        shown = ", ".join(sorted(pool.candidates)[:8])
        raise RelexError(f"{sweep_dir}: no usable configuration {config!r} (usable: {shown})")
    if type_constraint and pool.subj_types is None:
        raise RelexError(f"{sweep_dir}: {pool.notes[-1]}; pass --no-type-constraint")
    neg = pool.names.index(pool.negative)
    rule = selection_rule(method, metric, neg, k=k, rounds=rounds, config=config)
    assignment = fold_assignment(pool.y, HONEST_PARTS, seed)
    parts = [np.flatnonzero(assignment == p) for p in range(HONEST_PARTS)]
    honest = S.cross_fit(pool.candidates, pool.y, parts, {
        "ensemble": rule, "best_single": lambda c, y: S.best_single(c, y, neg, metric)})
    weights = rule(pool.candidates, pool.y)
    in_sample = S.average(pool.candidates, weights)
    single = next(iter(S.best_single(pool.candidates, pool.y, neg, metric)))

    pairs = None
    if type_constraint:
        pairs = pool.type_pairs(np.arange(len(pool.y))) if callable(pool.type_pairs) else pool.type_pairs
    decisions = fit_decisions(in_sample, pool.y, pool.names, pool.negative, temperature=temperature,
                              bias=bias, type_pairs=pairs, subj_types=pool.subj_types,
                              obj_types=pool.obj_types)
    decisions.report = cross_fit_effects(honest["ensemble"], pool.y, parts, pool.names, pool.negative,
                                         temperature=temperature, bias=bias,
                                         type_pairs=pool.type_pairs if type_constraint else None,
                                         subj_types=pool.subj_types, obj_types=pool.obj_types)
    members = [Member(m.name, m.checkpoint, w * m.weight, m.config_id, m.fold)
               for cid, w in weights.items() for m in pool.members[cid]]
    info = {
        "selection": {"sweep": str(Path(sweep_dir).resolve()), "method": method, "metric": metric,
                      "k": k if method == "top" else None, "rounds": rounds if method == "greedy" else None,
                      "units": weights, "unit": "configuration (all folds)" if pool.folds else "trial",
                      "honest_parts": HONEST_PARTS, "seed": seed, "notes": pool.notes},
        "scores": {"rows": int(len(pool.y)), "ensemble": _metrics(honest["ensemble"], pool),
                   "best_single": _metrics(honest["best_single"], pool),
                   "best_single_in_sample": {"id": single, **_metrics(pool.candidates[single], pool)},
                   "ensemble_in_sample": _metrics(in_sample, pool)},
    }
    return Ensemble(members, pool.names, pool.negative, decisions, info)


# the honest scores ensemble.json records (mean AP was never part of them)
SCORED_METRICS = ("micro_f1", "auprc", "accuracy")


def _metrics(probs: np.ndarray, pool: Pool) -> dict[str, float]:
    m = M.compute(pool.y, probs, pool.names, pool.negative, per_class=False)
    return {k: m[k] for k in SCORED_METRICS}

"""The Python API: load a trained model and predict relations of records in memory.

    import relex

    model = relex.load("runs/sample")   # a checkpoint, a `relex train --out` directory, or an ensemble
    [pred] = model.predict([{"text": "이순신은 조선의 장군이다.",
                             "h": {"pos": [0, 3], "type": "PER"}, "t": {"pos": [5, 7], "type": "ORG"}}])
    pred.label, pred.probability, pred.distribution

:func:`load` recognises what ``path`` is: an ensemble directory (it holds ``ensemble.json``), a
checkpoint directory (``model.safetensors``, ``config.json``, ...), or a run directory of
``relex train --out`` / a sweep trial (it holds ``best/``, whose checkpoint is used). The
``relex evaluate`` / ``relex predict`` / ``relex export`` commands load through it too.

Records are KLUE dicts (``sentence``, ``subject_entity {word, start_idx, end_idx (inclusive),
type}``, ``object_entity``) or OpenNRE-style dicts (``text``, ``h {pos: [start, end)}``, ``t``;
``end`` exclusive, an optional ``name`` must equal ``text[start:end]``, ``type`` is needed by
the typed marker styles). A bad record raises :class:`RecordError` (a ``ValueError``) naming
its index and the reason.

This module is the top layer: it may import every other one.
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from relex.errors import BadRowsError, RelexError

ENSEMBLE_FILE = "ensemble.json"
RUN_BEST = "best"  # the checkpoint of a run directory
# marker styles that put the entity type into the input (an untyped OpenNRE entity cannot use them)
TYPED_STYLES = ("entity_mask", "typed_entity_marker", "typed_entity_marker_punct")
# the type given to an OpenNRE entity without one, for the styles that never read it
UNTYPED = "ENTITY"


class RecordError(RelexError, ValueError):
    """A record given to ``predict`` is malformed; the message names its index."""


@dataclass(frozen=True)
class Prediction:
    """One record's prediction: the most probable label, its probability, and every label's."""

    label: str
    probability: float
    distribution: dict[str, float]  # label -> probability, in the model's label order

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "probability": self.probability,
                "distribution": dict(self.distribution)}


# ----------------------------------------------------------------------------- records
def _opennre_entity(rec: Mapping, key: str, text: str, where: str, typed: bool) -> dict[str, Any]:
    ent = rec.get(key)
    if not isinstance(ent, Mapping):
        raise RecordError(f"{where}: '{key}' must be a dict with 'pos': [start, end]")
    pos = ent.get("pos")
    if (not isinstance(pos, (list, tuple)) or len(pos) != 2
            or not all(isinstance(p, int) and not isinstance(p, bool) for p in pos)):
        raise RecordError(f"{where}: '{key}.pos' must be [start, end] (two integers), got {pos!r}")
    start, end = pos
    if not 0 <= start < end <= len(text):
        raise RecordError(f"{where}: '{key}.pos' {list(pos)} is not a span of the text "
                          f"(0 <= start < end <= {len(text)}; end is exclusive)")
    word = text[start:end]
    if "name" in ent and ent["name"] != word:
        raise RecordError(f"{where}: '{key}.name' is {ent['name']!r} but text[{start}:{end}] is {word!r}")
    etype = ent.get("type")
    if etype is None:
        if typed:
            raise RecordError(f"{where}: '{key}' has no 'type', which this model's marker style needs")
        etype = UNTYPED
    return {"word": word, "start_idx": start, "end_idx": end - 1, "type": etype}


def klue_record(rec: Any, index: int, *, typed: bool = True) -> Any:
    """A KLUE dict for record ``index``: OpenNRE records converted, anything else as given
    (the data layer validates it). ``typed``: whether entity types are required."""
    if not isinstance(rec, Mapping):
        raise RecordError(f"records[{index}]: expected a dict (KLUE or OpenNRE style), "
                          f"got {type(rec).__name__}")
    if "text" not in rec or ("h" not in rec and "t" not in rec):
        return rec
    where = f"records[{index}]"
    text = rec["text"]
    if not isinstance(text, str) or not text:
        raise RecordError(f"{where}: 'text' must be a non-empty string")
    out = {"sentence": text,
           "subject_entity": _opennre_entity(rec, "h", text, where, typed),
           "object_entity": _opennre_entity(rec, "t", text, where, typed)}
    for k in ("id", "guid", "label", "relation"):
        if k in rec:
            out["label" if k == "relation" else k] = rec[k]
    return out


def records_dataset(records: Iterable[Any], labels, *, typed: bool = True):
    """A :class:`~relex.data.Dataset` of in-memory records under ``labels`` (a LabelSet);
    labels outside it (or none) leave the row unlabelled. Bad records raise RecordError."""
    from relex.data.io import from_records

    rows = [klue_record(r, i, typed=typed) for i, r in enumerate(records)]
    if not rows:
        raise RecordError("records: nothing to predict (an empty list)")
    try:
        return from_records(rows, name="records", labels=labels, require_labels=False)
    except BadRowsError as e:
        first = e.bad_rows[0]
        more = len(e.bad_rows) - 1
        raise RecordError(f"records[{first.row - 1}]: {first.reason}"
                          + (f" (and {more} more bad record{'s' if more > 1 else ''})" if more else "")
                          ) from None


def _batch_size(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RelexError(f"batch_size={value!r} is invalid: an integer of at least 1")
    return value


# ----------------------------------------------------------------------------- models
class Predictor(abc.ABC):
    """What :func:`load` returns: ``label_names``, ``negative_label``, ``predict(records)`` and
    ``predict_proba(dataset)`` (probabilities ``(N, C)`` in ``label_names`` order)."""

    label_names: tuple[str, ...]
    negative_label: str
    typed: bool = True  # whether records need entity types

    def labels(self):
        from relex.data import LabelSet

        return LabelSet(tuple(self.label_names), self.negative_label)

    @abc.abstractmethod
    def predict_proba(self, dataset, *, batch_size: int | None = None, device=None):
        """Class probabilities ``(N, C)`` float64 of a Dataset's rows, in ``label_names`` order."""

    def predict(self, records, *, batch_size: int | None = None, device=None):
        """Predictions of ``records`` (a list of KLUE or OpenNRE dicts; one dict gives one
        :class:`Prediction`, a list a list). ``batch_size`` defaults to the model's evaluation
        batch size, ``device`` to the one the model was loaded on."""
        single = isinstance(records, Mapping)
        ds = records_dataset([records] if single else records, self.labels(), typed=self.typed)
        probs = self.predict_proba(ds, batch_size=_batch_size(batch_size), device=device)
        names = tuple(self.label_names)
        out = []
        for row in probs:
            best = int(row.argmax())
            out.append(Prediction(names[best], float(row[best]),
                                  {n: float(p) for n, p in zip(names, row)}))
        return out[0] if single else out


class CheckpointPredictor(Predictor):
    """One checkpoint: its model, tokenizer, config and label set. ``amp``: the inference
    precision (``relex.train.amp.for_inference``: float32 unless given; never the training run's)."""

    def __init__(self, path: str | os.PathLike, *, device=None, amp: str | None = None):
        import torch

        from relex.train import amp as amp_mod
        from relex.train import checkpoint as ckpt

        self.path = Path(path)
        self.device = torch.device(device) if device is not None else _default_device()
        self.amp = amp
        amp_mod.for_inference(amp, self.device)  # an --amp this device cannot run fails here
        self.model, self.tokenizer, self.config, labelset = ckpt.load(self.path, device=self.device)
        self.label_names = tuple(labelset.names)
        self.negative_label = labelset.negative
        self.typed = self.config.marker in TYPED_STYLES

    def __repr__(self) -> str:
        return f"CheckpointPredictor({str(self.path)!r}, {len(self.label_names)} labels, {self.device})"

    def to(self, device) -> "CheckpointPredictor":
        import torch

        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def features(self, dataset):
        """The model's input features of ``dataset``; files read from disk use the feature cache."""
        from relex.data.features import featurize
        from relex.io_utils import cache_root

        cached = getattr(dataset, "path", None) is not None
        return featurize(dataset, self.tokenizer, self.config.marker, self.config.max_length,
                         cache_dir=cache_root() / "features", use_cache=cached)

    def encode(self, records) -> dict[str, Any]:
        """The inputs of this checkpoint's ONNX graph (``relex export``) for ``records``: int64
        numpy arrays named as the graph's inputs, padded to the longest record."""
        import numpy as np

        from relex.data.features import collate
        from relex.export import input_names

        ds = records_dataset([records] if isinstance(records, Mapping) else records, self.labels(),
                             typed=self.typed)
        feats = self.features(ds)
        cfg = self.config
        batch = collate(feats, np.arange(len(feats)), erpe_clip=cfg.erpe_clip if cfg.erpe else None)
        return {k: batch[k].numpy() for k in input_names(cfg)}

    def predict_proba(self, dataset, *, batch_size: int | None = None, device=None):
        from relex.train import amp as amp_mod
        from relex.train.predict import predict_probs

        if device is not None:
            self.to(device)
        bs = _batch_size(batch_size) or self.config.eval_batch_size
        return predict_probs(self.model, self.features(dataset), batch_size=bs,
                             amp=amp_mod.for_inference(self.amp, self.device))


class EnsemblePredictor(Predictor):
    """An ensemble directory (``ensemble.json``), through :class:`relex.analysis.ensemble.Ensemble`."""

    def __init__(self, path: str | os.PathLike, *, device=None, amp: str | None = None):
        from relex.analysis.ensemble import Ensemble

        self.path = Path(path)
        self.device = device
        self.amp = amp
        self.ensemble = Ensemble.load(self.path)
        self.label_names = tuple(self.ensemble.label_names)
        self.negative_label = self.ensemble.negative_label

    def __repr__(self) -> str:
        return f"EnsemblePredictor({str(self.path)!r}, {len(self.label_names)} labels)"

    def predict_proba(self, dataset, *, batch_size: int | None = None, device=None,
                      decisions: bool = True, label_shift: bool = False):
        """The members' weighted average with the fitted decisions applied (``decisions=False``:
        without them; ``label_shift``: also adapt to ``dataset``'s class prior by EM).
        ``applied`` and ``warnings`` then say what was done."""
        return self.ensemble.predict_proba(dataset, batch_size=_batch_size(batch_size),
                                           device=device if device is not None else self.device,
                                           decisions=decisions, label_shift=label_shift, amp=self.amp)

    @property
    def applied(self) -> list[str]:
        """The decisions the last prediction applied, in order."""
        return self.ensemble.applied

    @property
    def warnings(self) -> list[str]:
        """Warnings of the last prediction (e.g. label shift under poor calibration)."""
        return self.ensemble.warnings


def _default_device():
    from relex.train.predict import default_device

    return default_device()


def checkpoint_dir(path: str | os.PathLike) -> Path:
    """The checkpoint directory ``path`` stands for: itself, or a run directory's ``best/``."""
    from relex.train import checkpoint as ckpt

    p = Path(path)
    if not p.exists():
        raise RelexError(f"{p}: checkpoint directory not found")
    if not p.is_dir():
        raise RelexError(f"{p}: not a directory (expected a checkpoint, a run directory or an ensemble)")
    if not (p / "model.safetensors").exists() and (p / RUN_BEST).is_dir():
        return ckpt.check(p / RUN_BEST)
    if not any((p / name).exists() for name in ckpt.REQUIRED):
        raise RelexError(f"{p}: not a relex checkpoint, run directory (with {RUN_BEST}/) or "
                         f"ensemble directory (with {ENSEMBLE_FILE})")
    return ckpt.check(p)


def is_ensemble(path: str | os.PathLike) -> bool:
    return (Path(path) / ENSEMBLE_FILE).is_file()


def load(path: str | os.PathLike, *, device=None, amp: str | None = None) -> Predictor:
    """Load a checkpoint, a run directory (its ``best/``) or an ensemble directory.

    ``device``: where the model runs (default: CUDA when available, else CPU). ``amp``: the
    inference precision, ``auto``/``bf16``/``fp16``/``off``; default float32, whatever the
    training run used, so predictions are the same on every machine.
    """
    if is_ensemble(path):
        return EnsemblePredictor(path, device=device, amp=amp)
    return CheckpointPredictor(checkpoint_dir(path), device=device, amp=amp)


__all__ = ["load", "Prediction", "Predictor", "CheckpointPredictor", "EnsemblePredictor",
           "RecordError", "checkpoint_dir"]

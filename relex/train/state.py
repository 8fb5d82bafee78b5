"""The resumable training state: one generic save and load, no pickle.

A state is a directory of two files::

    tensors.safetensors   every tensor and numpy array of every object's state_dict()
    state.json            format + version, the caller's meta data, and each object's
                          state_dict() as JSON with {"__tensor__": key} where a tensor was

Anything with ``state_dict()``/``load_state_dict()`` is saved alike: the model, the optimizer,
the scheduler, the grad scaler, the position in the run, every technique's own state, and the
random generators (:class:`RandomState`). JSON cannot say "tuple" or "dict with int keys" (the
optimizer uses both), so those are tagged (``__tuple__``, ``__items__``) and come back as they
were. Tensors sharing memory (tied weights) are stored once. A value of any other type is a
``TypeError`` naming where it was: the format never falls back to pickle.

The directory is written under a temporary name and renamed into place, so a crash leaves the
previous state whole.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from relex.errors import RelexError
from relex.io_utils import atomic_path, json_default, read_json

FORMAT = "relex-train-state"
VERSION = 2
TENSORS = "tensors.safetensors"
STATE = "state.json"


class RandomState:
    """The Python, numpy, torch and CUDA generators as one object with a state_dict."""

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                                 "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if torch.cuda.is_available() and state.get("cuda"):
            torch.cuda.set_rng_state_all(state["cuda"][:torch.cuda.device_count()])


# ----------------------------------------------------------------------------- encoding
class _Encoder:
    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self._by_memory: dict[tuple, str] = {}

    def tensor(self, t: torch.Tensor, where: str) -> str:
        t = t.detach()
        memory = (t.device.type, t.untyped_storage().data_ptr(), t.storage_offset(),
                  tuple(t.shape), tuple(t.stride()), t.dtype) if t.numel() else None
        if memory is not None and memory in self._by_memory:
            return self._by_memory[memory]
        self.tensors[where] = t.to("cpu").contiguous()
        if memory is not None:
            self._by_memory[memory] = where
        return where

    def encode(self, value: Any, where: str) -> Any:
        if isinstance(value, torch.Tensor):
            return {"__tensor__": self.tensor(value, where)}
        if isinstance(value, np.ndarray):
            arr = np.ascontiguousarray(value)
            # safetensors' torch side has no unsigned 16/32/64-bit types: store the bits signed
            signed = {np.dtype(np.uint32): np.int32, np.dtype(np.uint64): np.int64,
                      np.dtype(np.uint16): np.int16}.get(arr.dtype)
            bits = arr.view(signed) if signed is not None else arr
            return {"__ndarray__": self.tensor(torch.from_numpy(bits.copy()), where),
                    "dtype": arr.dtype.str}
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, tuple):
            return {"__tuple__": [self.encode(v, f"{where}/{i}") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.encode(v, f"{where}/{i}") for i, v in enumerate(value)]
        if isinstance(value, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in value):
                return {k: self.encode(v, f"{where}/{k}") for k, v in value.items()}
            return {"__items__": [[self.encode(k, f"{where}/key{i}"), self.encode(v, f"{where}/{k}")]
                                  for i, (k, v) in enumerate(value.items())]}
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"training state: {where} is a {type(value).__name__}, which has no "
                        "pickle-free encoding")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__ndarray__" in value:
        return tensors[value["__ndarray__"]].numpy().view(np.dtype(value["dtype"])).copy()
    if "__tuple__" in value:
        return tuple(_decode(v, tensors) for v in value["__tuple__"])
    if "__items__" in value:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value["__items__"]}
    return {k: _decode(v, tensors) for k, v in value.items()}


# ----------------------------------------------------------------------------- save / load
def save(path: str | os.PathLike, objects: dict[str, Any], meta: dict[str, Any] | None = None) -> Path:
    """Write ``objects`` (name → object with ``state_dict()``) and ``meta`` to directory ``path``
    atomically (an existing state there is replaced whole)."""
    path = Path(path)
    enc = _Encoder()
    tree = {name: enc.encode(obj.state_dict(), name) for name, obj in objects.items()}
    doc = {"format": FORMAT, "version": VERSION, "meta": meta or {}, "objects": tree}
    with atomic_path(path, is_dir=True) as tmp:
        save_file(enc.tensors, str(tmp / TENSORS))
        (tmp / STATE).write_text(json.dumps(doc, default=json_default, ensure_ascii=False) + "\n",
                                 encoding="utf-8")
    return path


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The meta data of the state in ``path``; RelexError if it is not a state this version reads."""
    path = Path(path)
    doc = _read_doc(path)
    return doc["meta"]


def check_config(path: str | os.PathLike, saved: dict[str, Any], cfg, free: tuple[str, ...] = ()) -> None:
    """RelexError unless the config a state was saved with (``saved``, its dict) equals ``cfg``
    in every field but ``free`` (those a resumed run may change, e.g. the thread count)."""
    cls = type(cfg)
    old = cls.from_dict(saved, where=str(Path(path) / STATE))
    diff = [k for k in cls.field_names() if k not in free and getattr(old, k) != getattr(cfg, k)]
    if diff:
        raise RelexError(f"{path}: the state was saved with a different configuration "
                         f"({', '.join(f'{k}={getattr(old, k)!r}' for k in diff)})")


def load(path: str | os.PathLike, objects: dict[str, Any]) -> dict[str, Any]:
    """Restore every object of ``objects`` from the state in ``path``; returns its meta data."""
    path = Path(path)
    doc = _read_doc(path)
    missing = [name for name in objects if name not in doc["objects"]]
    if missing:
        raise RelexError(f"{path}: the training state has no {', '.join(missing)} (it was saved "
                         "by a run with other techniques)")
    tensors = load_file(str(path / TENSORS))
    for name, obj in objects.items():
        obj.load_state_dict(_decode(doc["objects"][name], tensors))
    return doc["meta"]


def _read_doc(path: Path) -> dict[str, Any]:
    sfile = path / STATE
    if not sfile.is_file():
        raise RelexError(f"{path}: not a relex training state (no {STATE})")
    doc = read_json(sfile)
    if doc.get("format") != FORMAT:
        raise RelexError(f"{path}: not a relex training state (format {doc.get('format')!r})")
    version = doc.get("version")
    if version == 1:
        raise RelexError(
            f"{path}: a training state of the trainer before relex's state format 2; it cannot "
            f"be resumed, but its best checkpoint loads as is (relex evaluate {path / 'best'} "
            "FILE) — to train further, start the run again without --resume")
    if version != VERSION:
        raise RelexError(f"{path}: training state format {version} is newer than this relex "
                         f"reads ({VERSION}); upgrade relex to resume it")
    return doc

"""Mixed precision: pick the mode for a device and hand out the matching autocast and scaler.

``cfg.amp``:

* ``auto``: on CUDA, bf16 where the GPU supports it (``torch.cuda.is_bf16_supported(including_emulation=False)``), else
  fp16; on a CPU with native bf16 arithmetic (AVX512-BF16 or AMX, see :func:`native_bf16`),
  bf16; on any other CPU, off — there bf16 is emulated and an autocast step is several times
  SLOWER than fp32 (13× for a 256→1024 linear layer on an AVX2-only EPYC).
* ``off``: full fp32.
* ``bf16``: autocast to bfloat16 (CUDA, or CPU via ``autocast('cpu')``); no loss scaling needed.
* ``fp16``: autocast to float16 with a :class:`torch.amp.GradScaler` (dynamic loss scaling).

The scaler of the ``off`` and ``bf16`` modes is a disabled ``GradScaler``, so the training loop
calls ``scale``/``unscale_``/``step``/``update`` the same way in every mode.

``cfg.amp`` is a training setting only. Inference — validation during training, ``relex.load``,
``evaluate``, ``predict``, ensembles, the ONNX graph — runs in float32 unless an ``amp`` is asked
for at inference time (:func:`for_inference`), so a checkpoint gives the probabilities its
training run scored on any CPU or GPU, and one trained with ``--amp bf16`` predicts where there
is no bf16.

``RELEX_NATIVE_BF16=1`` (or ``0``) overrides the CPU probe: every CPU of a mixed cluster then
decides ``auto`` alike, and the test suite runs as on a CPU with (or without) native bf16.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager

import torch

from relex.errors import RelexError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Amp:
    """The precision a run uses on one device."""

    mode: str  # "off" | "bf16" | "fp16"
    device_type: str  # "cpu" | "cuda" | ...

    @property
    def dtype(self) -> torch.dtype | None:
        return _DTYPES.get(self.mode)

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def autocast(self) -> ContextManager:
        """The autocast context of this mode (a no-op context when off)."""
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """A GradScaler, enabled only for fp16."""
        return torch.amp.GradScaler(self.device_type, enabled=self.mode == "fp16")

    def describe(self) -> str:
        if self.mode == "off":
            return f"fp32 on {self.device_type}"
        extra = " with dynamic loss scaling" if self.mode == "fp16" else ""
        return f"{self.mode} autocast on {self.device_type}{extra}"


# /proc/cpuinfo flags of native bf16 arithmetic (x86: AVX512-BF16 dot products, AMX tiles)
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags the kernel reports (empty where there is no /proc/cpuinfo)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


NATIVE_BF16_ENV = "RELEX_NATIVE_BF16"  # "1" / "0": what the CPU probe answers, whatever the CPU
_ENV_VALUES = {"1": True, "true": True, "yes": True, "on": True,
               "0": False, "false": False, "no": False, "off": False}


def native_bf16(device_type: str = "cpu") -> bool:
    """True where bf16 arithmetic is native on this device type (so autocast to it pays): on
    the CPU :data:`NATIVE_BF16_ENV` when set, else :func:`probe_native_bf16`."""
    forced = os.environ.get(NATIVE_BF16_ENV, "").strip().lower() if device_type == "cpu" else ""
    if not forced:
        return probe_native_bf16(device_type)
    if forced not in _ENV_VALUES:
        raise RelexError(f"{NATIVE_BF16_ENV}={os.environ[NATIVE_BF16_ENV]!r} is invalid: use 1 "
                         "(the CPU has native bf16) or 0 (it has not)")
    return _ENV_VALUES[forced]


@functools.lru_cache(maxsize=None)
def probe_native_bf16(device_type: str = "cpu") -> bool:
    """What the hardware says: whether bf16 arithmetic is native on this device type.

    CUDA: ``torch.cuda.is_bf16_supported(including_emulation=False)`` (Ampere and later).
    CPU: torch's own probe of the instruction set (``torch.cpu._is_avx512_bf16_supported`` /
    ``_is_amx_tile_supported``, what oneDNN dispatches on), or, where this torch lacks those
    probes, the kernel's flags (:data:`NATIVE_BF16_FLAGS`). ``torch.backends.cpu.
    get_cpu_capability()`` is not enough: it says "AVX512" for CPUs with and without BF16.
    """
    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False))
    if device_type != "cpu":
        return False
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(p) for p in probes):
        return any(bool(p()) for p in probes)
    return bool(cpu_flags() & set(NATIVE_BF16_FLAGS))


def resolve(requested: str, device: torch.device | str) -> Amp:
    """The mode ``requested`` (a ``cfg.amp`` value) means on ``device``."""
    device = torch.device(device)
    dev = device.type
    if requested == "off":
        return Amp("off", dev)
    if requested == "auto":
        if dev == "cuda":
            return Amp("bf16" if native_bf16("cuda") else "fp16", dev)
        return Amp("bf16" if dev == "cpu" and native_bf16("cpu") else "off", dev)
    if requested == "bf16":
        if dev == "cuda" and not native_bf16("cuda"):
            raise RelexError("amp=bf16: this GPU does not support bfloat16; use --amp fp16 or auto")
        return Amp("bf16", dev)
    if requested == "fp16":
        if dev not in ("cuda", "cpu"):
            raise RelexError(f"amp=fp16 is not supported on device {dev!r}; use --amp off")
        return Amp("fp16", dev)
    raise RelexError(f"amp={requested!r} is invalid: choose one of auto, off, bf16, fp16")


def for_inference(requested: str | None, device: torch.device | str) -> Amp:
    """The precision of inference on ``device``: float32 unless ``requested`` (an ``--amp`` given
    at inference time; never the checkpoint's training setting)."""
    return resolve(requested or "off", device)

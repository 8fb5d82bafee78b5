"""Mixed precision: pick the mode for a device and hand out the matching autocast and scaler.

``cfg.amp``:

* ``auto``: on CUDA, bf16 where the GPU supports it (``torch.cuda.is_bf16_supported(including_emulation=False)``), else
  fp16; on CPU, off (CPU autocast is slower than fp32 for these models).
* ``off``: full fp32.
* ``bf16``: autocast to bfloat16 (CUDA, or CPU via ``autocast('cpu')``); no loss scaling needed.
* ``fp16``: autocast to float16 with a :class:`torch.amp.GradScaler` (dynamic loss scaling).

The scaler of the ``off`` and ``bf16`` modes is a disabled ``GradScaler``, so the training loop
calls ``scale``/``unscale_``/``step``/``update`` the same way in every mode.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
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


def resolve(requested: str, device: torch.device | str) -> Amp:
    """The mode ``requested`` (a ``cfg.amp`` value) means on ``device``."""
    device = torch.device(device)
    dev = device.type
    if requested == "off":
        return Amp("off", dev)
    if requested == "auto":
        if dev == "cuda":
            bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
            return Amp("bf16" if bf16 else "fp16", dev)
        return Amp("off", dev)
    if requested == "bf16":
        if dev == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
            raise RelexError("amp=bf16: this GPU does not support bfloat16; use --amp fp16 or auto")
        return Amp("bf16", dev)
    if requested == "fp16":
        if dev not in ("cuda", "cpu"):
            raise RelexError(f"amp=fp16 is not supported on device {dev!r}; use --amp off")
        return Amp("fp16", dev)
    raise RelexError(f"amp={requested!r} is invalid: choose one of auto, off, bf16, fp16")

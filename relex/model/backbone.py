"""Backbones: the tiny local default and everything ``from_pretrained`` can load.

``resolve_backbone(name)`` turns a backbone name into something
``AutoTokenizer.from_pretrained`` / ``AutoModel.from_pretrained`` load:

* ``relex/tiny`` — the embedded default, built by :mod:`relex.model.tiny` (a WordPiece
  tokenizer learned from the corpus + a randomly initialised RoBERTa encoder, cached).
* a local directory — must hold ``config.json`` (and a tokenizer); returned as is.
* anything else is a model-hub id: accepted when ``AutoConfig`` can load it (from the local HF
  cache, or from the hub when reachable); otherwise :class:`RelexError` in one line.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Sequence
from urllib.parse import urlparse

from relex.errors import RelexError
from relex.model.quiet import quiet_transformers
from relex.model.tiny import TINY, build_tiny, tiny_sizes

if TYPE_CHECKING:  # pragma: no cover
    from relex.config import TrialConfig

HUB_PROBE_TIMEOUT_S = 3.0


# ---------------------------------------------------------------------------- public API
def resolve_backbone(
    name: str,
    *,
    corpus: Sequence[str] | None = None,
    cfg: "TrialConfig | None" = None,
    cache_dir: str | os.PathLike | None = None,
) -> str:
    """Return a directory or hub id that ``AutoTokenizer/AutoModel.from_pretrained`` load."""
    if not isinstance(name, str) or not name.strip():
        raise RelexError("backbone: a model name or directory is required")
    name = name.strip()
    if name.startswith("relex/"):
        sizes = tiny_sizes(name, cfg)
        return str(build_tiny(corpus, cache_dir=cache_dir, **sizes))
    return _resolve_pretrained(name)


def load_tokenizer(path: str | os.PathLike):
    """``AutoTokenizer.from_pretrained(path)``; a fast (Rust) tokenizer is required."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except Exception as e:  # noqa: BLE001 - any loader failure is a user-facing problem
        raise RelexError(f"cannot load tokenizer from '{path}': {_short(e)}") from None
    if not getattr(tok, "is_fast", False):
        raise RelexError(f"tokenizer at '{path}' is not a fast tokenizer (offsets are required)")
    return tok


def load_encoder(path: str | os.PathLike, *, pretrained: bool = True):
    """``AutoModel.from_pretrained(path)``: the bare encoder, without any task head.

    With ``pretrained=False`` the same architecture from its ``config.json`` only, randomly
    initialised (for loading a checkpoint's own weights over it).
    """
    from transformers import AutoConfig, AutoModel

    try:
        with quiet_transformers():
            if pretrained:
                return AutoModel.from_pretrained(str(path))
            return AutoModel.from_config(AutoConfig.from_pretrained(str(path)))
    except Exception as e:  # noqa: BLE001
        raise RelexError(f"cannot load backbone '{path}': {_short(e)}") from None


def position_limit(config) -> int | None:
    """How many tokens the encoder's absolute position table can hold (None: no such limit).

    RoBERTa-family models number positions from ``pad_token_id + 1``, so their usable length is
    ``max_position_embeddings - pad_token_id - 1`` (512 for klue/roberta-base and relex/tiny).
    """
    n = getattr(config, "max_position_embeddings", None)
    if not n or getattr(config, "position_embedding_type", "absolute") != "absolute":
        return None
    if config.model_type in ("roberta", "xlm-roberta", "camembert", "roberta-prelayernorm"):
        n -= (config.pad_token_id or 0) + 1
    return int(n)


def check_max_length(config, max_length: int, name: str) -> None:
    """RelexError when ``max_length`` is longer than the backbone's position table."""
    limit = position_limit(config)
    if limit is not None and max_length > limit:
        raise RelexError(f"max_length={max_length} exceeds what backbone '{name}' can encode "
                         f"({limit} positions); use --max-length {limit} or less")


# ---------------------------------------------------------------------------- other names
def _looks_like_path(name: str) -> bool:
    """A name meant as a filesystem path (a hub id is ``name`` or ``owner/name``)."""
    return (
        name.startswith(("./", "../", "/", "~", ".\\", "..\\"))
        or "\\" in name
        or name.count("/") > 1
    )


def _resolve_pretrained(name: str) -> str:
    p = Path(name).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise RelexError(
                f"cannot load backbone '{name}': the directory has no config.json "
                "(expected a save_pretrained() directory with config.json and tokenizer files)"
            )
        return str(p)
    if p.exists():
        raise RelexError(f"cannot load backbone '{name}': it is a file, not a model directory")
    if _looks_like_path(name):
        raise RelexError(f"cannot load backbone '{name}': no such directory")

    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except Exception as e:  # noqa: BLE001
        raise RelexError(f"cannot load backbone '{name}': not a directory or a valid model-hub id ({_short(e)})") from None

    from transformers import AutoConfig

    # 1) the local Hugging Face cache (works offline, returns at once)
    try:
        AutoConfig.from_pretrained(name, local_files_only=True)
        return name
    except Exception:  # noqa: BLE001
        pass
    # 2) the hub, only when it is allowed and answers quickly (no multi-retry stall)
    prefix = f"cannot load backbone '{name}': not found locally and the model hub is unreachable or has no such model"
    reason = _hub_unreachable()
    if reason:
        raise RelexError(f"{prefix} ({reason})")
    try:
        AutoConfig.from_pretrained(name)
    except Exception as e:  # noqa: BLE001
        raise RelexError(f"{prefix} ({_short(e)})") from None
    return name


def _hub_unreachable() -> str | None:
    """A short reason when the hub cannot be asked now, else None."""
    try:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return "HF_HUB_OFFLINE is set"
        endpoint = constants.ENDPOINT
    except Exception:  # noqa: BLE001
        endpoint = "https://huggingface.co"
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{var} is set"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # behind a proxy a direct probe proves nothing; let the hub client decide
    url = urlparse(endpoint)
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S):
            return None
    except OSError as e:
        return f"cannot connect to {host}: {e.strerror or type(e).__name__}"


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."

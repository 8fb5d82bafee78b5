"""Shared fixtures.

Tests that need ../shared (the real KLUE-RE and insects sets) use ``shared_data`` and skip with a
reason when it is absent, as on a user's fresh clone. Every test runs with its own cache directory
unless it asks for the session-wide one (``session_cache``) to reuse built backbones and features.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RELEX_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "klue-re" / "klue-re-v1.1_train.json").exists():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set RELEX_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("relex-cache")


@pytest.fixture(autouse=True)
def _relex_cache(session_cache, monkeypatch):
    monkeypatch.setenv("RELEX_CACHE", str(session_cache))
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    yield

"""Shared fixtures.

Tests that need ../shared (the real KLUE-RE and insects sets) use ``shared_data`` and skip with a
reason when it is absent, as on a user's fresh clone. Every test runs with its own cache directory
unless it asks for the session-wide one (``session_cache``) to reuse built backbones and features.

Whether the CPU has native bf16 decides what ``amp=auto`` trains in. The suite pins the answer
(``RELEX_NATIVE_BF16``, inherited by the Ray workers and CLI subprocesses tests start) so that no
outcome depends on the machine: to "no" unless the variable is set (``RELEX_NATIVE_BF16=1 make
test`` runs everything as on a CPU with native bf16). Tests of the precision rules take
``cpu_bf16`` and run both ways.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from relex.train.amp import NATIVE_BF16_ENV

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


@pytest.fixture(scope="session", autouse=True)
def _cpu_bf16_pinned():
    before = os.environ.get(NATIVE_BF16_ENV)
    os.environ.setdefault(NATIVE_BF16_ENV, "0")
    yield
    if before is None:
        os.environ.pop(NATIVE_BF16_ENV, None)


@pytest.fixture(params=[False, True], ids=["cpu-without-bf16", "cpu-with-bf16"])
def cpu_bf16(request, monkeypatch) -> bool:
    """Run the test as on a CPU without, then with, native bf16 (what ``amp=auto`` follows)."""
    monkeypatch.setenv(NATIVE_BF16_ENV, "1" if request.param else "0")
    return request.param

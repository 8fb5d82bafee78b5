"""Quiet loading and saving of transformers models, for every module that loads or saves one."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def quiet_transformers():
    """Hide transformers' per-call progress bars (weights loading/saving) for a moment."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()

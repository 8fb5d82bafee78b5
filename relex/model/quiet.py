"""Quiet loading and saving of transformers models, for every module that loads or saves one."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def quiet_transformers():
    """Hide transformers' per-call progress bars (weights loading/saving) and its load report
    for a moment: a pretrained directory carries its masked-LM head, which the encoder leaves
    unused by design, and the head missing from relex/tiny is built on purpose."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if was:
            hf_logging.enable_progress_bar()

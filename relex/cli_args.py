"""What every command's arguments share: argparse types and the one-line error rule. Light to
import (``relex --help`` loads every command's arguments)."""

from __future__ import annotations

import argparse
import sys


def one_line_errors(p: argparse.ArgumentParser) -> None:
    """Argument errors as exactly one line on stderr (no usage block), exit code 2."""

    def error(message: str) -> None:
        p.exit(2, f"{p.prog}: error: {message} (see --help)\n")

    p.error = error  # type: ignore[method-assign]


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (checked before any model is loaded)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def warn_skipped(ds) -> None:
    """Say on stderr how many bad rows a data set read with --skip-bad-rows left out."""
    if ds.skipped:
        rows = "row" if ds.skipped == 1 else "rows"
        print(f"relex: skipped {ds.skipped} bad {rows} of {ds.path} (--skip-bad-rows; first: "
              f"{ds.bad_rows[0]})", file=sys.stderr)

"""``relex report`` and ``relex data stats``: arguments and entry points.

Light to import (``relex --help`` loads every command's arguments); the analysis itself, with
pandas, scipy, scikit-learn and matplotlib, loads when a command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from relex.analysis.defaults import BUDGETS, TOP_CURVES
from relex.data.commands import add_file_args
from relex.errors import RelexError


def _check_html_path(value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if path.is_dir():
        raise RelexError(f"--html {path}: is a directory; give a file name")
    from relex.analysis.plots import require_matplotlib

    require_matplotlib()
    return path


def _emit(doc, fmt: str, html_path: Path | None) -> None:
    """The HTML file (written whole or not at all; first, so that a reader closing stdout
    early, as `| head` does, cannot cost it), then the document on stdout: markdown, or rich
    tables (plain and wide off a terminal)."""
    from relex.analysis.document import render_console, render_html, render_markdown

    if html_path is not None:
        from relex.io_utils import atomic_write_text

        atomic_write_text(html_path, render_html(doc))
        print(f"wrote {html_path}", file=sys.stderr)
    if fmt == "markdown":
        sys.stdout.write(render_markdown(doc))
    else:
        from rich.console import Console

        tty = sys.stdout.isatty()
        render_console(doc, Console(highlight=False, width=None if tty else 140, soft_wrap=not tty))


# ----------------------------------------------------------------------------- report
def add_report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep_dir", nargs="?", metavar="SWEEP_DIR",
                   help="a sweep's directory (default: the most recent under artifacts/)")
    p.add_argument("--html", metavar="FILE", default=None,
                   help="also write the report with its plots as one self-contained HTML file")
    p.add_argument("--format", choices=("table", "markdown"), default="table",
                   help="console output: rich tables (default) or markdown for a write-up")
    p.add_argument("--budget", choices=BUDGETS, default="equal",
                   help="how trials stopped early by ASHA enter the effects: equal (each pair "
                        "compared at the evaluations both reached; default) or finished (only "
                        "pairs whose trials both ran to the end)")
    p.add_argument("--examples", type=int, default=10, metavar="N",
                   help="error examples shown of each kind (default 10)")
    p.add_argument("--curves", type=int, default=TOP_CURVES, metavar="N",
                   help=f"learning curves of the best N trials (default {TOP_CURVES}; 0: none)")


def report(args: argparse.Namespace) -> int:
    from relex.sweep.layout import latest_sweep

    for flag in ("examples", "curves"):
        if getattr(args, flag) < 0:
            raise RelexError(f"--{flag} {getattr(args, flag)}: must be 0 or more")
    html_path = _check_html_path(args.html)
    sweep_dir = Path(args.sweep_dir) if args.sweep_dir else latest_sweep()
    from relex.analysis.report import build_report

    doc = build_report(sweep_dir, budget=args.budget, examples=args.examples, curves=args.curves,
                       plots=html_path is not None)
    _emit(doc, args.format, html_path)
    return 0


# -------------------------------------------------------------------------- data stats
def add_stats_args(p: argparse.ArgumentParser) -> None:
    add_file_args(p)
    p.add_argument("--skip-bad-rows", action="store_true",
                   help="drop invalid rows (counted) instead of failing; `relex data check` lists them")
    p.add_argument("--top", type=int, default=3, metavar="N",
                   help="most frequent subjects and objects shown per label (default 3)")
    p.add_argument("--html", metavar="FILE", default=None,
                   help="also write the tables with plots as one self-contained HTML file")
    p.add_argument("--format", choices=("table", "markdown"), default="table",
                   help="console output: rich tables (default) or markdown")


def stats(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise RelexError(f"--top {args.top}: must be at least 1")
    html_path = _check_html_path(args.html)
    from relex.analysis.data_report import build_stats_document
    from relex.data.io import read_dataset
    from relex.data.stats import compute

    ds = read_dataset(args.file, labels=args.labels, negative=args.negative_label,
                      skip_bad_rows=args.skip_bad_rows, require_labels=False)
    if ds.skipped:
        print(f"{args.file}: skipped {ds.skipped} bad row(s) (--skip-bad-rows)", file=sys.stderr)
    doc = build_stats_document(compute(ds, top=args.top), Path(args.file).name,
                               plots=html_path is not None)
    _emit(doc, args.format, html_path)
    return 0

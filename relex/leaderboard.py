"""``relex leaderboard`` and the live leaderboard of ``relex sweep``: the commands. The tables
themselves are :mod:`relex.analysis.leaderboard`'s.

``--format table`` draws a rich table on a terminal and plain aligned text otherwise;
``markdown`` and ``csv`` are for reports and spreadsheets. Mean AP (tie-free, see
:mod:`relex.metrics`) stands beside KLUE's AUPRC. ``--by-config`` groups the seeds of each
configuration into one row: mean ± sd and a 95% interval over seeds, n, ranked by the mean, and
whether the configuration is within noise of the top one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from relex.errors import RelexError
from relex.sweep.layout import SweepDir, latest_sweep


def load_rows(sweep_dir: str | Path) -> list[dict[str, Any]]:
    sweep = SweepDir(sweep_dir).require_results()
    rows = sweep.trial_rows()
    if not rows:
        raise RelexError(f"{sweep.trials_file}: the sweep has no trials yet")
    return rows


def add_leaderboard_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep_dir", nargs="?", metavar="SWEEP_DIR",
                   help="a sweep's directory (default: the most recent under artifacts/)")
    p.add_argument("--top", type=int, default=None, metavar="N", help="show the best N trials")
    p.add_argument("--format", choices=("table", "markdown", "csv"), default="table",
                   help="output format (default: table; plain text off a terminal)")
    p.add_argument("--by-config", action="store_true",
                   help="one row per configuration over its seeds: mean ± sd, 95%% CI, n, ranked "
                        "by the mean, flagged when within noise of the top one")


def _write_by_config(rows, args, sweep_dir: Path, out) -> None:
    from relex.analysis import leaderboard as L
    from relex.analysis.document import render_markdown_table, render_plain_table, rich_table

    groups = L.config_groups(rows, args.top)
    if args.format == "csv":
        out.write(L.config_csv(rows, groups))
        return
    if args.format == "markdown":
        out.write(render_markdown_table(L.config_table(rows, groups)) + "\n")
    elif out.isatty():
        from rich.console import Console

        table = L.config_table(rows, groups, styled=True)
        table.caption, table.compact = f"{sweep_dir.name}: configurations", True
        Console().print(rich_table(table))
    else:
        out.write(render_plain_table(L.config_table(rows, groups)))
    out.write(L.BY_CONFIG_NOTE + "\n")


def _write_trials(rows, args, sweep_dir: Path, out) -> None:
    from relex.analysis import leaderboard as L

    if args.format == "markdown":
        out.write(L.markdown(rows, top=args.top))
    elif args.format == "csv":
        out.write(L.csv_text(rows, top=args.top))
    elif out.isatty():
        from rich.console import Console

        from relex.sweep.results import FINISHED

        done = sum(r.get("status") in FINISHED for r in rows)
        Console().print(L.rich_table(rows, top=args.top, title=f"{sweep_dir.name}: {done}/{len(rows)} trials finished"))
    else:
        out.write(L.plain_text(rows, top=args.top))


def leaderboard(args: argparse.Namespace) -> int:
    if args.top is not None and args.top < 1:
        raise RelexError(f"--top {args.top}: must be at least 1")
    from relex.analysis.configs import by_fold_configuration

    sweep_dir = Path(args.sweep_dir) if args.sweep_dir else latest_sweep()
    rows = by_fold_configuration(load_rows(sweep_dir))
    out = sys.stdout
    (_write_by_config if args.by_config else _write_trials)(rows, args, sweep_dir, out)
    if args.format != "csv":
        from relex.sweep.budget import usage_line

        footer = usage_line(sweep_dir)
        if footer:
            out.write(footer + "\n")
    return 0


def sweep(args: argparse.Namespace) -> int:
    """``relex sweep`` drawn as a live leaderboard: the sweep layer runs it and gets the tables
    from here (it imports nothing above itself)."""
    from relex.analysis.leaderboard import live_table, plain_text
    from relex.sweep.commands import sweep as run_sweep
    from relex.sweep.results import Tables

    return run_sweep(args, tables=Tables(live=live_table, plain=plain_text))

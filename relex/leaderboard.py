"""Leaderboards of a sweep: the live one while it runs and ``relex leaderboard`` afterwards.

Rows come from ``trials.parquet`` (see :mod:`relex.sweep.results`) and are ranked by micro-F1
(finished trials with a score first, best first; trials without a score — errors, trials that
never evaluated — last). ``--format table`` draws a rich table on a terminal and plain aligned
text otherwise; ``markdown`` and ``csv`` are for reports and spreadsheets.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from relex.errors import RelexError

DEFAULT_ROOT = Path("artifacts")

def _technique_columns() -> tuple[str, ...]:
    """The config fields every leaderboard shows (``metadata["column"]`` in relex.config)."""
    import dataclasses

    from relex.config import TrialConfig

    return tuple(f.name for f in dataclasses.fields(TrialConfig) if f.metadata.get("column"))


TECHNIQUES = _technique_columns()


def _num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _fmt_metric(v: Any) -> str:
    f = _num(v)
    return "-" if f is None else f"{f:.2f}"


def _fmt_time(v: Any) -> str:
    f = _num(v)
    if f is None:
        return "-"
    f = int(round(f))
    if f < 60:
        return f"{f}s"
    if f < 3600:
        return f"{f // 60}m{f % 60:02d}s"
    return f"{f // 3600}h{f % 3600 // 60:02d}m"


def _fmt_value(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        f = _num(v)
        return "-" if f is None else f"{f:g}"
    return str(v)


def _fmt_int(v: Any) -> str:
    f = _num(v)
    return "-" if f is None else str(int(f))


def _fmt_checkpoint(v: Any) -> str:
    """Whether the trial's best checkpoint is still on disk (a sweep may have deleted it)."""
    return "yes" if v and Path(str(v), "model.safetensors").is_file() else "-"


def _short_backbone(v: Any) -> str:
    return "-" if v is None else str(v)


# (header, key, formatter) — the leaderboard's columns after the rank
COLUMNS: list[tuple[str, str, Callable[[Any], str]]] = (
    [("trial", "trial_id", str), ("backbone", "backbone", _short_backbone)]
    + [(t, t, _fmt_value) for t in TECHNIQUES]
    + [("micro-F1", "micro_f1", _fmt_metric), ("AUPRC", "auprc", _fmt_metric),
       ("accuracy", "accuracy", _fmt_metric), ("best step", "best_step", _fmt_int),
       ("status", "status", lambda v: "-" if v is None else str(v)), ("time", "wall_s", _fmt_time),
       ("ckpt", "checkpoint", _fmt_checkpoint)]
)


def rank(rows: Sequence[dict[str, Any]], metric: str = "micro_f1") -> list[dict[str, Any]]:
    """Sort by ``metric`` (best first); rows without a finite score go last, by trial id."""
    scored = [r for r in rows if _num(r.get(metric)) is not None]
    unscored = [r for r in rows if _num(r.get(metric)) is None]
    lower_better = metric == "val_loss"
    scored.sort(key=lambda r: (_num(r[metric]) * (1 if lower_better else -1), str(r.get("trial_id"))))
    unscored.sort(key=lambda r: str(r.get("trial_id")))
    return scored + unscored


def columns(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str, Callable[[Any], str]]]:
    """COLUMNS, plus every other config field whose value differs between the rows (a sweep's
    own axes such as lr or seed), placed after the technique columns."""
    from relex.config import TrialConfig

    shown = {key for _, key, _ in COLUMNS}
    extra = []
    for name in TrialConfig.field_names():
        if name in shown:
            continue
        values = {repr(r.get(name)) for r in rows if name in r}
        if len(values) > 1:
            extra.append((name, name, _fmt_value))
    at = 2 + len(TECHNIQUES)
    return COLUMNS[:at] + extra + COLUMNS[at:]


def cells(rows: Sequence[dict[str, Any]], cols=COLUMNS) -> list[list[str]]:
    """Ranked rows as display strings: rank then the columns."""
    out = []
    for i, r in enumerate(rows, 1):
        ranked = _num(r.get("micro_f1")) is not None
        out.append([str(i) if ranked else "-"] + [fmt(r.get(key)) for _, key, fmt in cols])
    return out


def headers(cols=COLUMNS) -> list[str]:
    return ["rank"] + [h for h, _, _ in cols]


def rich_table(rows: Sequence[dict[str, Any]], *, title: str | None = None, top: int | None = None):
    from rich.table import Table

    ranked = rank(rows)
    shown = ranked[:top] if top else ranked
    cols = columns(rows)
    table = Table(title=title, header_style="bold", pad_edge=False)
    numeric = {"rank", "micro-F1", "AUPRC", "accuracy", "best step", "time", "fgm", "rdrop",
               "llrd", "hnm", "lr", "seed"}
    for h in headers(cols):
        table.add_column(h, justify="right" if h in numeric else "left", no_wrap=True)
    styles = {"ERROR": "red", "STOPPED_EARLY": "dim", "RUNNING": "cyan"}
    for i, (row, r) in enumerate(zip(cells(shown, cols), shown)):
        style = "bold green" if i == 0 and _num(r.get("micro_f1")) is not None else styles.get(r.get("status"))
        table.add_row(*row, style=style)
    return table


def plain_text(rows: Sequence[dict[str, Any]], *, top: int | None = None) -> str:
    ranked = rank(rows)
    shown = ranked[:top] if top else ranked
    cols = columns(rows)
    body = [headers(cols)] + cells(shown, cols)
    widths = [max(len(r[i]) for r in body) for i in range(len(body[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in body) + "\n"


def markdown(rows: Sequence[dict[str, Any]], *, top: int | None = None) -> str:
    ranked = rank(rows)
    shown = ranked[:top] if top else ranked

    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    cols = columns(rows)
    lines = ["| " + " | ".join(headers(cols)) + " |", "|" + "|".join("---" for _ in headers(cols)) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in cells(shown, cols)]
    return "\n".join(lines) + "\n"


def csv_text(rows: Sequence[dict[str, Any]], *, top: int | None = None) -> str:
    """CSV with raw values (full precision) under the leaderboard's column keys."""
    ranked = rank(rows)
    shown = ranked[:top] if top else ranked
    keys = [key for _, key, _ in columns(rows)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["rank"] + keys)
    for i, r in enumerate(shown, 1):
        ranked_row = _num(r.get("micro_f1")) is not None
        vals = []
        for k in keys:
            v = r.get(k)
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            vals.append("" if v is None else v)
        w.writerow([i if ranked_row else ""] + vals)
    return buf.getvalue()


# ------------------------------------------------------------------------------ loading
def latest_sweep(root: Path = DEFAULT_ROOT) -> Path:
    """The most recently updated sweep directory under ``root``."""
    found = [p.parent for p in root.glob("*/trials.parquet")] if root.is_dir() else []
    if not found:
        raise RelexError(f"{root}: no sweep results found (run `relex sweep JOB.py` first)")
    return max(found, key=lambda p: (p / "trials.parquet").stat().st_mtime)


def load_rows(sweep_dir: str | Path) -> list[dict[str, Any]]:
    from relex.sweep.results import TRIALS_FILE, read_rows

    d = Path(sweep_dir)
    if not d.is_dir():
        raise RelexError(f"{d}: no such sweep directory")
    f = d / TRIALS_FILE
    if not f.exists():
        raise RelexError(f"{d}: no {TRIALS_FILE} (not a sweep directory, or no trial has finished yet)")
    try:
        rows = read_rows(f)
    except Exception as e:  # a damaged file is the user's to fix
        raise RelexError(f"{f}: cannot read ({type(e).__name__}: {e})") from None
    if not rows:
        raise RelexError(f"{f}: the sweep has no trials yet")
    return rows


# ------------------------------------------------------------------------------ command
def add_leaderboard_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep_dir", nargs="?", metavar="SWEEP_DIR",
                   help="a sweep's directory (default: the most recent under artifacts/)")
    p.add_argument("--top", type=int, default=None, metavar="N", help="show the best N trials")
    p.add_argument("--format", choices=("table", "markdown", "csv"), default="table",
                   help="output format (default: table; plain text off a terminal)")


def leaderboard(args: argparse.Namespace) -> int:
    if args.top is not None and args.top < 1:
        raise RelexError(f"--top {args.top}: must be at least 1")
    sweep_dir = Path(args.sweep_dir) if args.sweep_dir else latest_sweep()
    rows = load_rows(sweep_dir)
    out = sys.stdout
    if args.format == "markdown":
        out.write(markdown(rows, top=args.top))
    elif args.format == "csv":
        out.write(csv_text(rows, top=args.top))
    elif out.isatty():
        from rich.console import Console

        n = len(rows)
        from relex.sweep.results import FINISHED

        done = sum(r.get("status") in FINISHED for r in rows)
        Console().print(rich_table(rows, top=args.top,
                                   title=f"{sweep_dir.name}: {done}/{n} trials finished"))
    else:
        out.write(plain_text(rows, top=args.top))
    return 0

"""Leaderboards of a sweep: the live one while it runs and ``relex leaderboard`` afterwards.

Rows come from ``trials.parquet`` (see :mod:`relex.sweep.results`) and are ranked by micro-F1
(finished trials with a score first, best first; trials without a score — errors, trials that
never evaluated — last). A fold sweep is ranked by configuration: the cross-validated mean,
shown with its standard deviation; a staged sweep's rows say which base configuration they
grew from (``from``). ``--format table`` draws a rich table on a terminal and plain aligned
text otherwise; ``markdown`` and ``csv`` are for reports and spreadsheets. Mean AP (tie-free,
see :mod:`relex.metrics`) stands beside KLUE's AUPRC.

``--by-config`` groups the seeds of each configuration into one row
(:func:`relex.analysis.configs.by_config`): mean ± sd and a 95% interval over seeds, n, ranked by
the mean, and whether the configuration is within noise of the top one.
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
from relex.metrics import COLUMN_METRICS, EVAL_METRICS, PRIMARY, REGISTRY
from relex.sweep.layout import SweepDir, latest_sweep
from relex.sweep.results import ERROR, FINISHED, RUNNING, SCORED, STOPPED_EARLY
from relex.sweep.space import format_float


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
        return "-" if f is None else format_float(f)
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
    + [(REGISTRY[m].title, m, REGISTRY[m].format) for m in COLUMN_METRICS]
    + [("best step", "best_step", _fmt_int),
       ("status", "status", lambda v: "-" if v is None else str(v)), ("time", "wall_s", _fmt_time),
       ("ckpt", "checkpoint", _fmt_checkpoint)]
)


NUMERIC_HEADERS = {"rank", *(m.title for m in REGISTRY.values()), "best step", "time", "fgm",
                   "rdrop", "llrd", "hnm", "lr", "seed", "n", "± sd", "95% CI"}


def rank(rows: Sequence[dict[str, Any]], metric: str = PRIMARY) -> list[dict[str, Any]]:
    """Sort by ``metric`` (best first); rows without a finite score go last, by trial id."""
    scored = [r for r in rows if _num(r.get(metric)) is not None]
    unscored = [r for r in rows if _num(r.get(metric)) is None]
    spec = REGISTRY[metric]
    scored.sort(key=lambda r: (spec.sort_key(_num(r[metric])), str(r.get("trial_id"))))
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
    cols = COLUMNS[:at] + extra + COLUMNS[at:]
    if any(r.get("lineage") for r in rows):  # a staged sweep: the base configuration each grew from
        cols = cols[:1] + [("from", "lineage", _fmt_value)] + cols[1:]
    if any("folds" in r for r in rows):  # a fold sweep: cross-validated mean ± sd per configuration
        at = next(i for i, c in enumerate(cols) if c[1] == "micro_f1") + 1
        cols = cols[:at] + [("± sd", "micro_f1_sd", _fmt_metric), ("folds", "folds", str)] + cols[at:]
    return cols


def by_configuration(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A fold sweep's rows, one per configuration: the metrics' mean over its finished folds,
    micro-F1's standard deviation (``micro_f1_sd``), ``folds`` finished/total, the summed time.
    Rows of other sweeps are returned as they are."""
    import statistics

    if not any(r.get("fold") is not None for r in rows):
        return list(rows)
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(str(r.get("config_id") or r.get("trial_id")), []).append(r)
    out = []
    for cid, rs in groups.items():
        done = [r for r in rs if r.get("status") in SCORED]
        row = {**rs[0], "trial_id": cid, "folds": f"{len(done)}/{len(rs)}",
               "wall_s": sum(_num(r.get("wall_s")) or 0.0 for r in rs)}
        statuses = {r.get("status") for r in rs}
        row["status"] = next((s for s in (ERROR, RUNNING) if s in statuses), rs[0].get("status"))
        for key in EVAL_METRICS:
            values = [_num(r.get(key)) for r in done if _num(r.get(key)) is not None]
            row[key] = statistics.fmean(values) if values else None
            if key == PRIMARY:
                row["micro_f1_sd"] = statistics.stdev(values) if len(values) > 1 else None
        row["best_step"] = None
        out.append(row)
    return out


def cells(rows: Sequence[dict[str, Any]], cols=COLUMNS) -> list[list[str]]:
    """Ranked rows as display strings: rank then the columns."""
    out = []
    for i, r in enumerate(rows, 1):
        ranked = _num(r.get("micro_f1")) is not None
        out.append([str(i) if ranked else "-"] + [fmt(r.get(key)) for _, key, fmt in cols])
    return out


def headers(cols=COLUMNS) -> list[str]:
    return ["rank"] + [h for h, _, _ in cols]


def _varying(cols, rows: Sequence[dict[str, Any]]):
    """(columns of ``cols`` whose config value differs between ``rows``, plus every
    non-config column; [(header, value)] of the config columns every row shares)."""
    from relex.config import TrialConfig

    config = set(TrialConfig.field_names())
    keep, same = [], []
    for col in cols:
        header, key, fmt = col
        values = {fmt(r.get(key)) for r in rows}
        if key in config and len(values) == 1 and len(rows) > 1:
            same.append((header, values.pop()))
        else:
            keep.append(col)
    return keep, same


def rich_table(rows: Sequence[dict[str, Any]], *, title: str | None = None, top: int | None = None):
    from rich.table import Table

    ranked = rank(rows)
    shown = ranked[:top] if top else ranked
    cols, same = _varying(columns(rows), rows)
    # a terminal has room for what tells the trials apart: settings every trial shares go to
    # the caption (markdown and CSV keep every column)
    caption = "all trials: " + ", ".join(f"{k}={v}" for k, v in same) if same else None
    table = Table(title=title, caption=caption, header_style="bold", pad_edge=False)
    for h in headers(cols):
        table.add_column(h, justify="right" if h in NUMERIC_HEADERS else "left", no_wrap=True)
    styles = {ERROR: "red", STOPPED_EARLY: "dim", RUNNING: "cyan"}
    for i, (row, r) in enumerate(zip(cells(shown, cols), shown)):
        style = "bold green" if i == 0 and _num(r.get("micro_f1")) is not None else styles.get(r.get("status"))
        table.add_row(*row, style=style)
    return table


def _plain(head: list[str], body: list[list[str]]) -> str:
    table = [head] + body
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table) + "\n"


def _markdown(head: list[str], body: list[list[str]]) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def plain_text(rows: Sequence[dict[str, Any]], *, top: int | None = None) -> str:
    ranked = rank(rows)
    shown = ranked[:top] if top else ranked
    cols = columns(rows)
    return _plain(headers(cols), cells(shown, cols))


def markdown(rows: Sequence[dict[str, Any]], *, top: int | None = None) -> str:
    ranked = rank(rows)
    shown = ranked[:top] if top else ranked
    cols = columns(rows)
    return _markdown(headers(cols), cells(shown, cols))


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


# ----------------------------------------------------------------------------- by config
CONFIG_HEADERS = ["n", "micro-F1", "± sd", "95% CI", "AUPRC", "mean AP", "trials", "vs. top"]
VERDICT_STYLES = {"top": "bold green", "within noise": "yellow", "below": "dim"}


def config_columns(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str, Callable[[Any], str]]]:
    """The leaderboard's configuration columns, seed left out (it is what gets grouped); a staged
    sweep's ``from`` (lineage) kept."""
    from relex.config import TrialConfig

    fields = set(TrialConfig.field_names()) - {"seed"} | {"lineage"}
    return [c for c in columns(rows) if c[1] in fields]


def _group_value(g, key: str) -> Any:
    """A configuration's value of a column: a config field, or the base configuration(s) it grew from."""
    if key == "lineage":
        return ", ".join(g.lineage) or None
    return g.config.get(key)


def config_groups(rows: Sequence[dict[str, Any]], top: int | None = None):
    from relex.analysis.configs import by_config

    groups = by_config(rows)
    return groups[:top] if top else groups


def config_cells(rows: Sequence[dict[str, Any]], groups) -> tuple[list[str], list[list[str]]]:
    """Headers and display rows of ``--by-config``."""
    cols = config_columns(rows)
    body = []
    for i, g in enumerate(groups, 1):
        ci = g.ci()
        body.append([str(i) if g.n else "-"] + [fmt(_group_value(g, key)) for _, key, fmt in cols]
                    + [str(g.n), _fmt_metric(g.mean()), _fmt_metric(g.sd()),
                       "-" if ci is None else f"{ci[0]:.2f} to {ci[1]:.2f}",
                       _fmt_metric(g.mean("auprc")), _fmt_metric(g.mean("mean_ap")),
                       g.status_text(), g.verdict or "-"])
    return ["rank"] + [h for h, _, _ in cols] + CONFIG_HEADERS, body


def config_csv(rows: Sequence[dict[str, Any]], groups) -> str:
    """``--by-config --format csv``: raw values, full precision."""
    keys = [key for _, key, _ in config_columns(rows)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["rank", *keys, "n", "micro_f1_mean", "micro_f1_sd", "micro_f1_ci_low",
                "micro_f1_ci_high", "auprc_mean", "mean_ap_mean", "seeds", "trial_ids", "verdict"])
    for i, g in enumerate(groups, 1):
        ci = g.ci() or ("", "")
        w.writerow([i if g.n else "", *("" if _group_value(g, k) is None else _group_value(g, k) for k in keys),
                    g.n, *("" if v is None else v for v in (g.mean(), g.sd())), *ci,
                    *("" if v is None else v for v in (g.mean("auprc"), g.mean("mean_ap"))),
                    " ".join(map(str, g.seeds)), " ".join(g.trial_ids), g.verdict])
    return buf.getvalue()


def config_rich_table(rows: Sequence[dict[str, Any]], groups, *, title: str | None = None):
    from rich.table import Table

    head, body = config_cells(rows, groups)
    table = Table(title=title, header_style="bold", pad_edge=False)
    for h in head:
        table.add_column(h, justify="right" if h in NUMERIC_HEADERS else "left", no_wrap=True)
    for cells_, g in zip(body, groups):
        table.add_row(*cells_, style=VERDICT_STYLES.get(g.verdict))
    return table


def _write_by_config(rows, args, sweep_dir: Path, out) -> None:
    groups = config_groups(rows, args.top)
    if args.format == "csv":
        out.write(config_csv(rows, groups))
        return
    if args.format == "markdown":
        out.write(_markdown(*config_cells(rows, groups)))
    elif out.isatty():
        from rich.console import Console

        Console().print(config_rich_table(rows, groups, title=f"{sweep_dir.name}: configurations"))
    else:
        out.write(_plain(*config_cells(rows, groups)))
    out.write(("\n" if args.format == "markdown" else "") + "95% CI: t-interval of the mean over seeds; within noise: Welch's 95% interval of "
              "the difference from the top configuration contains 0.\n")


# ------------------------------------------------------------------------------ loading
def load_rows(sweep_dir: str | Path) -> list[dict[str, Any]]:
    sweep = SweepDir(sweep_dir).require_results()
    rows = sweep.trial_rows()
    if not rows:
        raise RelexError(f"{sweep.trials_file}: the sweep has no trials yet")
    return rows


# ------------------------------------------------------------------------------ command
def add_leaderboard_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep_dir", nargs="?", metavar="SWEEP_DIR",
                   help="a sweep's directory (default: the most recent under artifacts/)")
    p.add_argument("--top", type=int, default=None, metavar="N", help="show the best N trials")
    p.add_argument("--format", choices=("table", "markdown", "csv"), default="table",
                   help="output format (default: table; plain text off a terminal)")
    p.add_argument("--by-config", action="store_true",
                   help="one row per configuration over its seeds: mean ± sd, 95%% CI, n, ranked "
                        "by the mean, flagged when within noise of the top one")


def leaderboard(args: argparse.Namespace) -> int:
    if args.top is not None and args.top < 1:
        raise RelexError(f"--top {args.top}: must be at least 1")
    sweep_dir = Path(args.sweep_dir) if args.sweep_dir else latest_sweep()
    rows = by_configuration(load_rows(sweep_dir))
    out = sys.stdout
    if args.by_config:
        _write_by_config(rows, args, sweep_dir, out)
    elif args.format == "markdown":
        out.write(markdown(rows, top=args.top))
    elif args.format == "csv":
        out.write(csv_text(rows, top=args.top))
    elif out.isatty():
        from rich.console import Console

        n = len(rows)
        done = sum(r.get("status") in FINISHED for r in rows)
        Console().print(rich_table(rows, top=args.top,
                                   title=f"{sweep_dir.name}: {done}/{n} trials finished"))
    else:
        out.write(plain_text(rows, top=args.top))
    if args.format != "csv":
        from relex.sweep.budget import usage_line

        footer = usage_line(sweep_dir)
        if footer:
            out.write(footer + "\n")
    return 0


def sweep(args: argparse.Namespace) -> int:
    """``relex sweep`` drawn as a live leaderboard: the sweep layer runs it and gets the tables
    from here (it imports nothing above itself)."""
    from relex.sweep.commands import sweep as run_sweep
    from relex.sweep.results import Tables

    return run_sweep(args, tables=Tables(rich=rich_table, plain=plain_text))

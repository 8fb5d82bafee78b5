"""A sweep's leaderboard as tables: the live one while it runs and ``relex leaderboard`` afterwards.

Rows come from ``trials.parquet`` and are ranked by the primary metric (micro-F1; finished trials
with a score first, best first; trials without a score — errors, trials that never evaluated —
last). A fold sweep is ranked by configuration: the cross-validated mean, shown with its
standard deviation; a staged sweep's rows say which base configuration they grew from
(``from``). The columns: the trial, its backbone, every technique (``metadata["column"]`` in
relex.config), every other config field whose value differs between the rows, the registry's
column metrics (relex.metrics), best step, status, time and whether the best checkpoint is
still on disk.

The tables are :class:`relex.analysis.document.Table` s, rendered like the report's (rich on a
terminal, plain aligned text elsewhere, markdown); CSV carries the raw values under the column
keys. ``by-config`` groups the seeds of each configuration into one row
(:func:`relex.analysis.configs.by_config`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path
from typing import Any, Callable, Sequence

from relex.analysis.configs import by_config
from relex.analysis.document import Table, render_markdown_table, render_plain_table
from relex.analysis.document import rich_table as render_rich_table
from relex.analysis.formats import finite, fmt_int, fmt_metric, fmt_text, fmt_time, fmt_value
from relex.config import TrialConfig
from relex.metrics import COLUMN_METRICS, PRIMARY, REGISTRY
from relex.sweep.results import ERROR, FINISHED, PENDING, RUNNING, STOPPED_EARLY

Column = tuple[str, str, Callable[[Any], str]]  # (header, key, formatter)

TECHNIQUES = tuple(f.name for f in dataclasses.fields(TrialConfig) if f.metadata.get("column"))
_NUMERIC_FIELDS = {f.name for f in dataclasses.fields(TrialConfig) if f.type in ("int", "float", int, float)}
_NUMERIC_KEYS = {"best_step", "wall_s", f"{PRIMARY}_sd", *REGISTRY}
# a row's look on a terminal (document styles): the leader, and what its status says
STATUS_STYLES = {ERROR: "bad", STOPPED_EARLY: "muted", RUNNING: "running"}
VERDICT_STYLES = {"top": "best", "within noise": "warn", "below": "muted"}
BY_CONFIG_NOTE = ("95% CI: t-interval of the mean over seeds; within noise: Welch's 95% interval of "
                  "the difference from the top configuration contains 0.")


def checkpoint_state(row: dict[str, Any]) -> str:
    """What became of the trial's best checkpoint: ``yes`` (on disk), ``dropped (LIMIT)`` (the
    sweep deleted it: keep_checkpoints or checkpoint_budget), else ``-``."""
    v = row.get("checkpoint")
    if v and Path(str(v), "model.safetensors").is_file():
        return "yes"
    reason = row.get("checkpoint_dropped")
    return f"dropped ({reason.split(':')[0]})" if reason else "-"


def _cell(row: dict[str, Any], key: str) -> Any:
    """A row's value of a column: the field, or for ``ckpt`` what became of the checkpoint."""
    return checkpoint_state(row) if key == "ckpt" else row.get(key)


COLUMNS: list[Column] = (
    [("trial", "trial_id", str), ("backbone", "backbone", fmt_text)]
    + [(t, t, fmt_value) for t in TECHNIQUES]
    + [(REGISTRY[m].title, m, REGISTRY[m].format) for m in COLUMN_METRICS]
    + [("best step", "best_step", fmt_int), ("status", "status", fmt_text), ("time", "wall_s", fmt_time),
       ("ckpt", "ckpt", str)]
)


def rank(rows: Sequence[dict[str, Any]], metric: str = PRIMARY) -> list[dict[str, Any]]:
    """Sort by ``metric`` (best first); rows without a finite score go last, by trial id."""
    spec = REGISTRY[metric]
    scored = [r for r in rows if finite(r.get(metric)) is not None]
    unscored = [r for r in rows if finite(r.get(metric)) is None]
    scored.sort(key=lambda r: (spec.sort_key(finite(r[metric])), str(r.get("trial_id"))))
    unscored.sort(key=lambda r: str(r.get("trial_id")))
    return scored + unscored


def columns(rows: Sequence[dict[str, Any]]) -> list[Column]:
    """COLUMNS, plus every other config field whose value differs between the rows (a sweep's
    own axes such as lr or seed), placed after the technique columns."""
    shown = {key for _, key, _ in COLUMNS}
    extra = [(name, name, fmt_value) for name in TrialConfig.field_names()
             if name not in shown and len({repr(r.get(name)) for r in rows if name in r}) > 1]
    at = 2 + len(TECHNIQUES)
    cols = COLUMNS[:at] + extra + COLUMNS[at:]
    if any(r.get("lineage") for r in rows):  # a staged sweep: the base configuration each grew from
        cols = cols[:1] + [("from", "lineage", fmt_value)] + cols[1:]
    if any("folds" in r for r in rows):  # a fold sweep: cross-validated mean ± sd per configuration
        at = next(i for i, c in enumerate(cols) if c[1] == PRIMARY) + 1
        cols = cols[:at] + [("± sd", f"{PRIMARY}_sd", fmt_metric), ("folds", "folds", str)] + cols[at:]
    return cols


def _right(cols: Sequence[Column], first: int = 1) -> set[int]:
    """Positions of the numeric columns (after ``first`` leading ones, the rank's)."""
    return {0} | {i + first for i, (_, key, _) in enumerate(cols) if key in _NUMERIC_KEYS | _NUMERIC_FIELDS}


def _varying(cols: Sequence[Column], rows: Sequence[dict[str, Any]]):
    """(columns of ``cols`` whose config value differs between ``rows``, plus every
    non-config column; [(header, value)] of the config columns every row shares)."""
    config = set(TrialConfig.field_names())
    keep, same = [], []
    for col in cols:
        header, key, fmt = col
        values = {fmt(_cell(r, key)) for r in rows}
        if key in config and len(values) == 1 and len(rows) > 1:
            same.append((header, values.pop()))
        else:
            keep.append(col)
    return keep, same


def _shown(rows: Sequence[dict[str, Any]], top: int | None) -> list[dict[str, Any]]:
    ranked = rank(rows)
    return ranked[:top] if top else ranked


def _body(places: Sequence[tuple[int, dict[str, Any]]], cols: Sequence[Column], styled: bool) -> list[list]:
    """Table rows of (rank, row) pairs; a row without a score shows no rank."""
    body = []
    for i, r in places:
        ranked = finite(r.get(PRIMARY)) is not None
        style = "best" if styled and i == 1 and ranked else (STATUS_STYLES.get(r.get("status")) if styled else None)
        cells = [str(i) if ranked else "-"] + [fmt(_cell(r, key)) for _, key, fmt in cols]
        body.append([(c, style) if style else c for c in cells])
    return body


def trial_table(rows: Sequence[dict[str, Any]], *, top: int | None = None, cols: Sequence[Column] | None = None,
                styled: bool = False) -> Table:
    """The ranked trials as a table; ``styled``: the leader and each status in the terminal's
    colours."""
    cols = list(columns(rows) if cols is None else cols)
    body = _body(list(enumerate(_shown(rows, top), 1)), cols, styled)
    return Table(["rank"] + [h for h, _, _ in cols], body, right=_right(cols))


def rich_table(rows: Sequence[dict[str, Any]], *, title: str | None = None, top: int | None = None):
    """The terminal's leaderboard: what tells the trials apart as columns, settings every trial
    shares in the caption (markdown and CSV keep every column)."""
    cols, same = _varying(columns(rows), rows)
    table = trial_table(rows, top=top, cols=cols, styled=True)
    table.caption = title
    table.note = "all trials: " + ", ".join(f"{k}={v}" for k, v in same) if same else None
    table.compact = True
    return render_rich_table(table)


def status_counts(rows: Sequence[dict[str, Any]], total: int) -> str:
    """``412/1000 trials finished (380 terminated, 30 stopped early, 2 error) · 8 running ·
    580 waiting``: waiting counts the trials with no row yet and those reopened to run again."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.get("status")] = counts.get(r.get("status"), 0) + 1
    done = sum(counts.get(s, 0) for s in FINISHED)
    ended = ", ".join(f"{counts[s]} {s.lower().replace('_', ' ')}" for s in FINISHED if counts.get(s))
    others = sorted((s, n) for s, n in counts.items() if s not in (*FINISHED, RUNNING, PENDING) and s)
    waiting = max(total - len(rows), 0) + counts.get(PENDING, 0)
    parts = [f"{done}/{total} trials finished" + (f" ({ended})" if ended else ""),
             f"{counts.get(RUNNING, 0)} running", f"{waiting} waiting",
             *(f"{n} {s.lower().replace('_', ' ')}" for s, n in others)]
    return " · ".join(parts)


def live_table(rows: Sequence[dict[str, Any]], *, name: str, total: int, top: int = 20,
               running: int = 10):
    """A running sweep's leaderboard, as cheap at 1,000 trials as at 10: the counts by status in
    the title, the best ``top`` trials, then up to ``running`` running trials ranked below them
    (by their best so far), each with its rank among all trials. Its columns are those that tell
    the shown rows apart."""
    places = list(enumerate(rank(rows), 1))
    below = [(i, r) for i, r in places[top:] if r.get("status") == RUNNING]
    shown = places[:top] + below[:running]
    shown_rows = [r for _, r in shown]
    cols, same = _varying(columns(shown_rows), shown_rows)
    table = Table(["rank"] + [h for h, _, _ in cols], _body(shown, cols, styled=True), right=_right(cols))
    table.caption = f"{name}: {status_counts(rows, total)}"
    notes = []
    if len(places) > len(shown):
        notes.append(f"best {min(top, len(places))} and {len(below[:running])} of the running shown; "
                     f"{len(places) - len(shown)} more (relex leaderboard lists all)")
    if same:
        notes.append("all shown: " + ", ".join(f"{k}={v}" for k, v in same))
    table.note = "; ".join(notes) or None
    table.compact = True
    return render_rich_table(table)


def plain_text(rows: Sequence[dict[str, Any]], *, top: int | None = None) -> str:
    return render_plain_table(trial_table(rows, top=top))


def markdown(rows: Sequence[dict[str, Any]], *, top: int | None = None) -> str:
    return render_markdown_table(trial_table(rows, top=top))


def _raw(v: Any) -> Any:
    """A CSV cell: the value at full precision, empty for a missing or non-finite one."""
    if v is None or (isinstance(v, float) and finite(v) is None):
        return ""
    return v


def csv_text(rows: Sequence[dict[str, Any]], *, top: int | None = None) -> str:
    """CSV with raw values (full precision) under the leaderboard's column keys."""
    # the checkpoint's raw fields rather than the ckpt summary: its path, why it was dropped
    keys = [k for _, key, _ in columns(rows)
            for k in (("checkpoint", "checkpoint_dropped") if key == "ckpt" else (key,))]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["rank"] + keys)
    for i, r in enumerate(_shown(rows, top), 1):
        w.writerow([i if finite(r.get(PRIMARY)) is not None else ""] + [_raw(r.get(k)) for k in keys])
    return buf.getvalue()


# ----------------------------------------------------------------------------- by config
CONFIG_HEADERS = ["n", REGISTRY[PRIMARY].title, "± sd", "95% CI", REGISTRY["auprc"].title,
                  REGISTRY["mean_ap"].title, "trials", "vs. top"]


def config_columns(rows: Sequence[dict[str, Any]]) -> list[Column]:
    """The leaderboard's configuration columns, seed left out (it is what gets grouped); a staged
    sweep's ``from`` (lineage) kept."""
    fields = set(TrialConfig.field_names()) - {"seed"} | {"lineage"}
    return [c for c in columns(rows) if c[1] in fields]


def _group_value(g, key: str) -> Any:
    """A configuration's value of a column: a config field, or the base configuration(s) it grew from."""
    if key == "lineage":
        return ", ".join(g.lineage) or None
    return g.config.get(key)


def config_groups(rows: Sequence[dict[str, Any]], top: int | None = None):
    groups = by_config(rows)
    return groups[:top] if top else groups


def config_table(rows: Sequence[dict[str, Any]], groups, *, styled: bool = False) -> Table:
    """``--by-config``: one row per configuration, its mean ± sd and interval over seeds."""
    cols = config_columns(rows)
    body = []
    for i, g in enumerate(groups, 1):
        ci = g.ci()
        cells = ([str(i) if g.n else "-"] + [fmt(_group_value(g, key)) for _, key, fmt in cols]
                 + [str(g.n), fmt_metric(g.mean()), fmt_metric(g.sd()),
                    "-" if ci is None else f"{ci[0]:.2f} to {ci[1]:.2f}",
                    fmt_metric(g.mean("auprc")), fmt_metric(g.mean("mean_ap")),
                    g.status_text(), g.verdict or "-"])
        style = VERDICT_STYLES.get(g.verdict) if styled else None
        body.append([(c, style) if style else c for c in cells])
    right = _right(cols) | {len(cols) + 1 + j for j in range(6)}  # n to mean AP
    return Table(["rank"] + [h for h, _, _ in cols] + CONFIG_HEADERS, body, right=right)


def config_csv(rows: Sequence[dict[str, Any]], groups) -> str:
    """``--by-config --format csv``: raw values, full precision."""
    keys = [key for _, key, _ in config_columns(rows)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["rank", *keys, "n", "micro_f1_mean", "micro_f1_sd", "micro_f1_ci_low",
                "micro_f1_ci_high", "auprc_mean", "mean_ap_mean", "seeds", "trial_ids", "verdict"])
    for i, g in enumerate(groups, 1):
        ci = g.ci() or ("", "")
        w.writerow([i if g.n else "", *(_raw(_group_value(g, k)) for k in keys),
                    g.n, _raw(g.mean()), _raw(g.sd()), *ci, _raw(g.mean("auprc")), _raw(g.mean("mean_ap")),
                    " ".join(map(str, g.seeds)), " ".join(g.trial_ids), g.verdict])
    return buf.getvalue()

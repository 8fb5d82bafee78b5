"""The report's figures, drawn with matplotlib (the optional ``report`` extra) as PNG bytes.

Figures are built with matplotlib's object API (no pyplot state, no GUI backend). Text in the
figures falls back to a Korean font when one is installed (labels and entity types of Korean
data sets), so Hangul never turns into empty boxes where the machine can draw it.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np

from relex.errors import RelexError
from relex.sweep.results import ERROR, STOPPED_EARLY

DPI = 110
GOOD, BAD, NEUTRAL, ACCENT = "#1e7d45", "#b3261e", "#8a93a6", "#3558c8"
KOREAN_FONTS = ("Noto Sans CJK KR", "NanumGothic", "Nanum Gothic", "Malgun Gothic",
                "Apple SD Gothic Neo", "UnDotum")


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise RelexError("plots need matplotlib: pip install 'relex[report]'") from None


def _figure(width: float, height: float):
    from matplotlib import font_manager, rcParams
    from matplotlib.figure import Figure

    installed = {f.name for f in font_manager.fontManager.ttflist}
    rcParams["font.family"] = ["DejaVu Sans"] + [f for f in KOREAN_FONTS if f in installed]
    rcParams["axes.spines.top"] = rcParams["axes.spines.right"] = False
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue()


def _verdict_color(est: float, low: float | None, high: float | None) -> str:
    if low is None or low <= 0.0 <= high:
        return NEUTRAL
    return GOOD if est > 0 else BAD


def effects(rows: Sequence[tuple[str, dict[str, tuple[float, float | None, float | None]]]],
            metric_titles: dict[str, str]) -> bytes:
    """Forest plot: one line per (axis value) and a panel per metric; grey when the 95% interval
    includes 0. ``rows``: (label, {metric: (estimate, low, high)})."""
    metrics = list(metric_titles)
    fig = _figure(4.2 * len(metrics) + 1.5, 0.5 * len(rows) + 1.3)
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    y = np.arange(len(rows))[::-1]
    for ax, m in zip(axes, metrics):
        for yi, (_, stats) in zip(y, rows):
            if m not in stats:
                continue
            est, low, high = stats[m]
            color = _verdict_color(est, low, high)
            if low is not None:
                ax.plot([low, high], [yi, yi], color=color, lw=2.2, solid_capstyle="round")
            ax.plot([est], [yi], "o", color=color, ms=7)
        ax.axvline(0, color="#444", lw=0.8, ls="--")
        ax.set_title(metric_titles[m], fontsize=11)
        ax.set_xlabel("difference from the reference (points)")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, [label for label, _ in rows])
    return png(fig)


def config_means(labels: Sequence[str], means: Sequence[float],
                 intervals: Sequence[tuple[float, float] | None], colors: Sequence[str]) -> bytes:
    """Mean micro-F1 per configuration with its 95% interval over seeds."""
    fig = _figure(8.5, 0.42 * len(labels) + 1.2)
    ax = fig.subplots()
    y = np.arange(len(labels))[::-1]
    for yi, m, ci, c in zip(y, means, intervals, colors):
        if ci is not None:
            ax.plot(ci, [yi, yi], color=c, lw=2.2, alpha=0.8)
        ax.plot([m], [yi], "o", color=c, ms=7)
    ax.set_yticks(y, labels)
    ax.set_xlabel("micro-F1 (mean over seeds, 95% interval)")
    ax.grid(axis="x", alpha=0.3)
    return png(fig)


def learning_curves(curves: Sequence[tuple[str, np.ndarray, np.ndarray, bool]],
                    milestones: Sequence[int], metric_title: str = "micro-F1") -> bytes:
    """``curves``: (label, evaluation index, metric, stopped early). Rungs as dotted lines."""
    fig = _figure(9.0, 4.2)
    ax = fig.subplots()
    colors = [ACCENT, "#d2691e", "#2a9d8f", "#8e44ad", "#c0392b", "#7f8c8d", "#b8860b", "#16a085"]
    for k, (label, x, yv, stopped) in enumerate(curves):
        ax.plot(x, yv, marker="o", ms=3, lw=1.8, color=colors[k % len(colors)],
                ls="--" if stopped else "-", label=label + (" (stopped by ASHA)" if stopped else ""))
    for r in milestones:
        ax.axvline(r, color="#999", lw=1, ls=":")
        ax.annotate(f"rung {r}", (r, 1.0), xycoords=("data", "axes fraction"), fontsize=8,
                    color="#666", ha="left", va="top", xytext=(3, -2), textcoords="offset points")
    ax.set_xlabel("evaluation")
    ax.set_ylabel(metric_title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right", frameon=False)
    return png(fig)


def confusion(cm: np.ndarray, labels: Sequence[str]) -> bytes:
    """Row-normalised confusion matrix (share of each gold class), counts written in."""
    n = len(labels)
    side = min(max(5.0, 0.36 * n + 2.5), 14.0)
    fig = _figure(side + 1.2, side)
    ax = fig.subplots()
    totals = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, totals, out=np.zeros_like(cm, dtype=float), where=totals > 0)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    if n <= 32:
        for i, j in zip(*np.nonzero(cm)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 0.5 else "#1d2330")
    fig.colorbar(im, ax=ax, shrink=0.7, label="share of the gold class")
    return png(fig)


def per_class_f1(names: Sequence[str], f1: Sequence[float], support: Sequence[int]) -> bytes:
    """Horizontal bars of F1 per class, support written beside each bar."""
    fig = _figure(8.0, 0.3 * len(names) + 1.2)
    ax = fig.subplots()
    y = np.arange(len(names))[::-1]
    ax.barh(y, f1, color=ACCENT, alpha=0.85)
    for yi, v, s in zip(y, f1, support):
        ax.text(v + 1, yi, f"n={s}", va="center", fontsize=7, color="#555")
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlim(0, 112)
    ax.set_xlabel("F1")
    ax.grid(axis="x", alpha=0.3)
    return png(fig)


def cost(statuses: Sequence[str], seconds: Sequence[float], saved: float) -> bytes:
    """Trial-seconds per status, and ASHA's estimated saving beside them."""
    fig = _figure(7.0, 2.8)
    ax = fig.subplots()
    names = list(statuses) + (["saved by ASHA (est.)"] if saved > 0 else [])
    vals = list(seconds) + ([saved] if saved > 0 else [])
    colors = [{ERROR: BAD, STOPPED_EARLY: NEUTRAL}.get(s, ACCENT) for s in statuses] + \
        ([GOOD] if saved > 0 else [])
    y = np.arange(len(names))[::-1]
    ax.barh(y, vals, color=colors)
    ax.set_yticks(y, names)
    ax.set_xlabel("trial-seconds")
    ax.grid(axis="x", alpha=0.3)
    return png(fig)


def bars(names: Sequence[str], values: Sequence[float], xlabel: str, *, color: str = ACCENT) -> bytes:
    fig = _figure(8.0, 0.3 * len(names) + 1.2)
    ax = fig.subplots()
    y = np.arange(len(names))[::-1]
    ax.barh(y, values, color=color, alpha=0.85)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    return png(fig)


def heatmap(matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str], title: str) -> bytes:
    """Counts as a heatmap (log colour scale), counts written in."""
    from matplotlib.colors import LogNorm

    fig = _figure(min(0.45 * len(cols) + 3.5, 16.0), min(0.3 * len(rows) + 2.0, 16.0))
    ax = fig.subplots()
    shown = np.where(matrix > 0, matrix, np.nan)
    norm = LogNorm(vmin=1, vmax=max(2, int(np.nanmax(shown)) if np.any(matrix > 0) else 2))
    im = ax.imshow(shown, cmap="Blues", aspect="auto", norm=norm)
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    if matrix.size <= 600:
        for i, j in zip(*np.nonzero(matrix)):
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=6.5,
                    color="white" if norm(matrix[i, j]) > 0.6 else "#1d2330")
    ax.set_title(title, fontsize=11)
    fig.colorbar(im, ax=ax, shrink=0.7, label="rows")
    return png(fig)


def boxes(groups: Sequence[str], values: Sequence[np.ndarray], xlabel: str) -> bytes:
    """One horizontal box per group (outliers hidden; the whisker is the 5–95% range)."""
    fig = _figure(8.0, 0.3 * len(groups) + 1.2)
    ax = fig.subplots()
    ax.boxplot(list(values)[::-1], orientation="horizontal", whis=(5, 95), showfliers=False,
               widths=0.6, patch_artist=True, boxprops=dict(facecolor="#dbe7ff", edgecolor=ACCENT),
               medianprops=dict(color=BAD))
    ax.set_yticks(range(1, len(groups) + 1), list(groups)[::-1], fontsize=8)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    return png(fig)


def score_against_value(x: np.ndarray, y: np.ndarray, stopped: np.ndarray, axis: str,
                        metric_title: str, *, log: bool) -> bytes:
    """One point per scored trial; hollow where ASHA stopped the trial."""
    fig = _figure(5.6, 3.6)
    ax = fig.subplots()
    ran = ~stopped
    ax.scatter(x[ran], y[ran], s=28, color=ACCENT, label="ran to the end")
    if stopped.any():
        ax.scatter(x[stopped], y[stopped], s=28, facecolors="none", edgecolors=ACCENT,
                   label="stopped early by ASHA")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(axis + (" (log scale)" if log else ""))
    ax.set_ylabel(metric_title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right", frameon=False)
    return png(fig)


def best_so_far(seconds: np.ndarray, best: np.ndarray, scores: np.ndarray, metric_title: str) -> bytes:
    """The best score so far as a step line over cumulative trial-seconds, each trial a dot."""
    fig = _figure(7.0, 3.6)
    ax = fig.subplots()
    ax.scatter(seconds, scores, s=14, color=NEUTRAL, label="trial")
    ax.step(seconds, best, where="post", color=GOOD, lw=2, label="best so far")
    ax.set_xlabel("trial-seconds spent")
    ax.set_ylabel(metric_title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right", frameon=False)
    return png(fig)

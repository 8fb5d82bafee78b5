"""How a value of a sweep's results prints in a table cell, for the leaderboard and the report
alike: "-" for anything missing or not finite, never "nan"."""

from __future__ import annotations

import math
from typing import Any

from relex.sweep.space import format_float


def finite(v: Any) -> float | None:
    """``v`` as a finite float, else None."""
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def fmt_metric(v: Any) -> str:
    """A score on the 0–100 scale, two decimals."""
    f = finite(v)
    return "-" if f is None else f"{f:.2f}"


def fmt_time(v: Any) -> str:
    """Seconds as 42s, 3m05s or 2h10m."""
    f = finite(v)
    if f is None:
        return "-"
    f = int(round(f))
    if f < 60:
        return f"{f}s"
    if f < 3600:
        return f"{f // 60}m{f % 60:02d}s"
    return f"{f // 3600}h{f % 3600 // 60:02d}m"


def fmt_value(v: Any) -> str:
    """A config value: on/off for a switch, the shortest float, the text otherwise."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        f = finite(v)
        return "-" if f is None else format_float(f)
    return str(v)


def fmt_int(v: Any) -> str:
    f = finite(v)
    return "-" if f is None else str(int(f))


def fmt_text(v: Any) -> str:
    return "-" if v is None else str(v)

"""Which best checkpoints a sweep keeps on disk as its trials end.

Two limits, either or both (``Sweep(keep_checkpoints=K, checkpoint_budget="50GB")``):

* ``keep_checkpoints``: the best K ended trials by the ASHA metric keep theirs;
* ``checkpoint_budget``: the best-ranked ended trials keep theirs while the sweep's checkpoints
  fit in the budget; the first that no longer fits, and every one ranked below it, goes.

Only trials that will never run again are ranked (TERMINATED, STOPPED_EARLY). A running,
paused or failed trial keeps its checkpoint whatever the limits: its resumable state refers to
it, and ``--resume`` (``--retry-errors`` for a failed one) continues from there. Those
checkpoints count against the budget first. In a fold sweep the unit is a configuration: its
folds are one ensemble, kept or dropped together, ranked by their mean once every fold ended.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from relex.errors import RelexError
from relex.sweep.results import STOPPED_EARLY, TERMINATED

# trials that will never run again: only their best checkpoints are retention's to delete
ENDED = (TERMINATED, STOPPED_EARLY)
DEFAULT_KEEP = 5  # keep_checkpoints when neither limit is set
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B)?\s*$", re.IGNORECASE)
_FACTORS = {"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
            "KIB": 2 ** 10, "MIB": 2 ** 20, "GIB": 2 ** 30, "TIB": 2 ** 40}


def parse_size(value: Any, where: str) -> int | None:
    """Bytes from ``"50GB"``, ``"500MB"``, ``"1.5TB"``, ``"20GiB"`` or a number of bytes."""
    if value is None:
        return None
    hint = 'use e.g. "50GB", "500MB", "1.5TB" or a number of bytes'
    if isinstance(value, bool):
        raise RelexError(f"{where}: checkpoint_budget={value!r} is invalid: {hint}")
    if isinstance(value, (int, float)):
        size = float(value)
    else:
        m = _SIZE.match(str(value))
        if not m:
            raise RelexError(f"{where}: checkpoint_budget={value!r} is invalid: {hint}")
        size = float(m.group(1)) * _FACTORS[(m.group(2) or "").upper()]
    if not math.isfinite(size) or size <= 0:
        raise RelexError(f"{where}: checkpoint_budget={value!r} is invalid: must be positive")
    return int(size)


def format_size(n: float) -> str:
    for unit, factor in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= factor:
            return f"{n / factor:.3g} {unit}"
    return f"{int(n)} B"


def resolve_keep(keep: int | None, budget: int | None) -> int:
    """keep_checkpoints as given; unset, 5 without a budget and no count limit with one."""
    if keep is not None:
        return keep
    return 0 if budget else DEFAULT_KEEP


def dir_size(path: str | Path) -> int:
    p = Path(path)
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else 0


def _on_disk(row: dict[str, Any]) -> bool:
    # a checkpoint the sweep dropped is not looked for again: at every trial end of a long
    # sweep that would be one file-system call per earlier trial (slow on shared storage)
    return (bool(row.get("checkpoint")) and not row.get("checkpoint_dropped")
            and Path(row["checkpoint"]).is_dir())


def checkpoints_to_drop(rows: list[dict[str, Any]], keep: int, metric: str, mode: str,
                        folds: int = 0, budget: int | None = None) -> dict[str, str]:
    """Trial id -> why its best checkpoint goes (the limit, a colon, the detail), for every
    checkpoint on disk that the limits leave out (see the module notes). ``keep`` 0 sets no count limit; ``budget`` None no size
    limit; unscored trials rank last."""
    if keep <= 0 and not budget:
        return {}
    units: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        unit = str(r["config_id"]) if folds and r.get("fold") is not None else str(r["trial_id"])
        units.setdefault(unit, []).append(r)

    def ended(rs: list[dict[str, Any]]) -> bool:
        return all(r.get("status") in ENDED for r in rs) and (
            not folds or rs[0].get("fold") is None or len(rs) == folds)

    def score(rs: list[dict[str, Any]]) -> float:
        values = [r.get(metric) for r in rs]
        if not all(isinstance(v, (int, float)) and v == v for v in values):
            return float("inf")
        mean = sum(values) / len(values)
        return -mean if mode == "max" else mean

    ranked = sorted(((u, rs) for u, rs in units.items() if ended(rs)), key=lambda ur: (score(ur[1]), ur[0]))
    # checkpoints that must stay (running, paused, failed trials) fill the budget first
    used = sum(dir_size(r["checkpoint"]) for u, rs in units.items() if not ended(rs)
               for r in rs if _on_disk(r))
    drop: dict[str, str] = {}
    full = False
    for i, (_, rs) in enumerate(ranked):
        reason = None
        if keep > 0 and i >= keep:
            reason = f"keep_checkpoints={keep}: ranked {i + 1} by {metric}"
        elif budget:
            size = sum(dir_size(r["checkpoint"]) for r in rs if _on_disk(r))
            full = full or used + size > budget
            if full:
                reason = (f"checkpoint_budget {format_size(budget)}: full, {format_size(used)} "
                          "held by better-ranked, running or failed trials")
            else:
                used += size
        if reason:
            drop.update({r["trial_id"]: reason for r in rs if _on_disk(r)})
    return drop

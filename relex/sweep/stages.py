"""Staged sweeps: a sweep that starts from the best configurations of an earlier one.

``Sweep(base="artifacts/stage1", top=4, space=...)`` ranks the base sweep's configurations
(trials that differ only in their seed are one configuration, scored by their mean; a fold
sweep's configuration by its cross-validated mean), takes the best ``top`` and runs the new
grid around each: every base configuration with the new space's fixed values and each
combination of its axes on top. Each trial records where it grew from in ``lineage``
(``<base sweep name>/<base configuration id>``), a column of ``trials.parquet`` and of the
leaderboard. When the new sweep names no ``train`` file it takes the base sweep's data settings
(train, valid, labels, negative label, split seed, folds, skip_bad_rows), so the stages compare
on the same rows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from relex.errors import RelexError
from relex.io_utils import read_json
from relex.sweep.layout import JOB_FILE, TRIALS_FILE, SweepDir
from relex.sweep.results import SCORED



def read_base(base_dir: Path, where: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(job.json, trials.parquet rows) of a finished base sweep, or one clear error."""
    base = SweepDir(base_dir)
    if not base.job_file.is_file() or not base.has_results():
        raise RelexError(f"{where}: base={str(base_dir)!r} is not a sweep with results "
                         f"(no {JOB_FILE} or {TRIALS_FILE}); run that sweep first")
    return read_json(base.job_file), base.trial_rows()


def _group_key(spec: dict[str, Any]) -> str:
    if spec.get("config_id") and spec.get("fold") is not None:
        return str(spec["config_id"])
    cfg = {k: v for k, v in spec["config"].items() if k != "seed"}
    return json.dumps(cfg, sort_keys=True)


def top_configurations(base_dir: Path, top: int, metric: str, mode: str,
                       where: str) -> list[tuple[str, dict[str, Any]]]:
    """The base sweep's ``top`` best configurations, best first: (lineage, config without its
    seed)."""
    resolved, rows = read_base(base_dir, where)
    by_trial = {r["trial_id"]: r for r in rows}
    groups: dict[str, dict[str, Any]] = {}
    for spec in resolved.get("trials", []):
        key = _group_key(spec)
        g = groups.setdefault(key, {"id": spec.get("config_id") or spec["trial_id"],
                                    "config": spec["config"], "scores": []})
        row = by_trial.get(spec["trial_id"], {})
        value = row.get(metric)
        if row.get("status") in SCORED and value is not None and math.isfinite(float(value)):
            g["scores"].append(float(value))
    scored = [g for g in groups.values() if g["scores"]]
    if not scored:
        raise RelexError(f"{where}: base sweep {base_dir} has no finished trial with a {metric}")
    sign = -1.0 if mode == "max" else 1.0
    scored.sort(key=lambda g: (sign * sum(g["scores"]) / len(g["scores"]), str(g["id"])))
    name = resolved.get("name") or base_dir.name
    return [(f"{name}/{g['id']}", {k: v for k, v in g["config"].items() if k != "seed"})
            for g in scored[:top]]

"""The Parquet schemas of a sweep's results (columns described in :mod:`relex.sweep.results`)
and the typed table of rows: one place that both the writer and the readers of
:mod:`relex.sweep.layout` use."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable

import pyarrow as pa

from relex.config import TrialConfig
from relex.metrics import EVAL_METRICS

# every metric a trial reports after each evaluation (mean_ap: tie-free, see relex.metrics)
METRIC_COLUMNS = EVAL_METRICS

_PA_TYPES = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}


def _config_fields() -> list[tuple[str, pa.DataType]]:
    out = []
    for f in dataclasses.fields(TrialConfig):
        typ = f.type if isinstance(f.type, str) else f.type.__name__
        out.append((f.name, _PA_TYPES[typ]))
    return out


TRIALS_SCHEMA = pa.schema(
    [("trial_id", pa.string()), ("status", pa.string()), ("config_id", pa.string()),
     ("fold", pa.int64()), ("lineage", pa.string())]
    + _config_fields()
    + [(m, pa.float64()) for m in METRIC_COLUMNS]
    + [("best_step", pa.int64()), ("best_epoch", pa.float64()), ("epochs_run", pa.float64()),
       ("evaluations", pa.int64()), ("attempts", pa.int64()), ("wall_s", pa.float64()),
       ("node", pa.string()), ("node_id", pa.string()), ("gpu", pa.string()),
       ("error", pa.string()), ("checkpoint", pa.string()), ("checkpoint_dropped", pa.string()),
       ("valid_probs", pa.string()),
       ("started_at", pa.float64()), ("ended_at", pa.float64())]
)

HISTORY_SCHEMA = pa.schema(
    [("trial_id", pa.string()), ("iteration", pa.int64()), ("step", pa.int64()),
     ("epoch", pa.float64())]
    + [(m, pa.float64()) for m in METRIC_COLUMNS]
    + [("lr", pa.float64()), ("train_loss", pa.float64()), ("is_best", pa.bool_())]
)


def _clean(value: Any, typ: pa.DataType) -> Any:
    if value is None:
        return None
    if pa.types.is_floating(typ):
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    if pa.types.is_integer(typ):
        try:
            f = float(value)
        except (TypeError, ValueError):
            return None
        return int(f) if math.isfinite(f) else None
    if pa.types.is_boolean(typ):
        return bool(value)
    return str(value)


def to_table(rows: Iterable[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    rows = list(rows)
    cols = {f.name: [_clean(r.get(f.name), f.type) for r in rows] for f in schema}
    return pa.table(cols, schema=schema)

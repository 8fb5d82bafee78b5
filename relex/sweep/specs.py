"""What a Ray Tune trial's config carries of its relex trial.

A grid sweep's trials carry their trial id only (``{"trial": "t007"}``) and find their spec
(:meth:`relex.sweep.job.Trial.spec`) in the job's table of specs: Tune deep-copies a grid's
values once per trial, so a grid of whole specs costs O(n²) at start-up and on resume (6.7 s
for 300 trials here, against 0.1 s for their ids). A searched trial's spec is made by the
searcher and travels whole (``{"trial": spec}``), as do the trials of sweeps written before.
"""

from __future__ import annotations

from typing import Any, Mapping


def tune_trial_id(config: Mapping[str, Any]) -> str:
    """The relex trial id in a Tune trial's config."""
    carried = config["trial"]
    return str(carried if isinstance(carried, str) else carried["trial_id"])


def tune_trial_spec(config: Mapping[str, Any], specs: Mapping[str, dict]) -> dict[str, Any]:
    """The relex trial spec of a Tune trial's config: looked up in ``specs`` for a grid trial."""
    carried = config["trial"]
    return specs[carried] if isinstance(carried, str) else carried


def tune_trial_id_or_none(config: Any) -> str | None:
    """:func:`tune_trial_id`, or None for a config that carries no relex trial."""
    if not isinstance(config, Mapping):
        return None
    carried = config.get("trial")
    if isinstance(carried, str):
        return carried
    if isinstance(carried, Mapping) and "trial_id" in carried:
        return str(carried["trial_id"])
    return None

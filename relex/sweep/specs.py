"""What a Ray Tune trial's config carries of its relex trial.

A grid sweep's trials carry their trial id only (``{"trial": "t007"}``) and find their spec
(:meth:`relex.sweep.job.Trial.spec`) in the job's table of specs. The ids reach Tune through
:func:`grid_search_alg`, one per trial Tune makes: Tune's own ``grid_search`` deep-copies its
whole list of values once per trial (O(n²): 6.7 s for 300 whole specs here, 4.4 s for 3,000
ids). A searched trial's spec is made by the searcher and travels whole (``{"trial": spec}``),
as do the trials of sweeps written before.
"""

from __future__ import annotations

import functools
from collections import deque
from typing import Any, Iterable, Mapping


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


def grid_search_alg(trial_ids: Iterable[str]):
    """A Ray Tune search algorithm that hands out ``{"trial": id}`` for each id in order, then
    ends; constant time per trial. Tune wraps it in its concurrency limiter when the sweep caps
    the trials at once, and builds its trials as it schedules them rather than all up front."""
    return _trial_queue_class()(trial_ids)


@functools.cache
def _trial_queue_class():
    from ray.tune.search import Searcher

    class TrialQueue(Searcher):
        def __init__(self, trial_ids: Iterable[str]):
            super().__init__()
            self.pending = deque(trial_ids)

        def set_search_properties(self, metric, mode, config, **spec) -> bool:
            return True  # the ids are the space; Ray's param_space is empty

        def suggest(self, trial_id: str):
            return {"trial": self.pending.popleft()} if self.pending else self.FINISHED

        def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
            pass  # relex records how trials end; a resume queues the unfinished ones anew

        # a resume is a new Tune run (runner._tuner): nothing goes into Ray's experiment snapshot
        def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
            pass

        def restore_from_dir(self, checkpoint_dir: str) -> None:
            pass

    return TrialQueue

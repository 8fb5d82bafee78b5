"""TPE search: Optuna studies in the sweep directory, asked and told through a Ray Tune searcher.

``Sweep(search="tpe", num_samples=N)`` runs N configurations per grid point, each suggested by
Optuna's TPE sampler from what finished before it, while relex's ASHA stops weak trials. One
Optuna study per grid point lives in ``<sweep_dir>/study.journal`` (Optuna's append-only
journal file: every ask and tell is one line, written before the suggestion reaches Ray). The
journal, not a searcher pickle, is the search state:

* a suggestion is a study trial; its relex configuration id is derived from the study trial's
  number (``s007``, ``g1s007`` with several grid points) and each seed of the sweep runs it as
  one relex trial (``s007`` or ``s007-42``, ``s007-43``);
* the study is told the seed mean of the ASHA metric once every seed's trial has finished
  (the best value each reached, as recorded in ``trials.parquet``); a trial that ended in ERROR
  leaves its suggestion untold until ``--retry-errors`` re-runs it with the same parameters;
* ``--resume`` rebuilds the searcher from the journal and ``trials.parquet``: suggestions whose
  trials all finished are told (if the driver died between the two), unfinished trials of asked
  suggestions run again with their parameters (continuing from their latest resumable state),
  and new suggestions are asked only up to N. Nothing is lost or asked twice, whatever moment
  the driver was killed at.

Ray Tune's ``OptunaSearch`` maps one suggestion to one Ray trial and keeps that map in its
pickle; fanning a suggestion out over seeds and rebuilding it from the study needs the study
numbers as the identity, so this searcher asks Optuna itself and takes Ray's conversion of the
space (``OptunaSearch.convert_search_space``). ``ConcurrencyLimiter`` bounds how many trials
run at once, so TPE sees finished results before it suggests again.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from pathlib import Path
from typing import Any

from relex.errors import RelexError

STUDY_FILE = "study.journal"  # <sweep_dir>/study.journal: the studies of a TPE sweep
INSTALL_HINT = "pip install 'relex[search]'"
SCORED = ("TERMINATED", "STOPPED_EARLY")


def require_optuna(where: str) -> None:
    if importlib.util.find_spec("optuna") is None:
        raise RelexError(f"{where}: search='tpe' needs Optuna: {INSTALL_HINT}")


def config_id(point: int, number: int, points: int) -> str:
    """The relex id of suggestion ``number`` of grid point ``point``."""
    return f"{f'g{point}' if points > 1 else ''}s{number:03d}"


def seed_trial_ids(cid: str, seeds: list[int]) -> list[str]:
    return [cid] if len(seeds) == 1 else [f"{cid}-{s}" for s in seeds]


def open_studies(job, sweep_dir: Path | None) -> list:
    """One Optuna study per grid point, in the journal of ``sweep_dir`` (in memory without)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = (JournalStorage(JournalFileBackend(str(sweep_dir / STUDY_FILE)))
               if sweep_dir is not None else None)
    direction = "maximize" if job.asha["mode"] == "max" else "minimize"
    studies = []
    for g in range(len(job.points)):
        study = optuna.create_study(storage=storage, study_name=f"point-{g}", load_if_exists=True,
                                    direction=direction)
        study.sampler = optuna.samplers.TPESampler(seed=sampler_seed(job.search_seed, g, study))
        studies.append(study)
    return studies


def sampler_seed(search_seed: int, point: int, study) -> int:
    """The sampler's seed, from the search seed, the grid point and how many suggestions the
    study holds: a resumed study must not replay the random draws it started with."""
    import numpy as np

    asked = len(study.get_trials(deepcopy=False))
    return int(np.random.SeedSequence([search_seed, point, asked]).generate_state(1)[0])


def distributions(job) -> dict[str, Any]:
    """The sampled axes as Optuna distributions (Ray Tune's conversion)."""
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch.convert_search_space({k: job.space[k].tune_domain() for k in job.sampled})


def first_suggestions(job, n: int) -> list[dict[str, Any]]:
    """What the sweep's first grid point will try first (a fresh in-memory study, same seed)."""
    study = open_studies(job, None)[0]
    dists = distributions(job)
    return [{k: job.space[k].tidy(v) for k, v in study.ask(fixed_distributions=dists).params.items()}
            for _ in range(n)]


@functools.cache
def _searcher_class():
    from ray.tune.search import Searcher

    class StudySearcher(Searcher):
        """A Ray Tune searcher whose suggestions are relex trial specs (``{"trial": spec}``)."""

        def __init__(self, job, sweep_dir: Path, rows: dict[str, dict[str, Any]]):
            super().__init__(metric=f"best_{job.asha['metric']}", mode=job.asha["mode"])
            self.job = job
            self.studies = open_studies(job, sweep_dir)
            self.dists = distributions(job)
            self.queue: list[dict[str, Any]] = []  # specs to hand out before asking anew
            self.live: dict[str, str] = {}  # Ray trial id -> relex trial id
            self.results: dict[str, float | None] = {}  # relex trial id -> its score (None: failed)
            self.owner: dict[str, tuple[int, int]] = {}  # relex trial id -> (grid point, number)
            self._reconcile(rows)

        # ------------------------------------------------------------------ ids and specs
        def _specs(self, point: int, number: int, params: dict[str, Any]) -> list[dict[str, Any]]:
            from relex.config import TrialConfig

            cid = config_id(point, number, len(self.job.points))
            base = self.job.points[point]
            params = {k: self.job.space[k].tidy(v) for k, v in params.items()}
            out = []
            for tid, seed in zip(seed_trial_ids(cid, self.job.seeds), self.job.seeds):
                cfg = TrialConfig.from_dict({**base.values, **params, "seed": seed},
                                            where=f"suggestion {cid}")
                self.owner[tid] = (point, number)
                out.append({"trial_id": tid, "config": cfg.to_dict(), "config_id": cid})
            return out

        def _reconcile(self, rows: dict[str, dict[str, Any]]) -> None:
            """Resume: tell what finished untold, queue the unfinished trials of asked suggestions."""
            from optuna.trial import TrialState

            for point, study in enumerate(self.studies):
                for trial in study.get_trials(deepcopy=False):
                    specs = self._specs(point, trial.number, trial.params)
                    for spec in specs:
                        row = rows.get(spec["trial_id"], {})
                        if row.get("status") in SCORED:
                            self.results[spec["trial_id"]] = row.get(self.job.asha["metric"])
                        elif row.get("status") == "ERROR":
                            self.results[spec["trial_id"]] = None
                        else:
                            self.queue.append({**spec, "continue": True})
                    if trial.state == TrialState.RUNNING:
                        self._tell_if_done(point, trial.number)

        def _next_point(self) -> int | None:
            """The grid point with the fewest suggestions still short of num_samples."""
            counts = [len(s.get_trials(deepcopy=False)) for s in self.studies]
            open_points = [g for g, n in enumerate(counts) if n < self.job.num_samples]
            return min(open_points, key=lambda g: counts[g]) if open_points else None

        # ------------------------------------------------------------------ Searcher
        def set_search_properties(self, metric, mode, config, **spec) -> bool:
            return True  # the space is the job's; Ray's param_space is empty

        def suggest(self, trial_id: str):
            if not self.queue:
                point = self._next_point()
                if point is None:
                    return self.FINISHED
                trial = self.studies[point].ask(fixed_distributions=self.dists)
                self.queue.extend(self._specs(point, trial.number, trial.params))
            spec = self.queue.pop(0)
            self.live[trial_id] = spec["trial_id"]
            return {"trial": spec}

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
            tid = self.live.pop(trial_id, None)
            if tid is None:
                return
            value = None if error or not result else result.get(self.metric)
            self.results[tid] = value
            self._tell_if_done(*self.owner[tid])

        def _tell_if_done(self, point: int, number: int) -> None:
            """Tell the study the seed mean once every seed's trial has a score; a failed seed
            keeps the suggestion untold (--retry-errors re-runs it)."""
            cid = config_id(point, number, len(self.job.points))
            values = [self.results.get(t, "missing") for t in seed_trial_ids(cid, self.job.seeds)]
            if any(v == "missing" or v is None for v in values):
                return
            study = self.studies[point]
            from optuna.trial import TrialState

            if study.get_trials(deepcopy=False)[number].state != TrialState.RUNNING:
                return
            mean = sum(float(v) for v in values) / len(values)
            try:
                study.tell(number, mean)
            except ValueError as e:  # a NaN score: the suggestion counts as failed
                logging.getLogger(__name__).warning("suggestion %s: %s", cid, e)
                study.tell(number, state=TrialState.FAIL)

        # the journal is the state: nothing of the searcher goes into Ray's experiment snapshot
        def save(self, checkpoint_path: str) -> None:
            pass

        def restore(self, checkpoint_path: str) -> None:
            pass

        def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
            pass

        def restore_from_dir(self, checkpoint_dir: str) -> None:
            pass

        def __reduce__(self):
            return (_registered_searcher, ())

    return StudySearcher


_REGISTRY: dict[str, Any] = {}


def make_search_alg(job, sweep_dir: Path, rows: dict[str, dict[str, Any]], concurrency: int):
    """The TPE searcher of a sweep, limited to ``concurrency`` trials at once."""
    from ray.tune.search import ConcurrencyLimiter

    searcher = _searcher_class()(job, sweep_dir, rows)
    _REGISTRY["searcher"] = searcher
    return ConcurrencyLimiter(searcher, max_concurrent=max(1, int(concurrency)))


def _registered_searcher():
    """Tune pickles the search algorithm into its experiment state; the live one is used."""
    return _REGISTRY.get("searcher")

"""TPE search: Optuna studies in the sweep directory, asked and told through a Ray Tune searcher.

``Sweep(search="tpe", num_samples=N)`` runs N configurations per grid point, each suggested by
Optuna's TPE sampler from what finished before it, while relex's ASHA stops weak trials. One
Optuna study per grid point lives in the sweep directory's ``study.journal``
(:attr:`relex.sweep.layout.SweepDir.study_file`; Optuna's append-only journal format, written
through :class:`relex.sweep.journal.StudyJournal`: an ask with all its parameters is one append,
fsynced before the suggestion reaches Ray, and so is a tell). The journal, not a searcher
pickle, is the search state:

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

A staged sweep (``base=``) starts each new study with the base sweep's trials that fall in its
(narrowed) space as finished trials (``user_attrs["from"]``: the base trial ids), so TPE builds
on them and nothing is re-run; they do not count toward N.

Ray Tune's ``OptunaSearch`` maps one suggestion to one Ray trial and keeps that map in its
pickle; fanning a suggestion out over seeds and rebuilding it from the study needs the study
numbers as the identity, so this searcher asks Optuna itself and takes Ray's conversion of the
space (``OptunaSearch.convert_search_space``). ``ConcurrencyLimiter`` bounds how many trials
run at once, so TPE sees finished results before it suggests again.

The sampler is Optuna's TPE, multivariate (it models the axes jointly), with the constant liar
(a suggestion still running counts as a poor result, so suggestions made side by side spread
out) and ``max(3, min(10, N // 3))`` random draws before it models the results.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relex.errors import RelexError
from relex.sweep.layout import SweepDir
from relex.sweep.results import ERROR, SCORED

if TYPE_CHECKING:
    from relex.sweep.journal import StudyJournal

INSTALL_HINT = "pip install 'relex[search]'"


def require_optuna(where: str) -> None:
    if importlib.util.find_spec("optuna") is None:
        raise RelexError(f"{where}: search='tpe' needs Optuna: {INSTALL_HINT}")


def config_id(point: int, number: int, points: int) -> str:
    """The relex id of suggestion ``number`` of grid point ``point``."""
    return f"{f'g{point}' if points > 1 else ''}s{number:03d}"


def seed_trial_ids(cid: str, seeds: list[int]) -> list[str]:
    return [cid] if len(seeds) == 1 else [f"{cid}-{s}" for s in seeds]


def open_studies(job, sweep_dir: Path | None) -> tuple[list, StudyJournal | None]:
    """One Optuna study per grid point, in the journal of ``sweep_dir`` (in memory without), and
    the journal (None in memory). A staged sweep's new study starts with the base sweep's
    evaluated points; an ask that a kill cut short is completed (see relex.sweep.journal)."""
    import optuna
    from optuna.storages import JournalStorage

    from relex.sweep.journal import StudyJournal

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    journal = StudyJournal(SweepDir(sweep_dir).study_file) if sweep_dir is not None else None
    storage = JournalStorage(journal) if journal is not None else None
    step = journal.step if journal is not None else contextlib.nullcontext
    direction = "maximize" if job.asha["mode"] == "max" else "minimize"
    studies = []
    for g, point in enumerate(job.points):
        with step():
            study = optuna.create_study(storage=storage, study_name=f"point-{g}",
                                        load_if_exists=True, direction=direction)
        trials = study.get_trials(deepcopy=False)
        if job.base is not None and all("from" in t.user_attrs for t in trials):
            with step():  # nothing asked yet: (the rest of) the hand-over
                _hand_over(job, point, study, {t.user_attrs["from"] for t in trials})
        study.sampler = optuna.samplers.TPESampler(
            seed=sampler_seed(job.search_seed, g, study), n_startup_trials=startup_trials(job),
            multivariate=True, constant_liar=True)
        with step():
            _complete_cut_ask(study, distributions(point))
        studies.append(study)
    return studies, journal


def startup_trials(job) -> int:
    """Random draws before TPE models the results: Optuna's 10, fewer for a small budget (with
    12 samples, 10 random draws would leave TPE two suggestions)."""
    return max(3, min(10, job.num_samples // 3))


def sampler_seed(search_seed: int, point: int, study) -> int:
    """The sampler's seed, from the search seed, the grid point and how many suggestions the
    study holds: a resumed study must not replay the random draws it started with."""
    import numpy as np

    asked = len(study.get_trials(deepcopy=False))
    return int(np.random.SeedSequence([search_seed, point, asked]).generate_state(1)[0])


def distributions(point) -> dict[str, Any]:
    """A grid point's sampled axes as Optuna distributions (Ray Tune's conversion)."""
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch.convert_search_space({k: d.tune_domain() for k, d in point.space.items()})


def evaluated_points(job, point) -> list[tuple[dict[str, Any], float, str]]:
    """A staged sweep's base trials that fall in a grid point's space (the same other settings,
    every sampled value within its narrowed range): (parameters, seed-mean score, their trial
    ids). The study starts with them as finished trials, so nothing is re-run."""
    from relex.sweep.stages import read_base

    resolved, rows = read_base(job.base, str(job.path))
    name = resolved.get("name") or job.base.name
    metric = job.asha["metric"]
    others = {k: v for k, v in point.values.items() if k not in point.space}
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("status") not in SCORED or r.get(metric) is None:
            continue
        if any(r.get(k) != v for k, v in others.items()):
            continue
        params = {k: r.get(k) for k in point.space}
        if all(d.contains(params[k]) for k, d in point.space.items()):
            groups.setdefault(tuple(params.items()), []).append(r)
    return [(dict(key), sum(float(r[metric]) for r in rs) / len(rs),
             f"{name}/{'+'.join(r['trial_id'] for r in rs)}") for key, rs in groups.items()]


def _hand_over(job, point, study, present: set[str]) -> None:
    """Add the base sweep's evaluated points (those not ``present`` yet) to a new study of a
    staged sweep."""
    import optuna

    dists = distributions(point)
    study.add_trials([optuna.trial.create_trial(params=params, distributions=dists, value=value,
                                                user_attrs={"from": trials})
                      for params, value, trials in evaluated_points(job, point)
                      if trials not in present])


def _complete_cut_ask(study, dists: dict[str, Any]) -> None:
    """Draw the parameters an ask cut short by a kill left out (only the study's last trial can
    lack any). Its suggestion never reached Ray: the searcher hands it out as a new one."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import Trial, TrialState

    trials = study.get_trials(deepcopy=False)
    last = trials[-1] if trials else None
    if last is None or last.state != TrialState.RUNNING or dists.keys() <= last.params.keys():
        return
    trial = Trial(study, last._trial_id)
    for name, d in dists.items():
        if isinstance(d, CategoricalDistribution):
            trial.suggest_categorical(name, d.choices)
        elif isinstance(d, FloatDistribution):
            trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)
        else:
            trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)


def first_suggestions(job, n: int) -> list[dict[str, Any]]:
    """What the sweep's first grid point will try first (a fresh in-memory study, same seed)."""
    study = open_studies(job, None)[0][0]
    dists = distributions(job.points[0])
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
            self.studies, self.journal = open_studies(job, sweep_dir)
            self.dists = [distributions(p) for p in job.points]
            # the base sweep's trials a staged study starts with (numbers 0 .. given - 1)
            self.given = [sum("from" in t.user_attrs for t in s.get_trials(deepcopy=False))
                          for s in self.studies]
            self.queue: list[dict[str, Any]] = []  # specs to hand out before asking anew
            self.live: dict[str, str] = {}  # Ray trial id -> relex trial id
            self.results: dict[str, float | None] = {}  # relex trial id -> its score (None: failed)
            self.owner: dict[str, tuple[int, int]] = {}  # relex trial id -> (grid point, number)
            self._reconcile(rows)

        # ------------------------------------------------------------------ ids and specs
        def _specs(self, point: int, number: int, params: dict[str, Any]) -> list[dict[str, Any]]:
            from relex.config import TrialConfig

            cid = self._config_id(point, number)
            base = self.job.points[point]
            params = {k: self.job.space[k].tidy(v) for k, v in params.items()}
            out = []
            for tid, seed in zip(seed_trial_ids(cid, self.job.seeds), self.job.seeds):
                cfg = TrialConfig.from_dict({**base.values, **params, "seed": seed},
                                            where=f"suggestion {cid}")
                self.owner[tid] = (point, number)
                spec = {"trial_id": tid, "config": cfg.to_dict(), "config_id": cid}
                out.append({**spec, "lineage": base.lineage} if base.lineage else spec)
            return out

        def _config_id(self, point: int, number: int) -> str:
            return config_id(point, number - self.given[point], len(self.job.points))

        def _reconcile(self, rows: dict[str, dict[str, Any]]) -> None:
            """Resume: tell what finished untold, queue the unfinished trials of asked suggestions."""
            from optuna.trial import TrialState

            for point, study in enumerate(self.studies):
                for trial in study.get_trials(deepcopy=False)[self.given[point]:]:
                    specs = self._specs(point, trial.number, trial.params)
                    for spec in specs:
                        row = rows.get(spec["trial_id"], {})
                        if row.get("status") in SCORED:
                            self.results[spec["trial_id"]] = row.get(self.job.asha["metric"])
                        elif row.get("status") == ERROR:
                            self.results[spec["trial_id"]] = None
                        else:
                            self.queue.append(spec)  # run_trial continues it (continue_from)
                    if trial.state == TrialState.RUNNING:
                        self._tell_if_done(point, trial.number)

        def _next_point(self) -> int | None:
            """The grid point with the fewest suggestions still short of num_samples."""
            counts = [len(s.get_trials(deepcopy=False)) - given
                      for s, given in zip(self.studies, self.given)]
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
                with self.journal.step():  # the trial and its parameters: one append, one fsync
                    trial = self.studies[point].ask(fixed_distributions=self.dists[point])
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
            cid = self._config_id(point, number)
            values = [self.results.get(t, "missing") for t in seed_trial_ids(cid, self.job.seeds)]
            if any(v == "missing" or v is None for v in values):
                return
            study = self.studies[point]
            from optuna.trial import TrialState

            if study.get_trials(deepcopy=False)[number].state != TrialState.RUNNING:
                return
            mean = sum(float(v) for v in values) / len(values)
            with self.journal.step():
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

"""A sweep's trackers: Ray Tune's own logger callbacks, shown what a single run logs.

Ray's callbacks (``TBXLoggerCallback``, ``MLflowLoggerCallback``, ``WandbLoggerCallback``) do
the writing. Each sees a view of a trial (:class:`_TrialView`) whose config is the trial's
:class:`~relex.config.TrialConfig` fields (not relex's ``{"trial": {...}}`` wrapper), whose
results are the tracked metrics of :mod:`relex.tracking` at the trial's optimizer step, and
whose files go under the sweep directory (``tensorboard/<trial_id>``, ``wandb/<trial_id>``), so
a sweep's trackers hold exactly what ``relex train --logger`` holds for one run. TensorBoard tags
lose Ray's ``ray/tune/`` prefix for the same reason.

Tune pickles the callbacks into its experiment state; ``relex sweep --resume`` continues with
the trackers the sweep started with.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.air.integrations.wandb import WandbLoggerCallback, _WandbLoggingActor
from ray.tune.logger import TBXLoggerCallback
from tensorboardX import SummaryWriter  # a dependency of ray[tune]; Ray's TBX callback writes with it

from relex.sweep.layout import TRACKER_DIRS, SweepDir
from relex.sweep.specs import tune_trial_spec
from relex.tracking import mlflow_uri, tracked_metrics, wandb_project

TUNE_TAG_PREFIX = "ray/tune/"


class _TrialView:
    """A Tune trial as relex's trackers show it; everything else is the trial's own."""

    def __init__(self, trial, params: dict[str, Any], local_path: Path):
        self._trial = trial
        self.config = params
        self.evaluated_params = params
        self.local_path = str(local_path)

    def init_local_path(self) -> None:
        Path(self.local_path).mkdir(parents=True, exist_ok=True)

    def __getattr__(self, name: str):
        return getattr(self._trial, name)

    def __str__(self) -> str:
        return str(self._trial)


class _RelexView:
    """Mixin for a Ray ``LoggerCallback``: hands it :class:`_TrialView`\\ s and relex's metrics."""

    def _relex_init(self, sweep_dir: Path, subdir: str | None, specs: dict[str, dict] | None) -> None:
        self._sweep_dir = Path(sweep_dir)
        self._specs = specs or {}
        self._subdir = subdir
        self._views: dict[Any, _TrialView] = {}

    def _view(self, trial) -> _TrialView:
        if trial not in self._views:
            spec = tune_trial_spec(trial.config, self._specs)
            tid = str(spec["trial_id"])
            where = self._sweep_dir / self._subdir / tid if self._subdir else Path(trial.local_path)
            self._views[trial] = _TrialView(trial, dict(spec["config"]), where)
        return self._views[trial]

    @staticmethod
    def _result(result: dict[str, Any]) -> dict[str, Any]:
        # the optimizer step is every tracker's x axis, as in a single run: Tune's callbacks take
        # it from timesteps_total (TensorBoard, MLflow) and training_iteration (W&B)
        step = int(result.get("step", result.get("training_iteration", 0)))
        return {**tracked_metrics(result), "timesteps_total": step, "training_iteration": step}

    def log_trial_start(self, trial) -> None:
        super().log_trial_start(self._view(trial))

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        super().log_trial_result(iteration, self._view(trial), self._result(result))

    def log_trial_save(self, trial) -> None:
        super().log_trial_save(self._view(trial))

    def log_trial_end(self, trial, failed: bool = False) -> None:
        super().log_trial_end(self._view(trial), failed)


def _plain_tag(tag: str) -> str:
    return tag[len(TUNE_TAG_PREFIX):] if tag.startswith(TUNE_TAG_PREFIX) else tag


class PlainTagSummaryWriter(SummaryWriter):
    """tensorboardX's SummaryWriter (what Ray's callback uses) without Ray's tag prefix."""

    def add_scalar(self, tag, *args, **kwargs):
        return super().add_scalar(_plain_tag(tag), *args, **kwargs)


class TensorBoardCallback(_RelexView, TBXLoggerCallback):
    def __init__(self, sweep_dir: Path, specs: dict[str, dict] | None = None):
        super().__init__()
        self._summary_writer_cls = PlainTagSummaryWriter
        self._relex_init(sweep_dir, TRACKER_DIRS["tensorboard"], specs)

    def _try_log_hparams(self, trial, result: dict) -> None:
        super()._try_log_hparams(trial, {_plain_tag(k): v for k, v in result.items()})


class MLflowCallback(_RelexView, MLflowLoggerCallback):
    def __init__(self, sweep_dir: Path, experiment: str, specs: dict[str, dict] | None = None):
        super().__init__(tracking_uri=mlflow_uri(SweepDir(sweep_dir).tracker_dir("mlflow")), experiment_name=experiment)
        self._relex_init(sweep_dir, None, specs)


class _FlushedWandbActor(_WandbLoggingActor):
    """Ray's W&B logging actor, which Ray kills as soon as ``wandb.finish()`` returns. The run's
    last records (its exit record among them) are written by wandb's service process, which may
    not have closed the run's files by then on a loaded machine and dies with the actor: tear the
    service down first, which returns once they are closed."""

    def run(self):
        super().run()
        self._wandb.teardown()


class WandbCallback(_RelexView, WandbLoggerCallback):
    _logger_actor_cls = _FlushedWandbActor

    def __init__(self, sweep_dir: Path, group: str, specs: dict[str, dict] | None = None):
        # the logging actors may run where the driver's environment is not: pass the mode on
        mode = os.environ.get("WANDB_MODE")
        super().__init__(project=wandb_project(), group=group, **({"mode": mode} if mode else {}))
        self._relex_init(sweep_dir, TRACKER_DIRS["wandb"], specs)

    def log_trial_start(self, trial) -> None:
        Path(self._view(trial).local_path).mkdir(parents=True, exist_ok=True)  # the logging actor's cwd
        super().log_trial_start(trial)


def callbacks(names, sweep_dir: Path, sweep_name: str, specs: dict[str, dict] | None = None) -> list:
    """Ray Tune callbacks for the trackers ``names`` (validated by relex.tracking.check_loggers);
    ``specs``: the grid trials' specs by id (relex.sweep.specs)."""
    made = {"tensorboard": lambda: TensorBoardCallback(sweep_dir, specs),
            "mlflow": lambda: MLflowCallback(sweep_dir, sweep_name, specs),
            "wandb": lambda: WandbCallback(sweep_dir, sweep_name, specs)}
    return [made[n]() for n in names]

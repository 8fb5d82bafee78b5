"""Experiment trackers: TensorBoard, MLflow and Weights & Biases, each an optional extra.

``relex train --logger NAME`` (repeatable) logs every evaluation of one run through the
libraries' own APIs (:class:`RunLoggers`); a job's ``Sweep(loggers=[...])`` attaches Ray Tune's
logger callbacks (:mod:`relex.sweep.tracking`). Both log the same things under the same names:

* hyper-parameters: every :class:`~relex.config.TrialConfig` field;
* metrics, at the optimizer step of the evaluation: :data:`METRICS`.

Where it goes (a run's ``OUT`` / a sweep's directory ``SWEEP``):

* tensorboard: ``OUT/tensorboard/`` / ``SWEEP/tensorboard/<trial_id>/`` (event files; the
  hyper-parameters in TensorBoard's HParams tab);
* mlflow: ``$MLFLOW_TRACKING_URI`` if set, else a local file store in ``OUT/mlruns`` /
  ``SWEEP/mlruns``; experiment ``$MLFLOW_EXPERIMENT_NAME`` (default ``relex``) for a run, the
  sweep's name for a sweep (one MLflow run per trial);
* wandb: project ``$WANDB_PROJECT`` (default ``relex``), files under ``OUT/wandb/`` /
  ``SWEEP/wandb/<trial_id>/``; ``WANDB_MODE=offline`` keeps everything local (``wandb sync``
  uploads it later); a sweep's trials are grouped under its name.

A tracker asked for but not installed is one line naming the extra to install (exit code 2);
so is W&B online with no API key anywhere W&B looks (checked before anything starts, so a sweep
does not fail in its first trial, or wait at a login prompt, after its pre-flight).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from relex.errors import RelexError
from relex.io_utils import cache_root
from relex.metrics import EVAL_METRICS

LOGGERS = ("tensorboard", "mlflow", "wandb")
# the modules each tracker needs (torch's SummaryWriter needs tensorboard; Ray Tune's needs tensorboardX)
MODULES = {"tensorboard": ("tensorboard", "tensorboardX"), "mlflow": ("mlflow",), "wandb": ("wandb",)}
# what every tracker records at each evaluation, under these names
METRICS = (*EVAL_METRICS, "train_loss", "lr", "epoch")
# what ``relex pretrain`` records at each evaluation (held-out masked-LM loss and accuracy)
PRETRAIN_METRICS = ("mlm_loss", "mlm_accuracy", "train_loss", "lr", "tokens_per_s", "epoch")
DEFAULT_PROJECT = "relex"  # MLflow experiment / W&B project when the environment names none


def check_loggers(names: Any, *, where: str) -> tuple[str, ...]:
    """The requested trackers, validated and installed, in order without repeats."""
    if names is None:
        return ()
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise RelexError(f"{where}: loggers must be a list of names ({', '.join(LOGGERS)}), got {names!r}")
    out: list[str] = []
    for name in names:
        if name not in LOGGERS:
            close = difflib.get_close_matches(str(name), LOGGERS, n=1)
            raise RelexError(f"{where}: unknown logger {name!r}"
                             + (f" (did you mean '{close[0]}'?)" if close else f"; choose from {', '.join(LOGGERS)}"))
        missing = [m for m in MODULES[name] if importlib.util.find_spec(m) is None]
        if missing:
            raise RelexError(f"{where}: logger '{name}' needs {' and '.join(missing)}: "
                             f"pip install 'relex[{name}]'")
        if name == "wandb" and not wandb_can_log():
            raise RelexError(f"{where}: wandb has no API key here (WANDB_API_KEY, `wandb login`'s "
                             "netrc entry or its settings file): set one, or set WANDB_MODE=offline "
                             "to log locally and `wandb sync` later")
        if name not in out:
            out.append(name)
    return tuple(out)


def wandb_can_log() -> bool:
    """Whether W&B will log without asking for a key: offline or disabled, or a key where W&B
    reads one (the environment, the netrc entry of its host, its settings file)."""
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun", "disabled"):
        return True
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    import configparser
    import netrc
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    home = Path("~").expanduser()
    rc = Path(os.environ["NETRC"]).expanduser() if os.environ.get("NETRC") else next(
        (p for p in (home / ".netrc", home / "_netrc") if p.exists()), home / ".netrc")
    try:
        if rc.is_file() and netrc.netrc(str(rc)).authenticators(host or ""):
            return True
    except (netrc.NetrcParseError, OSError):
        pass  # W&B reads it no better; its own error will say so
    settings = configparser.ConfigParser()
    config_dir = os.environ.get("WANDB_CONFIG_DIR") or str(home / ".config" / "wandb")
    try:
        settings.read(Path(config_dir) / "settings")
    except configparser.Error:
        return False
    return bool(settings.get("default", "api_key", fallback=None))


def tracked_metrics(values: Mapping[str, Any], names: tuple[str, ...] = METRICS) -> dict[str, float]:
    """The ``names`` (default :data:`METRICS`) present in ``values`` as finite floats (NaN, e.g.
    the train loss of an evaluation with no step before it, is left out)."""
    out = {}
    for k in names:
        v = values.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[k] = float(v)
    return out


def mlflow_uri(default_dir: Path) -> str:
    """``$MLFLOW_TRACKING_URI``, else a file store in ``default_dir``.

    MLflow 3 refuses its file store unless ``MLFLOW_ALLOW_FILE_STORE`` is set (it recommends a
    database, which ``mlflow-skinny`` cannot open); relex's default is that local store, so it
    sets the variable when it picks the default.
    """
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return file_store_path(Path(os.path.abspath(default_dir))).as_uri()


def file_store_path(store: Path) -> Path:
    """Where MLflow is told its file store ``store`` is.

    MLflow's file store (3.x) takes a run whose path has a directory named ``artifacts`` anywhere
    above it for a file inside some run's artifact folder and refuses it ("Run ... not found"),
    so a store under relex's default ``artifacts/`` could hold no run. Such a store is reached
    through a link in relex's cache whose path has no such component; the runs stay in ``store``.
    """
    if "artifacts" not in store.parts:
        return store
    link = cache_root() / "mlflow-stores" / hashlib.sha256(str(store).encode()).hexdigest()[:16]
    store.mkdir(parents=True, exist_ok=True)
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        tmp = link.with_name(f"{link.name}.{os.getpid()}.tmp")
        tmp.symlink_to(store, target_is_directory=True)
        os.replace(tmp, link)  # two processes creating the same link: either one wins whole
    return link


def wandb_project() -> str:
    return os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# ----------------------------------------------------------------------------- one run
class _TensorBoard:
    def __init__(self, out_dir: Path, params: dict[str, Any], run_name: str, metrics: tuple[str, ...]):
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self.writer = SummaryWriter(log_dir=str(out_dir / "tensorboard"))
        # the HParams tab: this run's config, and which scalars are its metrics
        exp, start, self._end = hparams(params, {m: float("nan") for m in metrics})
        self.writer.file_writer.add_summary(exp)
        self.writer.file_writer.add_summary(start)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, global_step=step)
        self.writer.flush()

    def close(self, failed: bool) -> None:
        self.writer.file_writer.add_summary(self._end)
        self.writer.close()


class _MLflow:
    def __init__(self, out_dir: Path, params: dict[str, Any], run_name: str, metrics: tuple[str, ...]):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        from mlflow.exceptions import MlflowException

        uri = mlflow_uri(out_dir / "mlruns")
        self.client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_PROJECT
        try:
            exp = self.client.get_experiment_by_name(name)
            exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(name)
            self.run_id = self.client.create_run(exp_id, run_name=run_name).info.run_id
        except MlflowException as e:  # an unreachable server, a store it cannot open
            raise RelexError(f"--logger mlflow: {uri}: {_first_line(e)}") from None
        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def log(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def close(self, failed: bool) -> None:
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


class _Wandb:
    def __init__(self, out_dir: Path, params: dict[str, Any], run_name: str, metrics: tuple[str, ...]):
        import wandb

        try:
            self.run = wandb.init(project=wandb_project(), name=run_name, dir=str(out_dir),
                                  config=params, reinit="create_new")
        except wandb.errors.Error as e:  # e.g. no API key: a setting of the user's, not a bug
            raise RelexError(f"--logger wandb: {_first_line(e)} (or set WANDB_MODE=offline to "
                             "keep the run local)") from None

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(metrics, step=step)

    def close(self, failed: bool) -> None:
        self.run.finish(exit_code=1 if failed else 0)


_SINGLE = {"tensorboard": _TensorBoard, "mlflow": _MLflow, "wandb": _Wandb}


class RunLoggers:
    """The trackers of one training run: ``log(step, metrics)`` after each evaluation, then
    ``close(failed=...)``. Usable as a context manager (a failure closes them as FAILED)."""

    def __init__(self, names: Iterable[str], out_dir: str | os.PathLike, config, *, run_name: str,
                 metrics: tuple[str, ...] = METRICS):
        out = Path(out_dir)
        self.metrics = metrics  # the names logged (a pretraining run logs PRETRAIN_METRICS)
        out.mkdir(parents=True, exist_ok=True)
        params = config.to_dict()
        self.trackers = []
        try:
            for name in names:
                self.trackers.append(_SINGLE[name](out, params, run_name, metrics))
        except BaseException:
            self.close(failed=True)
            raise

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        values = tracked_metrics(metrics, self.metrics)
        for t in self.trackers:
            t.log(int(step), values)

    def close(self, *, failed: bool = False) -> None:
        trackers, self.trackers = self.trackers, []
        for t in trackers:
            t.close(failed)

    def __enter__(self) -> "RunLoggers":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)

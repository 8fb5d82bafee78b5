"""One run on several workers through Ray Train: ``TorchTrainer`` with torch DDP (NCCL on GPUs,
gloo on CPUs); each worker runs ``fit`` with its :class:`~relex.train.distributed.Distributed`.

Recovery: after each evaluation that wrote a resumable state, the leader reports a Ray Train
checkpoint naming that state (``pointer.json``: the state's path relative to ``base``; the state
itself stays where ``fit`` wrote it). When a worker (or its node) is lost, Ray Train restarts the
worker group — up to ``max_failures`` times — and every worker continues from the newest state
written since the launch began (:class:`StatesSince`), else from the one Ray Train registered.
Ray Train alone would lose the newest: a report its controller had not collected when the
worker died dies with it.

Ray Train keeps its own records (the pointers) under ``<storage>/<name>``; every launch gets a
new name, because Ray Train would otherwise pick up an earlier launch's pointers as its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from relex.errors import RelexError
from relex.io_utils import atomic_write_text

if TYPE_CHECKING:
    from relex.train.distributed import WorkerRun

POINTER_FILE = "pointer.json"


class RayTrainReport:
    """A run's two evaluation hooks on Ray Train workers.

    ``on_evaluate`` (the leader's fit hook) keeps what ``describe(event)`` returns: the metrics to
    report and the state directory to point to (or None). ``after_evaluation`` (every worker, as
    ``ray.train.report`` must be called by all of them) reports it: the leader with the metrics and
    a checkpoint naming the state, the others with nothing.
    """

    def __init__(self, base: str, describe: Callable[[Any], tuple[dict, Any]] | None = None):
        self.base = base
        self.describe = describe or plain_metrics
        self.pending: tuple[dict, Any] = ({}, None)

    def on_evaluate(self, ev) -> None:
        self.pending = self.describe(ev)

    def after_evaluation(self, ev) -> None:
        import ray.train

        metrics, state = self.pending if ev is not None else ({}, None)
        self.pending = ({}, None)
        with tempfile.TemporaryDirectory(prefix="relex-pointer-") as tmp:
            checkpoint = None
            if state is not None:
                checkpoint = ray.train.Checkpoint.from_directory(write_pointer(tmp, state, self.base))
            ray.train.report(metrics, checkpoint=checkpoint)  # copies the checkpoint to storage


def write_pointer(directory: str | os.PathLike, state: str | os.PathLike, base: str | os.PathLike) -> Path:
    """Make ``directory`` a checkpoint that names ``state`` (relative to ``base``: the directory
    may be resumed from another mount point)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(Path(state).resolve(), Path(base).resolve())
    atomic_write_text(directory / POINTER_FILE, json.dumps({"state": rel}))
    return directory


def plain_metrics(ev) -> tuple[dict, Any]:
    return {**ev.metrics, "step": ev.step, "epoch": ev.epoch}, ev.state


def start_ray(*, quiet: bool = False) -> tuple[bool, float]:
    """Join the Ray of RAY_ADDRESS, else start one on this machine; (whether this call started
    it, the cluster's GPUs)."""
    import ray

    owns = not ray.is_initialized()
    if owns:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": not quiet,
                                  "logging_level": "WARNING"}
        if not os.environ.get("RAY_ADDRESS"):
            kwargs["address"] = "local"
        try:
            init_ray(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise RelexError(f"cannot start or reach Ray: {str(e).splitlines()[0]}") from None
    return owns, float(ray.cluster_resources().get("GPU", 0) or 0)


def init_ray(**kwargs: Any) -> None:
    """``ray.init(**kwargs)``, once more when a Ray started here missed its registration: a node
    gets 30 s to register (fixed in Ray), which a busy machine can miss once."""
    import ray

    try:
        ray.init(**kwargs)
    except Exception as e:  # noqa: BLE001 - Ray raises a bare Exception for this one
        if "timed out during startup" not in str(e):
            raise
        ray.shutdown()
        try:
            ray.init(**kwargs)
        except Exception as again:  # noqa: BLE001
            raise RuntimeError(str(again)) from None


class StatesSince:
    """The resumable states under ``root`` (``root`` itself, or its ``step_*`` directories) that
    were written after this object was made — by this launch; picklable, so the driver makes it
    and the workers ask it."""

    def __init__(self, root: str | os.PathLike):
        self.root = str(root)
        self.before = self._stamps()

    def _stamps(self) -> dict[str, int]:
        root = Path(self.root)
        found = {}
        for d in (root, *root.glob("step_*")):
            with contextlib.suppress(OSError):
                found[str(d)] = (d / "state.json").stat().st_mtime_ns
        return found

    def newest(self) -> str | None:
        fresh = {d: t for d, t in self._stamps().items() if self.before.get(d) != t}
        return max(fresh, key=fresh.get) if fresh else None


def pointed_state(directory: str | os.PathLike, base: str | os.PathLike) -> Path:
    """The state a pointer checkpoint directory names."""
    rel = json.loads((Path(directory) / POINTER_FILE).read_text(encoding="utf-8"))["state"]
    return Path(base) / rel


def _worker_loop(config: dict[str, Any]) -> None:
    """Ray Train's per-worker function: continue from the newest registered state, if any."""
    import ray.train
    import ray.train.torch

    job: WorkerRun = config["job"]
    states: StatesSince | None = config["states"]
    resume = states.newest() if states is not None else None  # set when the group was restarted
    checkpoint = ray.train.get_checkpoint()
    if resume is None and checkpoint is not None:
        with checkpoint.as_directory() as d:
            resume = str(pointed_state(d, config["base"]))
    job.fit(ray.train.torch.get_device(), resume_from=resume)


def train_on_ray(job: WorkerRun, *, base: str, storage: str | os.PathLike, gpu_per_worker: float = 0,
                 cpu_per_worker: float = 1, max_failures: int = 2, callbacks: tuple = (),
                 states_root: str | os.PathLike | None = None) -> None:
    """Train ``job`` on ``job.cfg.workers`` Ray Train workers (Ray already initialised); ``base``:
    the directory pointer checkpoints are relative to; ``storage``: where Ray Train keeps its
    records for the launch (removed after a successful run); ``states_root``: where the run's
    resumable states land (the state directory, or a directory of ``step_*`` states)."""
    import ray.train
    from ray.train.torch import TorchTrainer

    workers = job.cfg.workers
    # the states there now are not this launch's: a restarted group continues from newer ones
    states = StatesSince(states_root) if states_root is not None else None
    per_worker = {"CPU": cpu_per_worker, **({"GPU": gpu_per_worker} if gpu_per_worker else {})}
    name = f"launch-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    trainer = TorchTrainer(
        _worker_loop, train_loop_config={"job": job, "base": str(base), "states": states},
        scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=gpu_per_worker > 0,
                                               resources_per_worker=per_worker),
        run_config=ray.train.RunConfig(
            name=name, storage_path=str(Path(storage).resolve()),
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            callbacks=list(callbacks)))
    try:
        trainer.fit()
    except ray.train.TrainingFailedError as e:
        raise RelexError(f"training on {workers} workers failed: {_first_error_line(e)}") from None
    shutil.rmtree(Path(storage) / name, ignore_errors=True)
    with contextlib.suppress(OSError):  # kept when another launch is still using it
        Path(storage).rmdir()


def _first_error_line(e: BaseException) -> str:
    """The worker's own error (``RelexError: ...``) rather than Ray's wrapping of it."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error:" in ln and not ln.startswith(("ray.", "Training failed")):
            return ln
    return lines[0] if lines else type(e).__name__

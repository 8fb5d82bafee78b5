"""A sweep trial on several workers (``Sweep(workers_per_trial=N)``): the Tune trial drives a Ray
Train run of N workers (relex.train.workers) and passes each evaluation on to Tune.

The trial's leader worker keeps each evaluation as a one-worker trial does
(:class:`relex.sweep.trial.EvaluationRecord`: probabilities, the state in its step directory)
and reports it to Ray Train with a checkpoint naming the state; a Ray Train callback hands the
report to this Tune trial through a queue, and the trial reports it to Tune with that same
checkpoint, so ASHA decides on it and ``relex sweep --resume`` continues from it as from a
one-worker trial's. When ASHA stops the trial, Tune ends the trial's actor, and the Ray Train
run it owns (controller, workers, placement group) ends with it.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable

from ray.train.v2.api.callback import UserCallback


class ForwardToTune(UserCallback):
    """Runs in Ray Train's controller: the leader's report (and checkpoint path) to the queue the
    Tune trial reads."""

    def __init__(self, queue) -> None:
        self.queue = queue

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        if metrics and metrics[0]:  # the leader reports the metrics; the other workers nothing
            self.queue.put((metrics[0], checkpoint.path if checkpoint is not None else None))


def fit_on_workers(cfg, train, valid, tdir, evaluated, resume: str | None, prepared,
                   backbone_path: str | None, prune_states: Callable[[], None]) -> dict[str, Any]:
    """Train the trial on ``cfg.workers`` Ray Train workers, reporting every evaluation to Tune;
    the leader's summary (``run/metrics.json``). ``tdir``: the trial's
    :class:`~relex.sweep.layout.TrialDir`; ``prune_states()`` drops the states no checkpoint Tune
    holds still names."""
    from ray import tune
    from ray.util.queue import Empty, Queue

    from relex.train.distributed import WorkerRun
    from relex.train.workers import RayTrainReport, train_on_ray

    report = RayTrainReport(base=evaluated.sweep_dir, describe=evaluated)
    job = WorkerRun(cfg, train, valid, str(tdir.run), state_dir=str(tdir.states / "new"),
                    resume_from=resume, features_cache=prepared.features_cache,
                    backbone_path=backbone_path, on_evaluate=report.on_evaluate,
                    after_evaluation=report.after_evaluation)
    queue = Queue(maxsize=1, actor_options={"num_cpus": 0})
    failed: list[BaseException] = []
    per_worker = prepared.worker_resources

    def run() -> None:
        try:
            train_on_ray(job, base=evaluated.sweep_dir, storage=tdir.path / "train",
                         gpu_per_worker=per_worker.get("gpu", 0), cpu_per_worker=per_worker.get("cpu", 1),
                         max_failures=prepared.worker_failures, callbacks=(ForwardToTune(queue),),
                         states_root=tdir.states)
        except BaseException as e:  # raised again in the trial's own thread
            failed.append(e)

    trainer = threading.Thread(target=run, name="relex-ray-train", daemon=True)
    trainer.start()
    while trainer.is_alive() or not queue.empty():
        try:
            metrics, checkpoint = queue.get(timeout=0.5)
        except Empty:
            continue
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(checkpoint) if checkpoint else None)
        if checkpoint:  # Tune holds the new pointer: states before the one it replaced can go
            prune_states()
    trainer.join()
    if failed:
        raise failed[0]
    return json.loads((tdir.run / "metrics.json").read_text(encoding="utf-8"))

"""Data-parallel training of one run on several workers (torch DDP), at one seam of ``fit``.

Every worker is a process of an initialised ``torch.distributed`` process group (Ray Train's
``TorchTrainer`` sets it up for ``relex train --workers N`` and sweep trials, see
:mod:`relex.train.workers`; :func:`run_local` does it with torch alone for benchmarks and
tests). Each worker calls ``fit(..., dist=Distributed.from_process_group())``; ``fit`` hands the
few places where workers differ to this object:

* batches: every worker draws the same global batches of ``cfg.global_batch()`` examples from
  the length-grouped sampler (seed + epoch, as on one worker) and takes its strided share
  (:func:`shard`); the position in the run counts global batches, so a state resumes on any
  number of workers that divides the global batch;
* the step: the training forward goes through ``DistributedDataParallel``, whose backward
  averages the gradients; each worker's loss is scaled by its share of the global batch, so the
  average is exactly the gradient of the global batch's mean loss — what one worker computes on
  the whole batch. FGM, AWP and gradient clipping see the averaged gradients, EMA and LLRD act on
  identical weights on every worker, R-Drop's doubled batch is per worker;
* the end of an epoch: the leader (rank 0) runs the epoch-end techniques (HNM's mining) and the
  others load their state from it;
* evaluation: only the leader evaluates, keeps the best checkpoint, writes states, history and
  logs, and calls ``on_evaluate``; the others wait for its decision to stop or go on, then every
  worker calls ``after_evaluation`` (the leader with the evaluation, the others with None) —
  where Ray Train's ``report``, which every worker must call, goes.

Dropout draws differ between workers (the leader keeps the single-worker stream), so only a run
without dropout reproduces one worker's weights; with dropout the runs agree in distribution.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist


def shard(idx: np.ndarray, rank: int, world: int) -> tuple[np.ndarray, float]:
    """This worker's rows of a global batch, and its share of the batch times ``world``.

    Strided, because the sampler sorts a batch by length: every worker gets rows of like
    lengths. A worker left without a row (a global batch smaller than the number of workers)
    takes the batch's first row with share 0: it joins the gradient average, adding nothing.
    """
    mine = idx[rank::world]
    if len(mine) == 0:
        return idx[:1], 0.0
    return mine, len(mine) * world / len(idx)


class Distributed:
    """This worker's part in a data-parallel run (see the module docstring)."""

    def __init__(self, rank: int, world: int,
                 after_evaluation: Callable[[Any], None] | None = None) -> None:
        self.rank, self.world = rank, world
        self.after_evaluation = after_evaluation
        self.device = torch.device("cpu")

    @classmethod
    def from_process_group(cls, after_evaluation: Callable[[Any], None] | None = None) -> "Distributed":
        return cls(dist.get_rank(), dist.get_world_size(), after_evaluation)

    @property
    def leader(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------ set-up
    def attach(self, run) -> None:
        """Wrap ``run``'s model for data-parallel training (its weights become the leader's)."""
        from torch.nn.parallel import DistributedDataParallel

        from relex.train.progress import Reporter

        run.dist, self.device = self, run.device
        if run.device.type == "cuda":
            torch.cuda.set_device(run.device)
        if not self.leader:
            run.report = Reporter("off")  # one worker logs
        self._fork_dropout(run)
        # unused parameters: a head that reads the entity markers leaves the encoder's pooler out
        run.train_module = DistributedDataParallel(
            run.model, device_ids=[run.device.index] if run.device.type == "cuda" else None,
            find_unused_parameters=True)

    def resume(self, run, path) -> None:
        """Every worker restores the state; the leader checks it and takes over its best/."""
        from relex.train import state as state_io
        from relex.train.fit import _state_objects, load_state

        if self.leader:
            load_state(run, path)
        else:
            state_io.load(path, _state_objects(run))
        self._fork_dropout(run)

    def _fork_dropout(self, run) -> None:
        if not self.leader:  # the leader keeps the single-worker random stream
            torch.manual_seed(run.cfg.seed * 1_000_003 + self.rank * 7919 + run.pos.step)

    # ------------------------------------------------------------------ the loop
    def train_step(self, run, group: list[np.ndarray], weights) -> torch.Tensor:
        """One optimizer step on this worker's shares of ``group``; the global batch's loss
        (the same on every worker, so a divergence stops them all)."""
        from relex.train.fit import micro_batch
        from relex.train.step import train_step

        micro, shares = [], []
        for idx in group:
            mine, share = shard(idx, self.rank, self.world)
            micro.append(micro_batch(run, mine, weights))
            shares.append(share)
        loss = train_step(run, micro, shares).float().reshape(1)
        dist.all_reduce(loss)
        return loss[0] / self.world

    def end_of_epoch(self, run) -> None:
        from relex.train.techniques import Technique

        mining = {name: t for name, t in run.techniques.items()
                  if type(t).end_of_epoch is not Technique.end_of_epoch}
        if not mining:
            return
        if self.leader:
            for t in run.techniques.values():
                t.end_of_epoch(run)
        states = [{name: t.state_dict() for name, t in mining.items()} if self.leader else None]
        dist.broadcast_object_list(states, src=0, device=self._comm_device())
        if not self.leader:
            for name, t in mining.items():
                t.load_state_dict(states[0][name])

    def evaluate(self, run, n_batches: int) -> bool:
        """The leader evaluates; every worker learns whether to stop; True to stop."""
        from relex.train.fit import evaluate

        pos, events = run.pos, []
        if self.leader:
            hook = run.on_evaluate

            def record(ev) -> None:
                events.append(ev)
                if hook is not None:
                    hook(ev)

            run.on_evaluate = record
            try:
                evaluate(run, n_batches)
            finally:
                run.on_evaluate = hook
        flag = torch.tensor([int(pos.stopping)], dtype=torch.int64, device=self._comm_device())
        dist.broadcast(flag, src=0)
        stop = bool(flag.item())
        if not self.leader:  # what evaluate() moved on the leader
            pos.evaluations += 1
            pos.last_eval_step = pos.step
            pos.loss_sum, pos.loss_steps = 0.0, 0
            pos.stopping = stop
            if stop:
                pos.stop_reason = "early_stopping"
        if self.after_evaluation is not None:
            self.after_evaluation(events[0] if events else None)
        return stop

    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


# ----------------------------------------------------------------------------- one worker's run
@dataclass
class WorkerRun:
    """``fit``'s arguments, as every worker of a run receives them (pickled to each process)."""

    cfg: Any
    train_ds: Any
    valid_ds: Any
    out_dir: str
    state_dir: str | None = None
    resume_from: str | None = None
    features_cache: str | None = None
    backbone_path: str | None = None
    progress: bool | str | None = False
    on_evaluate: Callable[[Any], None] | None = None  # the leader's, after each evaluation
    after_evaluation: Callable[[Any], None] | None = None  # every worker's, after the leader's

    def fit(self, device: torch.device, resume_from: str | None = None):
        """Train this worker's part (the process group is up); the leader's FitResult, else None."""
        from relex.train.fit import fit

        d = Distributed.from_process_group(self.after_evaluation)
        return fit(self.cfg, self.train_ds, self.valid_ds, self.out_dir, on_evaluate=self.on_evaluate,
                   state_dir=self.state_dir, resume_from=resume_from or self.resume_from,
                   progress=self.progress if d.leader else False, features_cache=self.features_cache,
                   backbone_path=self.backbone_path, device=device, dist=d)


def prepare_inputs(cfg, train_ds, valid_ds, *, features_cache=None, backbone_path=None) -> tuple[str, str]:
    """Resolve the backbone and build the features once, before the workers start (they would
    otherwise all build them at once); returns (backbone directory, feature cache)."""
    from pathlib import Path

    from relex.io_utils import cache_root
    from relex.model.backbone import resolve_backbone
    from relex.train.inputs import tokenizer_and_features

    if backbone_path is None:
        backbone_path = resolve_backbone(cfg.backbone, corpus=train_ds.frame["sentence"].tolist(), cfg=cfg)
    cache = Path(features_cache) if features_cache is not None else cache_root() / "features"
    tokenizer_and_features(cfg, train_ds, valid_ds, backbone_path, cache)
    return str(backbone_path), str(cache)


# ----------------------------------------------------------------------------- without Ray
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_local(workers: int, entry: Callable[[torch.device], Any], *, backend: str = "gloo") -> None:
    """Run ``entry(device)`` in ``workers`` processes of one torch.distributed group on this
    machine (``nccl``: one GPU each, ``cuda:<rank>``). No Ray: benchmarks and tests use it; the
    CLI and sweeps go through Ray Train (relex.train.workers). ``entry`` must be picklable."""
    import torch.multiprocessing as mp

    port = free_port()
    mp.start_processes(_local_worker, args=(workers, port, backend, entry), nprocs=workers,
                       join=True, start_method="spawn")


def _local_worker(rank: int, workers: int, port: int, backend: str, entry) -> None:
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=workers)
    try:
        entry(torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu"))
    finally:
        dist.destroy_process_group()

"""One training step: forward → loss → backward → technique hooks → clip → optimizer → schedule.

``run`` is the :class:`relex.train.fit.Run`; a step covers the micro-batches of one optimizer
step (gradient accumulation). The techniques' hooks (``relex.train.techniques``) are the only
places the step varies. No host sync happens here: the returned loss stays on the device.
"""

from __future__ import annotations

from typing import Sequence

import torch


def train_step(run, micro_batches: Sequence[tuple[dict, torch.Tensor | None]],
               shares: Sequence[float] | None = None) -> torch.Tensor:
    """One optimizer step over ``(batch, example_weights)`` pairs; their mean loss, detached.

    ``shares`` (several workers): each micro-batch's loss is scaled by this worker's share of
    the global micro-batch times the number of workers, so the gradients the workers average
    are those of the whole global batch; averaged over the workers, the returned losses give the
    global batch's loss.
    """
    weighted = shares is not None
    shares = list(shares) if weighted else [1.0] * len(micro_batches)
    losses = []
    for (batch, weights), share in zip(micro_batches, shares):
        factor = share / len(micro_batches)

        def forward_backward() -> torch.Tensor:
            loss = forward_loss(run, batch, weights)                  # forward → loss
            run.scaler.scale(loss * factor).backward()                # backward
            return loss

        loss = forward_backward().detach()
        losses.append(loss * share if weighted else loss)
        for technique in run.techniques.values():                     # FGM, AWP: perturb,
            technique.after_backward(run, forward_backward)           # again, restore
    if run.cfg.grad_clip > 0:                                         # clip
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.grad_clip)
    scale = run.scaler.get_scale() if run.scaler.is_enabled() else 0.0
    run.scaler.step(run.optimizer)                                    # optimizer
    run.scaler.update()
    if run.scaler.get_scale() >= scale:                               # schedule (not when fp16
        run.scheduler.step()                                          # overflowed: step skipped)
    run.optimizer.zero_grad(set_to_none=True)
    for technique in run.techniques.values():                         # EMA
        technique.after_optimizer_step(run)
    return torch.stack(losses).float().mean()


def forward_loss(run, batch: dict, weights: torch.Tensor | None) -> torch.Tensor:
    """The loss of one micro-batch: a technique's own (R-Drop) or the plain forward."""
    for technique in run.techniques.values():
        loss = technique.forward_loss(run, batch, weights)
        if loss is not None:
            return loss
    with run.amp.autocast():
        logits = run.forward(batch)
    return run.loss_fn(logits.float(), batch["labels"], weights)

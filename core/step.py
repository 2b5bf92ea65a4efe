"""One training step, the only one: the trainer, the batch-size probes and the benchmarks
all call :func:`train_step`, so what is measured is what trains.

A step is one attempted optimizer update over ``trainer.grad_accum_steps`` micro-batches:

    for each micro-batch: next batch -> task.to_device -> autocast forward + fp32 loss
                          -> backward (loss / accum; DDP all-reduces only on the last)
    unscale -> clip -> agree across ranks -> apply, or skip

and ends in one of three outcomes:

- ``applied``: optimizer step (through the GradScaler when there is one), LR schedule step.
- ``nonfinite``: the loss is NaN/Inf on some rank, or a gradient is without a GradScaler to
  explain it. Nothing is applied: weights, optimizer state and LR schedule stay untouched.
  The trainer counts these toward ``max_consecutive_nonfinite`` (divergence).
- ``scaler_skipped``: fp16 with a GradScaler, the loss is finite and a gradient overflowed.
  That is the scaler's routine business (early in fp16 training the scale is too high):
  ``scaler.step`` skips the update and ``scaler.update`` halves the scale. Not divergence,
  unless the scale has already fallen below 1 (the overflow is then not the scale's fault,
  and the step counts as ``nonfinite``).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from core.precision import Precision

APPLIED, NONFINITE, SCALER_SKIPPED = "applied", "nonfinite", "scaler_skipped"


@dataclass
class StepResult:
    outcome: str  # APPLIED | NONFINITE | SCALER_SKIPPED
    loss: float  # mean over micro-batches and ranks (NaN/Inf as seen)
    local_loss: float  # this rank's
    grad_norm: float  # this rank's total norm after unscaling, before clipping
    samples: int  # samples the step consumed on all ranks
    data_wait_s: float  # time blocked on the next CPU batch
    logs: dict[str, Any] = field(default_factory=dict)  # the task's logs of the last micro-batch
    stop: bool = False  # some rank asked to stop (SIGTERM/SIGINT)


def sum_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """Sum a small float vector over all ranks (identity in a single process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized() and \
            torch.distributed.get_world_size() > 1:
        torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.SUM)
    return values


def train_step(task: Any, cfg: Any, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               precision: Precision, batches: Iterator[Any], device: torch.device, *,
               schedule: Any = None, world: int = 1, no_sync: Callable[[], Any] | None = None,
               should_stop: Callable[[], bool] | None = None, raw_model: torch.nn.Module | None = None) -> StepResult:
    """Run one step of ``model`` on the next ``grad_accum_steps`` CPU batches of ``batches``.

    ``model`` may be DDP-wrapped or compiled (forward and backward go through it);
    ``raw_model`` is the plain module whose parameters are clipped (default ``model``).
    ``no_sync()`` returns DDP's context that defers the gradient all-reduce (used on every
    micro-batch but the last). ``should_stop()`` is asked after the backward pass (a SIGTERM
    during this step stops the run after it). Every decision is agreed across ranks with one all-reduce, so
    all ranks take the same branch. An out-of-memory error propagates with the gradients
    of the failed step still set: the caller zeroes them and decides.
    """
    t = cfg.trainer
    accum = t.grad_accum_steps
    raw_model = raw_model or model
    micro_losses, logs, samples, waited = [], {}, 0, 0.0
    for micro in range(accum):
        started = time.perf_counter()
        cpu_batch = next(batches)
        waited += time.perf_counter() - started
        samples += task.batch_len(cpu_batch) * world
        batch = task.to_device(cfg, cpu_batch, device)
        last = micro == accum - 1
        with contextlib.nullcontext() if last or no_sync is None else no_sync():
            with precision.autocast():
                loss, logs = task.loss(cfg, model, batch)
            precision.backward(loss.float() / accum)
        micro_losses.append(loss.detach().float())
        del batch, loss
    local_loss = torch.stack(micro_losses).mean()

    precision.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), t.grad_clip or float("inf"))
    loss_bad = not bool(torch.isfinite(local_loss))
    grad_bad = not bool(torch.isfinite(grad_norm))
    stop = bool(should_stop and should_stop())
    agreed = sum_over_ranks(torch.tensor(
        [0.0 if loss_bad else float(local_loss), float(loss_bad), float(grad_bad), float(stop)],
        dtype=torch.float64, device=device if device.type == "cuda" else "cpu")).tolist()
    mean_loss = agreed[0] / world if agreed[1] == 0 else float("nan")
    any_loss_bad, any_grad_bad, any_stop = agreed[1] > 0, agreed[2] > 0, agreed[3] > 0

    scaler = precision.scaler
    if not any_loss_bad and any_grad_bad and scaler is not None and scaler.get_scale() >= 1.0:
        outcome = SCALER_SKIPPED
        precision.step(optimizer)  # the scaler sees the overflow it recorded in unscale_ and skips
    elif any_loss_bad or any_grad_bad:
        outcome = NONFINITE
        precision.skip()
    else:
        outcome = APPLIED
        precision.step(optimizer)
        if schedule is not None:
            schedule.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(outcome, mean_loss, float(local_loss), float(grad_norm), samples, waited, logs, any_stop)

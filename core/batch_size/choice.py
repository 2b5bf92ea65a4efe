"""Choosing the batch size: the largest whose predicted peak fits the budget times
``trainer.memory_safety_margin``, less DataLoader workers (``num_workers x prefetch_factor
x batch bytes`` plus a per-worker interpreter), capped at 5% of the training set; the
reason is written into the resolved config.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import torch

from core.batch_size.budgets import WORKER_OVERHEAD_BYTES, cpu_budget, sample_bytes
from core.batch_size.memory_model import MAX_PROBE_BATCH, MemoryModel
from core.batch_size.probes import measure
from core.errors import UserError

FRACTION_OF_DATASET = 0.05  # nnU-Net's rule: one batch covers at most 5% of the training set


@dataclass
class Choice:
    batch_size: int
    reason: str
    model: MemoryModel
    budget_bytes: float
    predicted_peak_bytes: float


def choose(task: Any, cfg: Any, device: torch.device, dataset_size: int | None = None,
           model: MemoryModel | None = None, budget: tuple[float, str] | None = None,
           extent: dict[str, Any] | None = None) -> Choice:
    """The largest batch whose predicted memory fits ``budget x margin``; explained in ``reason``.
    ``extent`` (the task's ``batch_extent`` of the loaded training set) shapes the probed batch."""
    t = cfg.trainer
    if budget is None:
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            budget = (free + torch.cuda.memory_allocated(device), "free GPU memory")
        else:
            budget = cpu_budget()
    budget_bytes, budget_source = budget
    cap = batch_cap(dataset_size)
    model = model or measure(task, cfg, device, budget_bytes=budget_bytes, extent=extent, max_batch=cap)
    usable = budget_bytes * t.memory_safety_margin
    workers_fixed, per_sample_extra = 0.0, 0.0
    if device.type != "cuda" and t.num_workers:
        workers_fixed = t.num_workers * WORKER_OVERHEAD_BYTES
        per_sample_extra = t.num_workers * t.prefetch_factor * sample_bytes(task, cfg, extent)
    fits = model.largest_fitting(usable - workers_fixed, per_sample_extra)
    chosen = min(fits, cap)
    if chosen < 1:
        need = model.growth(1) + workers_fixed + per_sample_extra
        raise UserError(f"batch size 1 needs about {need / 2**30:.2f} GiB but only {usable / 2**30:.2f} GiB "
                        f"({t.memory_safety_margin:.0%} of {budget_bytes / 2**30:.2f} GiB {budget_source}) is "
                        "available; use a smaller model or patch, or a machine with more memory")
    if chosen >= 16:
        chosen -= chosen % 8  # multiples of 8 suit tensor cores and vectorised CPU kernels
    if fits <= cap:
        limit = "memory"
    else:
        limit = f"capped at 5% of {dataset_size} samples" if dataset_size else f"capped at {MAX_PROBE_BATCH}"
    reason = (f"auto ({limit}): {_describe(model, chosen, per_sample_extra)}, budget {t.memory_safety_margin:.0%} "
              f"of {budget_bytes / 2**30:.2f} GiB {budget_source} on {device.type}")
    predicted = model.growth(chosen) + workers_fixed + per_sample_extra * chosen
    return Choice(chosen, reason, model, budget_bytes, predicted)


def batch_cap(dataset_size: int | None) -> int:
    """The largest batch a run may take: 5% of its training set, at most MAX_PROBE_BATCH."""
    if not dataset_size:
        return MAX_PROBE_BATCH
    return min(MAX_PROBE_BATCH, max(1, int(dataset_size * FRACTION_OF_DATASET)))


def _describe(model: MemoryModel, chosen: int, per_sample_extra: float) -> str:
    """How the step memory of ``chosen`` was obtained, for the reason line."""
    sizes = [p.batch_size for p in model.probes]
    if model.points:
        return (f"step memory {model.growth(chosen) / 2**20:.0f} MiB at batch {chosen}"
                f"{f' + {per_sample_extra / 2**20:.2f} MiB/sample for workers' if per_sample_extra else ''}, "
                f"measured on a ladder of probes at {sizes}")
    return (f"step memory {max(model.fixed_bytes, 0) / 2**20:.0f} MiB + "
            f"{(model.per_sample_bytes + per_sample_extra) / 2**20:.2f} MiB/sample fitted on probes at {sizes}")


def choose_batch_size(task: Any, cfg: Any, device: torch.device, train_set: Any,
                      processes_per_machine: int = 1) -> tuple[int, str]:
    """The trainer's entry: (batch size, reason) for the training set at hand (its largest
    samples, through the task's ``batch_extent``). Honours ``trainer.instance`` when set;
    ``processes_per_machine`` processes share the budget (CPU ranks of one machine)."""
    budget = None
    if cfg.trainer.instance:
        from core.instances import get_instance

        budget = get_instance(cfg.trainer.instance).memory_budget(device.type)
    elif device.type == "cpu":
        budget = cpu_budget()
    if budget is not None and processes_per_machine > 1:
        budget = (budget[0] / processes_per_machine, f"{budget[1]} / {processes_per_machine} processes")
    choice = choose(task, cfg, device, len(train_set), budget=budget, extent=task.batch_extent(cfg, train_set))
    print(f"batch size: {choice.batch_size} ({choice.reason})", file=sys.stderr)
    return choice.batch_size, choice.reason

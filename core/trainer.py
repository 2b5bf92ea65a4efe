"""The training loop. Read :func:`fit` top to bottom:

    resolve device, precision, data, batch size -> build the model -> restore -> for each
    step: core.step.train_step (batches -> autocast forward -> fp32 loss -> backward ->
    unscale -> clip -> agree across ranks -> apply or skip) -> log; evaluate and
    checkpoint on a schedule.

The step itself lives in core/step.py (the batch-size probes and the benchmarks run the
same one); where the run is and when it ends in core/plan.py; what a checkpoint holds in
core/run_state.py. Multi-process runs (``accelerate launch`` or ``torchrun``) use DDP
through accelerate; every decision that could differ between ranks (skip this step? stop
now? which batch size?) is agreed on all ranks first, so no rank waits on a collective
forever.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from core import atomic
from core import config as config_io
from core.checkpoint import CheckpointManager, StopRequest
from core.data_order import ResumableBatchSampler
from core.errors import UserError
from core.logging import (MetricsLog, MetricsWindow, ProgressBar, memory_in_use_bytes, peak_memory_bytes, plot_curves,
                          write_json)
from core.plan import Progress, StepPlan
from core.precision import Precision
from core.run_state import RunState, read_resume_state
from core.runtime import preserved_rng, resolve_device, seed_everything, set_cpu_threads
from core.schedule import lr_multiplier
from core.step import APPLIED, NONFINITE, train_step


class TrainingStopped(RuntimeError):
    """The run cannot go on by itself: exit 1 with this one-line message, checkpoints intact."""


class TrainingDiverged(TrainingStopped):
    """Too many non-finite steps in a row (or policy "raise")."""


class OutOfMemoryAcrossRanks(TrainingStopped):
    """Out of memory on one rank of several: the batch cannot shrink on one rank alone (the
    others are waiting in their all-reduce), so the run stops and says how to resume."""


def fit(task: Any, cfg: Any, run_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train ``task`` with config ``cfg`` in ``run_dir``; return the summary (also summary.json)."""
    t = cfg.trainer
    run_dir = Path(run_dir)
    # cpu=True also when CUDA is absent: accelerate only picks its multi-process CPU (gloo)
    # backend under torchrun/accelerate launch when told the run is on CPU.
    accelerator = Accelerator(cpu=t.device == "cpu" or (t.device == "auto" and not torch.cuda.is_available()),
                              mixed_precision="no")
    device, main, world = accelerator.device, accelerator.is_main_process, accelerator.num_processes
    resolve_device(t.device)  # --device cuda on a machine without CUDA: a clear error, now
    checkpoints = CheckpointManager(run_dir, keep_last=t.keep_last)
    restored = read_resume_state(checkpoints, cfg) if resume else None  # a resumed "auto" keeps its batch
    seed_everything(t.seed)
    threads = set_cpu_threads(t.num_workers, world) if device.type == "cpu" else None
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    precision = Precision.create(t.precision, device)

    # ---- data, batch size, the plan
    train_set, val_set = task.build_datasets(cfg)
    if t.evaluate and len(val_set) == 0:
        raise UserError(f"the validation set of {task.name} is empty (see the [data] section of the config, e.g. its "
                        "validation fraction or held-out ids); give it data, or set trainer.evaluate=false to train "
                        "without validation (no best.pt)")
    if t.batch_size == "auto":
        t.batch_size, t.batch_size_reason = _agreed_auto_batch(task, cfg, device, train_set, accelerator)
    plan = StepPlan(len(train_set), t.batch_size, world, t.grad_accum_steps, t.max_epochs, t.max_steps)
    if main:
        atomic.write_text(run_dir / "config.json", config_io.to_json(cfg) + "\n")

    # ---- model, optimizer, schedule; restored before the first step
    memory_before_model = memory_in_use_bytes(device)  # what the planner's step memory comes on top of
    raw_model = task.build_model(cfg)
    if restored:
        raw_model.load_state_dict(restored["model"])
    model = accelerator.prepare_model(torch.compile(raw_model) if t.compile else raw_model)
    optimizer = torch.optim.AdamW(raw_model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_multiplier(t.lr_schedule, plan.total_steps, t.warmup_steps, t.min_lr_ratio))
    state = RunState(task, cfg, raw_model, optimizer, schedule, precision, Progress(), checkpoints, accelerator)
    metrics = MetricsLog(run_dir / "metrics.jsonl", enabled=main)
    if restored:
        state.restore(restored)
    metrics.truncate_after(state.progress.step if restored else -1)
    progress = state.progress

    # ---- the loop
    bar, window = ProgressBar(plan.total_steps, enabled=main), MetricsWindow()
    final_metrics: dict[str, float] = {}
    stopped_by = "completed"
    started = time.perf_counter()
    model.train()
    with StopRequest() as stop:
        while not plan.finished(progress) and stopped_by == "completed":
            if not plan.step_fits(progress.samples_in_epoch):  # the epoch's tail is dropped
                progress.epoch, progress.samples_in_epoch = progress.epoch + 1, 0
                continue
            if hasattr(train_set, "set_epoch"):
                train_set.set_epoch(progress.epoch)
            batches = iter(_loader(task, cfg, train_set, plan.batch_size, progress.epoch, device, shuffle=True,
                                   start_sample=progress.samples_in_epoch, world=world,
                                   rank=accelerator.process_index))
            while plan.step_fits(progress.samples_in_epoch) and not plan.finished(progress):
                out_of_memory = False
                try:
                    result = train_step(task, cfg, model, optimizer, precision, batches, device, schedule=schedule,
                                        world=world, no_sync=lambda: accelerator.no_sync(model),
                                        should_stop=lambda: stop.requested, raw_model=raw_model)
                except torch.cuda.OutOfMemoryError:
                    out_of_memory = True  # handled below, once the exception has freed the step's tensors
                if out_of_memory:
                    _back_off_after_oom(state, plan, run_dir)
                    break  # a new loader at the same sample position, with the smaller batch
                progress.samples_in_epoch += plan.samples_per_step
                progress.step += 1
                _count_outcome(state, result)
                window.add(result.loss if math.isfinite(result.loss) else None, result.samples, result.data_wait_s)

                # log, evaluate, checkpoint
                at_epoch_end, at_end = not plan.step_fits(progress.samples_in_epoch), plan.finished(progress)
                if progress.step % t.log_every_steps == 0 or at_end:
                    counters = {"skipped_nonfinite": progress.skipped_nonfinite,
                                "scaler_skipped_steps": progress.scaler_skipped_steps}
                    record = window.flush(progress.step, progress.epoch, optimizer.param_groups[0]["lr"], counters,
                                          device, result.logs)
                    metrics.write(record)
                    bar.update(progress.step, record["loss"], record["lr"], record["samples_per_s"])
                new_best = False
                if t.evaluate and _due(progress.step, t.eval_every_steps, at_epoch_end, at_end):
                    best_before, eval_started = progress.best_step, time.perf_counter()
                    final_metrics = _evaluate(state, model, val_set, plan, device, metrics)
                    new_best = progress.best_step != best_before
                    window.exclude(time.perf_counter() - eval_started)  # keep samples/s about training
                if _due(progress.step, t.checkpoint_every_steps, at_epoch_end, at_end) or new_best or result.stop:
                    state.save(is_best=new_best)
                if result.stop:
                    stopped_by = stop.signal_name or "signal on another rank"
                    break
    bar.close()
    metrics.close()

    summary = {
        "task": task.name, "steps": progress.step, "epochs": progress.epoch + (progress.samples_in_epoch > 0),
        "wall_s": round(time.perf_counter() - started, 3), "stopped_by": stopped_by,
        "skipped_nonfinite": progress.skipped_nonfinite, "scaler_skipped_steps": progress.scaler_skipped_steps,
        "batch_size": plan.batch_size, "batch_size_reason": t.batch_size_reason, "world_size": world,
        "precision": precision.name, "device": str(device), "cpu_threads": threads,
        "best_metric": {"name": task.monitored(cfg)[0], "value": progress.best_value, "step": progress.best_step},
        "final_metrics": final_metrics, "peak_mem_bytes": peak_memory_bytes(device),
        "memory_before_model_bytes": memory_before_model,
    }
    if main and stopped_by == "completed" and t.evaluate and checkpoints.best.is_file():
        summary["after_training"] = task.after_training(cfg, checkpoints.best, device)
    if main:
        write_json(run_dir / "summary.json", summary)
        plot_curves(run_dir / "metrics.jsonl", run_dir / "curves.png", task.monitored(cfg)[0])
    if stopped_by != "completed":
        accelerator.print(f"stopped by {stopped_by} at step {progress.step}; checkpoint saved to {checkpoints.last}. "
                          f"Resume with: train {task.name} --run-dir {run_dir} --resume")
    return summary


# ----------------------------------------------------------------------------- helpers


def _due(step: int, every: int, at_epoch_end: bool, at_end: bool) -> bool:
    """Evaluation and checkpoint schedule: every ``every`` steps, or at epoch ends when 0."""
    return (every and step % every == 0) or (not every and at_epoch_end) or at_end


def _agreed_auto_batch(task: Any, cfg: Any, device: torch.device, train_set: Any,
                       accelerator: Accelerator) -> tuple[int, str]:
    """Rank 0 measures and chooses; every rank receives its (batch size, reason), so all
    ranks run the same number of steps. The probes leave the run's random streams as they
    were (re-running from config.json, batch now fixed, reproduces the run)."""
    from core.batch_size.choice import choose_batch_size

    chosen: list[Any] = [None]
    if accelerator.is_main_process:
        # processes on this machine share its RAM (each GPU rank has its own device memory)
        sharing = int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if device.type == "cpu" else 1
        with preserved_rng():
            chosen = [choose_batch_size(task, cfg, device, train_set, processes_per_machine=sharing)]
    if accelerator.num_processes > 1:
        torch.distributed.broadcast_object_list(chosen, src=0)
    return chosen[0]


def _count_outcome(state: RunState, result: Any) -> None:
    """Update the counters of a finished step; stop the run when it diverged."""
    progress, t = state.progress, state.cfg.trainer
    if result.outcome == APPLIED:
        progress.consecutive_nonfinite = 0
    elif result.outcome == NONFINITE:
        progress.skipped_nonfinite += 1
        progress.consecutive_nonfinite += 1
        state.accelerator.print(f"step {progress.step}: non-finite loss ({result.local_loss:.4g}) or grad norm "
                                f"({result.grad_norm:.4g}); update skipped ({progress.skipped_nonfinite} so far)")
        if t.nonfinite_policy == "raise" or progress.consecutive_nonfinite >= t.max_consecutive_nonfinite:
            raise TrainingDiverged(
                f"step {progress.step}: {progress.consecutive_nonfinite} non-finite step(s) in a row "
                f"(nonfinite_policy={t.nonfinite_policy!r}, max_consecutive_nonfinite={t.max_consecutive_nonfinite}); "
                f"the last good checkpoint is {state.checkpoints.last}. "
                "Lower trainer.lr, check the data, or use trainer.precision=fp32")
    else:  # the GradScaler's routine fp16 overflow: it lowered its scale; not divergence
        progress.scaler_skipped_steps += 1


def _evaluate(state: RunState, model: torch.nn.Module, val_set: Any, plan: StepPlan, device: torch.device,
              metrics: MetricsLog) -> dict[str, float]:
    """Run the task's evaluation, track the best monitored value, log the results."""
    task, cfg, progress = state.task, state.cfg, state.progress
    model.eval()
    loader = _loader(task, cfg, val_set, task.val_batch_size(cfg, plan.batch_size), 0, device, shuffle=False)
    with torch.no_grad(), state.precision.autocast():
        results = {k: float(v) for k, v in task.evaluate(cfg, state.raw_model, loader).items()}
    model.train()
    name, mode = task.monitored(cfg)
    if name not in results:
        raise KeyError(f"task {task.name}'s evaluate returned {sorted(results)}, without its monitored metric {name!r}")
    value = results[name]
    better = progress.best_value is None or (value > progress.best_value if mode == "max" else value < progress.best_value)
    if better and math.isfinite(value):
        progress.best_value, progress.best_step = value, progress.step
    metrics.write({"kind": "eval", "epoch": progress.epoch, "step": progress.step, **results})
    state.accelerator.print(f"step {progress.step}: " + " ".join(f"{k} {v:.4f}" for k, v in results.items()))
    return results


def _back_off_after_oom(state: RunState, plan: StepPlan, run_dir: Path) -> None:
    """Nothing of the failed step was applied: shrink the batch (single process) and record
    it in config.json, or stop a multi-process run with the command that resumes it."""
    progress, cfg, accelerator = state.progress, state.cfg, state.accelerator
    t = cfg.trainer
    state.optimizer.zero_grad(set_to_none=True)
    if accelerator.num_processes > 1:
        raise OutOfMemoryAcrossRanks(
            f"step {progress.step + 1}: out of memory on rank {accelerator.process_index} at batch_size "
            f"{plan.batch_size} per process; {accelerator.num_processes} processes cannot shrink the batch on one "
            f"rank alone. Resume from the last checkpoint with a smaller batch: --run-dir {run_dir} --resume "
            f"--set trainer.batch_size={plan.smaller_batch(progress.step + 1)}")
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    plan.back_off(accelerator.print, progress.step + 1)
    t.batch_size, t.batch_size_reason = plan.batch_size, plan.reason(t.batch_size_reason)
    state.schedule.lr_lambdas[0] = lr_multiplier(t.lr_schedule, plan.total_steps_from(progress), t.warmup_steps,
                                                 t.min_lr_ratio)
    if accelerator.is_main_process:
        atomic.write_text(run_dir / "config.json", config_io.to_json(cfg) + "\n")


def _loader(task: Any, cfg: Any, dataset: Any, batch_size: int, epoch: int, device: torch.device, shuffle: bool,
            start_sample: int = 0, world: int = 1, rank: int = 0) -> DataLoader:
    """A fresh DataLoader for one pass. Its own seeded generator keeps the global RNG untouched,
    so creating it (e.g. mid-epoch after a resume) does not shift the random stream."""
    t = cfg.trainer
    if shuffle:
        sampler = ResumableBatchSampler(len(dataset), batch_size, t.seed, epoch, world, rank, start_sample)
    else:  # evaluation: every rank sees the whole set, in order, keeping the tail
        sampler = [list(range(i, min(i + batch_size, len(dataset)))) for i in range(0, len(dataset), batch_size)]
    workers = t.num_workers
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=task.collate_fn(cfg),
                      pin_memory=device.type == "cuda", prefetch_factor=t.prefetch_factor if workers else None,
                      generator=torch.Generator().manual_seed(t.seed * 7919 + epoch))

"""The training loop. Read it top to bottom:

    resolve device, precision, batch size -> build task parts -> restore -> for each step:
    batches -> autocast forward -> fp32 loss -> backward -> unscale -> finite guard -> clip
    -> optimizer step -> schedule -> log; evaluate and checkpoint on a schedule.

A "step" is one attempted optimizer update (``grad_accum_steps`` micro-batches); a step the
non-finite guard skips still counts as a step (its data was consumed) but leaves weights,
optimizer state and LR schedule untouched. Multi-process runs (``accelerate launch`` or
``torchrun``) use DDP through accelerate; every decision that could differ between ranks
(skip this step? stop now?) is all-reduced first so no rank waits on a collective forever.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

import core
from core import config as config_io
from core.checkpoint import CheckpointManager, StopRequest, load as load_checkpoint
from core.data_order import ResumableBatchSampler
from core.errors import UserError
from core.logging import MetricsLog, ProgressBar, peak_memory_bytes, plot_curves, write_json
from core.precision import Precision
from core.runtime import (
    pick_device, restore_rank_rng_state, rng_states_of_all_ranks, seed_everything, set_cpu_threads,
)
from core.schedule import lr_multiplier


class TrainingStopped(RuntimeError):
    """The run cannot go on by itself: exit 1 with this one-line message, checkpoints intact."""


class TrainingDiverged(TrainingStopped):
    """Too many non-finite steps in a row (or policy "raise")."""


class OutOfMemoryAcrossRanks(TrainingStopped):
    """Out of memory on one rank of several: the batch cannot shrink on one rank alone (the
    others are waiting in their all-reduce), so the run stops and says how to resume."""


@dataclass
class Progress:
    """Where the run is; saved in every checkpoint."""

    epoch: int = 0
    samples_in_epoch: int = 0  # samples of this epoch's order already consumed (all ranks)
    step: int = 0  # attempted optimizer steps
    skipped_nonfinite: int = 0
    consecutive_nonfinite: int = 0
    best_value: float | None = None
    best_step: int | None = None


def fit(task: Any, cfg: Any, run_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train ``task`` with config ``cfg`` in ``run_dir``; return the summary (also summary.json)."""
    t = cfg.trainer
    run_dir = Path(run_dir)
    # cpu=True also when CUDA is absent: accelerate only picks its multi-process CPU (gloo)
    # backend under torchrun/accelerate launch when told the run is on CPU.
    on_cpu = t.device == "cpu" or (t.device == "auto" and not torch.cuda.is_available())
    accelerator = Accelerator(cpu=on_cpu, mixed_precision="no")
    device, main = accelerator.device, accelerator.is_main_process
    pick_device(t.device, device)
    checkpoints = CheckpointManager(run_dir, keep_last=t.keep_last)
    restored = _read_resume_state(checkpoints) if resume else None
    if restored and t.batch_size == "auto":  # a resumed run keeps the batch size it chose
        saved = restored["config"]["trainer"]
        cfg.trainer.batch_size, cfg.trainer.batch_size_reason = saved["batch_size"], saved["batch_size_reason"]
    seed_everything(t.seed)
    threads = set_cpu_threads(t.num_workers, accelerator.num_processes) if device.type == "cpu" else None
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    precision = Precision.create(t.precision, device)

    # ---- data and batch size
    train_set, val_set = task.build_datasets(cfg)
    if t.batch_size == "auto":
        from core.batch_size import choose_batch_size

        chosen, reason = choose_batch_size(task, cfg, device, train_set)
        cfg.trainer.batch_size, cfg.trainer.batch_size_reason = chosen, reason
    world = accelerator.num_processes
    plan = _StepPlan(len(train_set), t.batch_size, world, t.grad_accum_steps, t.max_epochs, t.max_steps)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(config_io.to_json(cfg) + "\n")

    # ---- model, optimizer, schedule (restored before the first step)
    model = task.build_model(cfg)
    if restored:
        model.load_state_dict(restored["model"])
    if t.compile:
        model = torch.compile(model)
    model = accelerator.prepare_model(model)
    raw_model = accelerator.unwrap_model(model, keep_torch_compile=False)  # plain keys in checkpoints
    optimizer = torch.optim.AdamW(raw_model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_multiplier(t.lr_schedule, plan.total_steps, t.warmup_steps, t.min_lr_ratio))
    progress = Progress()
    metrics = MetricsLog(run_dir / "metrics.jsonl", enabled=main)
    if restored:
        optimizer.load_state_dict(restored["optimizer"])
        schedule.load_state_dict(restored["scheduler"])
        precision.load_state_dict(restored["scaler"])
        progress = Progress(**restored["progress"])
        saved_ranks = restore_rank_rng_state(restored["rng"], accelerator.process_index, accelerator.num_processes)
        if saved_ranks != accelerator.num_processes:
            accelerator.print(f"note: the checkpoint holds the random streams of {saved_ranks} process(es), "
                              f"this run has {accelerator.num_processes}: every process continues rank 0's, so "
                              "dropout differs from an uninterrupted run")
        metrics.truncate_after(progress.step)
        accelerator.print(f"resumed {run_dir} at step {progress.step} (epoch {progress.epoch})")
    else:
        metrics.truncate_after(-1)

    def save(is_best: bool = False) -> None:
        rng = rng_states_of_all_ranks()  # collective: before the rank-0-only write
        if main:
            checkpoints.save({
                "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": schedule.state_dict(), "scaler": precision.state_dict(),
                "progress": asdict(progress), "rng": rng, "config": cfg.model_dump(mode="json"),
                "task": task.name, "version": core.__version__,
            }, progress.step, is_best=is_best)
        accelerator.wait_for_everyone()

    def evaluate() -> dict[str, float]:
        model.eval()
        loader = _loader(task, cfg, val_set, task.val_batch_size(cfg, plan.batch_size), t.seed, 0, shuffle=False,
                         device=device)
        with torch.no_grad(), precision.autocast():
            results = {k: float(v) for k, v in task.evaluate(raw_model, loader).items()}
        model.train()
        name, mode = task.monitor
        value = results[name]
        better = progress.best_value is None or (value > progress.best_value if mode == "max" else value < progress.best_value)
        if better and math.isfinite(value):
            progress.best_value, progress.best_step = value, progress.step
        metrics.write({"kind": "eval", "epoch": progress.epoch, "step": progress.step, **results})
        accelerator.print(f"step {progress.step}: " + " ".join(f"{k} {v:.4f}" for k, v in results.items()))
        return results

    def back_off_after_oom() -> None:
        """Nothing of the failed step was applied: shrink the batch and record the new size.
        (Single process only: see :class:`OutOfMemoryAcrossRanks`.)"""
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        plan.back_off(accelerator.print, progress.step + 1)
        cfg.trainer.batch_size = plan.batch_size
        cfg.trainer.batch_size_reason = plan.reason(cfg.trainer.batch_size_reason)
        schedule.lr_lambdas[0] = lr_multiplier(t.lr_schedule, plan.total_steps_from(progress),
                                               t.warmup_steps, t.min_lr_ratio)
        if main:
            (run_dir / "config.json").write_text(config_io.to_json(cfg) + "\n")

    # ---- the loop
    bar = ProgressBar(plan.total_steps, enabled=main)
    window = _Window()
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
            loader = iter(_loader(task, cfg, train_set, plan.batch_size, t.seed, progress.epoch, shuffle=True,
                                  device=device, start_sample=progress.samples_in_epoch, world=world,
                                  rank=accelerator.process_index))
            while plan.step_fits(progress.samples_in_epoch) and not plan.finished(progress):
                # forward/backward over grad_accum_steps micro-batches
                micro_losses, logs, samples = [], {}, 0
                try:
                    for micro in range(t.grad_accum_steps):
                        waited = time.perf_counter()
                        cpu_batch = next(loader)
                        window.data_wait += time.perf_counter() - waited
                        samples += task.batch_len(cpu_batch) * world
                        batch_on_device = task.to_device(cpu_batch, device)
                        last_micro = micro == t.grad_accum_steps - 1
                        with contextlib.nullcontext() if last_micro else accelerator.no_sync(model):
                            with precision.autocast():
                                loss, logs = task.loss(model, batch_on_device)
                            precision.backward(loss.float() / t.grad_accum_steps)
                        micro_losses.append(loss.detach().float())
                except torch.cuda.OutOfMemoryError:
                    micro_losses = loss = batch_on_device = None  # free what the failed step held
                    if world > 1:
                        raise OutOfMemoryAcrossRanks(
                            f"step {progress.step + 1}: out of memory on rank {accelerator.process_index} at batch_size "
                            f"{plan.batch_size} per process; {world} processes cannot shrink the batch on one rank "
                            f"alone. Resume from the last checkpoint with a smaller batch: --run-dir {run_dir} --resume "
                            f"--set trainer.batch_size={plan.smaller_batch(progress.step + 1)}") from None
                    back_off_after_oom()
                    break  # a new loader at the same sample position, with the smaller batch
                progress.samples_in_epoch += plan.samples_per_step
                progress.step += 1
                step_loss = torch.stack(micro_losses).mean()

                # the guard: one collective decision on (loss, grad norm, stop request)
                precision.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), t.grad_clip or float("inf"))
                local_bad = not (torch.isfinite(step_loss) and torch.isfinite(grad_norm))
                mean_loss, any_bad, any_stop = _all_reduce_step(accelerator, step_loss, local_bad, stop.requested)
                if any_bad:
                    optimizer.zero_grad(set_to_none=True)
                    precision.skip()
                    progress.skipped_nonfinite += 1
                    progress.consecutive_nonfinite += 1
                    accelerator.print(f"step {progress.step}: non-finite loss ({step_loss.item():.4g}) or grad norm "
                                      f"({grad_norm.item():.4g}); update skipped ({progress.skipped_nonfinite} so far)")
                    if t.nonfinite_policy == "raise" or progress.consecutive_nonfinite >= t.max_consecutive_nonfinite:
                        raise TrainingDiverged(
                            f"step {progress.step}: {progress.consecutive_nonfinite} non-finite step(s) in a row "
                            f"(nonfinite_policy={t.nonfinite_policy!r}, max_consecutive_nonfinite="
                            f"{t.max_consecutive_nonfinite}); the last good checkpoint is {checkpoints.last}. "
                            "Lower trainer.lr, check the data, or use trainer.precision=fp32")
                else:
                    precision.step(optimizer)
                    optimizer.zero_grad(set_to_none=True)
                    schedule.step()
                    progress.consecutive_nonfinite = 0
                    window.add(mean_loss, samples)

                # log, evaluate, checkpoint
                at_epoch_end = not plan.step_fits(progress.samples_in_epoch)
                at_end = plan.finished(progress)
                if progress.step % t.log_every_steps == 0 or at_end:
                    record = window.flush(progress, optimizer, device, logs)
                    metrics.write(record)
                    bar.update(progress.step, record["loss"], record["lr"], record["samples_per_s"])
                eval_due = (t.eval_every_steps and progress.step % t.eval_every_steps == 0) or \
                    (not t.eval_every_steps and at_epoch_end) or at_end
                new_best = False
                if eval_due:
                    best_before, eval_started = progress.best_step, time.perf_counter()
                    final_metrics = evaluate()
                    new_best = progress.best_step != best_before
                    window.started += time.perf_counter() - eval_started  # keep samples/s about training
                ckpt_due = (t.checkpoint_every_steps and progress.step % t.checkpoint_every_steps == 0) or \
                    (not t.checkpoint_every_steps and at_epoch_end) or at_end
                if ckpt_due or new_best or any_stop:
                    save(is_best=new_best)
                if any_stop:
                    stopped_by = stop.signal_name or "signal on another rank"
                    break
    bar.close()
    metrics.close()

    summary = {
        "task": task.name, "steps": progress.step, "epochs": progress.epoch + (progress.samples_in_epoch > 0),
        "wall_s": round(time.perf_counter() - started, 3), "stopped_by": stopped_by,
        "skipped_nonfinite": progress.skipped_nonfinite, "batch_size": plan.batch_size,
        "batch_size_reason": cfg.trainer.batch_size_reason, "world_size": world,
        "precision": precision.name, "device": str(device), "cpu_threads": threads,
        "best_metric": {"name": task.monitor[0], "value": progress.best_value, "step": progress.best_step},
        "final_metrics": final_metrics, "peak_mem_bytes": peak_memory_bytes(device),
    }
    if main:
        write_json(run_dir / "summary.json", summary)
        plot_curves(run_dir / "metrics.jsonl", run_dir / "curves.png", task.monitor[0])
    if stopped_by != "completed":
        accelerator.print(f"stopped by {stopped_by} at step {progress.step}; checkpoint saved to {checkpoints.last}. "
                          f"Resume with: train {task.name} --run-dir {run_dir} --resume")
    return summary


# ----------------------------------------------------------------------------- helpers


def _read_resume_state(checkpoints: CheckpointManager) -> dict[str, Any]:
    if not checkpoints.last.is_file():
        raise UserError(f"nothing to resume in {checkpoints.folder.parent}: {checkpoints.last} does not exist; "
                        "run without --resume to start a new run")
    return load_checkpoint(checkpoints.last)


def _loader(task: Any, cfg: Any, dataset: Any, batch_size: int, seed: int, epoch: int, shuffle: bool,
            device: torch.device, start_sample: int = 0, world: int = 1, rank: int = 0) -> DataLoader:
    """A fresh DataLoader for one pass. Its own seeded generator keeps the global RNG untouched,
    so creating it (e.g. mid-epoch after a resume) does not shift the random stream."""
    t = cfg.trainer
    if shuffle:
        sampler = ResumableBatchSampler(len(dataset), batch_size, seed, epoch, world, rank, start_sample)
    else:  # evaluation: every rank sees the whole set, in order, keeping the tail
        sampler = [list(range(i, min(i + batch_size, len(dataset)))) for i in range(0, len(dataset), batch_size)]
    workers = t.num_workers
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=task.collate_fn(cfg),
                      pin_memory=device.type == "cuda", prefetch_factor=t.prefetch_factor if workers else None,
                      generator=torch.Generator().manual_seed(seed * 7919 + epoch))


def _all_reduce_step(accelerator: Accelerator, loss: torch.Tensor, bad: bool, stop: bool) -> tuple[float, bool, bool]:
    """One collective per step: the mean loss over ranks, and whether any rank saw a
    non-finite value or a stop signal (so every rank takes the same branch)."""
    if accelerator.num_processes == 1:
        return loss.item(), bad, stop
    values = torch.stack([loss.detach().float().reshape(()).to(accelerator.device),
                          torch.tensor(float(bad), device=accelerator.device),
                          torch.tensor(float(stop), device=accelerator.device)])
    torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.SUM)
    mean_loss, bad_ranks, stop_ranks = values.tolist()
    return mean_loss / accelerator.num_processes, bad_ranks > 0, stop_ranks > 0


class _StepPlan:
    """How many samples a step takes and when the run ends; owns the (backed-off) batch size."""

    def __init__(self, num_samples: int, batch_size: int, world: int, accum: int, max_epochs: int, max_steps: int,
                 floor: int = 1):
        self.num_samples, self.batch_size, self.world, self.accum = num_samples, batch_size, world, accum
        self.max_epochs, self.max_steps, self.floor = max_epochs, max_steps, floor
        self.backoffs: list[int] = []
        if self.steps_per_epoch == 0:
            raise UserError(f"the training set has {num_samples} samples, fewer than one step needs "
                            f"(batch_size {batch_size} x {world} processes x grad_accum_steps {accum}); "
                            "lower trainer.batch_size or add data")

    @property
    def samples_per_step(self) -> int:
        return self.batch_size * self.world * self.accum

    @property
    def steps_per_epoch(self) -> int:
        return self.num_samples // self.samples_per_step

    @property
    def total_steps(self) -> int:
        total = self.max_epochs * self.steps_per_epoch
        return min(total, self.max_steps) if self.max_steps else total

    def total_steps_from(self, progress: Progress) -> int:
        """Updates of the whole run if the rest runs at the current batch size (LR schedule length)."""
        rest_of_epoch = (self.num_samples - progress.samples_in_epoch) // self.samples_per_step
        total = progress.step + rest_of_epoch + (self.max_epochs - progress.epoch - 1) * self.steps_per_epoch
        return min(total, self.max_steps) if self.max_steps else total

    def step_fits(self, samples_in_epoch: int) -> bool:
        return samples_in_epoch + self.samples_per_step <= self.num_samples

    def finished(self, progress: Progress) -> bool:
        if self.max_steps and progress.step >= self.max_steps:
            return True
        return progress.epoch >= self.max_epochs or (
            progress.epoch == self.max_epochs - 1 and not self.step_fits(progress.samples_in_epoch))

    def smaller_batch(self, step: int) -> int:
        """The batch size to try after a CUDA out-of-memory error at ``step``: 0.9x, down to
        the floor (at the floor: a UserError saying what else to change)."""
        smaller = max(self.floor, int(self.batch_size * 0.9))
        if smaller == self.batch_size:
            raise UserError(f"step {step}: out of memory at batch_size {self.batch_size}, the floor; "
                            "use a smaller model or patch, trainer.precision=bf16/fp16, or a larger GPU")
        return smaller

    def back_off(self, log: Any, step: int) -> None:
        """After a CUDA out-of-memory error: continue with :meth:`smaller_batch`."""
        smaller = self.smaller_batch(step)
        log(f"step {step}: out of memory at batch_size {self.batch_size}; backing off to {smaller}")
        self.backoffs.append(self.batch_size)
        self.batch_size = smaller

    def reason(self, previous: str) -> str:
        first = previous.split("; backed off")[0]
        return f"{first}; backed off after out-of-memory from {' -> '.join(map(str, self.backoffs))} to {self.batch_size}"


class _Window:
    """Accumulates one log interval: loss over non-skipped steps, samples, data wait."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss_sum, self.loss_steps, self.samples, self.data_wait = 0.0, 0, 0, 0.0
        self.started = time.perf_counter()

    def add(self, loss: float, samples: int) -> None:
        self.loss_sum += loss
        self.loss_steps += 1
        self.samples += samples

    def flush(self, progress: Progress, optimizer: torch.optim.Optimizer, device: torch.device,
              logs: dict[str, float]) -> dict[str, Any]:
        wall = max(time.perf_counter() - self.started, 1e-9)
        record = {
            "kind": "train", "epoch": progress.epoch, "step": progress.step,
            "loss": self.loss_sum / self.loss_steps if self.loss_steps else float("nan"),
            "lr": optimizer.param_groups[0]["lr"], "samples_per_s": self.samples / wall,
            "data_wait_frac": self.data_wait / wall, "skipped_nonfinite": progress.skipped_nonfinite,
            "peak_mem_bytes": peak_memory_bytes(device),
            **{k: float(v) for k, v in logs.items()},
        }
        self.reset()
        return record

"""What a checkpoint holds, and putting it back: the run's state in one object.

A checkpoint is a dict of tensors and plain types (``torch.load(weights_only=True)`` reads
it): ``format`` (core.checkpoint.FORMAT), ``model`` (plain keys: no DDP/compile prefixes),
``optimizer``, ``scheduler``, ``scaler``, ``progress`` (core.plan.Progress), ``rng`` (every
rank's random streams), ``config`` (the resolved config), ``meta`` (the task's
``checkpoint_meta(cfg)``), ``task`` and ``version``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from accelerate import Accelerator

import core
from core.checkpoint import CheckpointManager, load as load_checkpoint
from core.errors import UserError
from core.plan import Progress
from core.precision import Precision
from core.runtime import restore_rank_rng_state, rng_states_of_all_ranks


def read_resume_state(checkpoints: CheckpointManager, cfg: Any) -> dict[str, Any]:
    """The last checkpoint of the run being resumed. A run whose batch size was chosen
    automatically keeps the size it chose (``cfg`` is updated in place)."""
    if not checkpoints.last.is_file():
        raise UserError(f"nothing to resume in {checkpoints.folder.parent}: {checkpoints.last} does not exist; "
                        "run without --resume to start a new run")
    state = load_checkpoint(checkpoints.last)
    if cfg.trainer.batch_size == "auto":
        saved = state["config"]["trainer"]
        cfg.trainer.batch_size, cfg.trainer.batch_size_reason = saved["batch_size"], saved["batch_size_reason"]
    return state


@dataclass
class RunState:
    """The parts of a run that a checkpoint saves; ``raw_model`` is the plain module."""

    task: Any
    cfg: Any
    raw_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    precision: Precision
    progress: Progress
    checkpoints: CheckpointManager
    accelerator: Accelerator

    def save(self, is_best: bool = False) -> None:
        """Write a checkpoint (rank 0); a collective, so every rank calls it."""
        rng = rng_states_of_all_ranks()  # collective: before the rank-0-only write
        if self.accelerator.is_main_process:
            self.checkpoints.save({
                "model": self.raw_model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.schedule.state_dict(), "scaler": self.precision.state_dict(),
                "progress": asdict(self.progress), "rng": rng, "config": self.cfg.model_dump(mode="json"),
                "meta": self.task.checkpoint_meta(self.cfg), "task": self.task.name, "version": core.__version__,
            }, self.progress.step, is_best=is_best)
        self.accelerator.wait_for_everyone()

    def restore(self, state: dict[str, Any]) -> None:
        """Everything but the model weights (loaded before DDP wraps the model)."""
        acc = self.accelerator
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        self.precision.load_state_dict(state["scaler"])
        known = set(Progress.__dataclass_fields__)
        self.progress = Progress(**{k: v for k, v in state["progress"].items() if k in known})
        saved_ranks = restore_rank_rng_state(state["rng"], acc.process_index, acc.num_processes)
        if saved_ranks != acc.num_processes:
            acc.print(f"note: the checkpoint holds the random streams of {saved_ranks} process(es), this run has "
                      f"{acc.num_processes}: every process continues rank 0's, so dropout differs from an "
                      "uninterrupted run")
        acc.print(f"resumed {self.checkpoints.folder.parent} at step {self.progress.step} (epoch {self.progress.epoch})")

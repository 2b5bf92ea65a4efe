"""Where a run is and where it ends: :class:`Progress` (saved in every checkpoint) and
:class:`StepPlan` (samples per step, steps per epoch, the end of the run, and the batch
size after an out-of-memory back-off).

A "step" is one attempted optimizer update of ``batch_size x world x grad_accum_steps``
samples; an epoch drops its tail that does not fill a whole step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.errors import UserError


@dataclass
class Progress:
    """Where the run is; saved in every checkpoint."""

    epoch: int = 0
    samples_in_epoch: int = 0  # samples of this epoch's order already consumed (all ranks)
    step: int = 0  # attempted optimizer steps
    skipped_nonfinite: int = 0  # updates skipped by the non-finite guard
    scaler_skipped_steps: int = 0  # fp16 updates the GradScaler skipped (gradient overflow)
    consecutive_nonfinite: int = 0
    best_value: float | None = None
    best_step: int | None = None


class StepPlan:
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

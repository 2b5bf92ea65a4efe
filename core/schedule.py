"""Learning-rate schedules as multipliers of ``trainer.lr`` (for ``LambdaLR``).

The scheduler counts optimizer updates, not attempted steps: a step skipped by the
non-finite guard does not advance it (the same rule GradScaler follows).
"""
from __future__ import annotations

import math
from typing import Callable


def lr_multiplier(kind: str, total_steps: int, warmup_steps: int, min_ratio: float) -> Callable[[int], float]:
    """``cosine``: linear warmup then cosine decay to ``min_ratio``; ``onecycle``: a linear
    ramp over 30% of the run (or ``warmup_steps``) up to 1 then cosine annealing to
    ``min_ratio``, as in Smith's one-cycle; ``constant``: warmup then flat."""
    total = max(total_steps, 1)
    if kind == "onecycle":
        warmup_steps = warmup_steps or max(1, int(0.3 * total))
    warmup_steps = min(warmup_steps, total)  # a warmup longer than the run ends with it

    def multiplier(update: int) -> float:
        if warmup_steps and update < warmup_steps:
            return (update + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        progress = min(1.0, (update - warmup_steps) / max(1, total - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return multiplier

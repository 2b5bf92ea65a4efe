"""Mixed precision as one visible object: which dtype, the autocast context, the GradScaler.

``auto`` resolves to bf16 where the device computes it natively (Ampere and newer GPUs),
fp16 with a GradScaler on older GPUs (a T4 has no bf16 tensor cores), and fp32 on CPU
(CPU autocast to bf16 is slower than fp32 on most server cores and changes results).
The loss is always computed in fp32 by the task; autocast only covers the forward pass.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve(requested: str, device: torch.device) -> str:
    """Turn ``fp32|fp16|bf16|auto`` into the precision this device will actually run."""
    if requested != "auto":
        if requested == "fp16" and device.type == "cpu":
            # CPU fp16 autocast exists but is slow and needs no scaler; bf16 is the CPU half type.
            return "bf16"
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    return "fp32"


@dataclass
class Precision:
    """``name`` is the resolved precision; ``scaler`` is a GradScaler only for fp16 on CUDA."""

    name: str
    device: torch.device
    scaler: torch.amp.GradScaler | None

    @classmethod
    def create(cls, requested: str, device: torch.device) -> "Precision":
        name = resolve(requested, device)
        scaler = torch.amp.GradScaler("cuda") if name == "fp16" and device.type == "cuda" else None
        return cls(name, device, scaler)

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.name == "fp32":
            yield
            return
        with torch.autocast(self.device.type, dtype=DTYPES[self.name]):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring gradients back to their true scale before clipping and the finite check."""
        if self.scaler:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler:
            self.scaler.step(optimizer)  # grads already checked finite: this always steps
            self.scaler.update()
        else:
            optimizer.step()

    def skip(self) -> None:
        """A skipped step: the scaler (if any) still learns that this scale overflowed."""
        if self.scaler:
            self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler and state:
            self.scaler.load_state_dict(state)

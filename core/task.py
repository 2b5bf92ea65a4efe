"""The task contract: what a track gives the engine.

A task is a small object of builders and a loss. The engine (core/trainer.py) owns the
loop; a task never overrides it. Subclass :class:`Task` for the defaults of the optional
parts, and implement the rest as plain methods:

    name, description          registry name and the one line ``train --help`` shows
    Config                     pydantic model, subclass of core.config.RunConfig
    cli_options                extra flags of ``train <task>``: flag -> config key path
    build_model(cfg)           -> nn.Module
    build_datasets(cfg)        -> (train, val): map-style datasets of compact arrays
    collate_fn(cfg)            -> callable or None (torch's default collate)
    to_device(batch, device)   device-side work (features, augmentation) happens here
    loss(model, batch)         -> (scalar fp32 loss, {name: detached 0-d tensor or float});
                               batch is on the device; the engine reads the logs only when it
                               writes a log line (a float() per step would sync the GPU)
    evaluate(model, loader)    -> {metric: float}; the loader yields CPU batches
    monitor                    ("metric", "max" | "min"): picks checkpoints/best.pt
    example_batch(cfg, n)      a CPU batch of the real shape with n samples (memory probing)

Call order: ``build_model(cfg)`` always runs before ``to_device``, ``loss``, ``evaluate``
and ``example_batch``, so a task may keep ``cfg`` from it; ``build_datasets`` runs before
training but not in memory probes (core/batch_size.py), so ``loss`` must not need it.

Datasets hold numpy arrays or memory maps, never big Python lists (forked DataLoader
workers copy those page by page). ``__getitem__`` must be a pure function of the index and
of the epoch set through the optional ``set_epoch(epoch)``: the engine relies on it for
bit-identical resume and for DDP sharding.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch

from core.config import RunConfig


class Task:
    """Base class with the optional parts of the contract filled in."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type[RunConfig]] = RunConfig
    monitor: ClassVar[tuple[str, str]] = ("loss", "min")
    # extra command-line flags: "--max-samples" -> ("data.max_samples", int, "help text")
    cli_options: ClassVar[dict[str, tuple[str, type, str]]] = {}

    def build_model(self, cfg: Any) -> torch.nn.Module:
        raise NotImplementedError

    def build_datasets(self, cfg: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def collate_fn(self, cfg: Any) -> Callable | None:
        return None

    def val_batch_size(self, cfg: Any, train_batch_size: int) -> int:
        """Batch size of the validation loader (whole-volume tasks return 1)."""
        return train_batch_size

    def to_device(self, batch: Any, device: torch.device) -> Any:
        return move_to_device(batch, device)

    def loss(self, model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def evaluate(self, model: torch.nn.Module, loader: Any) -> dict[str, float]:
        raise NotImplementedError

    def example_batch(self, cfg: Any, batch_size: int) -> Any:
        raise NotImplementedError

    def batch_len(self, batch: Any) -> int:
        """Number of samples in a (CPU) batch, for samples/s."""
        first = batch[0] if isinstance(batch, (tuple, list)) else next(iter(batch.values())) if isinstance(batch, dict) else batch
        return int(first.shape[0])


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Copy every tensor of a nested batch to ``device`` (non_blocking: pinned memory on CUDA)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device

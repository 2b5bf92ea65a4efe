"""The task contract: what a track gives the engine. This docstring is the reference.

A task is a small object of builders and a loss, registered by name (core/registry.py).
The engine (core/trainer.py, core/step.py) owns the loop; a task never overrides it.
Subclass :class:`Task` for the defaults of the optional hooks.

Rules every hook follows:
- A hook that needs the config receives it (``cfg``: the task's resolved ``Config``).
  Nothing is stashed on the task object between hooks: the engine may call any hook on a
  fresh instance (the batch-size probes run in another process and never build datasets;
  the inference loader builds only the model).
- No config values in model buffers or parameters: the state dict holds learned weights
  only, so ``--resume --set loss.x=...`` takes effect.
- Batches are nested dicts/tuples/lists of tensors. CPU batches come from the DataLoader;
  ``to_device`` turns one into what ``loss`` takes.

Class attributes
    name                       registry name (``train <name>``)
    description                the one line ``train --help`` shows
    Config                     pydantic model, a subclass of core.config.RunConfig
    monitor                    ("metric", "max" | "min"): the ``evaluate`` key that picks
                               best.pt, unless ``monitored(cfg)`` says otherwise
    cli_options                extra flags of ``train <name>``: {"--flag": ("key.path", type, "help")}
    inference_module           the module of the task's inference command, run as
                               ``python -m <module> --checkpoint CKPT <args>``; it loads the
                               checkpoint through core.inference.load_for_inference
    smoke_config               a TOML config (path from the repo root) that trains in seconds
                               on the task's own synthetic data; "" = the built-in defaults do.
                               The registry contract test (tests/test_task_contract.py) runs it

Required hooks (the engine calls them in this order)
    build_datasets(cfg)        -> (train, val): map-style datasets of compact numpy arrays or
                               memory maps, never big Python lists (forked DataLoader workers
                               copy those page by page). ``train[i]`` is a pure function of i
                               and of the epoch the engine sets, before each epoch, through the
                               dataset's optional ``set_epoch(epoch)`` method: bit-identical
                               resume and DDP sharding rely on it. ``val`` may be empty only
                               when ``trainer.evaluate`` is false. It may resolve config values
                               that come from the data (ARC: ``data.primitives``, the
                               vocabulary) by assigning them in ``cfg``: the engine writes
                               config.json and builds the model after it, so the resolved
                               value is recorded and a resumed run keeps it.
    build_model(cfg)           -> nn.Module (weights only; see the rules)
    to_device(cfg, batch, device) -> the device batch; device-side work (features,
                               augmentation: draw from torch's global RNG, which checkpoints
                               save and restore) happens here
    loss(cfg, model, batch)    -> (scalar fp32 loss, {name: detached 0-d tensor or float});
                               ``model`` may be DDP-wrapped or compiled (call it, do not reach
                               into it); the engine reads the logs only when it writes a log
                               line (a float() per step would sync the GPU)
    evaluate(cfg, model, loader) -> {metric: float}, including ``monitor[0]``; ``model`` is
                               the plain module in eval mode under no_grad and autocast; the
                               loader yields CPU batches of ``val``
    example_batch(cfg, batch_size, extent, rank=0) -> a CPU batch of ``batch_size`` samples
                               for the memory planner: the ``rank``-th heaviest batch the run
                               draws from its training data (0: the worst case, its largest
                               shapes); ``extent`` is what ``batch_extent`` returned. The
                               planner runs ranks 2, 1, 0 in turn: the run's other heavy
                               batches leave allocator and kernel-cache state behind (shapes
                               it has not met). A task whose batches all weigh the same returns
                               the same batch for every rank

Optional hooks (defaults below)
    batch_extent(cfg, train)   -> JSON-able dict describing the largest sample of the loaded
                               training set (e.g. grid sides and pair count); passed to
                               ``example_batch`` (also in a probe process). Default {}.
    collate_fn(cfg)            -> callable or None (torch's default collate)
    val_batch_size(cfg, train_batch_size) -> the validation loader's batch (whole-volume tasks: 1)
    monitored(cfg)             -> ("metric", "max" | "min") the run monitors; default
                               ``monitor``. A task whose config chooses it resolves the
                               choice in ``build_datasets`` (recorded in config.json)
    batch_len(batch)           -> samples in a CPU batch (for samples/s); default: the
                               leading dimension of the first tensor
    checkpoint_meta(cfg)       -> dict of plain types (str, int, float, bool, None, lists and
                               dicts of them) saved in every checkpoint as ``meta`` and
                               returned by the inference loader, e.g. a vocabulary
    after_training(cfg, best_checkpoint, device) -> dict of plain types for summary.json:
                               work on the finished run's best checkpoint (main process
                               only, after a completed run with evaluation on), e.g. tuning
                               post-processing and storing it in the checkpoint's meta
                               (core.checkpoint.update_meta). Default: nothing, {}
    inference_example(cfg, folder) -> list of arguments (besides ``--checkpoint``) for the
                               inference command, with inputs from the task's own data
                               written into ``folder``; the registry contract test runs it
                               (tests/test_task_contract.py), and it shows users the command
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar

import torch

from core.config import RunConfig


class Task:
    """Base class with the optional hooks filled in (see the module docstring)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type[RunConfig]] = RunConfig
    monitor: ClassVar[tuple[str, str]] = ("loss", "min")
    cli_options: ClassVar[dict[str, tuple[str, type, str]]] = {}
    inference_module: ClassVar[str] = ""
    smoke_config: ClassVar[str] = ""

    # ------------------------------------------------------------------ required

    def build_datasets(self, cfg: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def build_model(self, cfg: Any) -> torch.nn.Module:
        raise NotImplementedError

    def loss(self, cfg: Any, model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        raise NotImplementedError

    def evaluate(self, cfg: Any, model: torch.nn.Module, loader: Any) -> dict[str, float]:
        raise NotImplementedError

    def example_batch(self, cfg: Any, batch_size: int, extent: dict[str, Any], rank: int = 0) -> Any:
        raise NotImplementedError

    # ------------------------------------------------------------------ optional

    def to_device(self, cfg: Any, batch: Any, device: torch.device) -> Any:
        return move_to_device(batch, device)

    def batch_extent(self, cfg: Any, train: Any) -> dict[str, Any]:
        return {}

    def collate_fn(self, cfg: Any) -> Callable | None:
        return None

    def after_training(self, cfg: Any, best_checkpoint: Path, device: torch.device) -> dict[str, Any]:
        return {}

    def monitored(self, cfg: Any) -> tuple[str, str]:
        return self.monitor

    def val_batch_size(self, cfg: Any, train_batch_size: int) -> int:
        return train_batch_size

    def batch_len(self, batch: Any) -> int:
        first = batch
        while isinstance(first, (tuple, list, dict)):
            first = first[0] if isinstance(first, (tuple, list)) else next(iter(first.values()))
        return int(first.shape[0])

    def checkpoint_meta(self, cfg: Any) -> dict[str, Any]:
        return {}

    def inference_example(self, cfg: Any, folder: Path) -> list[str]:
        raise NotImplementedError(f"task {self.name!r} has no inference example")


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

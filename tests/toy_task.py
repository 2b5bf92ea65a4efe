"""A seconds-fast task for the engine's tests: noisy 2-class blobs, an MLP with dropout.

It follows the task contract exactly and adds test hooks in ``[fault]``, keyed on the
number of the training-mode loss call (1-based, counted per process):
- ``nonfinite_at``: those calls return NaN, on every rank or only on ``nonfinite_rank``;
- ``kill_at``: that call sends SIGKILL to its own process (a spot instance vanishing);
- ``sigterm_at``: that call sends SIGTERM to its own process (a reclaim notice);
- ``oom_at``: those calls raise the out-of-memory error CUDA's allocator raises, on every
  rank or only on ``oom_rank``;
- ``uneven_rng``: rank r draws r extra numbers from the global torch RNG at each call, as
  batches of other shapes on other ranks (ARC grids) do: the ranks' random streams part;
- ``grad_overflow_at``: those calls keep a finite loss but make its gradients infinite, as
  an fp16 overflow under too high a GradScaler scale does;
- ``record_batches_to``: every call appends "<rank> <batch length>" to that file.
Signals are real and delivered by the kernel; choosing the call makes the tests exact.
The fault settings are read from the config each call (nothing is kept on the task but
the per-process call counter, which is the fault clock).

Inference: ``python -m toy_task --checkpoint C --out F`` writes the accuracy of the
checkpoint's model on the validation blobs to F (JSON), through core's safe loader.
"""
from __future__ import annotations

import os
import signal

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.utils.data import Dataset

from core.batch_size.probes import PROBE_ENV
from core.config import RunConfig, Section, TrainerConfig
from core.task import Task, model_device


class ToyData(Section):
    samples: int = Field(256, ge=1)
    val_samples: int = Field(64, ge=0)
    features: int = 16
    seed: int = 0


class ToyModel(Section):
    hidden: int = 32
    dropout: float = 0.2


class ToyFault(Section):
    nonfinite_at: list[int] = []
    nonfinite_rank: int = -1  # -1: every rank
    kill_at: int = 0
    sigterm_at: int = 0
    oom_at: list[int] = []
    oom_rank: int = -1  # -1: every rank
    uneven_rng: bool = False
    grad_overflow_at: list[int] = []
    record_batches_to: str = ""  # each training loss call appends "<rank> <batch length>" to this file


class ToyConfig(RunConfig):
    trainer: TrainerConfig = Field(default_factory=lambda: TrainerConfig(
        max_epochs=2, batch_size=8, lr=3e-3, log_every_steps=4, precision="fp32"))
    data: ToyData = Field(default_factory=ToyData)
    model: ToyModel = Field(default_factory=ToyModel)
    fault: ToyFault = Field(default_factory=ToyFault)


class Blobs(Dataset):
    """(x: float32 (F,), y: int64 ()) pairs in two compact arrays."""

    def __init__(self, n: int, features: int, seed: int):
        rng = np.random.default_rng(seed)
        self.y = rng.integers(0, 2, size=n).astype(np.int64)
        centres = np.stack([np.full(features, -0.5), np.full(features, 0.5)]).astype(np.float32)
        self.x = (centres[self.y] + rng.normal(0, 1.0, size=(n, features))).astype(np.float32)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return torch.from_numpy(self.x[i]), torch.tensor(self.y[i])


class ToyTask(Task):
    name = "toy"
    description = "test task: two noisy blobs, an MLP with dropout"
    Config = ToyConfig
    monitor = ("accuracy", "max")
    inference_module = "toy_task"

    def __init__(self) -> None:
        self.loss_calls = 0

    def build_model(self, cfg):
        return nn.Sequential(nn.Linear(cfg.data.features, cfg.model.hidden), nn.ReLU(),
                             nn.Dropout(cfg.model.dropout), nn.Linear(cfg.model.hidden, 2))

    def build_datasets(self, cfg):
        d = cfg.data
        return Blobs(d.samples, d.features, d.seed), Blobs(d.val_samples, d.features, d.seed + 1)

    def loss(self, cfg, model, batch):
        x, y = batch
        logits = model(x).float()
        # a batch-size probe process (core/batch_size/probes.py) runs the step too: no faults there
        fault = cfg.fault if os.environ.get(PROBE_ENV) != "1" else ToyFault()
        if model.training:
            self.loss_calls += 1
            if self.loss_calls in fault.grad_overflow_at:
                logits.register_hook(lambda grad: grad * float("inf"))  # loss stays finite, gradients do not
        loss = nn.functional.cross_entropy(logits, y)
        if model.training:
            rank = int(os.environ.get("RANK", 0))
            if fault.uneven_rng:
                torch.rand(rank)
            if fault.record_batches_to:
                with open(fault.record_batches_to, "a") as f:
                    f.write(f"{rank} {len(y)}\n")
            if self.loss_calls in fault.nonfinite_at and fault.nonfinite_rank in (-1, rank):
                loss = loss * float("nan")
            if self.loss_calls == fault.kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            if self.loss_calls in fault.oom_at and fault.oom_rank in (-1, rank):
                raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (injected at loss call {self.loss_calls})")
            if self.loss_calls == fault.sigterm_at:
                os.kill(os.getpid(), signal.SIGTERM)
        return loss, {}

    def evaluate(self, cfg, model, loader):
        device = model_device(model)
        correct = total = 0
        loss_sum = 0.0
        for x, y in loader:
            x, y = self.to_device(cfg, (x, y), device)
            logits = model(x).float()
            loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            total += len(y)
        return {"accuracy": correct / total, "loss": loss_sum / total}

    def example_batch(self, cfg, batch_size, extent, rank=0):
        x = torch.randn(batch_size, cfg.data.features)
        return x, torch.zeros(batch_size, dtype=torch.int64)

    def checkpoint_meta(self, cfg):
        return {"classes": ["minus", "plus"], "features": cfg.data.features}

    def inference_example(self, cfg, folder):
        return ["--out", str(folder / "accuracy.json")]


def main(argv=None):
    """``python -m toy_task --checkpoint C --out F``: validation accuracy of C, as JSON."""
    import argparse
    import json

    from core.errors import exit_on_user_error
    from core.inference import load_for_inference

    @exit_on_user_error
    def run():
        parser = argparse.ArgumentParser(prog="python -m toy_task")
        parser.add_argument("--checkpoint", required=True)
        parser.add_argument("--out", required=True)
        args = parser.parse_args(argv)
        task, cfg, model, meta = load_for_inference(args.checkpoint, "cpu", expected_task="toy")
        _, val = task.build_datasets(cfg)
        loader = torch.utils.data.DataLoader(val, batch_size=32)
        with torch.no_grad():
            result = task.evaluate(cfg, model, loader)
        with open(args.out, "w") as f:
            json.dump({**result, "meta": meta}, f)

    run()


if __name__ == "__main__":
    main()

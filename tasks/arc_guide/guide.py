"""A trained guide as a library: which primitives, with what probability, for a task.

    from tasks.arc_guide.guide import Guide

    guide = Guide.load("runs/arc-guide/.../checkpoints/best.pt")      # device="auto"
    guide.vocabulary                          # the primitive names, the model's output order
    guide.predict([(input_grid, output_grid), ...])   # {name: probability} for one task
    guide.predict_batch([task_pairs, ...])            # one dict per task, batched forwards

A task is its list of (input, output) pairs: grids as lists of rows of colours 0..9 or
(rows, cols) integer arrays, or ``{"input": ..., "output": ...}`` dicts (the ARC JSON
layout). The first ``data.max_pairs`` pairs are used, as in training. Probabilities are
the model's independent sigmoids ("this primitive appears in the program"), so they do
not sum to 1. Works on CPU or GPU; the checkpoint is loaded through the engine's safe
loader (core.inference.load_for_inference: nothing in the file runs).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from core.errors import DataError
from core.inference import load_for_inference
from tasks.arc_guide.arc_tasks import parse_grid
from tasks.arc_guide.dsl import MAX_SIDE, N_COLOURS
from tasks.arc_guide.task import ArcGuideTask, collate_records, guide_logits, vocabulary

PAIR_CELLS_PER_BATCH = 200_000  # grid cells of one batched forward: bounds its memory (~100 MB)


def as_pairs(task: Any, where: str = "task") -> list[tuple[np.ndarray, np.ndarray]]:
    """One task's pairs as (input, output) uint8 arrays; DataError naming ``where`` if malformed."""
    if not isinstance(task, (list, tuple)) or not task:
        raise DataError(f"{where}: expected a non-empty list of (input, output) pairs")
    pairs = []
    for k, pair in enumerate(task):
        if isinstance(pair, dict):
            if "input" not in pair or "output" not in pair:
                raise DataError(f"{where}: pair {k} has no input or no output")
            pair = (pair["input"], pair["output"])
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise DataError(f"{where}: pair {k} is not an (input, output) pair")
        pairs.append(tuple(_grid(g, f"{where}: pair {k} {side}") for g, side in zip(pair, ("input", "output"))))
    return pairs


def _grid(value: Any, where: str) -> np.ndarray:
    """One grid as a uint8 array. An integer array (a solver's or the loader's own) is
    checked whole in numpy; anything else goes through the JSON grid parser."""
    if isinstance(value, np.ndarray) and value.ndim == 2 and np.issubdtype(value.dtype, np.integer):
        h, w = value.shape
        if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE) or value.min() < 0 or value.max() >= N_COLOURS:
            raise DataError(f"{where}: expected 1..{MAX_SIDE} x 1..{MAX_SIDE} integer colours 0..9, "
                            f"got a {h} x {w} array of {value.min()}..{value.max()}")
        return np.ascontiguousarray(value, dtype=np.uint8)
    return parse_grid(value.tolist() if isinstance(value, np.ndarray) else value, where)


class Guide:
    """A trained arc-guide model with its vocabulary (see the module docstring)."""

    def __init__(self, model: torch.nn.Module, vocabulary: Sequence[str], max_pairs: int, config: Any = None):
        self.model = model.eval()
        self.vocabulary = list(vocabulary)
        self.max_pairs = max_pairs
        self.config = config  # the training run's resolved config, when loaded from a checkpoint
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, checkpoint: str | Path, device: str | torch.device = "auto") -> "Guide":
        """The guide of an arc-guide checkpoint; UserError (one line naming the file) if the
        file is not one."""
        _, cfg, model, meta = load_for_inference(checkpoint, device, expected_task=ArcGuideTask.name)
        names = meta.get("vocabulary") or vocabulary(cfg)  # checkpoints before the meta: the config's
        return cls(model, names, cfg.data.max_pairs, cfg)

    def predict(self, pairs: Any) -> dict[str, float]:
        """{primitive name: probability} for one task's (input, output) pairs."""
        return self._named(self.probabilities_batch([pairs])[0])

    def predict_batch(self, tasks: Sequence[Any], batch_size: int = 64) -> list[dict[str, float]]:
        """:meth:`predict` of many tasks, ``batch_size`` tasks (at most) per forward."""
        return [self._named(p) for p in self.probabilities_batch(tasks, batch_size)]

    def ranked(self, probabilities: dict[str, float]) -> list[str]:
        """Names from the most to the least likely (ties in vocabulary order)."""
        order = {name: k for k, name in enumerate(self.vocabulary)}
        return sorted(probabilities, key=lambda name: (-probabilities[name], order[name]))

    @torch.no_grad()
    def probabilities_batch(self, tasks: Sequence[Any], batch_size: int = 64) -> np.ndarray:
        """(T, P) float64 probabilities in vocabulary order, one row per task. Tasks are
        batched in their given order, a batch closing at ``batch_size`` tasks or
        PAIR_CELLS_PER_BATCH padded cells, whichever comes first."""
        items = [(as_pairs(t, f"task {k}")[: self.max_pairs], k) for k, t in enumerate(tasks)]
        out = np.zeros((len(items), len(self.vocabulary)), dtype=np.float64)
        batch: list[tuple[list, int]] = []
        padded = (0, 0, 0)  # (K, H, W) of ``batch`` as collate_records pads it
        for item in items:
            grown = tuple(max(a, b) for a, b in zip(padded, _extent(item[0])))
            if batch and (len(batch) >= batch_size or (len(batch) + 1) * 2 * math.prod(grown) > PAIR_CELLS_PER_BATCH):
                self._forward(batch, out)
                batch, grown = [], _extent(item[0])
            batch.append(item)
            padded = grown
        if batch:
            self._forward(batch, out)
        return out

    def _forward(self, batch: list[tuple[list, int]], out: np.ndarray) -> None:
        unused = np.zeros(len(self.vocabulary), dtype=np.uint8)  # labels: not read at inference
        cpu = collate_records([(pairs, unused, 0) for pairs, _ in batch])
        logits = guide_logits(self.model, {k: v.to(self.device, non_blocking=True) for k, v in cpu.items()})
        out[[k for _, k in batch]] = torch.sigmoid(logits.float()).cpu().numpy()

    def _named(self, row: np.ndarray) -> dict[str, float]:
        return {name: float(p) for name, p in zip(self.vocabulary, row)}


def _extent(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[int, int, int]:
    """(pairs, largest rows, largest cols) of one task."""
    return (len(pairs), max(g.shape[0] for pair in pairs for g in pair), max(g.shape[1] for pair in pairs for g in pair))

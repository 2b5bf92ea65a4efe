"""The order in which training samples are seen: seeded per epoch, sharded per rank, resumable.

The engine shuffles and shards itself (instead of DistributedSampler + skip-ahead) so that
the position in the data order is one integer, saved in every checkpoint: a resumed run
sees exactly the batches the uninterrupted run would have seen.

Epoch ``e`` is a permutation drawn from ``Generator().manual_seed(seed, e)``. The position
is counted in samples ``s`` already consumed this epoch (so it survives a change of batch
size, e.g. an out-of-memory back-off). The next global batch is ``perm[s : s + B*W]``
(B = per-process batch, W = world size) and rank ``r`` takes its ``r``-th block of B. An
incomplete tail is dropped, so every rank always has the same number of equal-sized
batches (DDP needs that) and 1 process with batch B*W sees the same samples per step as W
processes with batch B.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_samples, generator=generator)


class ResumableBatchSampler(Sampler[list[int]]):
    """Yields this rank's batches of one epoch, starting after ``start_sample`` samples."""

    def __init__(self, num_samples: int, batch_size: int, seed: int, epoch: int,
                 world_size: int = 1, rank: int = 0, start_sample: int = 0, shuffle: bool = True):
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.start_sample = start_sample
        self.order = (epoch_permutation(num_samples, seed, epoch) if shuffle
                      else torch.arange(num_samples))

    @staticmethod
    def batches_per_epoch(num_samples: int, batch_size: int, world_size: int = 1) -> int:
        return num_samples // (batch_size * world_size)

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start_sample) // (self.batch_size * self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        global_batch = self.batch_size * self.world_size
        for b in range(len(self)):
            first = self.start_sample + b * global_batch
            block = self.order[first:first + global_batch]
            yield block[self.rank * self.batch_size:(self.rank + 1) * self.batch_size].tolist()


def heaviest_batches(weights: np.ndarray, batch_size: int, seed: int, epochs: int, max_batches: int = 0,
                     count: int = 1) -> list[np.ndarray]:
    """Indices of the ``count`` batches with the largest summed ``weights`` among the batches
    a single-process run draws (epochs ``0..epochs-1`` in this module's order, the first
    ``max_batches`` batches in all when that is not 0), heaviest first. The memory planner
    probes them: a model whose memory follows each sample's size (ARC grids packed by their
    real cells) peaks on the heaviest batch the run meets, not on an all-largest batch it
    never draws, and the run's other heavy batches (new shapes) add allocator and kernel
    caches on top. A dataset smaller than one batch is one batch."""
    weights = np.asarray(weights, dtype=np.float64)
    n = len(weights)
    per_epoch = n // batch_size
    if per_epoch == 0:
        return [np.arange(n)]
    found: list[tuple[float, np.ndarray]] = []  # (summed weight, indices), at most ``count`` per epoch
    left = max_batches or per_epoch * epochs
    for epoch in range(epochs):
        take = min(per_epoch, left)
        if take <= 0:
            break
        order = epoch_permutation(n, seed, epoch).numpy()[: take * batch_size].reshape(take, batch_size)
        sums = weights[order].sum(axis=1)
        top = np.argsort(-sums, kind="stable")[:count]
        found += [(float(sums[t]), order[t]) for t in top]
        left -= take
    found.sort(key=lambda item: -item[0])  # stable: ties keep the run's order
    return [indices for _, indices in found[:count]]


def heaviest_batch(weights: np.ndarray, batch_size: int, seed: int, epochs: int, max_batches: int = 0) -> np.ndarray:
    """The heaviest of :func:`heaviest_batches`."""
    return heaviest_batches(weights, batch_size, seed, epochs, max_batches)[0]

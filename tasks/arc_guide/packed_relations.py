"""The relations of every pair of a packed dataset, computed once, when the file is packed.

The guide takes each pair's exact relations (tasks.arc_guide.relations) beside its learned
codes. At about half a millisecond a pair they cost a 30,000-record dataset some 45 s of
one core, which the first epoch of every training run used to pay again. Packed with the
grids (float16, N_RELATIONS values a pair: 5.8 MB for 90,000 pairs) they are computed once
per dataset file, spread over the cores, and memory-mapped like the grids by every later
run, DataLoader worker and rank (tasks.arc_guide.pack_cache).
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Optional

import numpy as np

from core.cpus import usable_cpus
from tasks.arc_guide.packed import unpack_grid
from tasks.arc_guide.relations import N_RELATIONS, relations

PARALLEL_PAIRS = 4096  # from this many pairs on (about 2 s of one core), worker processes
MAX_WORKERS = 4
CHUNKS_PER_WORKER = 8  # smaller jobs even out the workers' finishing times


def pack_relations(cells: np.ndarray, grid_offset: np.ndarray, grid_shape: np.ndarray,
                   workers: Optional[int] = None) -> np.ndarray:
    """(n_pairs, N_RELATIONS) float16: the relations of each (grid 2p, grid 2p+1) pair of
    the packed grids (tasks.arc_guide.packed.ArcData's layout), in pair order; ``workers``
    processes (default: one per CPU this process may use, at most MAX_WORKERS) from PARALLEL_PAIRS pairs on."""
    n_pairs = len(grid_shape) // 2
    workers = workers or min(MAX_WORKERS, usable_cpus())
    # forked workers: they run numpy only, never the torch threads a fork copies; and unlike
    # spawned ones they need no importable __main__ (a notebook, python -c, a heredoc)
    if n_pairs < PARALLEL_PAIRS or workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return _relations_of((cells, grid_offset, grid_shape))
    size = -(-n_pairs // (workers * CHUNKS_PER_WORKER))
    jobs = [_chunk(cells, grid_offset, grid_shape, first, min(first + size, n_pairs))
            for first in range(0, n_pairs, size)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return np.concatenate(list(pool.map(_relations_of, jobs)))


def _chunk(cells: np.ndarray, grid_offset: np.ndarray, grid_shape: np.ndarray, first: int,
           stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``first .. stop - 1`` as a self-contained packed block (offsets from 0)."""
    offsets = np.asarray(grid_offset[2 * first : 2 * stop + 1], dtype=np.int64)
    return (np.asarray(cells[offsets[0] : offsets[-1]]), offsets - offsets[0],
            np.asarray(grid_shape[2 * first : 2 * stop]))


def _relations_of(block: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    cells, grid_offset, grid_shape = block
    n_pairs = len(grid_shape) // 2
    out = np.zeros((n_pairs, N_RELATIONS), dtype=np.float16)
    for p in range(n_pairs):
        out[p] = relations(unpack_grid(cells, grid_offset, grid_shape, 2 * p),
                           unpack_grid(cells, grid_offset, grid_shape, 2 * p + 1))
    return out

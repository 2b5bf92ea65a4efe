"""ARC-like input grids for DSL v2 records: scenes of one family share their parameters.

Families (what the object-level templates and the learners need something to work on):
    objects     2..6 objects (filled or hollow rectangles, blobs) of distinct sizes on a background
    separated   two parts side by side or stacked, split by a line of a separator colour
    halves      the same without the separator line (the grid's halves)
    symmetric   a pattern symmetric left-right, up-down or under rotation, a patch of it hidden
                under a hole colour
    points      a few single cells on a background (for lines and connections)
    walls       single cells of a few colours with obstacle cells of another colour and, mostly,
                a full line of it across the grid (for rays that stop, turn or aim at a wall)
    lattice     a small motif repeated over the grid, a patch or two of it hidden under a hole
                colour (periodic patterns to complete)
    tiles       small grids (2..5 a side, one shape per record) of a few colours (to lay out,
                upscale, mirror)
    cells       a layout of 3..16 small cells between separator lines, each empty or mostly one
                colour (one cell per part, the odd part out)

``scene(rng, family, style)`` draws one grid; ``style(rng, family)`` draws what the scenes of
one record share (background, palette, size range, motif), so a record's pairs look alike
the way an ARC task's do. Grids are 2..max_side a side (max_side at most 22), except that a
lattice or a layout of cells grows past a small max_side to fit its motif (at most 23).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FAMILIES = ("objects", "separated", "halves", "symmetric", "points", "lattice", "tiles", "cells", "walls")
# the largest side of a record's scenes: ARC inputs are mostly 3..15 a side, some up to 30
MAX_SIDES = (6, 8, 10, 12, 14, 14, 18, 22)


@dataclass(frozen=True)
class Style:
    """What the scenes of one record share."""

    background: int
    palette: tuple[int, ...]  # object colours, never the background
    special: int  # separator or hole colour: neither background nor in the palette
    max_side: int
    axis: int  # separated/halves: 0 stacked, 1 side by side; symmetric: which symmetry
    shape: tuple[int, int] = (3, 3)  # tiles: every scene's shape; lattice: the motif's shape


def style(rng: np.random.Generator, family: str, max_side: int | None = None) -> Style:
    """The shared parameters of one record's scenes of ``family``."""
    background = 0 if rng.random() < 0.8 else int(rng.integers(1, 10))
    others = [c for c in range(10) if c != background]
    chosen = rng.permutation(others)
    n = int(rng.integers(2, 5))
    side = max_side if max_side is not None else int(MAX_SIDES[int(rng.integers(len(MAX_SIDES)))])
    small = 5 if family == "tiles" else 4
    shape = (int(rng.integers(2, small + 1)), int(rng.integers(2, small + 1)))
    return Style(background, tuple(int(c) for c in chosen[:n]), int(chosen[n]), side, int(rng.integers(0, 3)), shape)


def scene(rng: np.random.Generator, family: str, s: Style) -> np.ndarray:
    """One (rows, cols) uint8 grid of ``family`` in style ``s``."""
    return _FAMILY[family](rng, s)


def _size(rng: np.random.Generator, lo: int, hi: int) -> tuple[int, int]:
    return int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))


def _objects(rng: np.random.Generator, s: Style) -> np.ndarray:
    h, w = _size(rng, 6, max(6, s.max_side))
    g = np.full((h, w), s.background, dtype=np.uint8)
    sizes = rng.permutation(np.arange(1, 7))[: int(rng.integers(2, 7))]  # distinct areas make "largest" defined
    for k, side in enumerate(sizes):
        oh = int(min(h - 1, max(1, side)))
        ow = int(min(w - 1, max(1, side + int(rng.integers(-1, 2)))))
        top, left = int(rng.integers(0, h - oh + 1)), int(rng.integers(0, w - ow + 1))
        shape = np.ones((oh, ow), dtype=bool)
        kind = rng.random()
        if kind < 0.3 and oh > 2 and ow > 2:
            shape[1:-1, 1:-1] = False  # hollow: something to fill
        elif kind < 0.5:
            shape = rng.random((oh, ow)) < 0.7
            shape[0, 0] = True
        g[top:top + oh, left:left + ow][shape] = s.palette[k % len(s.palette)]
    return g


def _sparse(rng: np.random.Generator, h: int, w: int, s: Style, density: float) -> np.ndarray:
    g = np.full((h, w), s.background, dtype=np.uint8)
    on = rng.random((h, w)) < density
    g[on] = rng.choice(np.asarray(s.palette[:1] if rng.random() < 0.5 else s.palette), size=int(on.sum()))
    return g


def _parts(rng: np.random.Generator, s: Style, separator: bool) -> np.ndarray:
    h, w = _size(rng, 3, max(3, s.max_side // 2))
    a, b = _sparse(rng, h, w, s, 0.45), _sparse(rng, h, w, s, 0.45)
    axis = s.axis % 2
    pieces = [a, b]
    if separator:
        line = np.full((1, w) if axis == 0 else (h, 1), s.special, dtype=np.uint8)
        pieces = [a, line, b]
    return np.concatenate(pieces, axis=axis)


def _cells(rng: np.random.Generator, s: Style) -> np.ndarray:
    # an (rows, cols) layout of (ch, cw) cells between separator lines, each cell empty or
    # mostly one colour (what "one cell per part" and "pick the odd part" look at)
    rows, cols = _size(rng, 1, 4)
    rows, cols = (rows, cols) if rows * cols >= 3 else (rows + 1, cols + 1)
    ch, cw = s.shape
    h, w = rows * (ch + 1) - 1, cols * (cw + 1) - 1
    g = np.full((h, w), s.special, dtype=np.uint8)
    for r in range(rows):
        for c in range(cols):
            cell = np.full((ch, cw), s.background, dtype=np.uint8)
            if rng.random() < 0.6:
                colour = s.palette[int(rng.integers(len(s.palette)))]
                cell[rng.random((ch, cw)) < 0.7] = colour
            g[r * (ch + 1):r * (ch + 1) + ch, c * (cw + 1):c * (cw + 1) + cw] = cell
    return g


def _hide_patches(rng: np.random.Generator, g: np.ndarray, colour: int, count: int, largest: int) -> np.ndarray:
    """``count`` rectangles of ``colour`` painted over ``g`` (in place), sides 2..largest (1 where 2 does not fit)."""
    largest = max(1, min(largest, *g.shape))
    for _ in range(count):
        ph, pw = _size(rng, min(2, largest), largest)
        top, left = int(rng.integers(0, g.shape[0] - ph + 1)), int(rng.integers(0, g.shape[1] - pw + 1))
        g[top:top + ph, left:left + pw] = colour
    return g


def _symmetric(rng: np.random.Generator, s: Style) -> np.ndarray:
    h, w = _size(rng, 3, max(4, s.max_side // 2))
    half = rng.choice(np.asarray((s.background,) + s.palette), size=(h, w)).astype(np.uint8)
    if s.axis == 0:
        g = np.concatenate([half, half[:, ::-1]], axis=1)
    elif s.axis == 1:
        g = np.concatenate([half, half[::-1, :]], axis=0)
    else:
        g = np.concatenate([half, half[::-1, ::-1]], axis=0)
    # the hole inside the first half: its mirror image is intact, so the pattern restores it
    _hide_patches(rng, g[:h, :w], s.special, 1, max(2, min(h, w) // 2))
    return g


def _points(rng: np.random.Generator, s: Style) -> np.ndarray:
    h, w = _size(rng, 5, max(5, s.max_side))
    g = np.full((h, w), s.background, dtype=np.uint8)
    n = int(rng.integers(1, 5))
    g[rng.integers(0, h, n), rng.integers(0, w, n)] = rng.choice(np.asarray(s.palette), size=n)
    return g


def _walls(rng: np.random.Generator, s: Style) -> np.ndarray:
    h, w = _size(rng, 5, max(5, s.max_side))
    g = np.full((h, w), s.background, dtype=np.uint8)
    if s.axis == 0:  # a wall row
        g[int(rng.integers(1, h - 1)), :] = s.special
    elif s.axis == 1:  # a wall column
        g[:, int(rng.integers(1, w - 1))] = s.special
    n_obstacles = int(rng.integers(0, 4))
    g[rng.integers(0, h, n_obstacles), rng.integers(0, w, n_obstacles)] = s.special
    free = np.argwhere(g == s.background)  # seeds never cover the wall or an obstacle
    seeds = free[rng.choice(len(free), size=min(len(free), int(rng.integers(1, 6))), replace=False)]
    g[seeds[:, 0], seeds[:, 1]] = rng.choice(np.asarray(s.palette), size=len(seeds))
    return g


def _lattice(rng: np.random.Generator, s: Style) -> np.ndarray:
    # a fresh (mh, mw) motif per scene over the record's colours, tiled over (h, w)
    mh, mw = s.shape
    h, w = _size(rng, max(6, 2 * max(mh, mw)), max(6, 2 * max(mh, mw), s.max_side))
    motif = rng.choice(np.asarray((s.background,) + s.palette), size=(mh, mw)).astype(np.uint8)
    g = np.tile(motif, (-(-h // mh), -(-w // mw)))[:h, :w].copy()
    return _hide_patches(rng, g, s.special, int(rng.integers(1, 3)), min(h, w) // 3)


def _tiles(rng: np.random.Generator, s: Style) -> np.ndarray:
    colours = np.asarray((s.background,) + s.palette[: int(rng.integers(1, len(s.palette) + 1))])
    return rng.choice(colours, size=s.shape).astype(np.uint8)


_FAMILY = {
    "objects": _objects,
    "separated": lambda rng, s: _parts(rng, s, True),
    "halves": lambda rng, s: _parts(rng, s, False),
    "symmetric": _symmetric,
    "points": _points,
    "lattice": _lattice,
    "tiles": _tiles,
    "cells": _cells,
    "walls": _walls,
}

"""ARC-like input grids for DSL v2 records: scenes of one family share their parameters.

Families (what the object-level templates need something to work on):
    objects     2..6 objects (filled or hollow rectangles, blobs) of distinct sizes on a background
    separated   two parts side by side or stacked, split by a line of a separator colour
    halves      the same without the separator line (the grid's halves)
    symmetric   a pattern symmetric left-right, up-down or under rotation, a patch of it hidden
                under a hole colour
    points      a few single cells on a background (for lines and connections)

``scene(rng, family, style)`` draws one grid; ``style(rng, family)`` draws what the scenes of
one record share (background, palette, size range), so a record's pairs look alike the way
an ARC task's do. Grids stay within 3..max_side a side.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FAMILIES = ("objects", "separated", "halves", "symmetric", "points")


@dataclass(frozen=True)
class Style:
    background: int
    palette: tuple[int, ...]  # object colours, never the background
    special: int  # separator or hole colour: neither background nor in the palette
    max_side: int
    axis: int  # separated/halves: 0 stacked, 1 side by side; symmetric: which symmetry


def style(rng: np.random.Generator, family: str, max_side: int = 14) -> Style:
    background = 0 if rng.random() < 0.8 else int(rng.integers(1, 10))
    others = [c for c in range(10) if c != background]
    chosen = rng.permutation(others)
    n = int(rng.integers(2, 5))
    return Style(background, tuple(int(c) for c in chosen[:n]), int(chosen[n]), max_side, int(rng.integers(0, 3)))


def scene(rng: np.random.Generator, family: str, s: Style) -> np.ndarray:
    return _FAMILY[family](rng, s)


def _size(rng: np.random.Generator, lo: int, hi: int) -> tuple[int, int]:
    return int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))


def _objects(rng: np.random.Generator, s: Style) -> np.ndarray:
    h, w = _size(rng, 6, s.max_side)
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


def _symmetric(rng: np.random.Generator, s: Style) -> np.ndarray:
    h, w = _size(rng, 3, max(3, s.max_side // 2))
    half = rng.choice(np.asarray((s.background,) + s.palette), size=(h, w)).astype(np.uint8)
    if s.axis == 0:
        g = np.concatenate([half, half[:, ::-1]], axis=1)
    elif s.axis == 1:
        g = np.concatenate([half, half[::-1, :]], axis=0)
    else:
        g = np.concatenate([half, half[::-1, ::-1]], axis=0)
    ph, pw = _size(rng, 1, max(1, min(g.shape) // 3))
    top, left = int(rng.integers(0, g.shape[0] - ph + 1)), int(rng.integers(0, g.shape[1] - pw + 1))
    g[top:top + ph, left:left + pw] = s.special
    return g


def _points(rng: np.random.Generator, s: Style) -> np.ndarray:
    h, w = _size(rng, 5, s.max_side)
    g = np.full((h, w), s.background, dtype=np.uint8)
    n = int(rng.integers(1, 5))
    g[rng.integers(0, h, n), rng.integers(0, w, n)] = rng.choice(np.asarray(s.palette), size=n)
    return g


_FAMILY = {
    "objects": _objects,
    "separated": lambda rng, s: _parts(rng, s, True),
    "halves": lambda rng, s: _parts(rng, s, False),
    "symmetric": _symmetric,
    "points": _points,
}

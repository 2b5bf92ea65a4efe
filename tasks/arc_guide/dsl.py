"""The ARC guide's DSL: named whole-grid primitives, pure numpy functions.

Contract of every primitive: ``f(grid) -> grid`` where ``grid`` is a 2-D integer array of
shape (1..30, 1..30) with colours 0..9 (0 is the background). A primitive never mutates its
argument and always returns a new array. When its result is undefined (no content to
crop, an odd side to halve, no object to pick, nothing to recolour) it raises
:class:`NotApplicable`; when it has nothing to do (nothing falls, no hole to fill) it
returns an unchanged copy, so the generator can see no-op steps; a result that would leave ARC bounds (more than 30 rows or
columns) raises it too, so every value a primitive returns is again a valid ARC grid.

``PRIMITIVES`` is the ordered name -> function mapping; its order is the guide model's
output order and the tie-break of canonical (shortest, then first in this order) programs.
Never reorder or rename entries without regenerating datasets: labels are stored by name
in the JSON, but by index in packed caches and checkpoints.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

MAX_SIDE = 30  # ARC grids are 1..30 x 1..30
N_COLOURS = 10  # colours 0..9
BACKGROUND = 0

Grid = np.ndarray
# 8-connectivity: ARC objects touch diagonally more often than not
_EIGHT = np.ones((3, 3), dtype=bool)


class NotApplicable(ValueError):
    """A primitive does not apply to this grid (or its result would leave ARC bounds)."""


def _copy(view: np.ndarray) -> Grid:
    return np.array(view, order="C")  # always a copy, even of an already contiguous view


def bounded(grid: Grid) -> Grid:
    """``grid`` itself when it is a valid ARC shape (2-D, 1..30 a side); NotApplicable otherwise."""
    if grid.ndim != 2 or not (1 <= grid.shape[0] <= MAX_SIDE and 1 <= grid.shape[1] <= MAX_SIDE):
        raise NotApplicable(f"result shape {grid.shape} is outside 1..{MAX_SIDE} x 1..{MAX_SIDE}")
    return grid


# --------------------------------------------------------------------------- dihedral group
# np.rot90/flip/.T return views; _copy makes results independent C-ordered arrays.


def rot90(g: Grid) -> Grid:
    """Rotate a quarter turn counter-clockwise; (h, w) -> (w, h)."""
    return _copy(np.rot90(g, 1))


def rot180(g: Grid) -> Grid:
    return _copy(g[::-1, ::-1])


def rot270(g: Grid) -> Grid:
    """Rotate a quarter turn clockwise; (h, w) -> (w, h)."""
    return _copy(np.rot90(g, 3))


def flip_h(g: Grid) -> Grid:
    """Mirror left-right (columns reversed)."""
    return _copy(g[:, ::-1])


def flip_v(g: Grid) -> Grid:
    """Mirror top-bottom (rows reversed)."""
    return _copy(g[::-1, :])


def transpose(g: Grid) -> Grid:
    """Reflect in the main diagonal; (h, w) -> (w, h)."""
    return _copy(g.T)


def anti_transpose(g: Grid) -> Grid:
    """Reflect in the anti-diagonal; (h, w) -> (w, h)."""
    return _copy(g[::-1, ::-1].T)


# --------------------------------------------------------------------------- size changes


def crop_to_content(g: Grid) -> Grid:
    """The bounding box of the non-background cells; NotApplicable if there are none."""
    rows = np.flatnonzero(g.any(axis=1))
    cols = np.flatnonzero(g.any(axis=0))
    if rows.size == 0:
        raise NotApplicable("no content to crop")
    return g[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].copy()


def upscale_2(g: Grid) -> Grid:
    """Each cell becomes a 2x2 block."""
    if max(g.shape) * 2 > MAX_SIDE:
        raise NotApplicable("upscaled grid would exceed 30")
    return np.repeat(np.repeat(g, 2, axis=0), 2, axis=1)


def upscale_3(g: Grid) -> Grid:
    """Each cell becomes a 3x3 block."""
    if max(g.shape) * 3 > MAX_SIDE:
        raise NotApplicable("upscaled grid would exceed 30")
    return np.repeat(np.repeat(g, 3, axis=0), 3, axis=1)


def downscale_2(g: Grid) -> Grid:
    """Inverse of upscale_2: needs even sides made of uniform 2x2 blocks."""
    h, w = g.shape
    if h % 2 or w % 2:
        raise NotApplicable("odd side cannot be halved")
    small = g[::2, ::2]
    if not np.array_equal(np.repeat(np.repeat(small, 2, axis=0), 2, axis=1), g):
        raise NotApplicable("grid is not made of uniform 2x2 blocks")
    return small.copy()


def tile_2x2(g: Grid) -> Grid:
    """Repeat the grid twice in each direction."""
    if max(g.shape) * 2 > MAX_SIDE:
        raise NotApplicable("tiled grid would exceed 30")
    return np.tile(g, (2, 2))


def mirror_h(g: Grid) -> Grid:
    """Concatenate the grid with its left-right mirror: (h, w) -> (h, 2w)."""
    if g.shape[1] * 2 > MAX_SIDE:
        raise NotApplicable("mirrored grid would exceed 30")
    return np.concatenate([g, g[:, ::-1]], axis=1)


def mirror_v(g: Grid) -> Grid:
    """Concatenate the grid with its top-bottom mirror: (h, w) -> (2h, w)."""
    if g.shape[0] * 2 > MAX_SIDE:
        raise NotApplicable("mirrored grid would exceed 30")
    return np.concatenate([g, g[::-1, :]], axis=0)


# --------------------------------------------------------------------------- gravity


def _gravity_down(g: Grid) -> Grid:
    """Non-background cells fall to the bottom of their column, keeping their order."""
    fg = g != BACKGROUND
    # stable argsort on "is foreground" moves background to the top, order kept
    order = np.argsort(fg, axis=0, kind="stable")
    return np.take_along_axis(g, order, axis=0)


def gravity_down(g: Grid) -> Grid:
    return _gravity_down(g)


def gravity_up(g: Grid) -> Grid:
    return _copy(_gravity_down(g[::-1, :])[::-1, :])


def gravity_left(g: Grid) -> Grid:
    return _copy(_gravity_down(g[:, ::-1].T).T[:, ::-1])


def gravity_right(g: Grid) -> Grid:
    return _copy(_gravity_down(g.T).T)


# --------------------------------------------------------------------------- objects


def outline(g: Grid) -> Grid:
    """Keep only the border cells of each solid area: interior cells (non-background, all 4
    neighbours inside the grid and of the same colour) become background."""
    interior = g != BACKGROUND
    interior[0, :] = interior[-1, :] = False  # grid edges count as borders
    interior[:, 0] = interior[:, -1] = False
    interior[1:, :] &= g[1:, :] == g[:-1, :]  # same as the cell above
    interior[:-1, :] &= g[:-1, :] == g[1:, :]  # ... below
    interior[:, 1:] &= g[:, 1:] == g[:, :-1]  # ... left
    interior[:, :-1] &= g[:, :-1] == g[:, 1:]  # ... right
    out = g.copy()
    out[interior] = BACKGROUND
    return out


def fill_enclosed(g: Grid) -> Grid:
    """Background areas not 4-connected to the grid border take the most common colour of
    the cells 4-adjacent to them (lowest colour on ties)."""
    labels, n = ndimage.label(g == BACKGROUND)  # (h, w) int, 0 = foreground
    if n == 0:
        return g.copy()
    enclosed = np.ones(n + 1, dtype=bool)
    enclosed[0] = False
    enclosed[labels[0]] = enclosed[labels[-1]] = enclosed[labels[:, 0]] = enclosed[labels[:, -1]] = False
    if not enclosed.any():
        return g.copy()
    # votes[label, colour]: how often a cell of that area touches that colour (4-neighbours)
    keys = np.concatenate([
        (inside * N_COLOURS + outside).ravel()
        for inside, outside in (
            (labels[1:, :], g[:-1, :]), (labels[:-1, :], g[1:, :]),
            (labels[:, 1:], g[:, :-1]), (labels[:, :-1], g[:, 1:]),
        )
    ])
    votes = np.bincount(keys, minlength=(n + 1) * N_COLOURS).reshape(n + 1, N_COLOURS)
    votes[:, BACKGROUND] = 0
    fill_colour = votes.argmax(axis=1)
    out = g.copy()
    mask = enclosed[labels]
    out[mask] = fill_colour[labels[mask]]
    return out


def largest_object(g: Grid) -> Grid:
    """The largest 8-connected group of non-background cells, cropped to its bounding box
    (first in label order on ties); NotApplicable if there is none."""
    labels, n = ndimage.label(g != BACKGROUND, structure=_EIGHT)
    if n == 0:
        raise NotApplicable("no objects")
    sizes = np.bincount(labels.ravel())[1:]
    keep = labels == int(np.argmax(sizes)) + 1
    rows = np.flatnonzero(keep.any(axis=1))
    cols = np.flatnonzero(keep.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    return np.where(keep[box], g[box], BACKGROUND)


def remove_noise(g: Grid) -> Grid:
    """Isolated single cells (no 8-neighbour of any non-background colour) become background."""
    fg = g != BACKGROUND
    labels, n = ndimage.label(fg, structure=_EIGHT)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    noise = fg & (sizes[labels] == 1)
    out = g.copy()
    out[noise] = BACKGROUND
    return out


def recolor_by_frequency(g: Grid) -> Grid:
    """Every non-background cell takes the most frequent non-background colour (lowest on ties)."""
    counts = np.bincount(g.ravel(), minlength=N_COLOURS)[1:]
    if not counts.any():
        raise NotApplicable("no foreground colour")
    out = g.copy()
    out[g != BACKGROUND] = int(np.argmax(counts)) + 1
    return out


PRIMITIVES: "OrderedDict[str, Callable[[Grid], Grid]]" = OrderedDict(
    (f.__name__, f)
    for f in (
        rot90, rot180, rot270, flip_h, flip_v, transpose, anti_transpose,
        crop_to_content, upscale_2, upscale_3, downscale_2, tile_2x2, mirror_h, mirror_v,
        gravity_down, gravity_up, gravity_left, gravity_right,
        outline, fill_enclosed, largest_object, remove_noise, recolor_by_frequency,
    )
)
PRIMITIVE_INDEX: dict[str, int] = {name: i for i, name in enumerate(PRIMITIVES)}
# sequences of these collapse to one of them (or the identity): canonical programs never chain two
DIHEDRAL = frozenset({"rot90", "rot180", "rot270", "flip_h", "flip_v", "transpose", "anti_transpose"})
# f(f(x)) == f(x) (or f(f(x)) raises): canonical programs never repeat them back to back
IDEMPOTENT = frozenset({
    "crop_to_content", "gravity_down", "gravity_up", "gravity_left", "gravity_right",
    "outline", "fill_enclosed", "remove_noise", "recolor_by_frequency", "largest_object",
})


def apply_primitive(name: str, grid: Grid) -> Grid:
    """Apply one primitive, checking the result stays inside ARC bounds."""
    return bounded(PRIMITIVES[name](grid))


def run_program(program: Sequence[str], grid: Grid) -> Grid:
    """Apply primitives left to right; raises NotApplicable if any step cannot apply."""
    for name in program:
        grid = apply_primitive(name, grid)
    return grid


def is_valid_grid(grid: Grid) -> bool:
    return (
        grid.ndim == 2
        and 1 <= grid.shape[0] <= MAX_SIDE
        and 1 <= grid.shape[1] <= MAX_SIDE
        and int(grid.min()) >= 0
        and int(grid.max()) < N_COLOURS
    )

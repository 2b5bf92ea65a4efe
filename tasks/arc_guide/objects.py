"""DSL v2's typed layer: objects as values (issue 12, first step).

ARC programs mostly work on objects, not whole grids: they segment the input, select an
object by a property, transform it and paint the result (Hodel's arc-dsl solvers: 238 of
400 ARC-AGI-1 training tasks extract objects, 153 select one by a property). This module
gives those values and operations, each a pure numpy function documented in one line.

Types: a grid is a (rows, cols) uint8 array of colours 0..9; a colour is an int 0..9; a
direction is one of DIRECTIONS (a unit step (drow, dcol)); an object is an :class:`Obj`:
its cells (a boolean mask over its bounding box) with their colours, placed at (top, left).
Connected components come from scipy.ndimage.label; enclosed regions from
scipy.ndimage.binary_fill_holes.

Not yet wired into the search (tasks.arc_guide.search still enumerates the whole-grid
primitives of tasks.arc_guide.dsl): that, the argument enumeration and the generator are
the next steps of issue 12.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
from scipy import ndimage

from tasks.arc_guide.dsl import N_COLOURS

DIRECTIONS = {  # name -> (drow, dcol)
    "up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1),
    "up_left": (-1, -1), "up_right": (-1, 1), "down_left": (1, -1), "down_right": (1, 1),
}
STRAIGHT = ("up", "down", "left", "right")
_STRUCTURE = {4: ndimage.generate_binary_structure(2, 1), 8: ndimage.generate_binary_structure(2, 2)}


@dataclass(frozen=True, eq=False)
class Obj:
    """Cells ``mask`` (h, w) bool with colours ``patch`` (h, w) uint8 (meaningful where the
    mask is set), the box's top-left corner at (top, left) of the grid."""

    top: int
    left: int
    patch: np.ndarray
    mask: np.ndarray

    @property
    def size(self) -> int:
        """Number of cells."""
        return int(self.mask.sum())

    @property
    def colour(self) -> int:
        """Most frequent colour of its cells (ties: the smallest colour)."""
        return int(np.bincount(self.patch[self.mask], minlength=N_COLOURS).argmax())

    @property
    def colours(self) -> set[int]:
        return set(np.unique(self.patch[self.mask]).tolist())

    @property
    def shape_key(self) -> bytes:
        """Its shape, wherever it is and whatever its colours."""
        return bytes(self.mask.shape) + np.packbits(self.mask).tobytes()

    def cells(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) of its cells in grid coordinates."""
        r, c = np.nonzero(self.mask)
        return r + self.top, c + self.left


# --------------------------------------------------------------------------- colours


def background(grid: np.ndarray) -> int:
    """The most common colour (ties: the smallest)."""
    return int(np.bincount(grid.ravel(), minlength=N_COLOURS).argmax())


def palette(grid: np.ndarray) -> list[int]:
    """The colours present, most frequent first (ties: smaller colour first)."""
    counts = np.bincount(grid.ravel(), minlength=N_COLOURS)
    return [int(c) for c in np.lexsort((np.arange(N_COLOURS), -counts)) if counts[c]]


# --------------------------------------------------------------------------- segmentation


def _from_mask(grid: np.ndarray, mask: np.ndarray) -> Obj:
    rows, cols = np.nonzero(mask)
    top, left, bottom, right = rows.min(), cols.min(), rows.max() + 1, cols.max() + 1
    return Obj(int(top), int(left), grid[top:bottom, left:right].copy(), mask[top:bottom, left:right].copy())


def objects(grid: np.ndarray, connectivity: int = 4, multicolour: bool = False,
            bg: Optional[int] = None) -> list[Obj]:
    """Connected components of non-background cells (4- or 8-connected; of one colour each,
    or of any colours), in reading order of their first cell."""
    bg = background(grid) if bg is None else bg
    found: list[tuple[int, Obj]] = []
    if multicolour:
        layers = [grid != bg]
    else:  # one layer per colour present (an absent colour has no component)
        present = np.flatnonzero(np.bincount(grid.ravel(), minlength=N_COLOURS))
        layers = [grid == c for c in present if c != bg]
    width = grid.shape[1]
    for layer in layers:
        labels, _ = ndimage.label(layer, structure=_STRUCTURE[connectivity])
        # each component's box (find_objects) instead of a full-grid mask per component
        for k, (rows, cols) in enumerate(ndimage.find_objects(labels), start=1):
            mask = labels[rows, cols] == k  # (h, w) bool: its cells in its box
            first = rows.start * width + cols.start + int(np.argmax(mask[0]))  # its first cell in reading order
            found.append((first, Obj(rows.start, cols.start, grid[rows, cols].copy(), mask)))
    return [obj for _, obj in sorted(found, key=lambda item: item[0])]


def colour_groups(grid: np.ndarray, bg: Optional[int] = None) -> list[Obj]:
    """One object per non-background colour: all its cells, connected or not (colour order)."""
    bg = background(grid) if bg is None else bg
    return [_from_mask(grid, grid == c) for c in range(N_COLOURS) if c != bg and (grid == c).any()]


def separator_cells(grid: np.ndarray) -> list[Obj]:
    """The rectangles between full rows and columns of one colour (a separator colour used
    by every such line), in reading order; [] when the grid has no separator lines."""
    for colour in palette(grid):
        rows = np.flatnonzero((grid == colour).all(axis=1))
        cols = np.flatnonzero((grid == colour).all(axis=0))
        if len(rows) + len(cols) == 0 or (len(rows) == grid.shape[0]):
            continue
        cells = []
        for r0, r1 in _gaps(rows, grid.shape[0]):
            for c0, c1 in _gaps(cols, grid.shape[1]):
                patch = grid[r0:r1, c0:c1].copy()
                cells.append(Obj(r0, c0, patch, np.ones(patch.shape, dtype=bool)))
        if len(cells) >= 2:
            return cells
    return []


def _gaps(lines: np.ndarray, length: int) -> list[tuple[int, int]]:
    """[start, end) runs of indices in 0..length that are not in ``lines``."""
    edges = [-1, *lines.tolist(), length]
    return [(a + 1, b) for a, b in zip(edges, edges[1:]) if b > a + 1]


def halves(grid: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """The two halves along ``axis`` (0: top/bottom, 1: left/right); an odd middle line is dropped."""
    n = grid.shape[axis]
    first = np.take(grid, np.arange(n // 2), axis=axis)
    second = np.take(grid, np.arange(n - n // 2, n), axis=axis)
    return first, second


# --------------------------------------------------------------------------- selection


def touches_border(obj: Obj, shape: tuple[int, int]) -> bool:
    """Whether some cell of ``obj`` is on the edge of a grid of ``shape``."""
    r, c = obj.cells()
    return bool((r == 0).any() or (c == 0).any() or (r == shape[0] - 1).any() or (c == shape[1] - 1).any())


SELECTORS: dict[str, Callable[[Sequence[Obj], tuple[int, int]], Optional[Obj]]] = {}


def _selector(name: str) -> Callable:
    def register(f: Callable) -> Callable:
        SELECTORS[name] = f
        return f
    return register


def _unique(objs: Sequence[Obj], key: Callable[[Obj], object]) -> Optional[Obj]:
    keys = [key(o) for o in objs]
    once = [o for o, k in zip(objs, keys) if keys.count(k) == 1]
    return once[0] if len(once) == 1 else None


def _extreme(objs: Sequence[Obj], key: Callable[[Obj], float]) -> Optional[Obj]:
    """The object with the strictly largest key; None when tied (ambiguous)."""
    if not objs:
        return None
    values = [key(o) for o in objs]
    best = max(values)
    return objs[values.index(best)] if values.count(best) == 1 else None


_selector("largest")(lambda objs, shape: _extreme(objs, lambda o: o.size))
_selector("smallest")(lambda objs, shape: _extreme(objs, lambda o: -o.size))
_selector("topmost")(lambda objs, shape: _extreme(objs, lambda o: -o.top))
_selector("bottommost")(lambda objs, shape: _extreme(objs, lambda o: o.top + o.mask.shape[0]))
_selector("leftmost")(lambda objs, shape: _extreme(objs, lambda o: -o.left))
_selector("rightmost")(lambda objs, shape: _extreme(objs, lambda o: o.left + o.mask.shape[1]))
_selector("unique_shape")(lambda objs, shape: _unique(objs, lambda o: o.shape_key))
_selector("unique_colour")(lambda objs, shape: _unique(objs, lambda o: o.colour))
_selector("largest_of_commonest_colour")(
    lambda objs, shape: _extreme(_commonest_colour(objs), lambda o: o.size))
_selector("touching_border")(
    lambda objs, shape: _only([o for o in objs if touches_border(o, shape)]))
_selector("not_touching_border")(
    lambda objs, shape: _only([o for o in objs if not touches_border(o, shape)]))


def _commonest_colour(objs: Sequence[Obj]) -> list[Obj]:
    """The objects of the colour most objects have (empty when two colours tie)."""
    counts = np.bincount([o.colour for o in objs], minlength=N_COLOURS)
    if not len(objs) or (counts == counts.max()).sum() > 1:
        return []
    return [o for o in objs if o.colour == int(counts.argmax())]


def _only(objs: list[Obj]) -> Optional[Obj]:
    return objs[0] if len(objs) == 1 else None


def select(objs: Sequence[Obj], by: str, shape: tuple[int, int]) -> Optional[Obj]:
    """The one object of ``objs`` that property ``by`` (a SELECTORS name) picks, or None
    when no object or several qualify (an ambiguous selection is no selection)."""
    return SELECTORS[by](list(objs), shape)


# --------------------------------------------------------------------------- object transforms


def recolour(obj: Obj, colour: int) -> Obj:
    """All its cells in ``colour``."""
    return Obj(obj.top, obj.left, np.where(obj.mask, np.uint8(colour), obj.patch).astype(np.uint8), obj.mask)


def translate(obj: Obj, drow: int, dcol: int) -> Obj:
    """Moved by (drow, dcol)."""
    return Obj(obj.top + drow, obj.left + dcol, obj.patch, obj.mask)


def mirror(obj: Obj, axis: int) -> Obj:
    """Mirrored in place (axis 0: upside down, 1: left-right), in its own box."""
    return Obj(obj.top, obj.left, np.flip(obj.patch, axis).copy(), np.flip(obj.mask, axis).copy())


def rotate(obj: Obj, quarter_turns: int) -> Obj:
    """Rotated counter-clockwise by ``quarter_turns`` about its box's top-left corner."""
    return Obj(obj.top, obj.left, np.rot90(obj.patch, quarter_turns).copy(), np.rot90(obj.mask, quarter_turns).copy())


def scale(obj: Obj, factor: int) -> Obj:
    """Each cell becomes a factor x factor block (top-left corner kept)."""
    block = np.ones((factor, factor), dtype=np.uint8)
    return Obj(obj.top, obj.left, np.kron(obj.patch, block), np.kron(obj.mask, block).astype(bool))


def crop(obj: Obj, bg: int) -> np.ndarray:
    """Its box as a grid, background where the object has no cell."""
    return np.where(obj.mask, obj.patch, np.uint8(bg)).astype(np.uint8)


# --------------------------------------------------------------------------- painting


def _window(grid: np.ndarray, obj: Obj) -> Optional[np.ndarray]:
    """The (h, w) view of ``grid`` under the object's box, or None when the box leaves the grid."""
    h, w = obj.mask.shape
    if obj.top < 0 or obj.left < 0 or obj.top + h > grid.shape[0] or obj.left + w > grid.shape[1]:
        return None
    return grid[obj.top:obj.top + h, obj.left:obj.left + w]


def paint(grid: np.ndarray, obj: Obj) -> np.ndarray:
    """A copy of ``grid`` with the object's cells painted on (cells off the grid dropped)."""
    out = grid.copy()
    window = _window(out, obj)
    if window is not None:  # the common case: the box on the grid, no cell to drop
        window[obj.mask] = obj.patch[obj.mask]
        return out
    r, c = obj.cells()
    inside = (r >= 0) & (c >= 0) & (r < grid.shape[0]) & (c < grid.shape[1])
    out[r[inside], c[inside]] = obj.patch[obj.mask][inside]
    return out


def erase(grid: np.ndarray, obj: Obj, bg: int) -> np.ndarray:
    """A copy of ``grid`` with the object's cells set to ``bg``."""
    return paint(grid, recolour(obj, bg))


def fits(grid: np.ndarray, obj: Obj, bg: int) -> bool:
    """Whether every cell of ``obj`` lands on the grid on a background cell."""
    window = _window(grid, obj)
    if window is not None:
        return bool((window[obj.mask] == bg).all())
    r, c = obj.cells()
    if (r < 0).any() or (c < 0).any() or (r >= grid.shape[0]).any() or (c >= grid.shape[1]).any():
        return False
    return bool((grid[r, c] == bg).all())


def move_until_contact(grid: np.ndarray, obj: Obj, direction: str, bg: int) -> np.ndarray:
    """Slide ``obj`` (a part of ``grid``) in a straight direction until its next step would
    leave the grid or land on another non-background cell; the grid with it moved."""
    dr, dc = DIRECTIONS[direction]
    rest = erase(grid, obj, bg)
    moved = obj
    while fits(rest, translate(moved, dr, dc), bg):
        moved = translate(moved, dr, dc)
    return paint(rest, moved)


def gravitate(grid: np.ndarray, direction: str, connectivity: int = 4, bg: Optional[int] = None) -> np.ndarray:
    """Every object (multicolour components) falls as a rigid body towards ``direction``,
    the ones nearest that side first."""
    bg = background(grid) if bg is None else bg
    dr, dc = DIRECTIONS[direction]
    objs = objects(grid, connectivity, multicolour=True, bg=bg)
    # nearest the destination side first: sort by how far their leading edge is from it
    objs.sort(key=lambda o: -(dr * (o.top + (o.mask.shape[0] - 1 if dr > 0 else 0)) +
                              dc * (o.left + (o.mask.shape[1] - 1 if dc > 0 else 0))))
    out = grid
    for obj in objs:
        out = move_until_contact(out, obj, direction, bg)
    return out


# --------------------------------------------------------------------------- drawing


def draw_line(grid: np.ndarray, row: int, col: int, direction: str, colour: int, through: bool = True,
              bg: Optional[int] = None) -> np.ndarray:
    """From the cell after (row, col) in ``direction`` to the edge, paint ``colour``; with
    ``through=False`` stop before the first non-background cell."""
    bg = background(grid) if bg is None else bg
    dr, dc = DIRECTIONS[direction]
    out = grid.copy()
    r, c = row + dr, col + dc
    while 0 <= r < grid.shape[0] and 0 <= c < grid.shape[1]:
        if not through and grid[r, c] != bg:
            break
        out[r, c] = colour
        r, c = r + dr, c + dc
    return out


def box(grid: np.ndarray, obj: Obj, colour: int) -> np.ndarray:
    """The ring of cells around the object's box painted ``colour`` (clipped to the grid)."""
    out = grid.copy()
    top, left = obj.top - 1, obj.left - 1
    bottom, right = obj.top + obj.mask.shape[0], obj.left + obj.mask.shape[1]
    ring = np.zeros(grid.shape, dtype=bool)
    r0, r1, c0, c1 = max(top, 0), min(bottom, grid.shape[0] - 1), max(left, 0), min(right, grid.shape[1] - 1)
    for r in (top, bottom):
        if 0 <= r < grid.shape[0]:
            ring[r, c0:c1 + 1] = True
    for c in (left, right):
        if 0 <= c < grid.shape[1]:
            ring[r0:r1 + 1, c] = True
    out[ring] = colour
    return out


def outline(grid: np.ndarray, obj: Obj, colour: int) -> np.ndarray:
    """The object's cells that touch a non-object cell (4-neighbours, or its box's edge) in ``colour``."""
    inner = ndimage.binary_erosion(obj.mask, structure=_STRUCTURE[4], border_value=0)
    edge = obj.mask & ~inner
    r, c = np.nonzero(edge)
    out = grid.copy()
    out[r + obj.top, c + obj.left] = colour
    return out


def fill_enclosed(grid: np.ndarray, colour: int, bg: Optional[int] = None) -> np.ndarray:
    """Background cells that no 4-connected path of background cells links to the edge, in ``colour``."""
    bg = background(grid) if bg is None else bg
    walls = grid != bg
    enclosed = ndimage.binary_fill_holes(walls, structure=_STRUCTURE[4]) & ~walls
    return np.where(enclosed, np.uint8(colour), grid).astype(np.uint8)


# --------------------------------------------------------------------------- whole-grid completion


SYMMETRIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "flip_lr": lambda g: g[:, ::-1], "flip_ud": lambda g: g[::-1, :], "rot180": lambda g: g[::-1, ::-1],
    "transpose": lambda g: g.T, "anti_transpose": lambda g: g[::-1, ::-1].T,
}


def complete_symmetry(grid: np.ndarray, hole: int) -> np.ndarray:
    """Cells of colour ``hole`` filled from their images under every symmetry of the square
    that the other cells obey (a symmetry holds when no two known cells disagree); holes
    no holding symmetry reaches stay."""
    out = grid.copy()
    for f in SYMMETRIES.values():
        if f(grid).shape != grid.shape:
            continue
        image = f(out)
        known = (out != hole) & (image != hole)
        if not np.array_equal(out[known], image[known]):
            continue  # the known cells break this symmetry
        fill = (out == hole) & (image != hole)
        out[fill] = image[fill]
    return out


# --------------------------------------------------------------------------- sizes from counts and composition


def count_row(n: int, colour: int) -> np.ndarray:
    """A 1 x n grid of ``colour`` (counting that sets the output size; n in 1..30)."""
    if not 1 <= n <= 30:
        raise ValueError(f"count {n} is not a grid side 1..30")
    return np.full((1, n), colour, dtype=np.uint8)


def concat(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
    """``a`` then ``b`` along ``axis`` (0: stacked, 1: side by side); sides must agree."""
    return np.concatenate([a, b], axis=axis)


def tile(grid: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``grid`` repeated rows x cols times."""
    return np.tile(grid, (rows, cols))

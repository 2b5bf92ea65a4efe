"""Learner ``cell_rule``: every output cell is a lookup of a few features of its input cell.

Many same-shape ARC tasks repaint cells by their situation: fill enclosed background,
recolour objects by their size or size rank, mark cells next to a colour, extend lines,
colour the cells between two same-coloured cells, stripe by row parity, mirror the grid.
Such a rule is a table ``key -> action`` where the key is a *small subset* of named
per-cell features (FEATURES: the cell's colour, its neighbours, its object's size, rank,
shape, its enclosing region, the first colour seen along each of 8 rays, its row and
column, position parities, the mirrored cell...) and the action is one of

- ``keep``: the cell keeps its colour,
- ``copy``: the cell takes the colour of one colour-valued *source* feature (the rule's
  one source, e.g. the first colour seen to the left, the mirrored cell), so rules that
  copy colours generalise to colours the train pairs never showed,
- a fixed colour.

The background of a grid is black where black covers at least a quarter of it (objects
may outnumber it), else its most common colour. A rule's keys also hold whether the cell
is background (unless its colour is a key already), so a rule never changes a kind of
cell the train pairs did not show.

Contract (tasks.arc_guide.fitting): ``fit(inputs, targets)`` yields nothing unless every
pair keeps its shape and some pair changes. It searches feature subsets of size 0, 1, 2
and (pruned: extensions of the nearly consistent pairs) 3 for tables consistent over all
train cells, keeps only minimal subsets, and yields them size by size, each size ranked by
how well the table generalises (leave one pair out: how many pairs the other pairs' keys
cover completely), then by table size and feature cost; a table that covers no held-out
pair is never yielded, at most ``MAX_CANDIDATES`` are. Every yielded rule reproduces
every pair; applied to a grid with a key the train pairs never showed it raises
``NotApplicable``. It never mutates its arguments; its effort is bounded (features that
split the train cells alike are kept once, checks per subset size are capped by
``LEVEL_WORK``). ``sample(rng, inputs)`` draws a random ARC-like rule of the family (colour
maps, enclosed fills, recolouring by size or size extreme, halos, fills between cells,
extended lines, stripes, mirrors...) that applies to every input and changes each.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
from scipy import ndimage

from tasks.arc_guide import objects as ob
from tasks.arc_guide.dsl import N_COLOURS, NotApplicable
from tasks.arc_guide.fitting import Fitted, Meter

Grid = np.ndarray
NONE = 10  # a colour-valued feature that sees no colour (outside the grid, nothing on the ray)
MANY = 11  # a colour-valued feature that sees several colours where it asks for one
CAP = 30  # counts and sizes are clipped here (ARC grids are at most 30 a side)
BG_SHARE = 0.25  # black is the background where it covers this share of a grid
RANK_CAP = 4  # size ranks past the 3rd share one value ("other")
_FOUR = ndimage.generate_binary_structure(2, 1)
_EIGHT = ndimage.generate_binary_structure(2, 2)
STEPS = {  # ray / neighbour direction -> (drow, dcol)
    "up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1),
    "up_left": (-1, -1), "up_right": (-1, 1), "down_left": (1, -1), "down_right": (1, 1),
}


# --------------------------------------------------------------------------- per-grid context


class Scene:
    """One input grid with its background and lazily computed segmentations; ``feature``
    returns (h, w) int64 arrays, cached."""

    def __init__(self, grid: Grid):
        self.grid = grid.astype(np.int64)  # (h, w) a private copy: the caller's grid is never touched
        self.bg = background(grid)
        self.fg = self.grid != self.bg  # (h, w) bool
        self._features: dict[str, np.ndarray] = {}
        self._bits: dict[tuple, np.ndarray] = {}
        self._segmentations: dict[str, Segmentation] = {}

    @property
    def shape(self) -> tuple[int, int]:
        return self.grid.shape

    def feature(self, name: str) -> np.ndarray:
        """The (h, w) int64 values of feature ``name`` on this grid."""
        if name not in self._features:
            self._features[name] = np.asarray(FEATURES[name].compute(self), dtype=np.int64)
        return self._features[name]

    @cached_property
    def padded(self) -> np.ndarray:
        """(h + 2, w + 2): the grid framed by NONE."""
        return np.pad(self.grid, 1, constant_values=NONE)

    def neighbour(self, step: tuple[int, int]) -> np.ndarray:
        """(h, w): the colour one ``step`` away (NONE outside)."""
        h, w = self.shape
        return self.padded[1 + step[0]: 1 + step[0] + h, 1 + step[1]: 1 + step[1] + w]

    def neighbour_bits(self, steps: Sequence[tuple[int, int]]) -> np.ndarray:
        """(h, w): bit c set when a neighbour at ``steps`` has colour c (cached per steps)."""
        key = tuple(steps)
        if key not in self._bits:
            bits = np.zeros(self.shape, dtype=np.int64)
            for step in steps:
                colours = self.neighbour(step)
                bits |= np.where(colours < N_COLOURS, 1 << np.minimum(colours, N_COLOURS - 1), 0)
            self._bits[key] = bits
        return self._bits[key]

    def segmentation(self, kind: str) -> "Segmentation":
        """Objects of ``kind``: c4/c8 (one colour, 4/8-connected), m8 (any colours, 8-connected),
        region (4-connected components of background cells)."""
        if kind not in self._segmentations:
            self._segmentations[kind] = Segmentation.of(self, kind)
        return self._segmentations[kind]

    @cached_property
    def rays(self) -> dict[str, np.ndarray]:
        """Direction -> (h, w): the first non-background colour strictly beyond each cell (NONE if none)."""
        return {name: _ray(self.grid, self.fg, step) for name, step in STEPS.items()}


def background(grid: Grid) -> int:
    """Black (0, ARC's usual background) where it covers at least BG_SHARE of ``grid`` (objects
    may outnumber it), else the most common colour."""
    if np.mean(grid == 0) >= BG_SHARE:
        return 0
    return ob.background(grid)


def _ray(grid: np.ndarray, fg: np.ndarray, step: tuple[int, int]) -> np.ndarray:
    """(h, w): the first non-background colour seen from each cell along ``step`` (NONE if none)."""
    if step[0] and step[1]:
        return _diagonal_ray(grid, fg, step)
    # turn the direction into "left along rows": the nearest earlier foreground column per row
    turn = {(0, -1): lambda g: g, (0, 1): lambda g: g[:, ::-1], (-1, 0): lambda g: g.T, (1, 0): lambda g: g[::-1].T}
    unturn = {(0, -1): lambda g: g, (0, 1): lambda g: g[:, ::-1], (-1, 0): lambda g: g.T, (1, 0): lambda g: g.T[::-1]}
    g, f = turn[step](grid), turn[step](fg)
    cols = np.where(f, np.arange(g.shape[1])[None, :], -1)
    last = np.maximum.accumulate(cols, axis=1)  # (rows, cols): last foreground column at or before
    before = np.concatenate([np.full((g.shape[0], 1), -1), last[:, :-1]], axis=1)  # strictly before
    seen = np.where(before >= 0, np.take_along_axis(g, np.maximum(before, 0), axis=1), NONE)
    return np.ascontiguousarray(unturn[step](seen))


def _diagonal_ray(grid: np.ndarray, fg: np.ndarray, step: tuple[int, int]) -> np.ndarray:
    """(h, w): as _ray for a diagonal ``step``, one sweep per distance (at most 29)."""
    h, w = grid.shape
    seen = np.full((h, w), NONE, dtype=np.int64)
    colours = np.where(fg, grid, NONE)
    for k in range(1, min(h, w)):
        dr, dc = step[0] * k, step[1] * k
        target = seen[max(0, -dr): h - max(0, dr), max(0, -dc): w - max(0, dc)]
        source = colours[max(0, dr): h + min(0, dr), max(0, dc): w + min(0, dc)]
        np.copyto(target, source, where=target == NONE)
    return seen


@dataclass(frozen=True)
class Segmentation:
    """Objects as a label map: ``labels`` (h, w) int (0: no object, k: object k) and per-object
    arrays indexed by label (index 0 unused)."""

    labels: np.ndarray
    size: np.ndarray
    height: np.ndarray
    width: np.ndarray
    top: np.ndarray
    left: np.ndarray
    touches_border: np.ndarray
    holes: np.ndarray  # bool: some cell outside the object is enclosed by it
    rectangle: np.ndarray  # bool: the object fills its bounding box
    n_colours: np.ndarray
    major: np.ndarray  # its most common colour
    minor: np.ndarray  # its least common colour, NONE when it has one colour

    @staticmethod
    def of(scene: Scene, kind: str) -> "Segmentation":
        """Segment ``scene`` (see Scene.segmentation)."""
        labels = _labels(scene, kind)
        n = int(labels.max())
        index = np.arange(1, n + 1)
        boxes = ndimage.find_objects(labels)
        top = np.array([0] + [b[0].start for b in boxes])
        left = np.array([0] + [b[1].start for b in boxes])
        height = np.array([0] + [b[0].stop - b[0].start for b in boxes])
        width = np.array([0] + [b[1].stop - b[1].start for b in boxes])
        size = np.bincount(labels.ravel(), minlength=n + 1)
        edge = np.ones(labels.shape, dtype=bool)
        edge[1:-1, 1:-1] = False
        touches = np.bincount(labels[edge], minlength=n + 1) > 0
        # colour histogram per object: (n + 1, 10)
        hist = np.bincount(labels.ravel() * N_COLOURS + scene.grid.ravel(),
                           minlength=(n + 1) * N_COLOURS).reshape(n + 1, N_COLOURS)
        present = hist > 0
        major = hist.argmax(axis=1)
        minor = np.where(present, hist, np.iinfo(np.int64).max).argmin(axis=1)
        n_colours = present.sum(axis=1)
        minor = np.where(n_colours > 1, minor, NONE)
        holes = np.zeros(n + 1, dtype=bool)
        for k, box in zip(index, boxes):
            if height[k] >= 3 and width[k] >= 3 and size[k] >= 4:  # smaller objects cannot enclose a cell
                mask = labels[box] == k
                holes[k] = bool((ndimage.binary_fill_holes(mask, structure=_FOUR) & ~mask).any())
        return Segmentation(labels, size, height, width, top, left, touches, holes, size == height * width,
                            n_colours, major, minor)

    def per_cell(self, values: np.ndarray, outside: int = 0) -> np.ndarray:
        """(h, w): ``values[label]`` on object cells, ``outside`` elsewhere."""
        return np.where(self.labels > 0, values[self.labels], outside)

    def extreme(self) -> np.ndarray:
        """Per object: 1 largest, 2 smallest, 3 neither (0 for index 0)."""
        sizes = self.size[1:]
        if not len(sizes):
            return np.zeros(1, dtype=np.int64)
        kind = np.where(sizes == sizes.max(), 1, np.where(sizes == sizes.min(), 2, 3))
        return np.concatenate([[0], kind])

    def size_rank(self, descending: bool) -> np.ndarray:
        """Per object: 1 + dense rank of its size (largest first when ``descending``), capped."""
        sizes = self.size[1:]
        distinct = np.unique(sizes)  # ascending
        rank = np.searchsorted(distinct, sizes)
        if descending:
            rank = len(distinct) - 1 - rank
        return np.concatenate([[0], np.minimum(rank + 1, RANK_CAP)])


def _labels(scene: Scene, kind: str) -> np.ndarray:
    """(h, w) int label map of the segmentation ``kind``."""
    if kind == "region":
        return ndimage.label(~scene.fg, structure=_FOUR)[0]
    if kind == "m8":
        return ndimage.label(scene.fg, structure=_EIGHT)[0]
    structure = _FOUR if kind == "c4" else _EIGHT
    labels = np.zeros(scene.shape, dtype=np.int64)
    count = 0
    for colour in np.unique(scene.grid[scene.fg]):
        layer, n = ndimage.label(scene.grid == colour, structure=structure)
        labels = np.where(layer > 0, layer + count, labels)
        count += n
    return labels


# --------------------------------------------------------------------------- the feature table


@dataclass(frozen=True)
class Feature:
    """A named per-cell feature: ``compute(scene)`` -> (h, w) ints >= 0; ``colour``: its
    values are colours (NONE/MANY when there is none), so it may be a copy source;
    ``cost``: its prior complexity (cheaper features are preferred)."""

    compute: Callable[[Scene], np.ndarray]
    colour: bool
    cost: int


FEATURES: dict[str, Feature] = {}


def _register(name: str, compute: Callable[[Scene], np.ndarray], colour: bool = False, cost: int = 2) -> None:
    FEATURES[name] = Feature(compute, colour, cost)


def _positions(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """(h, w) row and column indices."""
    return np.indices(scene.shape)


def _unique_colour(fg: np.ndarray, grid: np.ndarray, axis: int) -> np.ndarray:
    """Per line along ``axis``: its one non-background colour (NONE none, MANY several)."""
    present = np.stack([((grid == c) & fg).any(axis=axis) for c in range(N_COLOURS)])  # (10, lines)
    count = present.sum(axis=0)
    return np.where(count == 0, NONE, np.where(count == 1, present.argmax(axis=0), MANY))


def _neighbour_colour(scene: Scene, steps: Sequence[tuple[int, int]]) -> np.ndarray:
    """(h, w): the one non-background colour among the cell's neighbours at ``steps``
    (NONE: none, MANY: several)."""
    bits = scene.neighbour_bits(steps) & ~(1 << scene.bg)
    count = _POPCOUNT[bits]
    return np.where(count == 0, NONE, np.where(count == 1, _LOWEST_BIT[bits], MANY))


_POPCOUNT = np.array([bin(v).count("1") for v in range(1 << N_COLOURS)])
_LOWEST_BIT = np.array([(v & -v).bit_length() - 1 for v in range(1 << N_COLOURS)])


def _between(scene: Scene, a: str, b: str) -> np.ndarray:
    """(h, w): the colour seen both ways along a line (the cell lies between two cells of it), else NONE."""
    first, second = scene.rays[a], scene.rays[b]
    return np.where(first == second, first, NONE)


def _mirror(scene: Scene, image: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """(h, w): the colour at the mirrored position (NONE when the map changes the shape)."""
    mirrored = image(scene.grid)
    return mirrored if mirrored.shape == scene.shape else np.full(scene.shape, NONE)


def _register_cell_features() -> None:
    _register("is_bg", lambda s: ~s.fg, cost=0)  # before colour: the more general of two equal partitions
    _register("colour", lambda s: s.grid, colour=True, cost=0)
    _register("colour_rank", lambda s: _frequency_rank(s)[s.grid], cost=1)
    for name, step in STEPS.items():
        _register("n_" + name, lambda s, step=step: s.neighbour(step), colour=True, cost=1 if 0 in step else 2)
    _register("fg4", lambda s: _count_neighbours(s, lambda n: (n != s.bg) & (n != NONE), 4), cost=1)
    _register("fg8", lambda s: _count_neighbours(s, lambda n: (n != s.bg) & (n != NONE), 8), cost=1)
    _register("same4", lambda s: _count_neighbours(s, lambda n: n == s.grid, 4), cost=1)
    _register("same8", lambda s: _count_neighbours(s, lambda n: n == s.grid, 8), cost=1)
    _register("nbr4_colour", lambda s: _neighbour_colour(s, tuple(STEPS.values())[:4]), colour=True, cost=1)
    _register("nbr8_colour", lambda s: _neighbour_colour(s, tuple(STEPS.values())), colour=True, cost=1)
    _register("nbrx_colour", lambda s: _neighbour_colour(s, tuple(STEPS.values())[4:]), colour=True, cost=1)
    _register("fg4_mask", lambda s: _neighbour_mask(s, list(STEPS.values())[:4]), cost=2)
    _register("fgx_mask", lambda s: _neighbour_mask(s, list(STEPS.values())[4:]), cost=2)
    for c in range(N_COLOURS):
        _register(f"touch_{c}", lambda s, c=c: (s.neighbour_bits(tuple(STEPS.values())) >> c) & 1, cost=2)
    _register("bg", lambda s: np.full(s.shape, s.bg), colour=True, cost=1)
    _register("rarest", lambda s: np.full(s.shape, _frequency_rank(s).argmax()), colour=True, cost=2)


def _count_neighbours(scene: Scene, test: Callable[[np.ndarray], np.ndarray], n: int) -> np.ndarray:
    """(h, w): how many of the first ``n`` neighbours (4: the straight ones, 8: all) pass ``test``."""
    return sum(test(scene.neighbour(step)).astype(np.int64) for step in list(STEPS.values())[:n])


def _neighbour_mask(scene: Scene, steps: Sequence[tuple[int, int]]) -> np.ndarray:
    """(h, w): bit k set when the neighbour at ``steps[k]`` is a non-background cell."""
    fg = [(scene.neighbour(step) != scene.bg) & (scene.neighbour(step) != NONE) for step in steps]
    return sum(f.astype(np.int64) << k for k, f in enumerate(fg))


def _frequency_rank(scene: Scene) -> np.ndarray:
    """(10,): each present colour's rank by frequency (0 most common, ties: smaller colour
    first); -1 for absent colours."""
    counts = np.bincount(scene.grid.ravel(), minlength=N_COLOURS)
    order = np.lexsort((np.arange(N_COLOURS), -counts))
    rank = np.empty(N_COLOURS, dtype=np.int64)
    rank[order] = np.arange(N_COLOURS)
    return np.where(counts > 0, rank, -1)


def _register_object_features() -> None:
    shared = ("size", "rank", "rank_asc", "extreme", "height", "width", "border", "holes")
    specs = {"c4": shared + ("shape", "parity"), "c8": shared, "m8": shared + ("colours", "parity", "box")}
    for kind, props in specs.items():
        for prop in props:
            _register(f"{kind}_{prop}", lambda s, kind=kind, prop=prop: _object_property(s, kind, prop), cost=2)
    _register("m8_major", lambda s: s.segmentation("m8").per_cell(s.segmentation("m8").major, NONE), colour=True)
    _register("m8_minor", lambda s: s.segmentation("m8").per_cell(s.segmentation("m8").minor, NONE), colour=True)
    _register("enclosed", lambda s: s.segmentation("region").per_cell(1 + ~s.segmentation("region").touches_border),
              cost=1)
    for prop in ("size", "rank", "rank_asc", "extreme", "width", "shape"):
        _register(f"region_{prop}", lambda s, prop=prop: _object_property(s, "region", prop), cost=2)
    _register("near_size", lambda s: _near(s, "m8", np.minimum(s.segmentation("m8").size, CAP)), cost=2)
    _register("near_extreme", lambda s: _near(s, "m8", s.segmentation("m8").extreme()), cost=2)


def _near(scene: Scene, kind: str, values: np.ndarray) -> np.ndarray:
    """(h, w): the largest per-object ``values`` among the objects touching the cell's 8
    neighbours (0 when none does): background cells learn about the objects next to them."""
    per_cell = scene.segmentation(kind).per_cell(np.asarray(values, dtype=np.int64))
    return ndimage.maximum_filter(per_cell, footprint=_EIGHT, mode="constant", cval=0)


def _object_property(scene: Scene, kind: str, prop: str) -> np.ndarray:
    """(h, w): property ``prop`` of the cell's object (0 off objects; flags are 1 + flag)."""
    seg = scene.segmentation(kind)
    if prop == "box":  # background cells inside some object's bounding box: 2, other background: 1
        inside = np.zeros(scene.shape, dtype=bool)
        for box in ndimage.find_objects(seg.labels):
            inside[box] = True
        return np.where(scene.fg, 0, 1 + inside)
    if prop == "parity":  # stripes inside objects: (row - top) % 2 and (col - left) % 2, packed
        rows, cols = _positions(scene)
        inside = 1 + (rows - seg.top[seg.labels]) % 2 * 2 + (cols - seg.left[seg.labels]) % 2
        return np.where(seg.labels > 0, inside, 0)
    values = {
        "size": lambda: np.minimum(seg.size, CAP), "rank": lambda: seg.size_rank(True),
        "rank_asc": lambda: seg.size_rank(False), "height": lambda: seg.height, "width": lambda: seg.width,
        "border": lambda: 1 + seg.touches_border, "holes": lambda: 1 + seg.holes,
        "shape": lambda: 1 + seg.rectangle + (seg.rectangle & (seg.height == seg.width)),
        "extreme": lambda: seg.extreme(), "colours": lambda: np.minimum(seg.n_colours, 3),
    }[prop]()
    return seg.per_cell(np.asarray(values, dtype=np.int64))


def _register_line_features() -> None:
    for name in STEPS:
        _register("ray_" + name, lambda s, name=name: s.rays[name], colour=True, cost=2)
    for name, (a, b) in {"h": ("left", "right"), "v": ("up", "down"), "diag": ("up_left", "down_right"),
                         "anti": ("up_right", "down_left")}.items():
        _register("between_" + name, lambda s, a=a, b=b: _between(s, a, b), colour=True, cost=2)
    _register("between_hv", lambda s: np.where(_between(s, "left", "right") != NONE, _between(s, "left", "right"),
                                                _between(s, "up", "down")), colour=True, cost=2)
    _register("between_vh", lambda s: np.where(_between(s, "up", "down") != NONE, _between(s, "up", "down"),
                                                _between(s, "left", "right")), colour=True, cost=2)
    _register("colour_box", _colour_box, colour=True, cost=2)
    _register("row_colour", lambda s: np.broadcast_to(_unique_colour(s.fg, s.grid, 1)[:, None], s.shape),
              colour=True, cost=2)
    _register("col_colour", lambda s: np.broadcast_to(_unique_colour(s.fg, s.grid, 0)[None, :], s.shape),
              colour=True, cost=2)
    _register("row_uniform", lambda s: np.broadcast_to((s.grid == s.grid[:, :1]).all(axis=1)[:, None], s.shape))
    _register("col_uniform", lambda s: np.broadcast_to((s.grid == s.grid[:1, :]).all(axis=0)[None, :], s.shape))
    _register("edge_top", lambda s: np.broadcast_to(s.grid[:1, :], s.shape), colour=True, cost=3)
    _register("edge_bottom", lambda s: np.broadcast_to(s.grid[-1:, :], s.shape), colour=True, cost=3)
    _register("edge_left", lambda s: np.broadcast_to(s.grid[:, :1], s.shape), colour=True, cost=3)
    _register("edge_right", lambda s: np.broadcast_to(s.grid[:, -1:], s.shape), colour=True, cost=3)


def _colour_box(scene: Scene) -> np.ndarray:
    """(h, w): the one non-background colour whose bounding box holds the cell (a cell of
    another colour); NONE when none does, MANY when several do."""
    count = np.zeros(scene.shape, dtype=np.int64)
    which = np.full(scene.shape, NONE, dtype=np.int64)
    for c in np.unique(scene.grid[scene.fg]):
        box = ndimage.find_objects((scene.grid == c).astype(np.int64))[0]
        inside = np.zeros(scene.shape, dtype=bool)
        inside[box] = True
        inside &= scene.grid != c
        count += inside
        which[inside] = c
    return np.where(count > 1, MANY, which)


def _register_position_features() -> None:
    for mod in (2, 3):
        _register(f"row_mod{mod}", lambda s, m=mod: _positions(s)[0] % m, cost=2)
        _register(f"col_mod{mod}", lambda s, m=mod: _positions(s)[1] % m, cost=2)
        _register(f"row_rmod{mod}", lambda s, m=mod: (s.shape[0] - 1 - _positions(s)[0]) % m, cost=2)
        _register(f"col_rmod{mod}", lambda s, m=mod: (s.shape[1] - 1 - _positions(s)[1]) % m, cost=2)
    _register("diag_mod2", lambda s: _positions(s).sum(axis=0) % 2, cost=2)
    _register("ring", lambda s: _ring(s.shape), cost=2)
    _register("mirror_lr", lambda s: _mirror(s, lambda g: g[:, ::-1]), colour=True, cost=2)
    _register("mirror_ud", lambda s: _mirror(s, lambda g: g[::-1, :]), colour=True, cost=2)
    _register("mirror_rot", lambda s: _mirror(s, lambda g: g[::-1, ::-1]), colour=True, cost=2)
    _register("mirror_tr", lambda s: _mirror(s, lambda g: g.T), colour=True, cost=2)
    _register("mirror_anti", lambda s: _mirror(s, lambda g: g[::-1, ::-1].T), colour=True, cost=2)
    _register("mirror_rot90", lambda s: _mirror(s, np.rot90), colour=True, cost=2)
    _register("mirror_rot270", lambda s: _mirror(s, lambda g: np.rot90(g, 3)), colour=True, cost=2)
    _register("diagonal", _diagonal, cost=2)
    _register("middle", _middle, cost=2)


def _diagonal(scene: Scene) -> np.ndarray:
    """(h, w): bit 0 on the main diagonal (row == col), bit 1 on the anti-diagonal (row + col == w - 1)."""
    rows, cols = _positions(scene)
    return (rows == cols) + 2 * (rows + cols == scene.shape[1] - 1)


def _middle(scene: Scene) -> np.ndarray:
    """(h, w): bit 0 on the middle row, bit 1 on the middle column (odd sides only)."""
    rows, cols = _positions(scene)
    h, w = scene.shape
    return (2 * rows == h - 1) + 2 * (2 * cols == w - 1)


def _ring(shape: tuple[int, int]) -> np.ndarray:
    """(h, w): distance to the nearest grid edge (0 on the edge), capped at 3."""
    rows, cols = np.indices(shape)
    return np.minimum.reduce([rows, cols, shape[0] - 1 - rows, shape[1] - 1 - cols, np.full(shape, 3)])


def _register_seen_features() -> None:
    """For colour features whose colour varies from task to task, what they see regardless
    of the colour (0 nothing, 1 one colour, 2 several): keys that generalise to new colours
    while a copy action supplies the colour itself."""
    for name in [*("ray_" + step for step in STEPS), "between_h", "between_v", "between_diag", "between_anti",
                 "between_hv", "nbr4_colour", "nbr8_colour", "row_colour", "col_colour", "colour_box", "m8_minor"]:
        _register("has_" + name, lambda s, name=name: _seen(s.feature(name)), cost=FEATURES[name].cost)


def _seen(values: np.ndarray) -> np.ndarray:
    """(h, w): 0 where a colour feature sees NONE, 1 a colour, 2 MANY."""
    return np.where(values == NONE, 0, np.where(values == MANY, 2, 1))


_register_cell_features()
_register_object_features()
_register_line_features()
_register_position_features()
_register_seen_features()


# --------------------------------------------------------------------------- rules


KEEP, COPY = 10, 11  # actions besides painting a colour 0..9: keep the cell's colour, copy the source's
MAX_CANDIDATES = 30  # rules yielded per fit, at most
TOP_PAIRS = 40  # the nearly consistent feature pairs that the triple search extends
LEVEL_WORK = 6_000_000  # (row, subset) checks per subset size 2 or 3, at most (a few tenths of a second)
MAX_TRIPLES = 150  # consistent triples kept, at most (found from the nearest pairs first)
MAX_SCORED = 400  # consistent subsets of one size scored, at most (the cheapest)
MAX_SOURCES = 3  # copy sources tried per task (those explaining most changed cells)
MIN_SOURCE_SHARE = 0.5  # a copy source must explain this share of the changed cells


@dataclass(frozen=True)
class CellRule:
    """A fitted table: the cell's values of ``features`` and whether it is background (the
    domain: a rule never changes a kind of cell it has not seen), encoded with ``radices``
    into ``keys`` (n,) sorted int64, map to ``actions`` (n,) (a colour, KEEP or COPY of ``source``)."""

    features: tuple[str, ...]
    source: Optional[str]
    radices: tuple[int, ...]
    keys: np.ndarray
    actions: np.ndarray

    @property
    def name(self) -> str:
        copy = [f"copy {self.source}"] if self.source and (self.actions == COPY).any() else []
        return f"cell_rule({'; '.join([','.join(self.features)] * bool(self.features) + copy)})"

    def apply(self, grid: Grid) -> Grid:
        """The grid with every cell looked up; NotApplicable on a key the train pairs never showed."""
        scene = Scene(grid)
        codes = encode([scene.feature(f) for f in self.features + _domain(self.features)], self.radices, scene.shape)
        at = np.minimum(np.searchsorted(self.keys, codes), len(self.keys) - 1)
        if not np.array_equal(self.keys[at], codes):
            raise NotApplicable("a cell situation the train pairs never showed")
        actions = self.actions[at]
        out = np.where(actions == KEEP, scene.grid, actions)
        if self.source is not None:
            copied = scene.feature(self.source)
            if (copied[actions == COPY] >= N_COLOURS).any():
                raise NotApplicable(f"{self.source} sees no colour where the rule copies it")
            out = np.where(actions == COPY, copied, out)
        return out.astype(np.uint8)


def encode(values: Sequence[np.ndarray], radices: Sequence[int], shape: tuple[int, ...]) -> np.ndarray:
    """``shape`` int64 mixed-radix code of the feature values (each of ``shape``); -1 where a
    value reaches its radix (a value the train pairs never showed)."""
    code = np.zeros(shape, dtype=np.int64)
    unseen = np.zeros(code.shape, dtype=bool)
    for value, radix in zip(values, radices):
        unseen |= value >= radix
        code = code * radix + np.minimum(value, radix - 1)
    return np.where(unseen, -1, code)


# --------------------------------------------------------------------------- training cells


class Training:
    """The train cells as a feature matrix: ``values`` (N, F) int64 over every train cell
    (F: the features that split the cells, one per distinct partition), ``target``,
    ``colour``, ``pair`` (N,); ``sources``: colour features that explain changed cells."""

    def __init__(self, inputs: Sequence[Grid], targets: Sequence[Grid]):
        self.scenes = [Scene(g) for g in inputs]
        self.target = np.concatenate([t.ravel() for t in targets]).astype(np.int64)
        self.colour = np.concatenate([s.grid.ravel() for s in self.scenes])
        self.pair = np.concatenate([np.full(s.grid.size, k) for k, s in enumerate(self.scenes)])
        self.sources = self._pick_sources()
        names, columns = self._distinct_columns()
        self.names = names
        self.values = np.stack(columns, axis=1) if columns else np.zeros((len(self.target), 0), dtype=np.int64)
        self.cost = np.array([FEATURES[n].cost for n in names])

    def column(self, name: str) -> np.ndarray:
        """(N,): feature ``name`` over every train cell."""
        return np.concatenate([s.feature(name).ravel() for s in self.scenes])

    def _pick_sources(self) -> list[str]:
        """Colour features equal to the target on most changed cells, best first."""
        changed = self.target != self.colour
        if not changed.any():
            return []
        shares = {}
        for name, feature in FEATURES.items():
            if feature.colour and name != "colour":
                shares[name] = float(np.mean(self.column(name)[changed] == self.target[changed]))
        ranked = sorted((n for n in shares if shares[n] >= MIN_SOURCE_SHARE),
                        key=lambda n: (-shares[n], FEATURES[n].cost))
        return ranked[:MAX_SOURCES]

    def _distinct_columns(self) -> tuple[list[str], list[np.ndarray]]:
        """Features that split the train cells, the cheapest of each distinct partition (among
        equals a feature that does not name colours: its keys carry over to new colours)."""
        names, columns, seen = [], [], set()
        for name in sorted(FEATURES, key=lambda n: (FEATURES[n].cost, FEATURES[n].colour)):  # stable sort
            values = self.column(name)
            partition = _first_seen_labels(values)
            signature = partition.tobytes()
            if partition.max(initial=0) == 0 or signature in seen:
                continue
            seen.add(signature)
            names.append(name)
            columns.append(values)
        return names, columns


def _first_seen_labels(values: np.ndarray) -> np.ndarray:
    """(N,) int32: values relabelled 0, 1, ... in order of first occurrence (equal partitions
    get equal labels)."""
    _, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int32)
    rank[np.argsort(first)] = np.arange(len(first), dtype=np.int32)
    return rank[inverse]


# --------------------------------------------------------------------------- subset search


@dataclass(frozen=True)
class Candidate:
    """A consistent feature subset (column indices of Training.values) under a mode (source
    None: keep or paint; a source name: also copy it), with its table size, how many train
    pairs the other pairs' table covers completely (leave one pair out) and its cost."""

    columns: tuple[int, ...]
    source: Optional[str]
    table_size: int
    covered_pairs: int
    cost: int


class Search:
    """Which feature subsets map the train cells consistently. It works on the distinct rows
    of (dense feature codes, target, which actions fit, pair) and checks many subsets at once
    with a few bincounts; a subset's extensions only need the rows its groups leave unexplained."""

    def __init__(self, training: Training, meter: Meter):
        self.training = training
        self.meter = meter  # charged one hypothesis per feature subset checked
        n_features = training.values.shape[1]
        dense = [np.unique(training.values[:, f], return_inverse=True)[1] for f in range(n_features)]
        keep_ok = training.target == training.colour
        source_ok = [training.column(s) == training.target for s in training.sources]
        table = np.column_stack(dense + [training.target, keep_ok, *source_ok, training.column("is_bg"),
                                         training.pair]).astype(np.int64)
        rows = np.unique(table, axis=0)  # (M, F + 3 + S): the distinct train situations
        self.values = rows[:, :n_features]  # (M, F) dense codes 0..radix-1
        self.by_feature = np.ascontiguousarray(self.values.T)  # (F, M)
        self.radix = self.values.max(axis=0, initial=-1) + 1  # (F,)
        self.target = rows[:, n_features]
        self.pair = rows[:, -1]
        self.is_bg = rows[:, -2]
        self.n_pairs = len(training.scenes)
        # bad[m] (M,) bool: rows the copy action of mode m does not explain (0: keep, 1 + s: copy source s)
        self.bad = [rows[:, n_features + 1] == 0] + [rows[:, n_features + 2 + s] == 0
                                                     for s in range(len(training.sources))]
        self.modes: list[Optional[str]] = [None, *training.sources]
        self.everything = np.arange(len(rows))
        self._pack_labels([np.ones(len(rows), dtype=np.int64), self.target, self.target ** 2, *self.bad])

    # -- consistency

    def _fine_groups(self, gid: np.ndarray, bins: int, rows: np.ndarray) -> np.ndarray:
        """(modes, bins) bool: whether one action explains each group of ``rows`` (group ids
        ``gid``): every row keeps its colour, every row's target is the mode's source, or one colour."""
        sums = [np.bincount(gid, weights[rows], bins).astype(np.int64) for weights in self.packed]
        count, total, squares, *bad = [(sums[word] >> shift) & self.mask for word, shift in self.fields]
        constant = count * squares == total * total  # one target colour per group (or an empty group)
        fine = [constant | (bad[0] == 0)]
        fine.extend(fine[0] | (b == 0) for b in bad[1:])
        return np.array(fine)

    def _pack_labels(self, labels: list[np.ndarray]) -> None:
        """Pack per-row integer labels (count 1, target, target squared, bad flags per mode)
        into as few float64 weight vectors as keep every group sum exact (below 2 ** 53):
        one weighted bincount then sums several labels at once."""
        width = int(81 * len(self.target)).bit_length()  # bits of the largest sum (target squared)
        self.mask = (1 << width) - 1
        per_word = 52 // width
        self.packed, self.fields = [], []
        for k, label in enumerate(labels):
            word, slot = divmod(k, per_word)
            if slot == 0:
                self.packed.append(np.zeros(len(self.target), dtype=np.float64))
            self.packed[word] += label.astype(np.float64) * float(1 << (slot * width))
            self.fields.append((word, slot * width))

    def consistency(self, codes: np.ndarray, ranges: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For C subsets at once (``codes`` (C, R): their keys of ``rows``, below ``ranges`` (C,)):
        (modes, C) whether each is consistent and (modes, C) how many rows no action explains."""
        n_cols = codes.shape[0]
        offsets = np.concatenate([[0], np.cumsum(ranges)[:-1]]).astype(np.int64)
        bins = int(ranges.sum())
        gid = (codes + offsets[:, None]).ravel()  # (C * R,): element (column, row) -> group id
        fine = self._fine_groups(gid, bins, np.tile(rows, n_cols))
        count = np.bincount(gid, minlength=bins)
        return np.logical_and.reduceat(fine, offsets, axis=1), np.add.reduceat(~fine * count, offsets, axis=1)

    def unexplained(self, code: np.ndarray, rows: np.ndarray, mode: int) -> np.ndarray:
        """The rows of ``rows`` (keys ``code`` (R,)) in groups that mode ``mode`` cannot explain."""
        gid = np.unique(code, return_inverse=True)[1]
        fine = self._fine_groups(gid, int(gid.max(initial=-1)) + 1, rows)[mode]
        return rows[~fine[gid]]

    def _code(self, subset: tuple[int, ...], rows: np.ndarray) -> np.ndarray:
        """(R,) the mixed-radix key of ``rows`` on ``subset``."""
        code = np.zeros(len(rows), dtype=np.int64)
        for f in subset:
            code = code * self.radix[f] + self.values[rows, f]
        return code

    # -- scoring

    def score(self, found: list[tuple[tuple[int, ...], int]]) -> list[Candidate]:
        """Candidates for consistent (subset, mode)s: table sizes and covered pairs over all rows
        (the MAX_SCORED cheapest subsets when there are more)."""
        if not found:
            return []
        cost = self.training.cost
        found = sorted(found, key=lambda item: int(cost[list(item[0])].sum()))[:MAX_SCORED]
        # keys as the rule stores them: the subset's values and whether the cell is background
        colour = self.training.names.index("colour") if "colour" in self.training.names else -1
        codes = np.stack([self._code(subset, self.everything) * 2 + (self.is_bg if colour not in subset else 0)
                          for subset, _ in found])  # (C, M)
        n_cols, n_rows = codes.shape
        column = np.repeat(np.arange(n_cols), n_rows)
        width = int(codes.max()) + 1
        keys, gid = np.unique(column * width + codes.ravel(), return_inverse=True)
        table_size = np.bincount(keys // width, minlength=n_cols)
        pair = np.tile(self.pair, n_cols)
        p = self.n_pairs
        pairs_of_key = (np.bincount(gid * p + pair, minlength=len(keys) * p).reshape(-1, p) > 0).sum(axis=1)
        # leave one pair out: a pair is covered when each of its keys also occurs in another pair
        lonely = pairs_of_key[gid] == 1
        uncovered = np.bincount(column * p + pair, lonely, n_cols * p).reshape(n_cols, p) > 0
        covered = p - uncovered.sum(axis=1)
        return [Candidate(subset, self.modes[mode], int(table_size[k]), int(covered[k]), int(cost[list(subset)].sum()))
                for k, (subset, mode) in enumerate(found)]

    # -- levels

    def candidates(self, pause: bool = False) -> Iterator[Optional[list[Candidate]]]:
        """Consistent minimal subsets, one scored list per subset size 0, 1, 2, 3 (lazily);
        with ``pause``, None before the pairs and then whenever the hypotheses checked have
        doubled (the search may put the learner back in its queue there)."""
        everything = self.everything
        self.meter.charge()
        consistent, _ = self.consistency(np.zeros((1, len(everything)), dtype=np.int64), np.ones(1, np.int64),
                                         everything)
        yield self.score(_first_modes(consistent, [()]))
        n_features = self.values.shape[1]
        if consistent.any() or not n_features:
            return  # every other subset is a superset of the empty one (or there is none)
        self.meter.charge(n_features)
        consistent, _ = self.consistency(self.by_feature, self.radix, everything)
        singles = _first_modes(consistent, [(f,) for f in range(n_features)])
        yield self.score(singles)
        open_features = [f for f in range(n_features) if not consistent[:, f].any()]
        if pause:
            yield None
        next_pause = 2 * self.meter.used
        pairs, near = [], []
        cost = self.training.cost
        work = 0  # elements checked so far: the level's effort bound
        for i, a in enumerate(open_features):
            others = np.array(open_features[i + 1:], dtype=np.int64)
            if not len(others):
                continue
            rows = self.unexplained(self.values[:, a], everything, 0)  # only these need a second feature
            work += len(rows) * len(others)
            if work > LEVEL_WORK:
                break  # the cheaper first features (open_features is by cost) have been paired
            if pause and self.meter.used >= next_pause:
                yield None
                next_pause = 2 * self.meter.used
            self.meter.charge(len(others))
            codes = self.by_feature[a, rows][None, :] * self.radix[others, None] + self.by_feature[np.ix_(others, rows)]
            consistent, unexplained = self.consistency(codes, self.radix[a] * self.radix[others], rows)
            pairs.extend(_first_modes(consistent, [(a, int(b)) for b in others]))
            # per inconsistent pair: (rows unexplained by its closest mode, cost, a, b, that mode)
            open_pairs = ~consistent.any(axis=0)
            best = unexplained.argmin(axis=0)
            near.append(np.column_stack([unexplained.min(axis=0), cost[a] + cost[others], np.full(len(others), a),
                                         others, best])[open_pairs])
        yield self.score(pairs)
        if pause:
            yield None
        near = np.concatenate(near) if near else np.zeros((0, 5), dtype=np.int64)
        nearest = near[np.lexsort((near[:, 1], near[:, 0]))[:TOP_PAIRS]]
        yield self.score(self._triples([((int(a), int(b)), int(m)) for _, _, a, b, m in nearest],
                                       {subset for subset, _ in pairs}, set(open_features)))

    def _triples(self, near: list[tuple[tuple[int, int], int]], consistent_pairs: set,
                 open_features: set) -> list[tuple[tuple[int, ...], int]]:
        """Consistent minimal triples extending the nearly consistent pairs ``near`` under their mode."""
        found: dict[tuple[int, ...], int] = {}
        work = 0  # elements checked so far: the level's effort bound
        for (a, b), mode in near:
            rows = self.unexplained(self._code((a, b), self.everything), self.everything, mode)
            work += len(rows) * len(open_features)
            if work > LEVEL_WORK:
                break
            pair_code = np.unique(self._code((a, b), rows), return_inverse=True)[1]
            others = np.array([c for c in sorted(open_features) if c not in (a, b)
                               and tuple(sorted((a, c))) not in consistent_pairs
                               and tuple(sorted((b, c))) not in consistent_pairs], dtype=np.int64)
            if not len(others):
                continue
            self.meter.charge(len(others))
            codes = pair_code[None, :] * self.radix[others, None] + self.by_feature[np.ix_(others, rows)]
            consistent, _ = self.consistency(codes, (int(pair_code.max()) + 1) * self.radix[others], rows)
            for k in np.flatnonzero(consistent[mode]):
                found.setdefault(tuple(sorted((a, b, int(others[k])))), mode)
            if len(found) >= MAX_TRIPLES:
                break
        return list(found.items())[:MAX_TRIPLES]


def _first_modes(consistent: np.ndarray, subsets: list[tuple[int, ...]]) -> list[tuple[tuple[int, ...], int]]:
    """(subset, its first consistent mode) for the consistent columns of ``consistent`` (modes, C)."""
    first = np.argmax(consistent, axis=0)
    return [(subsets[k], int(first[k])) for k in np.flatnonzero(consistent.any(axis=0))]


# --------------------------------------------------------------------------- fitting


def build(training: Training, candidate: Candidate) -> CellRule:
    """The rule of ``candidate``: per key, keep when every cell keeps its colour, else copy
    the source when it gives every cell's target, else the one target colour."""
    names = tuple(training.names[c] for c in candidate.columns)
    values = [training.values[:, c] for c in candidate.columns] + [training.column(f) for f in _domain(names)]
    radices = tuple(int(v.max()) + 1 for v in values)
    keys, group = np.unique(encode(values, radices, training.target.shape), return_inverse=True)
    n = len(keys)
    misses = lambda wrong: np.bincount(group, wrong, n) > 0  # noqa: E731  (per key: some cell disagrees)
    actions = np.zeros(n, dtype=np.int64)
    actions[group] = training.target  # the target colour (constant per key unless keep/copy)
    copies = np.zeros(n, dtype=bool)
    if candidate.source is not None:
        copies = ~misses(training.column(candidate.source) != training.target)
    actions = np.where(copies, COPY, actions)
    actions = np.where(~misses(training.target != training.colour), KEEP, actions)
    return CellRule(names, candidate.source, radices, keys, actions)


def _domain(features: tuple[str, ...]) -> tuple[str, ...]:
    """Features a rule's keys add to ``features``: whether the cell is background, unless its
    colour is a feature already (a rule never changes a kind of cell the pairs did not show)."""
    return () if "colour" in features else ("is_bg",)


def _same_shapes(inputs: Sequence[Grid], targets: Sequence[Grid]) -> bool:
    return len(inputs) == len(targets) > 0 and all(i.shape == t.shape for i, t in zip(inputs, targets))


def generalises(candidate: Candidate, n_pairs: int) -> bool:
    """Whether the table of the other pairs predicts at least one train pair completely
    (with one pair there is nothing to check it against: it must be tiny)."""
    if n_pairs == 1:
        return candidate.table_size <= 2
    return candidate.covered_pairs >= 1


def rank(candidate: Candidate) -> tuple:
    """Sort key within a subset size: better generalisation, smaller table, cheaper features."""
    return -candidate.covered_pairs, candidate.table_size, candidate.cost


def fit(inputs: Sequence[Grid], targets: Sequence[Grid], meter: Optional[Meter] = None,
        pause: bool = False) -> Iterator[Optional[Fitted]]:
    """Cell rules that map every input to its target, simplest and best generalising first
    (each feature subset checked is one hypothesis charged to ``meter``; with ``pause``, a
    None between subset sizes)."""
    if not _same_shapes(inputs, targets) or all(np.array_equal(i, t) for i, t in zip(inputs, targets)):
        return
    training = Training(inputs, targets)
    yielded = 0
    for level in Search(training, meter or Meter()).candidates(pause):
        if level is None:
            yield None  # a pause in the costly sizes (pause=True only)
            continue
        for candidate in sorted(level, key=rank):
            if not generalises(candidate, len(inputs)):
                continue
            rule = build(training, candidate)
            yield Fitted(rule.name, rule.apply)
            yielded += 1
            if yielded >= MAX_CANDIDATES:
                return


# --------------------------------------------------------------------------- sampling


SAMPLE_TRIES = 16  # templates drawn before sample gives up
Act = Callable[[dict[str, np.ndarray]], np.ndarray]  # feature values of one grid -> (h, w) actions
Template = Callable[[np.random.Generator, list[Scene]], Optional[tuple[tuple[str, ...], Optional[str], Act]]]


def sample(rng: np.random.Generator, inputs: list[Grid]) -> Optional[Fitted]:
    """A random ARC-like cell rule that applies to every input and changes each; None if none does."""
    scenes = [Scene(np.ascontiguousarray(g, dtype=np.uint8)) for g in inputs]
    if not scenes:
        return None
    for _ in range(SAMPLE_TRIES):
        drawn = TEMPLATES[int(rng.integers(len(TEMPLATES)))](rng, scenes)
        rule = tabulate(scenes, *drawn) if drawn is not None else None
        if rule is not None and all(not np.array_equal(rule.apply(s.grid.astype(np.uint8)), s.grid) for s in scenes):
            return Fitted(rule.name, rule.apply)
    return None


def tabulate(scenes: list[Scene], features: tuple[str, ...], source: Optional[str], act: Act) -> Optional[CellRule]:
    """The rule that ``act`` (a function of ``features`` and ``source``) defines on the keys
    of ``scenes``; None when a copy would find no colour."""
    keyed = features + _domain(features)
    values = [np.concatenate([s.feature(f).ravel() for s in scenes]) for f in keyed]
    radices = tuple(int(v.max()) + 1 for v in values)
    actions = np.concatenate([act({f: s.feature(f) for f in keyed + ((source,) if source else ())}).ravel()
                              for s in scenes])
    if source is not None:
        copied = np.concatenate([s.feature(source).ravel() for s in scenes])
        if (copied[actions == COPY] >= N_COLOURS).any():
            return None
    keys, first = np.unique(encode(values, radices, actions.shape), return_index=True)
    return CellRule(features, source, radices, keys, actions[first])


def _colours(scenes: list[Scene]) -> tuple[list[int], list[int]]:
    """(non-background colours present in every grid, colours absent from every grid and its background)."""
    present = [set(np.unique(s.grid[s.fg]).tolist()) for s in scenes]
    common = sorted(set.intersection(*present))
    used = set.union(*present) | {s.bg for s in scenes}
    return common, [c for c in range(N_COLOURS) if c not in used]


def _new_colour(rng: np.random.Generator, scenes: list[Scene]) -> Optional[int]:
    """A colour none of the grids uses (None when all ten are used)."""
    fresh = _colours(scenes)[1]
    return int(rng.choice(fresh)) if fresh else None


def _draw_recolour_by_colour(rng: np.random.Generator, scenes: list[Scene]):
    """Cells of one or two colours become new colours (a colour map)."""
    common, fresh = _colours(scenes)
    if not common or not fresh:
        return None
    old = rng.choice(common, size=min(len(common), int(rng.integers(1, 3))), replace=False)
    new = rng.choice(fresh, size=len(old))
    return ("colour",), None, lambda v: _map(v["colour"], dict(zip(old.tolist(), new.tolist())))


def _map(values: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """(h, w) actions: mapped values painted, the rest kept."""
    out = np.full(values.shape, KEEP, dtype=np.int64)
    for value, colour in mapping.items():
        out[values == value] = colour
    return out


def _draw_fill_enclosed(rng: np.random.Generator, scenes: list[Scene]):
    """Enclosed background becomes a new colour."""
    colour = _new_colour(rng, scenes)
    return None if colour is None else (("enclosed",), None, lambda v: _map(v["enclosed"], {2: colour}))


def _draw_by_size_extreme(rng: np.random.Generator, scenes: list[Scene]):
    """The largest and smallest objects (and maybe the others) are recoloured."""
    kind = str(rng.choice(["c4", "c8", "m8"]))
    colours = _colours(scenes)[1]
    if len(colours) < 3:
        return None
    large, small, other = (int(c) for c in rng.choice(colours, size=3, replace=False))
    mapping = {1: large, 2: small} if rng.random() < 0.6 else {1: large, 2: small, 3: other}
    return (f"{kind}_extreme",), None, lambda v: _map(v[f"{kind}_extreme"], mapping)


def _draw_by_size(rng: np.random.Generator, scenes: list[Scene]):
    """Objects are recoloured by their size (2 to 4 sizes)."""
    kind = str(rng.choice(["c4", "c8"]))
    sizes = np.unique(np.concatenate([s.feature(f"{kind}_size")[s.fg] for s in scenes]))
    colours = _colours(scenes)[1]
    if not len(colours) or not 2 <= len(sizes) <= 4:
        return None
    mapping = {int(size): int(rng.choice(colours)) for size in sizes}
    return (f"{kind}_size",), None, lambda v: _map(v[f"{kind}_size"], mapping)


def _draw_halo(rng: np.random.Generator, scenes: list[Scene]):
    """Background cells touching a colour become a new colour."""
    common, fresh = _colours(scenes)
    if not common or not fresh:
        return None
    centre, colour = int(rng.choice(common)), int(rng.choice(fresh))
    name = f"touch_{centre}"
    return ("is_bg", name), None, lambda v: np.where((v["is_bg"] == 1) & (v[name] == 1), colour, KEEP)


def _draw_between(rng: np.random.Generator, scenes: list[Scene]):
    """Background cells between two cells of one colour take that colour or a new one."""
    axis = str(rng.choice(["h", "v", "hv"]))
    colour = _new_colour(rng, scenes)
    if rng.random() < 0.5 or colour is None:  # the colour of the cells it lies between
        name = f"between_{axis}"
        return ("is_bg", name), name, lambda v: np.where((v["is_bg"] == 1) & (v[name] != NONE), COPY, KEEP)
    name = f"has_between_{axis}"
    return ("is_bg", name), None, lambda v: np.where((v["is_bg"] == 1) & (v[name] == 1), colour, KEEP)


def _draw_extend_rays(rng: np.random.Generator, scenes: list[Scene]):
    """Background cells take the first colour seen in one direction (lines extended)."""
    name = "ray_" + str(rng.choice(list(STEPS)))
    return ("is_bg", name), name, lambda v: np.where((v["is_bg"] == 1) & (v[name] != NONE), COPY, KEEP)


def _draw_stripes(rng: np.random.Generator, scenes: list[Scene]):
    """Background cells of one row, column or checkerboard parity become a new colour."""
    name = str(rng.choice(["row_mod2", "col_mod2", "diag_mod2", "row_mod3", "col_mod3"]))
    colour, phase = _new_colour(rng, scenes), int(rng.integers(2))
    if colour is None:
        return None
    return ("is_bg", name), None, lambda v: np.where((v["is_bg"] == 1) & (v[name] == phase), colour, KEEP)


def _draw_mirror_grid(rng: np.random.Generator, scenes: list[Scene]):
    """The grid is mirrored, rotated or transposed (every cell copies its image)."""
    name = str(rng.choice(["mirror_lr", "mirror_ud", "mirror_rot", "mirror_tr", "mirror_rot90"]))
    return (), name, lambda v: np.full(v[name].shape, COPY)


def _draw_by_holes(rng: np.random.Generator, scenes: list[Scene]):
    """Objects with holes (and maybe those without) are recoloured."""
    kind = str(rng.choice(["c4", "c8", "m8"]))
    colours = _colours(scenes)[1]
    if len(colours) < 2:
        return None
    mapping = {2: int(colours[0])} if rng.random() < 0.5 else {2: int(colours[0]), 1: int(colours[1])}
    return (f"{kind}_holes",), None, lambda v: _map(v[f"{kind}_holes"], mapping)


def _draw_by_border(rng: np.random.Generator, scenes: list[Scene]):
    """Objects touching the grid border are recoloured."""
    colour = _new_colour(rng, scenes)
    return None if colour is None else (("m8_border",), None, lambda v: _map(v["m8_border"], {2: colour}))


def _draw_fill_lines(rng: np.random.Generator, scenes: list[Scene]):
    """Background cells of rows (columns) holding one colour take it."""
    name = str(rng.choice(["row_colour", "col_colour"]))
    return ("is_bg", name), name, lambda v: np.where((v["is_bg"] == 1) & (v[name] < N_COLOURS), COPY, KEEP)


def _draw_interior(rng: np.random.Generator, scenes: list[Scene]):
    """Object cells whose 8 neighbours share their colour (interiors) become a new colour."""
    colour = _new_colour(rng, scenes)
    if colour is None:
        return None
    return ("is_bg", "same8"), None, lambda v: np.where((v["is_bg"] == 0) & (v["same8"] == 8), colour, KEEP)


def _draw_frame(rng: np.random.Generator, scenes: list[Scene]):
    """The cells on the grid border become a new colour."""
    colour = _new_colour(rng, scenes)
    return None if colour is None else (("ring",), None, lambda v: _map(v["ring"], {0: colour}))


TEMPLATES: list[Template] = [
    _draw_recolour_by_colour, _draw_fill_enclosed, _draw_by_size_extreme, _draw_by_size, _draw_halo,
    _draw_between, _draw_extend_rays, _draw_stripes, _draw_mirror_grid, _draw_by_holes, _draw_by_border,
    _draw_fill_lines, _draw_interior, _draw_frame,
]

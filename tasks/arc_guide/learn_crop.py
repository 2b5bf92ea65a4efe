"""Learner ``select_crop``: the output is one region of the input, picked by a property.

About a quarter of ARC tasks output a part of their input: the object that differs, the
largest one, the cell of a separated layout with the most of some colour, the content of a
frame, the box of one colour, one tile of a repeated pattern. A hypothesis here is three
choices, each read off the train pairs:

- a *generator*: a named way to cut a grid into candidate regions (each a subgrid with its
  position): the crop of all content, objects of a segmentation (their box as in the grid,
  or with the other objects' cells blanked), the box of each colour (or its cells alone),
  rectangles enclosed by a one-colour frame (with or without it), the cells between
  separator lines, equal blocks (halves, thirds, quarters, squares), the tile of a periodic
  grid, a window of the targets' fixed shape at a corner;
- a *selector*: a rule that picks exactly one region per grid: the strict maximum or
  minimum of a numeric property (cells, box area, count of one colour, holes, position...),
  the only region whose property value no other region has (colour, shape, pattern...),
  the only one with a flag set (symmetric, touching the border, touching a colour...), the
  commonest pattern, the k-th of a fixed layout. Ties or several qualifying regions mean
  *no selection*: the step raises ``NotApplicable`` (never a guess);
- a *transform* of the picked region that is the same for every pair: one of the 8
  dihedral maps, possibly followed by a colour change: its two colours swapped, its cells
  flattened to its main colour, a fixed recolouring of a few colours (the rest kept), or
  the output a block of its main colour (a task answering with the picked colour).

Contract (tasks.arc_guide.fitting): ``fit(inputs, targets)`` yields :class:`Fitted`
candidates that reproduce every pair, simplest first (a cost summed over the three
choices), lazily in two rounds (plain and dihedral crops, then colour-changing ones), at
most ``MAX_CANDIDATES``; it never mutates its arguments; segmentations are cached by grid
content. Objects use the commonest colour as background, plus black-background variants
where some input's commonest colour is not black (dense ARC scenes). ``sample(rng, inputs)`` draws a random
hypothesis of the family that applies to every input and changes it, for synthetic data.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
from scipy import ndimage

from tasks.arc_guide import objects as ob
from tasks.arc_guide.dsl import N_COLOURS, NotApplicable, bounded
from tasks.arc_guide.fitting import Fitted, Meter

Grid = np.ndarray
MAX_CANDIDATES = 40  # candidates yielded per fit, at most (the caller reads the first few)
_CROSS = ndimage.generate_binary_structure(2, 1)  # 4-connectivity


# --------------------------------------------------------------------------- regions


@dataclass(eq=False)
class Regions:
    """The candidate regions of one grid: ``images[i]`` (h, w) uint8 is what region i
    outputs, ``masks[i]`` (h, w) bool its own cells (what its features count), ``boxes[i]``
    (top, left, bottom, right) its place in ``grid``."""

    grid: Grid
    images: list[Grid]
    masks: list[np.ndarray]
    boxes: np.ndarray  # (n, 4) int
    cache: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    def feature(self, name: str) -> np.ndarray:
        """FEATURES[name] of every region, (n,) array, computed once."""
        if name not in self.cache:
            self.cache[name] = FEATURES[name](self)
        return self.cache[name]

    def groups(self, name: str) -> list[list[int]]:
        """The regions grouped by equal values of the key feature ``name``, computed once."""
        if ("groups", name) not in self.cache:
            members: dict = {}
            for i, value in enumerate(self.feature(name).tolist()):
                members.setdefault(value, []).append(i)
            self.cache[("groups", name)] = list(members.values())
        return self.cache[("groups", name)]


def _regions(grid: Grid, images: list[Grid], masks: list[np.ndarray],
             boxes: list[tuple[int, int, int, int]]) -> Optional[Regions]:
    if not images:
        return None
    return Regions(grid, images, masks, np.asarray(boxes, dtype=np.int64).reshape(-1, 4))


def _boxed(grid: Grid, bg: int, boxes: list[tuple[int, int, int, int]]) -> Optional[Regions]:
    """Regions that are plain subgrids, their cells the non-background (``bg``) ones."""
    images = [grid[t:b, l:r].copy() for t, l, b, r in boxes]
    return _regions(grid, images, [im != bg for im in images], boxes)


def _box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


# --------------------------------------------------------------------------- generators
# Each maps a grid to its Regions, or None when the grid has no such regions.


def whole(grid: Grid) -> Optional[Regions]:
    """One region: the grid itself (a whole-grid turn or recolouring, no crop)."""
    return _boxed(grid, ob.background(grid), [(0, 0, *grid.shape)])


def content(grid: Grid) -> Optional[Regions]:
    """One region: the box of every non-background cell."""
    bg = ob.background(grid)
    fg = grid != bg
    return _boxed(grid, bg, [_box_of(fg)]) if fg.any() else None


@functools.lru_cache(maxsize=256)
def _segment(key: bytes, shape: tuple[int, int], connectivity: int, multicolour: bool, bg: int) -> tuple[ob.Obj, ...]:
    """objects.objects of the grid ``key`` (its bytes), cached: boxes and isolated objects,
    and the fitting of every pair, segment the same grids."""
    grid = np.frombuffer(key, dtype=np.uint8).reshape(shape)
    return tuple(ob.objects(grid, connectivity, multicolour, bg))


def objects(connectivity: int, multicolour: bool, isolated: bool,
            black: bool = False) -> Callable[[Grid], Optional[Regions]]:
    """Objects of a segmentation (background: the commonest colour, or 0 if ``black``);
    their box as in the grid, or (``isolated``) with every cell not theirs blanked."""
    def generate(grid: Grid) -> Optional[Regions]:
        bg = 0 if black else ob.background(grid)
        objs = _segment(grid.tobytes(), grid.shape, connectivity, multicolour, bg)
        boxes = [(o.top, o.left, o.top + o.mask.shape[0], o.left + o.mask.shape[1]) for o in objs]
        if isolated:
            images = [ob.crop(o, bg) for o in objs]
        else:
            images = [grid[t:b, l:r].copy() for t, l, b, r in boxes]
        return _regions(grid, images, [o.mask for o in objs], boxes)
    return generate


def colour_boxes(inner: bool) -> Callable[[Grid], Optional[Regions]]:
    """The box of each non-background colour's cells; ``inner``: without its outer ring."""
    def generate(grid: Grid) -> Optional[Regions]:
        bg = ob.background(grid)
        boxes = [_box_of(grid == c) for c in range(N_COLOURS) if c != bg and (grid == c).any()]
        if inner:
            boxes = [(t + 1, l + 1, b - 1, r - 1) for t, l, b, r in boxes if b - t > 2 and r - l > 2]
        return _boxed(grid, bg, boxes)
    return generate


def colour_layers(grid: Grid) -> Optional[Regions]:
    """Each non-background colour's cells alone (connected or not), in their box."""
    bg = ob.background(grid)
    layers = ob.colour_groups(grid, bg)
    boxes = [(o.top, o.left, o.top + o.mask.shape[0], o.left + o.mask.shape[1]) for o in layers]
    return _regions(grid, [ob.crop(o, bg) for o in layers], [o.mask for o in layers], boxes)


def frames(inner: bool) -> Callable[[Grid], Optional[Regions]]:
    """Rectangles whose whole outer ring is one 4-connected object of one colour (at least
    3 x 3), with their frame or (``inner``) without it."""
    def generate(grid: Grid) -> Optional[Regions]:
        bg = ob.background(grid)
        boxes = []
        for o in _segment(grid.tobytes(), grid.shape, 4, False, bg):
            m = o.mask
            if min(m.shape) >= 3 and m[0].all() and m[-1].all() and m[:, 0].all() and m[:, -1].all():
                t, l = o.top, o.left
                b, r = t + m.shape[0], l + m.shape[1]
                boxes.append((t + 1, l + 1, b - 1, r - 1) if inner else (t, l, b, r))
        return _boxed(grid, bg, boxes)
    return generate


def separated(grid: Grid) -> Optional[Regions]:
    """The rectangles between full lines of one separator colour: a colour other than the
    background when one makes such lines (sparse cells have blank lines too), else the
    background's blank lines (like objects.separator_cells, which tries the commonest first)."""
    bg = ob.background(grid)
    for colour in [c for c in ob.palette(grid) if c != bg] + [bg]:
        rows = np.flatnonzero((grid == colour).all(axis=1))
        cols = np.flatnonzero((grid == colour).all(axis=0))
        if len(rows) + len(cols) == 0 or len(rows) == grid.shape[0] or len(cols) == grid.shape[1]:
            continue
        boxes = [(t, l, b, r) for t, b in _gaps(rows, grid.shape[0]) for l, r in _gaps(cols, grid.shape[1])]
        if len(boxes) >= 2:
            cells = np.concatenate([grid[t:b, l:r].ravel() for t, l, b, r in boxes])
            # the cells' own background: their commonest colour (the separator may dominate the grid)
            return _boxed(grid, int(np.bincount(cells, minlength=N_COLOURS).argmax()), boxes)
    return None


def _gaps(lines: np.ndarray, length: int) -> list[tuple[int, int]]:
    """[start, end) runs of 0..length between the indices ``lines``."""
    edges = [-1, *lines.tolist(), length]
    return [(a + 1, b) for a, b in zip(edges, edges[1:]) if b > a + 1]


def blocks(n_rows: int, n_cols: int) -> Callable[[Grid], Optional[Regions]]:
    """The grid cut into n_rows x n_cols equal blocks (a middle line dropped for an odd half)."""
    def generate(grid: Grid) -> Optional[Regions]:
        rows, cols = _cuts(grid.shape[0], n_rows), _cuts(grid.shape[1], n_cols)
        if rows is None or cols is None:
            return None
        return _boxed(grid, ob.background(grid), [(t, l, b, r) for t, b in rows for l, r in cols])
    return generate


def _cuts(length: int, n: int) -> Optional[list[tuple[int, int]]]:
    """[start, end) of n equal parts of 0..length; halves may skip one middle line."""
    if n == 1:
        return [(0, length)]
    if length % n == 0:
        side = length // n
        return [(k * side, (k + 1) * side) for k in range(n)] if side else None
    if n == 2 and length >= 3:
        return [(0, length // 2), (length - length // 2, length)]
    return None


def squares(grid: Grid) -> Optional[Regions]:
    """The long side cut into squares of the short side (a row or column of square tiles)."""
    h, w = grid.shape
    if h == w or max(h, w) % min(h, w):
        return None
    side = min(h, w)
    boxes = [(0, k, h, k + side) for k in range(0, w, side)] if w > h else \
        [(k, 0, k + side, w) for k in range(0, h, side)]
    return _boxed(grid, ob.background(grid), boxes)


def period_tile(grid: Grid) -> Optional[Regions]:
    """One region: the smallest tile whose repetition is the grid (None if it has none)."""
    p, q = _period(grid, 0), _period(grid, 1)
    if p == grid.shape[0] and q == grid.shape[1]:
        return None
    return _boxed(grid, ob.background(grid), [(0, 0, p, q)])


def _period(grid: Grid, axis: int) -> int:
    n = grid.shape[axis]
    for p in range(1, n):
        if n % p == 0 and np.array_equal(np.take(grid, range(p, n), axis), np.take(grid, range(n - p), axis)):
            return p
    return n


def window(corner: str, height: int, width: int) -> Callable[[Grid], Optional[Regions]]:
    """One region: the height x width window at a corner of the grid (a fixed-place crop)."""
    def generate(grid: Grid) -> Optional[Regions]:
        h, w = grid.shape
        if height > h or width > w or (height, width) == (h, w):
            return None
        top = 0 if corner.startswith("top") else h - height
        left = 0 if corner.endswith("left") else w - width
        return _boxed(grid, ob.background(grid), [(top, left, top + height, left + width)])
    return generate


@dataclass(frozen=True)
class Generator:
    """A named generator with its cost (cheaper = simpler, tried first); ``black``: its
    background is colour 0 rather than the commonest colour."""

    name: str
    generate: Callable[[Grid], Optional[Regions]]
    cost: float
    black: bool = False


def _objects_family() -> list[Generator]:
    out = []
    for conn, multi, isolated, cost in ((8, True, True, 0.5), (8, False, True, 1.0), (4, True, True, 1.0),
                                        (4, False, True, 1.5), (8, True, False, 1.0), (8, False, False, 1.5),
                                        (4, True, False, 1.5), (4, False, False, 2.0)):
        kind = f"{'objects' if isolated else 'object_boxes'}({conn},{'multi' if multi else 'single'}"
        out.append(Generator(kind + ")", objects(conn, multi, isolated), cost))
        if conn == 8:  # the same on a black background (ARC's usual one, even where it is not the commonest)
            out.append(Generator(kind + ",black)", objects(conn, multi, isolated, black=True), cost + 1.0, True))
    return out


GENERATORS: list[Generator] = [
    Generator("whole", whole, 0.0),  # before content: a bare turn must not become a crop
    Generator("content", content, 0.0),
    Generator("period_tile", period_tile, 0.5),
    Generator("separated", separated, 0.5),
    *_objects_family(),
    Generator("frames", frames(False), 1.0),
    Generator("frame_insides", frames(True), 1.0),
    Generator("colour_boxes", colour_boxes(False), 1.5),
    Generator("colour_box_insides", colour_boxes(True), 2.0),
    Generator("colour_layers", colour_layers, 2.0),
    Generator("halves(1,2)", blocks(1, 2), 1.0),
    Generator("halves(2,1)", blocks(2, 1), 1.0),
    Generator("blocks(2,2)", blocks(2, 2), 1.5),
    Generator("blocks(1,3)", blocks(1, 3), 1.5),
    Generator("blocks(3,1)", blocks(3, 1), 1.5),
    Generator("blocks(3,3)", blocks(3, 3), 2.0),
    Generator("squares", squares, 1.5),
]
CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")


def generators(inputs: Sequence[Grid], targets: Sequence[Grid]) -> list[Generator]:
    """The generators worth trying on these pairs: the fixed ones (the black-background
    variants only where some input's commonest colour is not 0) and, when every target
    has one shape of more than one cell, the corner windows of that shape."""
    black_differs = any(ob.background(g) != 0 and (g == 0).any() for g in inputs)
    out = [g for g in GENERATORS if black_differs or not g.black]
    shapes = {t.shape for t in targets}
    if len(shapes) == 1 and targets[0].size > 1:  # a single cell at a corner is chance, not a rule
        (h, w), = shapes
        out += [Generator(f"window({c},{h}x{w})", window(c, h, w), 3.0) for c in CORNERS]
    return out


# --------------------------------------------------------------------------- features
# Each maps Regions to one value per region: a numeric (n,) array, a bool (n,) array, or
# an object (n,) array of hashable keys.


def _histograms(regions: Regions) -> np.ndarray:
    """(n, 10) counts of each colour among the regions' own cells."""
    return np.stack([np.bincount(im[m], minlength=N_COLOURS) for im, m in zip(regions.images, regions.masks)])


def _image_histograms(regions: Regions) -> np.ndarray:
    """(n, 10) counts of each colour in the regions' images (a box counts what lies in it)."""
    return np.stack([np.bincount(im.ravel(), minlength=N_COLOURS) for im in regions.images])


def _touching(regions: Regions) -> np.ndarray:
    """(n, 10) bool: colours of the grid cells 8-adjacent to a region's cells, outside them."""
    # the grid padded with a colour-less value 10, so every box grows by one cell each side
    grid = np.pad(regions.grid, 1, constant_values=N_COLOURS)
    out = np.zeros((len(regions), N_COLOURS + 1), dtype=bool)
    for i, ((t, l, b, r), m) in enumerate(zip(regions.boxes, regions.masks)):
        local = np.zeros((b - t + 2, r - l + 2), dtype=bool)  # the mask in its box grown by one
        local[1:-1, 1:-1] = m
        grown = np.zeros_like(local)
        for dr, dc in np.ndindex(3, 3):  # 8-neighbour dilation: 9 shifted copies of the mask
            grown[dr:dr + m.shape[0], dc:dc + m.shape[1]] |= m
        out[i, grid[t:b + 2, l:r + 2][grown & ~local]] = True
    return out[:, :N_COLOURS]


def _holes(mask: np.ndarray) -> int:
    """Enclosed background areas: 4-connected components of the complement that do not
    reach the box's edge (the padded complement's outer component is not one)."""
    h, w = mask.shape
    if h < 3 or w < 3 or mask.sum() < 8:
        return 0  # a hole needs a ring of at least 8 cells around it
    outside = np.ones((h + 2, w + 2), dtype=bool)
    outside[1:-1, 1:-1] = ~mask
    return int(ndimage.label(outside, _CROSS)[1]) - 1


def _symmetric(im: Grid) -> bool:
    return bool(np.array_equal(im, im[:, ::-1]) or np.array_equal(im, im[::-1]) or
                (im.shape[0] == im.shape[1] and (np.array_equal(im, im.T) or np.array_equal(im, im[::-1, ::-1].T))))


def _keys(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


FEATURES: dict[str, Callable[[Regions], np.ndarray]] = {
    "size": lambda regs: np.array([m.sum() for m in regs.masks]),
    "area": lambda regs: (regs.boxes[:, 2] - regs.boxes[:, 0]) * (regs.boxes[:, 3] - regs.boxes[:, 1]),
    "height": lambda regs: regs.boxes[:, 2] - regs.boxes[:, 0],
    "width": lambda regs: regs.boxes[:, 3] - regs.boxes[:, 1],
    "n_colours": lambda regs: (regs.feature("histogram") > 0).sum(axis=1),
    "holes": lambda regs: np.array([_holes(m) for m in regs.masks]),
    "top": lambda regs: regs.boxes[:, 0],
    "left": lambda regs: regs.boxes[:, 1],
    "bottom": lambda regs: regs.boxes[:, 2],
    "right": lambda regs: regs.boxes[:, 3],
    "histogram": _histograms,
    "image_histogram": _image_histograms,
    "touching": _touching,
    "symmetric": lambda regs: np.array([_symmetric(im) for im in regs.images]),
    "border": lambda regs: ((regs.boxes[:, :2] == 0).any(axis=1) | (regs.boxes[:, 2:] == regs.grid.shape).any(axis=1)),
    "solid": lambda regs: np.array([bool(m.all()) for m in regs.masks]),
    "colour": lambda regs: _keys([int(h.argmax()) if h.any() else -1 for h in regs.feature("histogram")]),
    "shape": lambda regs: _keys([bytes(m.shape) + np.packbits(m).tobytes() for m in regs.masks]),
    "pattern": lambda regs: _keys([bytes(im.shape) + im.tobytes() for im in regs.images]),
    "look": lambda regs: _keys([p + np.packbits(m).tobytes() for p, m in zip(regs.feature("pattern"), regs.masks)]),
}
for _c in range(N_COLOURS):  # per-colour features: count of, and touching, colour c
    FEATURES[f"count({_c})"] = lambda regs, c=_c: regs.feature("image_histogram")[:, c]
    FEATURES[f"touches({_c})"] = lambda regs, c=_c: regs.feature("touching")[:, c]


# --------------------------------------------------------------------------- selectors


def _extreme(values: np.ndarray, sign: int) -> Optional[int]:
    """Index of the strict maximum of sign * values; None when tied."""
    v = sign * values.astype(np.int64)
    best = v.max()
    hits = np.flatnonzero(v == best)
    return int(hits[0]) if len(hits) == 1 else None


def _only(flags: np.ndarray) -> Optional[int]:
    hits = np.flatnonzero(flags)
    return int(hits[0]) if len(hits) == 1 else None


def _unique(values: np.ndarray) -> Optional[int]:
    """The one region whose value no other region has; None unless exactly one such."""
    counts = _counts(values)
    return _only(counts == 1) if len(values) >= 3 else None


def _counts(values: np.ndarray) -> np.ndarray:
    seen: dict = {}
    for v in values.tolist():
        seen[v] = seen.get(v, 0) + 1
    return np.array([seen[v] for v in values.tolist()])


@dataclass(frozen=True)
class Selector:
    """Picks one region by ``feature`` in ``mode`` (max, min, unique, true, false, common,
    only, at); ``index`` and ``count`` for mode ``at`` (the index-th of count regions)."""

    feature: str
    mode: str
    cost: float
    index: int = 0
    count: int = 0

    @property
    def name(self) -> str:
        """How the selector reads in a step name, e.g. ``max(count(2))``."""
        if self.mode == "only":
            return "only"
        if self.mode == "at":
            return f"at({self.index}/{self.count})"
        return f"{self.mode}({self.feature})"

    def pick(self, regions: Regions) -> Optional[int]:
        """Index of the region this selector picks, or None (no single region qualifies)."""
        if self.mode == "only":
            return 0 if len(regions) == 1 else None
        if self.mode == "at":
            return self.index if len(regions) == self.count else None
        if len(regions) < 2:
            return None  # a property selects among several regions; "only" covers one
        values = regions.feature(self.feature)
        if self.mode in ("max", "min"):
            return _extreme(values, 1 if self.mode == "max" else -1)
        if self.mode in ("true", "false"):
            return _only(values if self.mode == "true" else ~values)
        if self.mode == "unique":
            return _unique(values)
        return _commonest(regions, values)


def _commonest(regions: Regions, values: np.ndarray) -> Optional[int]:
    """The first region of the strictly commonest value, when all of its regions look the same."""
    counts = _counts(values)
    top = counts.max()
    hits = np.flatnonzero(counts == top)
    if top < 2 or len({values[i] for i in hits}) != 1:
        return None
    first = regions.images[hits[0]]
    return int(hits[0]) if all(np.array_equal(regions.images[i], first) for i in hits) else None


def selectors(colours: Sequence[int]) -> list[Selector]:
    """Every selector, cheapest first; per-colour ones for ``colours``."""
    out = [Selector("", "only", 0.0)]
    out += [Selector(f, m, c) for f, c in (("size", 1.0), ("area", 1.5)) for m in ("max", "min")]
    out += [Selector(f, "unique", c) for f, c in (("colour", 1.5), ("shape", 1.5), ("pattern", 1.5))]
    out += [Selector("pattern", "common", 2.0), Selector("shape", "common", 2.5)]
    out += [Selector(f, m, 2.0) for f in ("symmetric", "border", "solid") for m in ("true", "false")]
    out += [Selector(f, m, 2.0) for f in ("n_colours", "holes") for m in ("max", "min")]
    out += [Selector(f, "unique", 2.5) for f in ("size", "n_colours", "holes")]
    out += [Selector(f"count({c})", m, 2.5) for c in colours for m in ("max", "min")]
    out += [Selector(f"touches({c})", m, 3.0) for c in colours for m in ("true", "false")]
    out += [Selector(f, m, 3.0) for f in ("height", "width") for m in ("max", "min")]
    out += [Selector(f, m, 3.0) for f, m in (("top", "min"), ("bottom", "max"), ("left", "min"), ("right", "max"))]
    return out


def _positional(matches: list[set[int]], counts: list[int]) -> list[Selector]:
    """``at`` selectors: the same index among the same number of regions in every pair."""
    if len(set(counts)) != 1 or counts[0] < 2:
        return []
    common = set.intersection(*matches)
    return [Selector("", "at", 2.0, k, counts[0]) for k in sorted(common)]


# --------------------------------------------------------------------------- transforms


@dataclass(frozen=True)
class Transform:
    """A map from the picked region to the output: dihedral ``turn`` of its image, then
    ``colours``: ``swap`` (exchange the image's two colours), ``flatten`` (the region's
    cells all in its main colour), ``fill`` (a ``fill_shape`` grid of its main colour), or
    a fixed recolouring ``recolour`` (colour -> colour pairs; other colours kept)."""

    turn: str = "identity"
    colours: str = ""
    recolour: tuple[tuple[int, int], ...] = ()
    fill_shape: tuple[int, int] = (1, 1)

    @property
    def name(self) -> str:
        """How the transform reads in a step name ("" for none), e.g. ``rot90+swap``."""
        parts = [] if self.turn == "identity" else [self.turn]
        if self.colours == "fill":
            parts.append(f"fill({self.fill_shape[0]}x{self.fill_shape[1]})")
        elif self.colours:
            parts.append(self.colours)
        if self.recolour:
            parts.append("recolour(" + ",".join(f"{a}>{b}" for a, b in self.recolour) + ")")
        return "+".join(parts)

    @property
    def cost(self) -> float:
        """Its share of a hypothesis's cost: a turn 1, a colour change 1.5 each."""
        return (0.0 if self.turn == "identity" else 1.0) + (1.5 if self.colours else 0.0) + 1.5 * len(self.recolour)

    def shape(self, image: Grid) -> tuple[int, int]:
        """The output's shape for a region of this image."""
        if self.colours == "fill":
            return self.fill_shape
        return image.shape[::-1] if self.turn in ("rot90", "rot270", "transpose", "anti_transpose") else image.shape

    def __call__(self, regions: Regions, index: int) -> Grid:
        """The output for region ``index`` of ``regions``; NotApplicable where undefined."""
        if self.colours in ("fill", "flatten"):
            colour = regions.feature("colour")[index]
            if colour < 0:
                raise NotApplicable("the region has no cells")
            if self.colours == "fill":
                return np.full(self.fill_shape, colour, dtype=np.uint8)
        out = regions.images[index]
        if self.colours == "flatten":
            out = np.where(regions.masks[index], np.uint8(colour), out)
        out = DIHEDRAL[self.turn](out)
        if self.colours == "swap":
            present = np.flatnonzero(np.bincount(out.ravel(), minlength=N_COLOURS))
            if len(present) != 2:
                raise NotApplicable("the region does not have exactly two colours")
            out = np.where(out == present[0], present[1], present[0])
        if self.recolour:
            lut = np.arange(N_COLOURS, dtype=np.uint8)
            for a, b in self.recolour:
                lut[a] = b
            out = lut[out]
        return np.ascontiguousarray(out, dtype=np.uint8)


DIHEDRAL: dict[str, Callable[[Grid], Grid]] = {
    "identity": lambda g: g, "rot90": lambda g: np.rot90(g, 1), "rot180": lambda g: g[::-1, ::-1],
    "rot270": lambda g: np.rot90(g, 3), "flip_h": lambda g: g[:, ::-1], "flip_v": lambda g: g[::-1],
    "transpose": lambda g: g.T, "anti_transpose": lambda g: g[::-1, ::-1].T,
}


def _learn_recolour(image: Grid, target: Grid) -> Optional[tuple[tuple[int, int], ...]]:
    """The colour changes (a -> b, a != b) that map ``image`` onto ``target`` (same shape),
    one-to-one on the image's colours; None when none exists or it changes nothing."""
    src, dst = image.ravel(), target.ravel()
    # a colour map is a function src -> dst: each src colour's cells share one dst colour
    pairs = np.unique(src.astype(np.int64) * N_COLOURS + dst)
    a, b = pairs // N_COLOURS, pairs % N_COLOURS
    if len(np.unique(a)) != len(a) or len(np.unique(b)) != len(b) or (a == b).all():
        return None
    return tuple((int(x), int(y)) for x, y in zip(a, b) if x != y)


# --------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class Hypothesis:
    """A generator, a selector and a transform: the crop step they make."""

    generator: Generator
    selector: Selector
    transform: Transform

    @property
    def cost(self) -> float:
        """Its simplicity rank: the sum of its three choices' costs (cheaper first)."""
        return self.generator.cost + self.selector.cost + self.transform.cost

    @property
    def name(self) -> str:
        """The step name, e.g. ``select_crop(objects(8,multi),max(size),rot90)``."""
        extra = f",{self.transform.name}" if self.transform.name else ""
        return f"select_crop({self.generator.name},{self.selector.name}{extra})"

    def __call__(self, grid: Grid) -> Grid:
        """The crop of ``grid``; NotApplicable without regions or a single selected one."""
        regions = self.generator.generate(grid)
        if regions is None:
            raise NotApplicable(f"{self.generator.name}: no regions")
        index = self.selector.pick(regions)
        if index is None:
            raise NotApplicable(f"{self.selector.name}: no single region")
        return self.transform(regions, index)

    def fitted(self) -> Fitted:
        """As a learner candidate."""
        return Fitted(self.name, self)


def fit(inputs: Sequence[Grid], targets: Sequence[Grid], meter: Optional[Meter] = None,
        pause: bool = False) -> Iterator[Optional[Fitted]]:
    """Crop hypotheses that explain every pair, cheapest first (at most MAX_CANDIDATES);
    each (generator, transform) and each selector checked is one hypothesis charged to
    ``meter``; with ``pause``, a None before the round of colour-changing transforms."""
    count = 0
    for hypothesis in explain(inputs, targets, meter, pause):
        if hypothesis is None:
            yield None
            continue
        if count >= MAX_CANDIDATES:
            return
        count += 1
        yield hypothesis.fitted()


def explain(inputs: Sequence[Grid], targets: Sequence[Grid], meter: Optional[Meter] = None,
            pause: bool = False) -> Iterator[Optional[Hypothesis]]:
    """Every hypothesis that reproduces the pairs, in two rounds each sorted by cost: plain
    and dihedral crops, then crops whose colours change (blank answers: the second only)."""
    if not inputs or len(inputs) != len(targets):
        return
    meter = meter or Meter()
    inputs = [np.ascontiguousarray(g, dtype=np.uint8) for g in inputs]
    targets = [np.ascontiguousarray(g, dtype=np.uint8) for g in targets]
    if all(i.shape == t.shape and np.array_equal(i, t) for i, t in zip(inputs, targets)):
        return  # nothing is cropped
    colours = sorted(set().union(*(np.unique(g).tolist() for g in inputs)))
    base = selectors(colours)
    regions: dict[str, list[Optional[Regions]]] = {}  # generator name -> its regions of every input
    # blank answers (all the input's background) are no crop: any empty stretch would do;
    # only a colour answer (a block of the picked region's colour) may explain them
    blank = all((t == ob.background(i)).all() for i, t in zip(inputs, targets))
    for kind in ("fill",) if blank else ("plain", "colours"):
        if pause and kind == "colours":
            yield None  # a pause (pause=True only)
        batch = []
        for generator in generators(inputs, targets):
            if generator.name not in regions:
                regions[generator.name] = [generator.generate(g) for g in inputs]
            batch += _hypotheses(generator, regions[generator.name], targets, base, kind, meter)
        yield from sorted(batch, key=lambda h: h.cost)


def _hypotheses(generator: Generator, regions: list[Optional[Regions]], targets: list[Grid],
                base: list[Selector], kind: str, meter: Meter) -> list[Hypothesis]:
    """Every (transform, selector) that, with ``generator``, reproduces the pairs."""
    if any(r is None for r in regions):
        return []
    counts = [len(r) for r in regions]
    found = []
    for transform, matches in _matching(regions, targets, kind, meter):
        chosen = base + _positional(matches, counts)
        meter.charge(len(chosen))
        for selector in chosen:
            if all(selector.pick(r) in m for r, m in zip(regions, matches)):
                found.append(Hypothesis(generator, selector, transform))
    return found


def _transforms(regions: list[Regions], targets: list[Grid], kind: str) -> list[Transform]:
    """The transforms of one kind worth checking: ``plain`` (dihedral), ``colours`` (swap,
    flatten, fill, recolourings read off the first pair) or ``fill`` alone."""
    if kind == "plain":
        return [Transform(turn) for turn in DIHEDRAL]
    shapes = {t.shape for t in targets}
    fill = [Transform(colours="fill", fill_shape=targets[0].shape)] if (
        len(shapes) == 1 and all(len(np.unique(t)) == 1 for t in targets)) else []
    if kind == "fill":
        return fill
    swaps = [Transform(turn, c) for c in ("swap", "flatten") for turn in DIHEDRAL]
    recolourings = [Transform(turn, recolour=r) for turn in DIHEDRAL for r in _recolourings(regions, targets, turn)]
    return swaps + fill + recolourings


def _matching(regions: list[Regions], targets: list[Grid], kind: str,
              meter: Meter) -> Iterator[tuple[Transform, list[set[int]]]]:
    """Transforms of ``kind`` under which every pair has a region that becomes its target,
    with the set of such regions per pair."""
    for transform in _transforms(regions, targets, kind):
        meter.charge()
        matches = []
        for r, t in zip(regions, targets):
            matches.append(_matches(transform, r, t))
            if not matches[-1]:
                break  # a pair without a match: the transform is out
        else:
            if kind == "plain" or not _changes_nothing(transform, regions, targets, matches):
                yield transform, matches


def _changes_nothing(transform: Transform, regions: list[Regions], targets: list[Grid],
                     matches: list[set[int]]) -> bool:
    """Whether a colour-changing transform only matches regions its plain turn matches
    already (a flattened one-colour object, a filled block): the plain crop explains it."""
    plain = Transform(transform.turn)
    return all(m <= _matches(plain, r, t) for r, t, m in zip(regions, targets, matches))


def _matches(transform: Transform, regions: Regions, target: Grid) -> set[int]:
    """Indices of the regions that ``transform`` maps onto ``target``; regions that look
    the same are tried once (a noisy grid has hundreds of equal single cells)."""
    found: set[int] = set()
    for members in regions.groups("look" if transform.colours in ("flatten", "fill") else "pattern"):
        if transform.shape(regions.images[members[0]]) != target.shape:
            continue
        try:
            if np.array_equal(transform(regions, members[0]), target):
                found.update(members)
        except NotApplicable:
            pass
    return found


def _recolourings(regions: list[Regions], targets: list[Grid], turn: str) -> list[tuple[tuple[int, int], ...]]:
    """Fixed recolourings worth checking: each learnt from one region of the first pair
    that has its target's shape (the other pairs check it)."""
    found = []
    if targets[0].size == 1:
        return found  # a single cell's colour says nothing about a recolouring
    for members in regions[0].groups("pattern"):
        image = DIHEDRAL[turn](regions[0].images[members[0]])
        if image.shape != targets[0].shape:
            continue
        changes = _learn_recolour(image, targets[0])
        if changes is not None and changes not in found:
            found.append(changes)
    return found


# --------------------------------------------------------------------------- sampling


# What synthetic tasks of this family draw: generators with their weights, and for each
# kind of generator the selectors it is used with (feature, mode, weight); "c" stands for
# a colour present in every input. Weights follow how often ARC tasks do each.
_SAMPLED_GENERATORS = {
    "objects(8,multi)": 3.0, "objects(8,single)": 1.5, "objects(4,single)": 0.5, "object_boxes(8,multi)": 0.5,
    "content": 1.0, "separated": 1.5, "halves(1,2)": 0.5, "halves(2,1)": 0.5, "blocks(2,2)": 0.3,
    "squares": 0.3, "frames": 0.3, "frame_insides": 0.4, "colour_boxes": 0.4, "period_tile": 0.3,
}
_OBJECT_SELECTORS = (("size", "max", 3.0), ("size", "min", 2.0), ("colour", "unique", 1.5), ("shape", "unique", 1.5),
                     ("count(c)", "max", 1.0), ("symmetric", "true", 1.0), ("border", "false", 0.7),
                     ("holes", "max", 0.7), ("touches(c)", "true", 0.5), ("pattern", "common", 0.3),
                     ("n_colours", "max", 0.5), ("top", "min", 0.3), ("bottom", "max", 0.3))
_PART_SELECTORS = (("", "at", 2.0), ("pattern", "unique", 1.0), ("size", "max", 1.0), ("size", "min", 0.7),
                   ("count(c)", "max", 1.0), ("colour", "unique", 0.5), ("symmetric", "true", 0.3))
_SINGLE_SELECTORS = (("", "only", 1.0),)
_TRANSFORMS = (("identity", "", 0.75), ("dihedral", "", 0.15), ("identity", "swap", 0.03),
               ("identity", "flatten", 0.03), ("identity", "fill", 0.04))
_SAMPLE_TRIES = 60


def _pick(rng: np.random.Generator, options: Sequence[tuple]) -> tuple:
    """One option, drawn with probability proportional to its last element."""
    weights = np.array([o[-1] for o in options], dtype=float)
    return options[int(rng.choice(len(options), p=weights / weights.sum()))]


def _draw(rng: np.random.Generator, inputs: list[Grid]) -> Optional[Hypothesis]:
    """One random hypothesis (not yet checked against the inputs)."""
    names = list(_SAMPLED_GENERATORS)
    name = _pick(rng, [(n, _SAMPLED_GENERATORS[n]) for n in names])[0]
    generator = next(g for g in GENERATORS if g.name == name)
    if name in ("content", "period_tile"):
        menu = _SINGLE_SELECTORS
    elif name.startswith(("object", "colour_boxes", "frame")):
        menu = _OBJECT_SELECTORS + (_SINGLE_SELECTORS if name.startswith("frame") else ())
    else:
        menu = _PART_SELECTORS
    feature, mode, _ = _pick(rng, menu)
    if "(c)" in feature:
        shared = set.intersection(*(set(np.unique(g).tolist()) - {ob.background(g)} for g in inputs))
        if not shared:
            return None
        feature = feature.replace("(c)", f"({int(rng.choice(sorted(shared)))})")
    if mode == "at":
        regions = generator.generate(inputs[0])
        if regions is None or len(regions) < 2:
            return None
        selector = Selector("", "at", 2.0, int(rng.integers(len(regions))), len(regions))
    else:
        selector = Selector(feature, mode, 0.0)
    turn, colours, _ = _pick(rng, _TRANSFORMS)
    if turn == "dihedral":
        turn = str(rng.choice([t for t in DIHEDRAL if t != "identity"]))
    return Hypothesis(generator, selector, Transform(turn, colours))


def _changes_all(hypothesis: Hypothesis, inputs: list[Grid]) -> bool:
    """Whether the hypothesis applies to every input and changes each."""
    for grid in inputs:
        try:
            out = bounded(hypothesis(grid))
        except NotApplicable:
            return False
        if out.shape == grid.shape and np.array_equal(out, grid):
            return False
    return True


def sample(rng: np.random.Generator, inputs: list[Grid]) -> Optional[Fitted]:
    """A random crop hypothesis that applies to every input and changes it; None if none does."""
    inputs = [np.ascontiguousarray(g, dtype=np.uint8) for g in inputs]
    if not inputs:
        return None
    for _ in range(_SAMPLE_TRIES):
        hypothesis = _draw(rng, inputs)
        if hypothesis is not None and _changes_all(hypothesis, inputs):
            return hypothesis.fitted()
    return None

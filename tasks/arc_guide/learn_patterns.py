"""The ``complete_pattern`` learner: repair, reveal or continue a regular pattern.

A family of ARC tasks shows a regular picture (periodic wallpaper, a mirror- or
rotation-symmetric figure, stripes or diagonals) of which some cells are unknown, and asks
for the picture made whole. What is unknown, which regularity fills it, and what the output
shows are what :func:`fit` reads off the train pairs (a :class:`Hypothesis`):

- unknown cells: the cells of a *mask* colour (one colour every input shows, no target
  shows, and outside which input and target agree); of an *occluder* (per grid, the one
  colour that fills a solid rectangle, e.g. a patch laid over a symmetric figure); for a
  *figure* on a background, the background cells (a regularity may paint them, otherwise
  they stay); to *continue* a partial pattern, the cells outside the bounding box of the
  input's content, or to *extend* it, the cells of a larger canvas beyond the input (both
  stay background where the pattern does not reach them); or, for a *damaged* pattern,
  none in particular: every cell takes its class's majority colour.
- the regularity, found again on every grid from its known cells alone (never from the
  train pairs): the lattice of translations with the fewest classes (periods (pr, pc),
  a period vector with a shift for diagonal and brick repetition, or one direction only)
  under which no two known cells disagree; the mirror, diagonal and rotation symmetries
  about any centre (the pattern may be offset) that no two known cells contradict and
  that most known cells confirm; both together; for a figure, a symmetry group (mirrors,
  quarter turns, ...) about the centre where the figure agrees with itself most, or about
  the one object the group leaves unchanged (a pivot); for damage, the lattice that
  describes the grid most briefly (classes plus cells that disagree with their class).
- the output: the whole grid repaired; the repaired content of the mask's bounding box
  (the hidden patch alone); or the pattern continued over a larger canvas (its shape a
  fixed multiple of the input's, or one fixed shape).

Unknown cells take the colour of the known cells their orbit (their class under the
regularity) contains. A grid whose known cells contradict the regularity, whose mask hides
a cell no known cell explains, or that shows no such regularity is ``NotApplicable``.
Every yielded candidate reproduces every train pair (the fitting contract of
tasks.arc_guide.fitting); candidates come mask, occluder, damage, figure, continuation,
each with its most constrained regularity first. Work is bounded: lattices are scored for
all offsets at once by FFT correlation, and the lattices checked in full are capped.

:func:`sample` draws a hypothesis of the family that applies to given inputs, for the
synthetic data of the guide.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.csgraph import connected_components

from tasks.arc_guide.dsl import MAX_SIDE, N_COLOURS, NotApplicable
from tasks.arc_guide.fitting import Fitted, Meter, reproduces
from tasks.arc_guide.objects import background, objects

Grid = np.ndarray
Vector = tuple[int, int]

# --------------------------------------------------------------------------- memo


def _key(value: object) -> object:
    """A hashable stand-in for an argument: arrays by content, lists as tuples."""
    if isinstance(value, np.ndarray):
        return ("array", value.shape, value.dtype.str, value.tobytes())
    return tuple(value) if isinstance(value, list) else value


def _value(key: object) -> object:
    """The argument back from its stand-in (arrays come back read-only)."""
    if isinstance(key, tuple) and key and key[0] == "array":
        return np.frombuffer(key[3], dtype=key[2]).reshape(key[1])
    return key


def memo_by_content(function):
    """``function`` cached on its (positional) arguments' contents: the hypotheses of one
    task examine the same grids again; results are shared, so callers never modify them."""
    @functools.lru_cache(maxsize=128)
    def cached(*keys):
        try:
            return True, function(*map(_value, keys))
        except NotApplicable as e:  # remembered too: failing grids are the common case
            return False, str(e)

    @functools.wraps(function)
    def wrapper(*args):
        ok, result = cached(*map(_key, args))
        if not ok:
            raise NotApplicable(result)
        return result
    return wrapper


# --------------------------------------------------------------------------- isometries of the plane

# (r, c) -> M @ (r, c) + t; every element of the square's symmetry group, translations included
MATRICES: dict[str, np.ndarray] = {
    name: np.array(m, dtype=np.int64) for name, m in {
        "translate": ((1, 0), (0, 1)), "flip_ud": ((-1, 0), (0, 1)), "flip_lr": ((1, 0), (0, -1)),
        "rot180": ((-1, 0), (0, -1)), "transpose": ((0, 1), (1, 0)), "anti_transpose": ((0, -1), (-1, 0)),
        "rot90": ((0, 1), (-1, 0)), "rot270": ((0, -1), (1, 0)),
    }.items()}
POINT_SYMMETRIES = tuple(name for name in MATRICES if name != "translate")
# diagonal mirrors and quarter turns map cells to cells only about centres whose doubled
# coordinates have equal parity
NEEDS_EVEN_CENTRE = {"transpose", "anti_transpose", "rot90", "rot270"}
SUPPORT = 0.5  # a mask-mode symmetry must pair at least this share of the known cells
DAMAGE_COST = 4  # a damaged cell costs as much as four classes: (log2 cells + log2 colours) / log2 colours
MIN_VOTES = 4  # a majority vote needs at least this many cells per class on average
MAX_MAJORITY_CHECKS = 1500  # lattices scored for a majority repair, at most
MAX_LATTICE_CHECKS = 400  # lattices that pass the quick test and are checked in full, at most


@dataclass(frozen=True)
class Isometry:
    """The map (r, c) -> MATRICES[element] @ (r, c) + offset."""

    element: str
    offset: Vector

    def image(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Images of the cells (rows, cols) (same shapes; may fall off the grid)."""
        m = MATRICES[self.element]
        return (m[0, 0] * rows + m[0, 1] * cols + self.offset[0],
                m[1, 0] * rows + m[1, 1] * cols + self.offset[1])


def centre_offsets(element: str, twice_row: np.ndarray, twice_col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets t of ``element`` about the centres (twice_row / 2, twice_col / 2): t = c - M c
    (integral where the centre suits the element, see NEEDS_EVEN_CENTRE)."""
    m = MATRICES[element]
    return ((twice_row - m[0, 0] * twice_row - m[0, 1] * twice_col) // 2,
            (twice_col - m[1, 0] * twice_row - m[1, 1] * twice_col) // 2)


class PairCounts:
    """For one element M and every offset t at once: how many known cells x have a known
    image M x + t on the grid (``pairs``) and how many of those pairs differ in colour
    (``clashes``), by FFT correlation of the colour layers with their transformed copies."""

    def __init__(self, grid: Grid, known: np.ndarray, element: str):
        layers = [known & (grid == c) for c in np.unique(grid[known])] + [known]
        stack = np.stack(layers).astype(np.float64)  # (colours + 1, H, W)
        rows, cols = np.indices(grid.shape).reshape(2, -1)
        m = MATRICES[element]
        moved = m @ np.stack([rows, cols])  # (2, H*W): M x
        low = moved.min(axis=1)
        moved -= low[:, None]
        image = np.zeros((len(layers), *(moved.max(axis=1) + 1)))
        image[:, moved[0], moved[1]] = stack.reshape(len(layers), -1)
        # conv[s + image.shape - 1] = sum_u image[u] stack[u + s], s = t + low
        conv = _convolve(stack, image[:, ::-1, ::-1])
        self.pairs = conv[-1]
        self.clashes = conv[-1] - conv[:-1].sum(axis=0)
        self.origin = low + np.array(image.shape[1:]) - 1  # index of t = (0, 0)

    def at(self, t_row: np.ndarray, t_col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pairs, clashes) at offsets (t_row, t_col) (arrays; 0 where no cell pairs up)."""
        i, j = np.asarray(t_row) + self.origin[0], np.asarray(t_col) + self.origin[1]
        inside = (i >= 0) & (j >= 0) & (i < self.pairs.shape[0]) & (j < self.pairs.shape[1])
        i, j = np.where(inside, i, 0), np.where(inside, j, 0)
        return np.where(inside, self.pairs[i, j], 0), np.where(inside, self.clashes[i, j], 0)


def _convolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Full 2-D convolution of each layer of ``a`` (L, H, W) with that of ``b`` (L, h, w),
    rounded to integers: (L, H + h - 1, W + w - 1), by FFT (numpy's: scipy.signal costs
    a second to import)."""
    shape = (a.shape[1] + b.shape[1] - 1, a.shape[2] + b.shape[2] - 1)
    padded = tuple(1 << (n - 1).bit_length() for n in shape)  # powers of two: fast FFT sizes
    product = np.fft.rfft2(a, s=padded, axes=(1, 2)) * np.fft.rfft2(b, s=padded, axes=(1, 2))
    full = np.fft.irfft2(product, s=padded, axes=(1, 2))[:, :shape[0], :shape[1]]
    return np.rint(full).astype(np.int64)


def _centres(shape: tuple[int, int], element: str) -> tuple[np.ndarray, np.ndarray]:
    """Doubled coordinates of every centre that can pair two cells of a grid of ``shape``."""
    twice_row, twice_col = np.indices((2 * shape[0] - 1, 2 * shape[1] - 1)).reshape(2, -1)
    if element in NEEDS_EVEN_CENTRE:
        even = (twice_row - twice_col) % 2 == 0
        twice_row, twice_col = twice_row[even], twice_col[even]
    return twice_row, twice_col


def _fixed_known(element: str, twice_row: np.ndarray, twice_col: np.ndarray, known: np.ndarray) -> np.ndarray:
    """How many known cells each symmetry about the given centres leaves in place (its
    axis, or its centre cell): pairs of a cell with itself confirm nothing."""
    h, w = known.shape
    padded = np.zeros((2 * h, 2 * w), dtype=np.int64)  # known cells at doubled coordinates
    padded[::2, ::2] = known
    if element == "flip_ud":
        return padded.sum(axis=1)[twice_row]
    if element == "flip_lr":
        return padded.sum(axis=0)[twice_col]
    if element in ("rot180", "rot90", "rot270"):
        return padded[twice_row, twice_col]
    # diagonals through the centre: r - c = (R - C) / 2, or r + c = (R + C) / 2, in doubled units
    rows, cols = np.indices(padded.shape)
    key = rows - cols if element == "transpose" else rows + cols
    per_line = np.bincount((key - key.min()).ravel(), weights=padded.ravel())
    line = (twice_row - twice_col if element == "transpose" else twice_row + twice_col) - key.min()
    return per_line[line].astype(np.int64)


@memo_by_content
def symmetry_scores(grid: Grid, known: np.ndarray, element: str) -> tuple[np.ndarray, ...]:
    """For every centre of ``element``: (twice_row, twice_col, confirming pairs, clashes)."""
    twice_row, twice_col = _centres(grid.shape, element)
    t_row, t_col = centre_offsets(element, twice_row, twice_col)
    pairs, clashes = PairCounts(grid, known, element).at(t_row, t_col)
    return twice_row, twice_col, pairs - _fixed_known(element, twice_row, twice_col, known), clashes


def consistent_symmetries(grid: Grid, known: np.ndarray) -> list[Isometry]:
    """Each point symmetry (at its best centre) that no two known cells contradict and
    that pairs at least SUPPORT of the known cells with other known cells."""
    n_known = int(known.sum())
    found = []
    for element in POINT_SYMMETRIES:
        twice_row, twice_col, pairs, clashes = symmetry_scores(grid, known, element)
        pairs = np.where(clashes == 0, pairs, -1)
        best = int(pairs.argmax())
        if pairs[best] >= max(1, SUPPORT * n_known):
            t = centre_offsets(element, twice_row[best], twice_col[best])
            found.append(Isometry(element, (int(t[0]), int(t[1]))))
    return found


# symmetry groups of a figure, all about one centre; the largest first: when the train
# pairs allow a larger group their outputs have all its symmetries, and so should the test's
GROUPS: dict[str, tuple[str, ...]] = {
    "square": tuple(POINT_SYMMETRIES), "mirrors": ("flip_lr", "flip_ud", "rot180"),
    "diagonals": ("transpose", "anti_transpose", "rot180"), "quarter_turns": ("rot90", "rot180", "rot270"),
    "flip_lr": ("flip_lr",), "flip_ud": ("flip_ud",), "rot180": ("rot180",),
    "transpose": ("transpose",), "anti_transpose": ("anti_transpose",),
}


def figure_symmetry(grid: Grid, known: np.ndarray, group: str) -> list[Isometry]:
    """The elements of ``group`` about the one centre where the known cells confirm the
    group most (no clash, every element confirmed by some pair); NotApplicable when no
    centre qualifies or two tie."""
    elements = GROUPS[group]
    total, valid = None, None
    for element in elements:
        twice_row, twice_col, pairs, clashes = symmetry_scores(grid, known, element)
        scores = np.full((2 * grid.shape[0] - 1, 2 * grid.shape[1] - 1), -1, dtype=np.int64)
        scores[twice_row, twice_col] = np.where(clashes == 0, pairs, -1)
        total = scores if total is None else total + scores
        valid = (scores > 0) if valid is None else valid & (scores > 0)
    total = np.where(valid, total, -1)
    best = total.max()
    if best <= 0 or (total == best).sum() > 1:
        raise NotApplicable(f"no single centre for the {group} symmetry")
    twice_row, twice_col = np.unravel_index(int(total.argmax()), total.shape)
    return group_about(group, int(twice_row), int(twice_col))


def group_about(group: str, twice_row: int, twice_col: int) -> list[Isometry]:
    """The elements of ``group`` about the centre (twice_row / 2, twice_col / 2)."""
    out = []
    for element in GROUPS[group]:
        t = centre_offsets(element, np.int64(twice_row), np.int64(twice_col))
        out.append(Isometry(element, (int(t[0]), int(t[1]))))
    return out


# the same maps on an array about its own centre (for an object's box)
ARRAY_MAPS = {
    "flip_ud": lambda a: a[::-1], "flip_lr": lambda a: a[:, ::-1], "rot180": lambda a: a[::-1, ::-1],
    "transpose": lambda a: a.T, "anti_transpose": lambda a: a[::-1, ::-1].T,
    "rot90": lambda a: np.rot90(a, -1), "rot270": lambda a: np.rot90(a, 1),
}


def pivot_symmetry(grid: Grid, group: str) -> list[Isometry]:
    """The elements of ``group`` about the centre of the one object (one colour,
    8-connected, two cells or more) that the group maps onto itself, the pivot the rest
    of the figure is mirrored or turned about; NotApplicable unless exactly one exists."""
    pivots = [o for o in objects(grid, 8, bg=background(grid)) if o.size > 1 and all(
        ARRAY_MAPS[e](o.mask).shape == o.mask.shape and np.array_equal(ARRAY_MAPS[e](o.mask), o.mask)
        for e in GROUPS[group])]
    if len(pivots) != 1:
        raise NotApplicable(f"{len(pivots)} objects are symmetric under {group}")
    pivot = pivots[0]
    height, width = pivot.mask.shape
    return group_about(group, 2 * pivot.top + height - 1, 2 * pivot.left + width - 1)


# --------------------------------------------------------------------------- lattices of translations


@functools.lru_cache(maxsize=64)
def _indices(shape: tuple[int, int]) -> np.ndarray:
    """np.indices(shape), cached (read-only)."""
    out = np.indices(shape)
    out.flags.writeable = False
    return out


@dataclass(frozen=True)
class Lattice:
    """The translations a*(rows, shift) + b*(0, cols); ``rows`` None: no repetition down
    the grid (only (0, cols)); ``cols`` None: none across (only (rows, shift))."""

    rows: Optional[int]
    cols: Optional[int]
    shift: int = 0

    def classes(self, shape: tuple[int, int]) -> np.ndarray:
        """(H, W) int >= 0: cells of equal value are equivalent under the lattice."""
        r, c = _indices(shape)
        if self.rows is None:
            return r * self.cols + c % self.cols
        along = c - (r // self.rows) * self.shift
        along = along % self.cols if self.cols is not None else along - along.min()
        return (r % self.rows) * (int(along.max()) + 1) + along

    def contains(self, v: Vector) -> bool:
        """Whether the translation ``v`` is in the lattice."""
        dr, dc = v
        if self.rows is None:
            return dr == 0 and dc % self.cols == 0
        if dr % self.rows:
            return False
        rest = dc - (dr // self.rows) * self.shift
        return rest == 0 if self.cols is None else rest % self.cols == 0

    def vectors(self, shape: tuple[int, int]) -> list[Vector]:
        """Its non-zero vectors that pair two cells of a grid of ``shape`` (one of v, -v)."""
        h, w = shape
        out = []
        for k in range(0, h, self.rows or h):
            base = k // self.rows * self.shift if self.rows else 0
            if self.cols is None:
                if k and abs(base) < w:
                    out.append((k, base))
                continue
            first = -((base + w - 1) // self.cols)
            for b in range(first, (w - 1 - base) // self.cols + 1):
                if k or base + b * self.cols > 0:
                    out.append((k, base + b * self.cols))
        return out

    def size(self, shape: tuple[int, int]) -> int:
        """How many classes the cells of a grid of ``shape`` fall into."""
        h, w = shape
        if self.rows is None:
            return h * self.cols
        if self.cols is not None:
            return min(self.rows, h) * self.cols
        steps = (h - 1 - np.arange(min(self.rows, h))) // self.rows
        return int((w + abs(self.shift) * steps).sum())


@dataclass(frozen=True)
class LatticeTable:
    """Every lattice that can pair cells of one grid shape, as parallel arrays (0 stands
    for None), fewest classes first, then unsheared, then the smaller shift."""

    rows: np.ndarray
    cols: np.ndarray
    shift: np.ndarray
    size: np.ndarray

    def lattice(self, k: int) -> Lattice:
        """Entry ``k`` as a Lattice."""
        return Lattice(int(self.rows[k]) or None, int(self.cols[k]) or None, int(self.shift[k]))


@functools.lru_cache(maxsize=64)
def lattice_table(shape: tuple[int, int]) -> LatticeTable:
    """The LatticeTable of ``shape`` (cached: the same shapes recur within a task)."""
    h, w = shape
    pr, pc, s = np.meshgrid(np.arange(1, h), np.arange(1, w), np.arange(w), indexing="ij")
    keep = s < pc  # (rows, shift) and (0, cols): shift runs over 0..cols-1
    full = [pr[keep], pc[keep], s[keep]]
    size_full = full[0] * full[1]
    # only (rows, shift): a class per residue row and column offset, spread by the shift
    pr1, s1 = np.meshgrid(np.arange(1, h), np.arange(-(w - 1), w), indexing="ij")
    pr1, s1 = pr1.ravel(), s1.ravel()
    steps = np.array([((h - 1 - np.arange(p)) // p).sum() for p in range(1, h)], dtype=np.int64)
    size_down = pr1 * w + np.abs(s1) * steps[pr1 - 1]
    across = np.arange(1, w)  # only (0, cols)
    rows = np.concatenate([full[0], pr1, np.zeros_like(across)])
    cols = np.concatenate([full[1], np.zeros_like(pr1), across])
    shift = np.concatenate([full[2], s1, np.zeros_like(across)])
    size = np.concatenate([size_full, size_down, h * across])
    order = np.lexsort((np.where(rows > 0, rows, h), np.abs(shift), shift != 0, size))
    return LatticeTable(rows[order], cols[order], shift[order], size[order])


@memo_by_content
def smallest_lattice(grid: Grid, known: np.ndarray, forced: Sequence[Vector] = (), evidenced: bool = False) -> Lattice:
    """The lattice with the fewest classes (containing ``forced``) under which no two known
    cells disagree and that the known cells attest (see _attested; when ``evidenced``, the
    vectors that pair known cells must also generate it); NotApplicable when none does."""
    counts = PairCounts(grid, known, "translate")
    table = lattice_table(grid.shape)
    # necessary conditions first, for all lattices at once: (0, cols) and (rows, shift) clash-free
    across_ok = counts.at(0 * table.cols, table.cols)[1] == 0
    down_ok = counts.at(table.rows, table.shift)[1] == 0
    candidates = np.flatnonzero((across_ok | (table.cols == 0)) & (down_ok | (table.rows == 0)))
    for k in candidates[:MAX_LATTICE_CHECKS]:
        lattice = table.lattice(k)
        if not all(lattice.contains(v) for v in forced) or not _fits(lattice, counts, grid.shape, forced, evidenced):
            continue
        if _attested(lattice.classes(grid.shape)[known], evidenced):
            return lattice
    raise NotApplicable("no lattice of translations fits the known cells")


def _attested(known_classes: np.ndarray, evidenced: bool) -> bool:
    """Whether the known cells (their classes, 1-D) attest the lattice: at least half of
    them share their class with another known cell, and without other evidence the
    classes hold two known cells each on average."""
    _, inverse, counts = np.unique(known_classes, return_inverse=True, return_counts=True)
    if 2 * (counts[inverse] > 1).sum() < known_classes.size:
        return False
    return evidenced or 2 * counts.size <= known_classes.size


def _fits(lattice: Lattice, counts: PairCounts, shape: tuple[int, int], forced: Sequence[Vector],
          evidenced: bool) -> bool:
    """Whether no lattice vector pairs two clashing cells and, when ``evidenced``, the
    vectors that pair known cells (with ``forced``) generate the whole lattice."""
    vectors = lattice.vectors(shape)
    if not vectors:
        return False
    pairs, clashes = counts.at(*np.array(vectors).T)
    if clashes.any():
        return False
    if not evidenced:
        return True
    confirmed = [v for v, n in zip(vectors, pairs) if n > 0] + list(forced)
    return _generates(sorted(confirmed, key=lambda v: abs(v[0]) + abs(v[1])), lattice)


def _generates(vectors: Sequence[Vector], lattice: Lattice) -> bool:
    """Whether integer combinations of ``vectors`` (all in ``lattice``) give all of it:
    an echelon basis (first, (0, across)) of their span, grown one vector at a time."""
    first, across = None, 0
    for dr, dc in vectors:
        if dr < 0 or (dr == 0 and dc < 0):
            dr, dc = -dr, -dc
        if dr == 0:
            across = math.gcd(across, dc)
        elif first is None:
            first = (dr, dc)
        else:
            g, p, q = _extended_gcd(first[0], dr)
            across = math.gcd(across, abs((dr // g) * first[1] - (first[0] // g) * dc))
            first = (g, p * first[1] + q * dc)
        if _same_index(first, across, lattice):
            return True
    return False


def _same_index(first: Optional[Vector], across: int, lattice: Lattice) -> bool:
    """Whether the span (first, (0, across)) has the lattice's index (so equals it)."""
    if lattice.rows is None:
        return across == lattice.cols
    if first is None or first[0] != lattice.rows:
        return False
    return across == 0 if lattice.cols is None else across == lattice.cols


def _extended_gcd(a: int, b: int) -> tuple[int, int, int]:
    """(g, p, q) with p*a + q*b = g = gcd(a, b), for a, b > 0."""
    if b == 0:
        return a, 1, 0
    g, p, q = _extended_gcd(b, a % b)
    return g, q, p - (a // b) * q


# --------------------------------------------------------------------------- orbits and filling


def orbit_labels(shape: tuple[int, int], lattice: Optional[Lattice], isometries: Sequence[Isometry]) -> np.ndarray:
    """(H, W) labels of the cells' orbits: connected by the lattice and the isometries."""
    h, w = shape
    index = np.arange(h * w).reshape(shape)
    rows, cols = _indices(shape)
    sources, targets = [index.ravel()], [index.ravel()]
    if lattice is not None:
        _, first, inverse = np.unique(lattice.classes(shape).ravel(), return_index=True, return_inverse=True)
        sources.append(index.ravel())
        targets.append(first[inverse])
    for iso in isometries:
        r, c = iso.image(rows, cols)
        inside = (r >= 0) & (c >= 0) & (r < h) & (c < w)
        sources.append(index[inside])
        targets.append(r[inside] * w + c[inside])
    src, dst = np.concatenate(sources), np.concatenate(targets)
    graph = sparse.coo_matrix((np.ones(src.size, dtype=np.int8), (src, dst)), shape=(h * w, h * w))
    return connected_components(graph, directed=False)[1].reshape(shape)


def orbit_colours(grid: Grid, known: np.ndarray, labels: np.ndarray) -> tuple[Grid, np.ndarray]:
    """(colour of each cell's orbit, whether its orbit has a known cell); NotApplicable
    when an orbit holds known cells of two colours."""
    lab, colours = labels[known], grid[known].astype(np.int64)
    counts = np.bincount(lab * N_COLOURS + colours, minlength=(labels.max() + 1) * N_COLOURS)
    counts = counts.reshape(-1, N_COLOURS)
    seen = (counts > 0).sum(axis=1)
    if (seen > 1).any():
        raise NotApplicable("the known cells contradict the regularity")
    return counts.argmax(axis=1)[labels].astype(np.uint8), seen[labels] > 0


# --------------------------------------------------------------------------- regularities


def regularity_labels(grid: Grid, known: np.ndarray, regularity: str, evidenced: bool = False) -> np.ndarray:
    """Orbit labels of ``regularity`` found on the known cells of ``grid``:
    'symmetry', 'lattice', 'lattice+symmetry', 'tile' (a lattice with the content's box
    as a period where the box leaves room), a figure group of GROUPS (about the centre
    where the figure agrees with itself most) or 'pivot:' and a group (about the one
    object the group leaves unchanged)."""
    if regularity in GROUPS:
        return orbit_labels(grid.shape, None, figure_symmetry(grid, known, regularity))
    if regularity.startswith("pivot:"):
        return orbit_labels(grid.shape, None, pivot_symmetry(grid, regularity.partition(":")[2]))
    lattice, isometries = None, []
    if regularity in ("lattice", "lattice+symmetry"):
        lattice = smallest_lattice(grid, known, (), evidenced)
    if regularity == "tile":
        lattice = smallest_lattice(grid, known, _box_periods(known), evidenced)
    if regularity in ("symmetry", "lattice+symmetry"):
        isometries = consistent_symmetries(grid, known)
        if not isometries:
            raise NotApplicable("the known cells show no symmetry")
    return orbit_labels(grid.shape, lattice, isometries)


def _box_periods(known: np.ndarray) -> list[Vector]:
    """The known box's height and width as periods, along the axes where it leaves room."""
    rows, cols = np.flatnonzero(known.any(axis=1)), np.flatnonzero(known.any(axis=0))
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    forced = [(int(height), 0)] if height < known.shape[0] else []
    forced += [(0, int(width))] if width < known.shape[1] else []
    if not forced:
        raise NotApplicable("the content fills the grid: nothing to tile")
    return forced


def complete(canvas: Grid, known: np.ndarray, regularity: str, fallback: Optional[int],
             paint: Optional[int] = None) -> Grid:
    """``canvas`` with its unknown cells filled by ``regularity``: from their orbit's known
    colour (or ``paint`` when set); cells no known cell explains get ``fallback``, or make
    it NotApplicable when that is None."""
    if not known.any():
        raise NotApplicable("no known cell")
    colours, covered = orbit_colours(canvas, known, regularity_labels(canvas, known, regularity, fallback is not None))
    missing = ~known & ~covered
    if fallback is None and missing.any():
        raise NotApplicable("an unknown cell has no known cell in its orbit")
    filled = colours if paint is None else np.full_like(colours, paint)
    out = np.where(known, canvas, filled).astype(np.uint8)
    if fallback is not None:
        out[missing] = fallback
    return out


def majority_repair(grid: Grid) -> Grid:
    """``grid`` with every cell in the majority colour of its lattice class, for the lattice
    that explains the grid most briefly: fewest classes plus DAMAGE_COST per cell that
    disagrees with its class (a description-length trade-off), among lattices whose
    classes hold at least MIN_VOTES cells on average; NotApplicable on a tied vote."""
    table = lattice_table(grid.shape)
    count = min(int(np.searchsorted(table.size, grid.size / MIN_VOTES, side="right")), MAX_MAJORITY_CHECKS)
    if count == 0:
        raise NotApplicable("the grid is too small for a majority vote")
    classes = _batch_classes(table, count, grid.shape)  # (count, H*W)
    bins = classes.max(axis=1) + 1
    starts = np.concatenate([[0], np.cumsum(bins)[:-1]])
    keys = (classes + starts[:, None]) * N_COLOURS + grid.ravel()
    votes = np.bincount(keys.ravel(), minlength=int(bins.sum()) * N_COLOURS).reshape(-1, N_COLOURS)
    agreeing = np.add.reduceat(votes.max(axis=1), starts)  # cells in their class's majority colour
    best = int(np.argmin(table.size[:count] + DAMAGE_COST * (grid.size - agreeing)))
    mine = votes[starts[best]:starts[best] + bins[best]]
    top = np.sort(mine, axis=1)
    if ((top[:, -1] == top[:, -2]) & (top[:, -1] > 0)).any():
        raise NotApplicable("a tied vote")
    return mine.argmax(axis=1)[classes[best]].reshape(grid.shape).astype(np.uint8)


def _batch_classes(table: LatticeTable, count: int, shape: tuple[int, int]) -> np.ndarray:
    """(count, H*W) class indices >= 0 of the first ``count`` lattices of ``table``, as
    Lattice.classes gives them, for all lattices at once."""
    r, c = (a.ravel()[None, :] for a in _indices(shape))
    rows, cols, shift = (a[:count, None] for a in (table.rows, table.cols, table.shift))
    safe_rows, safe_cols = np.maximum(rows, 1), np.maximum(cols, 1)
    along = c - np.where(rows > 0, r // safe_rows, 0) * shift
    along = np.where(cols > 0, along % safe_cols, along - along.min(axis=1, keepdims=True))
    span = np.where(cols > 0, cols, along.max(axis=1, keepdims=True) + 1)
    return np.where(rows > 0, (r % safe_rows) * span + along, r * span + along)


# --------------------------------------------------------------------------- hypotheses


def bounding_box(mask: np.ndarray) -> tuple[slice, slice]:
    """The rows and columns of the box around ``mask``'s cells (NotApplicable when none)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise NotApplicable("empty mask")
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


@dataclass(frozen=True)
class Hypothesis:
    """One member of the family (module docstring): which cells are unknown (``unknown``:
    'mask' with ``colour``, 'occluder', 'figure', 'damaged', 'continue' or 'extend'), the
    ``regularity`` (see regularity_labels) and the ``output`` ('same', 'crop' of the
    mask's box, 'scale' by ``size`` = (row factor, column factor), or 'shape' = ``size``);
    ``paint`` a fixed colour for the filled cells (figure only)."""

    unknown: str
    regularity: str
    output: str = "same"
    colour: Optional[int] = None
    size: Optional[Vector] = None
    paint: Optional[int] = None

    @property
    def name(self) -> str:
        """How reports show it, e.g. ``complete_pattern(mask=0,symmetry,crop)``."""
        parts = [self.unknown if self.colour is None else f"{self.unknown}={self.colour}", self.regularity,
                 self.output if self.size is None else f"{self.output}={self.size[0]}x{self.size[1]}"]
        if self.paint is not None:
            parts.append(f"paint={self.paint}")
        return f"complete_pattern({','.join(parts)})"

    def __call__(self, grid: Grid) -> Grid:
        """The completed pattern for ``grid`` (NotApplicable where it has none)."""
        if self.unknown in ("mask", "occluder"):
            return self._repair(grid)
        if self.unknown == "figure":
            bg = background(grid)
            return complete(grid, grid != bg, self.regularity, bg, self.paint)
        if self.unknown == "damaged":
            return majority_repair(grid)
        return self._continue(grid)

    def _repair(self, grid: Grid) -> Grid:
        """The mask's (or occluder's) cells filled in; the whole grid or the mask's box."""
        hidden = grid == (self.colour if self.unknown == "mask" else occluder_colour(grid))
        if not hidden.any():
            raise NotApplicable("no cell of the mask colour")
        out = complete(grid, ~hidden, self.regularity, None)
        return out[bounding_box(hidden)].copy() if self.output == "crop" else out

    def _continue(self, grid: Grid) -> Grid:
        """The pattern of the input's content box (or the whole input) carried on over
        the output canvas, background where it does not reach."""
        bg = background(grid)
        canvas = np.full(self._canvas_shape(grid.shape), bg, dtype=np.uint8)
        h, w = grid.shape
        canvas[:h, :w] = grid
        known = np.zeros(canvas.shape, dtype=bool)
        if self.unknown == "extend":
            known[:h, :w] = True
        else:
            known[bounding_box(grid != bg)] = True
        return complete(canvas, known, self.regularity, bg)

    def _canvas_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """The output's shape for an input of ``shape``."""
        if self.output == "scale":
            shape = (shape[0] * self.size[0], shape[1] * self.size[1])
        elif self.output == "shape":
            if self.size[0] < shape[0] or self.size[1] < shape[1]:
                raise NotApplicable("the grid is larger than the output shape")
            shape = self.size
        if max(shape) > MAX_SIDE:
            raise NotApplicable("the continued pattern would exceed 30 cells")
        return tuple(shape)

    def fitted(self) -> Fitted:
        """This hypothesis as a fitted step."""
        return Fitted(self.name, self)


MASK_REGULARITIES = ("symmetry", "lattice", "lattice+symmetry")
CONTINUE_REGULARITIES = ("lattice", "tile")


def occluder_colour(grid: Grid) -> int:
    """The one colour (not the background) whose cells fill one rectangle of two cells or
    more: a patch laid over the picture; NotApplicable unless exactly one colour does."""
    bg = background(grid)
    found = []
    for colour in np.unique(grid):
        cells = grid == colour
        if colour != bg and cells.sum() > 1 and cells[bounding_box(cells)].all():
            found.append(int(colour))
    if len(found) != 1:
        raise NotApplicable(f"{len(found)} colours form a solid rectangle")
    return found[0]


def _occluded(inputs: Sequence[Grid], targets: Sequence[Grid], same_shape: bool) -> bool:
    """Whether each input has an occluder colour that its target lacks (and, for same-shape
    pairs, outside which input and target agree)."""
    for i, t in zip(inputs, targets):
        try:
            colour = occluder_colour(i)
        except NotApplicable:
            return False
        if (t == colour).any() or (same_shape and not np.array_equal(i[i != colour], t[i != colour])):
            return False
    return True


def mask_colours(inputs: Sequence[Grid], targets: Sequence[Grid], same_shape: bool) -> list[int]:
    """Colours every input shows and no target shows; for same-shape pairs also the only
    cells where input and target differ."""
    found = []
    for colour in range(N_COLOURS):
        if not all((i == colour).any() and not (t == colour).any() for i, t in zip(inputs, targets)):
            continue
        if same_shape and not all(np.array_equal(i[i != colour], t[i != colour]) for i, t in zip(inputs, targets)):
            continue
        found.append(colour)
    return found


def _box_shape(mask: np.ndarray) -> tuple[int, int]:
    """The shape of the box around ``mask``'s cells."""
    rows, cols = bounding_box(mask)
    return rows.stop - rows.start, cols.stop - cols.start


def _crop_fits(inputs: Sequence[Grid], targets: Sequence[Grid], colour: int) -> bool:
    """Whether each target has the shape of its input's box of ``colour`` cells."""
    return all(_box_shape(i == colour) == t.shape for i, t in zip(inputs, targets))


def _keeps_content(inputs: Sequence[Grid], targets: Sequence[Grid]) -> bool:
    """Whether each target holds its input at its top-left corner, background cells aside."""
    for i, t in zip(inputs, targets):
        h, w = i.shape
        if t.shape[0] < h or t.shape[1] < w:
            return False
        content = i != background(i)
        if not np.array_equal(i[content], t[:h, :w][content]):
            return False
    return True


def _canvas_rules(inputs: Sequence[Grid], targets: Sequence[Grid]) -> list[tuple[str, Optional[Vector]]]:
    """How the target shape follows from the input's: same, a fixed multiple, a fixed shape."""
    if all(i.shape == t.shape for i, t in zip(inputs, targets)):
        return [("same", None)]
    rules = []
    factors = {(t.shape[0] // i.shape[0], t.shape[1] // i.shape[1]) if not (t.shape[0] % i.shape[0] or
               t.shape[1] % i.shape[1]) else None for i, t in zip(inputs, targets)}
    if len(factors) == 1 and None not in factors:
        rules.append(("scale", factors.pop()))
    if len({t.shape for t in targets}) == 1:
        rules.append(("shape", targets[0].shape))
    return rules


def _paint_colour(inputs: Sequence[Grid], targets: Sequence[Grid]) -> Optional[int]:
    """The one colour every changed cell takes, if the changes use one colour."""
    changed = np.concatenate([t[i != t] for i, t in zip(inputs, targets) if i.shape == t.shape])
    colours = np.unique(changed)
    return int(colours[0]) if colours.size == 1 else None


def _damaged_periodic(inputs: Sequence[Grid], targets: Sequence[Grid]) -> bool:
    """Whether every target is exactly periodic with MIN_VOTES cells per class and differs
    from its input in some cells, but fewer than a quarter."""
    for i, t in zip(inputs, targets):
        changed = (i != t).mean()
        if not 0 < changed < 0.25:
            return False
        try:
            lattice = smallest_lattice(t, np.ones(t.shape, dtype=bool))
        except NotApplicable:
            return False
        if MIN_VOTES * lattice.size(t.shape) > t.size:
            return False
    return True


def hypotheses(inputs: Sequence[Grid], targets: Sequence[Grid]) -> Iterator[Hypothesis]:
    """Members of the family the pairs do not rule out at a glance, in the order to try."""
    same_shape = all(i.shape == t.shape for i, t in zip(inputs, targets))
    masks = mask_colours(inputs, targets, same_shape)
    for colour in masks:
        output = "same" if same_shape else "crop" if _crop_fits(inputs, targets, colour) else None
        if output:
            yield from (Hypothesis("mask", r, output, colour) for r in MASK_REGULARITIES)
    if not masks and _occluded(inputs, targets, same_shape):
        output = "same" if same_shape else "crop" if all(
            _box_shape(occluder_colour(i) == i) == t.shape for i, t in zip(inputs, targets)) else None
        if output:
            yield from (Hypothesis("occluder", r, output) for r in MASK_REGULARITIES)
    if same_shape and not masks and _damaged_periodic(inputs, targets):
        yield Hypothesis("damaged", "lattice")
    if not _keeps_content(inputs, targets) or all(np.array_equal(i, t) for i, t in zip(inputs, targets)):
        return
    if same_shape:
        yield from (Hypothesis("figure", group) for group in GROUPS)
        yield from (Hypothesis("figure", f"pivot:{group}") for group in GROUPS)
        paint = _paint_colour(inputs, targets)
        if paint is not None:
            yield from (Hypothesis("figure", group, paint=paint) for group in GROUPS)
    for output, size in _canvas_rules(inputs, targets):
        if output == "same":
            yield from (Hypothesis("continue", r) for r in CONTINUE_REGULARITIES)
        else:
            yield Hypothesis("extend", "lattice", output, size=size)


def fit(inputs: Sequence[Grid], targets: Sequence[Grid], meter: Optional[Meter] = None,
        pause: bool = False) -> Iterator[Fitted]:
    """Fitted pattern completions that reproduce every pair (module docstring); each
    hypothesis checked on the pairs is charged to ``meter``."""
    meter = meter or Meter()
    for hypothesis in hypotheses(inputs, targets):
        candidate = hypothesis.fitted()
        meter.charge()
        if reproduces(candidate, inputs, targets):
            yield candidate


# --------------------------------------------------------------------------- sampling for synthetic data

# how often each kind of unknown is drawn, relative to the others: masks (fixed colour,
# revealed whole or cropped) are the commonest form of the family in ARC
SAMPLE_WEIGHTS = {"mask": 4.0, "occluder": 1.0, "figure": 2.0, "damaged": 1.0, "continue": 1.0, "extend": 1.0}
MAX_SAMPLE_TRIES = 40  # hypotheses tried on the inputs before giving up
MAX_PATCHES = 3  # a drawn mask colour covers at most this many rectangles of each input


def sample(rng: np.random.Generator, inputs: Sequence[Grid]) -> Optional[Fitted]:
    """A random member of the family that applies to every input, changes each (into a
    grid of two colours or more), and that :func:`fit` would consider again from the pairs
    it makes; None when none does."""
    if not inputs:
        return None
    pool = _sample_pool(rng, inputs)
    kinds = [h.unknown for h in pool]
    weights = np.array([SAMPLE_WEIGHTS[kind] / kinds.count(kind) for kind in kinds])  # per kind, not per member
    order = np.argsort(-rng.random(len(pool)) ** (1.0 / weights))  # a weighted random order
    smallest_first = sorted(range(len(inputs)), key=lambda j: inputs[j].size)
    repeats: dict[tuple[str, int], bool] = {}  # (unknown, input index) -> _may_repeat of its known rectangle
    for k in order[:MAX_SAMPLE_TRIES]:
        if pool[k].unknown in ("extend", "continue") and not all(
                _known_rectangle_repeats(pool[k].unknown, inputs, j, repeats) for j in smallest_first):
            continue  # the hypothesis would raise NotApplicable on some input: skipped unrun
        candidate = pool[k].fitted()
        outputs = _telling_outputs(candidate, inputs, smallest_first)
        if outputs is not None and pool[k] in hypotheses(inputs, outputs):
            return candidate
    return None


def _telling_outputs(candidate: Fitted, inputs: Sequence[Grid], smallest_first: list[int]) -> Optional[list[Grid]]:
    """``candidate`` on every input (in input order), or None when it does not apply to one
    or leaves one unchanged or of one colour (such an output shows nothing of the pattern);
    smallest inputs first, so that a candidate that fails on any fails soonest."""
    outputs: list[Optional[Grid]] = [None] * len(inputs)
    for j in smallest_first:
        try:
            o = candidate.apply(inputs[j])
        except NotApplicable:
            return None
        if (o.shape == inputs[j].shape and np.array_equal(o, inputs[j])) or (o == o.flat[0]).all():
            return None
        outputs[j] = o
    return outputs


def _known_rectangle_repeats(unknown: str, inputs: Sequence[Grid], j: int, memo: dict[tuple[str, int], bool]) -> bool:
    """_may_repeat of the rectangle of known cells that an ``unknown`` ('extend': the whole
    input; 'continue': the box of its content) hypothesis completes on input ``j`` (memoised
    in ``memo``); False when there is no content."""
    if (unknown, j) not in memo:
        grid = inputs[j]
        if unknown == "extend":
            memo[unknown, j] = _may_repeat(grid)
        else:
            content = grid != background(grid)
            memo[unknown, j] = bool(content.any()) and _may_repeat(grid[bounding_box(content)])
    return memo[unknown, j]


def _may_repeat(known: Grid) -> bool:
    """Whether the translations that move ``known`` (a rectangle of known cells) onto itself
    without two cells of different colours meeting pair at least half of its cells with
    another cell: what any lattice that smallest_lattice accepts on it needs (its vectors
    are clash-free (_fits) and half the known cells share their class (_attested)), so
    False means completing it by a lattice raises NotApplicable. One FFT (PairCounts) and
    a 2-D prefix sum over the offsets."""
    h, w = known.shape
    counts = PairCounts(known, np.ones(known.shape, dtype=bool), "translate")
    d_row, d_col = np.meshgrid(np.arange(-(h - 1), h), np.arange(-(w - 1), w), indexing="ij")
    pairs, clashes = counts.at(d_row, d_col)
    agree = (pairs > 0) & (clashes == 0) & ((d_row != 0) | (d_col != 0))  # (2h - 1, 2w - 1) by offset
    prefix = np.zeros((2 * h, 2 * w), dtype=np.int64)
    prefix[1:, 1:] = agree.cumsum(axis=0).cumsum(axis=1)
    # cell (r, c) is paired by the offsets (dr, dc) with -r <= dr < h - r and -c <= dc < w - c:
    # rows h - 1 - r .. 2h - 2 - r of ``agree`` (columns alike), summed by the prefix sums
    top, bottom = h - 1 - np.arange(h), 2 * h - 1 - np.arange(h)
    left, right = w - 1 - np.arange(w), 2 * w - 1 - np.arange(w)
    paired = (prefix[np.ix_(bottom, right)] - prefix[np.ix_(top, right)]
              - prefix[np.ix_(bottom, left)] + prefix[np.ix_(top, left)])  # (h, w) agreeing offsets per cell
    return 2 * int((paired > 0).sum()) >= h * w


def _patches(cells: np.ndarray) -> bool:
    """Whether ``cells`` are a few (1..MAX_PATCHES) solid rectangles: what a mask looks like."""
    labels, n = ndimage.label(cells)
    if not 1 <= n <= MAX_PATCHES:
        return False
    boxes = ndimage.find_objects(labels)
    return all((labels[box] == k + 1).all() for k, box in enumerate(boxes))


def _sample_pool(rng: np.random.Generator, inputs: Sequence[Grid]) -> list[Hypothesis]:
    """The hypotheses :func:`sample` draws from, for these inputs."""
    shared = set(range(N_COLOURS))
    for g in inputs:
        shared &= {c for c in np.unique(g).tolist() if _patches(g == c)}
    unused = sorted(set(range(N_COLOURS)) - set(np.unique(np.concatenate([g.ravel() for g in inputs])).tolist()))
    pool = [Hypothesis(kind, r, output, colour)
            for kind, colours in (("mask", sorted(shared)), ("occluder", [None]))
            for colour in colours for r in MASK_REGULARITIES for output in ("same", "crop")]
    pool += [Hypothesis("figure", group) for group in GROUPS]
    pool += [Hypothesis("figure", f"pivot:{group}") for group in GROUPS]
    if unused:
        paint = int(unused[int(rng.integers(len(unused)))])
        pool += [Hypothesis("figure", group, paint=paint) for group in GROUPS]
    pool += [Hypothesis("damaged", "lattice")]
    pool += [Hypothesis("continue", r) for r in CONTINUE_REGULARITIES]
    pool += [Hypothesis("extend", "lattice", "scale", size=size) for size in ((1, 2), (2, 1), (2, 2))]
    return pool

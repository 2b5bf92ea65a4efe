"""Learner ``compose_tiles``: outputs laid out as blocks made of the input or of its parts.

Hypotheses, each a :class:`Fitted` whose parameters are read off the train pairs:

- ``upscale``: every input cell becomes an a x b block; (a, b) fixed, or n x n with n the
  number of non-background colours of the input.
- ``layout``: an a x b arrangement of input-sized blocks, each block one dihedral transform
  of the input or one colour (the same choice per block position in every pair): tiling,
  mirroring into 2x2, rotating copies...
- ``fractal``: an h x w arrangement of input-sized blocks for an h x w input; block (i, j)
  is the input ("inner") seen through the input cell (i, j) ("outer"): a 4-entry table keyed
  on (outer == ref, inner == ref) gives each cell the inner colour, the outer colour or a
  fixed colour (ref: a fixed colour or the input's commonest colour).
- ``shrink``: the input cut into a grid of rectangles (blocks of a fixed size, a fixed
  number of blocks, the rectangles between separator lines of a fixed colour or of whichever
  colour draws full lines, or the uniform blocks of an upscaled grid), each rectangle reduced
  to one cell: its colour when uniform, its majority colour, its only foreground colour, its
  commonest foreground colour, or a colour fitted per "has foreground" or per foreground
  cell count (each entry seen at least twice); the result as is, or then turned/flipped.
- ``overlay``: the input cut into k equal parts of the output's shape (a fixed number of
  blocks, two halves along the longer side, or separator lines), as they lie or folded onto
  the first part (odd rows of parts flipped top-bottom, odd columns left-right), combined
  cell by cell: one fixed part, the parts stacked in a fixed priority order, or a truth
  table on the parts' foreground bits giving a fixed colour or one part's colour. The parts'
  background is one colour for the task, or each grid's commonest.

Contract (tasks.arc_guide.fitting): ``fit(inputs, targets)`` yields only candidates that
reproduce every pair (each is checked before it is yielded), simplest first and lazily;
``apply`` raises NotApplicable when a grid's shape, cut or cell situation was not covered
by the pairs (shape not divisible, another number of parts, a table key never seen, a
tie in a majority, a result over 30 x 30). ``sample(rng, inputs)`` draws a random
hypothesis of this family that applies to (and changes) every given input.
"""
from __future__ import annotations

import itertools
from typing import Callable, Iterator, Optional, Sequence, Union

import numpy as np

from tasks.arc_guide import objects as ob
from tasks.arc_guide.dsl import MAX_SIDE, N_COLOURS, NotApplicable
from tasks.arc_guide.fitting import Fitted, Meter, reproduces

Grid = np.ndarray
Shape = tuple[int, int]
Runs = tuple[np.ndarray, np.ndarray]  # ([start...], [end...)) of consecutive index runs
Cut = tuple[Runs, Runs]  # row runs x column runs: the rectangles of a grid
CountRule = Callable[[Grid], Shape]
CutRule = Callable[[Grid], Cut]
PartsRule = Callable[[Grid], tuple[Cut, bool]]  # a cut and whether its parts are folded
Value = Union[str, int, tuple]  # a table entry: "inner"/"outer", a colour, or ("part", p)

MAX_LAYOUT_VARIANTS = 3  # alternative block choices tried when train pairs leave a block ambiguous
MAX_PRIORITY_PARTS = 5  # 5! = 120 stacking orders at most
MAX_TABLE_PARTS = 4  # 2**4 = 16 truth-table keys at most
MIN_COUNT_SUPPORT = 2  # rectangles that must show each entry of a count -> colour table
MAX_ORDERS = 2  # consistent stacking orders yielded (ambiguous when parts never overlap)

# shape-preserving for square grids; the last four change (h, w) to (w, h)
TRANSFORMS: dict[str, Callable[[Grid], Grid]] = {
    "identity": lambda g: g,
    "flip_lr": lambda g: g[:, ::-1],
    "flip_ud": lambda g: g[::-1, :],
    "rot180": lambda g: g[::-1, ::-1],
    "transpose": lambda g: g.T,
    "anti_transpose": lambda g: g[::-1, ::-1].T,
    "rot90": lambda g: np.rot90(g, 1),
    "rot270": lambda g: np.rot90(g, -1),
}


# --------------------------------------------------------------------------- entry points


def fit(inputs: Sequence[Grid], targets: Sequence[Grid], meter: Optional[Meter] = None,
        pause: bool = False) -> Iterator[Fitted]:
    """Tile compositions mapping every input exactly to its target, simplest first (each
    proposed composition checked on the pairs is one hypothesis charged to ``meter``)."""
    meter = meter or Meter()
    inputs = [np.asarray(g, dtype=np.uint8) for g in inputs]
    targets = [np.asarray(t, dtype=np.uint8) for t in targets]
    if not inputs or len(inputs) != len(targets):
        return
    seen: set[str] = set()
    # plain shrinks before overlays; shrinks by a fitted count table or then turned come last
    families = (_enlargements, lambda i, t: _shrinks(i, t, elaborate=False), _overlays,
                lambda i, t: _shrinks(i, t, elaborate=True))
    for candidate in itertools.chain.from_iterable(f(inputs, targets) for f in families):
        if candidate.name in seen:
            continue
        meter.charge()
        if reproduces(candidate, inputs, targets):
            seen.add(candidate.name)
            yield candidate


def _checked(shape: Shape) -> Shape:
    """``shape`` itself when it is a valid ARC shape; NotApplicable otherwise."""
    if not (1 <= shape[0] <= MAX_SIDE and 1 <= shape[1] <= MAX_SIDE):
        raise NotApplicable(f"result shape {shape} is outside 1..{MAX_SIDE}")
    return shape


def _same(values: list) -> bool:
    """Whether every value equals the first."""
    return all(v == values[0] for v in values)


# --------------------------------------------------------------------------- enlargements


def _enlargements(inputs: list[Grid], targets: list[Grid]) -> Iterator[Fitted]:
    """Upscales, block layouts and fractals for outputs that are whole multiples of the input."""
    ratios = _multiples(inputs, targets)
    if ratios is None or all(r == (1, 1) for r in ratios):
        return
    rules = list(_count_rules(inputs, ratios))
    for name, rule in rules:
        yield _upscale(name, rule)
    # a fractal explains which blocks are blank; a layout would only say where they were
    if all(r == g.shape for r, g in zip(ratios, inputs)):
        yield from _fractals(inputs, targets)
    if _same(ratios):
        yield from _layouts(inputs, targets, ratios[0])


def _multiples(inputs: list[Grid], targets: list[Grid]) -> Optional[list[Shape]]:
    """Per pair (H // h, W // w) when every target is a whole multiple of its input, else None."""
    ratios = []
    for g, t in zip(inputs, targets):
        (h, w), (hh, ww) = g.shape, t.shape
        if hh % h or ww % w:
            return None
        ratios.append((hh // h, ww // w))
    return ratios


def foreground_colours(grid: Grid) -> int:
    """Number of colours other than the background (the commonest colour)."""
    return int(np.count_nonzero(np.bincount(grid.ravel(), minlength=N_COLOURS))) - 1


def _count_rules(inputs: list[Grid], ratios: list[Shape]) -> Iterator[tuple[str, CountRule]]:
    """How many copies along each axis: fixed, the input's own shape, or its colour count."""
    if _same(ratios):
        fixed = ratios[0]
        yield f"{fixed[0]}x{fixed[1]}", lambda g: fixed
    if all(r == g.shape for r, g in zip(ratios, inputs)) and not _same(ratios):
        yield "own_shape", lambda g: g.shape
    if all(r == (foreground_colours(g),) * 2 for r, g in zip(ratios, inputs)) and not _same(ratios):
        yield "n_colours", lambda g: (foreground_colours(g),) * 2


def upscaled(grid: Grid, a: int, b: int) -> Grid:
    """Each cell as an a x b block; NotApplicable past 30 a side or for a zero factor."""
    h, w = grid.shape
    _checked((a * h, b * w))
    return np.repeat(np.repeat(grid, a, axis=0), b, axis=1)


def _upscale(name: str, rule: CountRule) -> Fitted:
    """Each cell upscaled by the factors ``rule`` reads off the grid."""
    return Fitted(f"upscale({name})", lambda g: upscaled(g, *rule(g)))


# --- layouts: an a x b arrangement of blocks, each a transform of the input or one colour

Block = tuple[str, Union[str, int]]  # ("transform", name) | ("fill", colour) | ("fill", "background")


def _layouts(inputs: list[Grid], targets: list[Grid], counts: Shape) -> Iterator[Fitted]:
    """Block layouts of ``counts`` blocks reproducing the pairs: each block's first choice, then
    the mirror layout where the pairs allow it (symmetric train inputs leave blocks ambiguous),
    then other combinations of the allowed choices."""
    a, b = counts
    options = [_block_options(inputs, targets, i, j) for i in range(a) for j in range(b)]
    if not all(options):
        return
    mirror = [("transform", MIRRORED[i % 2, j % 2]) for i in range(a) for j in range(b)]
    choices = [tuple(opts[0] for opts in options)]
    if all(m in opts for m, opts in zip(mirror, options)):
        choices.append(tuple(mirror))
    choices += itertools.islice(itertools.product(*options), MAX_LAYOUT_VARIANTS)
    for combo in choices:
        if any(kind == "transform" for kind, _ in combo):  # all-fill would ignore the input
            yield _layout(a, b, combo)


# block (i, j) of a mirror layout: flipped top-bottom on odd rows, left-right on odd columns
MIRRORED = {(0, 0): "identity", (0, 1): "flip_lr", (1, 0): "flip_ud", (1, 1): "rot180"}


def _block_options(inputs: list[Grid], targets: list[Grid], i: int, j: int) -> list[Block]:
    """What block (i, j) can be in every pair: dihedral transforms of the input, then one colour."""
    blocks = [t[i * g.shape[0]:(i + 1) * g.shape[0], j * g.shape[1]:(j + 1) * g.shape[1]]
              for g, t in zip(inputs, targets)]
    found: list[Block] = [("transform", name) for name, f in TRANSFORMS.items()
                          if all(np.array_equal(f(g), blk) for g, blk in zip(inputs, blocks))]
    first = [int(blk.flat[0]) for blk in blocks]
    if all((blk == c).all() for blk, c in zip(blocks, first)):
        if _same(first):
            found.append(("fill", first[0]))
        elif all(c == ob.background(g) for g, c in zip(inputs, first)):
            found.append(("fill", "background"))
    return found


def _block(grid: Grid, block: Block) -> Grid:
    """One block of a layout: a transform of ``grid`` or one colour, of the grid's shape."""
    kind, what = block
    if kind == "fill":
        colour = ob.background(grid) if what == "background" else what
        return np.full(grid.shape, colour, dtype=np.uint8)
    out = TRANSFORMS[str(what)](grid)
    if out.shape != grid.shape:
        raise NotApplicable("a transposed block of a non-square grid does not fit the layout")
    return out


def laid_out(grid: Grid, a: int, b: int, blocks: Sequence[Block]) -> Grid:
    """The a x b arrangement of ``blocks`` (row-major) made from ``grid``."""
    _checked((a * grid.shape[0], b * grid.shape[1]))
    rows = [np.concatenate([_block(grid, blocks[i * b + j]) for j in range(b)], axis=1) for i in range(a)]
    return np.concatenate(rows, axis=0)


def _layout(a: int, b: int, blocks: Sequence[Block]) -> Fitted:
    """The a x b layout of ``blocks``."""
    names = ",".join(str(what) for _, what in blocks)
    return Fitted(f"layout({a}x{b}:{names})", lambda g: laid_out(g, a, b, blocks))


# --- fractals: block (i, j) of an h x w arrangement is the input seen through input cell (i, j)

VALUE_ORDER = ("inner", "outer")  # preferred over a fixed colour when both explain a key


def _views(grid: Grid) -> tuple[Grid, Grid]:
    """(outer, inner), both (h*h, w*w): outer repeats each cell as a block, inner tiles the grid."""
    h, w = grid.shape
    _checked((h * h, w * w))
    return upscaled(grid, h, w), np.tile(grid, (h, w))


def _references(inputs: list[Grid]) -> Iterator[tuple[str, Callable[[Grid], int]]]:
    """Reference colours splitting cells into two kinds: 0, the commonest, then other colours."""
    present = np.unique(np.concatenate([g.ravel() for g in inputs]))
    yield "0", lambda g: 0
    yield "commonest", ob.background
    for c in present[present != 0].tolist():
        yield str(c), lambda g, c=c: c


def _fractals(inputs: list[Grid], targets: list[Grid]) -> Iterator[Fitted]:
    """Fractal tables, one per reference colour that explains every pair."""
    if any(g.shape[0] ** 2 > MAX_SIDE or g.shape[1] ** 2 > MAX_SIDE for g in inputs):
        return
    views = [_views(g) for g in inputs]
    for name, ref in _references(inputs):
        table = _fit_fractal_table(views, [ref(g) for g in inputs], targets)
        if table is not None:
            yield _fractal(name, ref, table)


def _fractal_keys(outer: Grid, inner: Grid, ref: int) -> Grid:
    """Per cell 2 * (outer == ref) + (inner == ref), in 0..3."""
    return 2 * (outer == ref).astype(np.int8) + (inner == ref)


def _fit_fractal_table(views: list[tuple[Grid, Grid]], refs: list[int],
                       targets: list[Grid]) -> Optional[tuple[Optional[Value], ...]]:
    """Per key the first value (inner, outer, a colour) fitting every pair; None if a key has none."""
    allowed: list[Optional[set]] = [None] * 4  # None: key never seen
    for (outer, inner), ref, target in zip(views, refs, targets):
        keys = _fractal_keys(outer, inner, ref)
        for key in np.unique(keys).tolist():
            cells = keys == key
            fitting = _values_fitting(target[cells], {"inner": inner[cells], "outer": outer[cells]})
            allowed[key] = fitting if allowed[key] is None else allowed[key] & fitting
            if not allowed[key]:
                return None
    return tuple(None if a is None else _preferred(a, VALUE_ORDER) for a in allowed)


def _values_fitting(wanted: np.ndarray, sources: dict) -> set:
    """The names of ``sources`` equal to ``wanted`` everywhere, plus its colour if it is uniform."""
    fitting = {name: None for name, values in sources.items() if np.array_equal(values, wanted)}
    if (wanted == wanted[0]).all():
        fitting[int(wanted[0])] = None
    return set(fitting)


def _preferred(allowed: set, order: Sequence) -> Value:
    """The first of ``order`` that is allowed, else the allowed fixed colour."""
    for value in order:
        if value in allowed:
            return value
    return min(v for v in allowed if isinstance(v, int))


def fractal(grid: Grid, ref: int, table: Sequence[Optional[Value]]) -> Grid:
    """Block (i, j) of the h x w arrangement: per cell the table's value for its (outer, inner) key."""
    outer, inner = _views(grid)
    keys = _fractal_keys(outer, inner, ref)
    out = np.empty(outer.shape, dtype=np.uint8)
    for key, value in enumerate(table):
        cells = keys == key
        if not cells.any():
            continue
        if value is None:
            raise NotApplicable("a fractal cell situation the train pairs never showed")
        out[cells] = inner[cells] if value == "inner" else outer[cells] if value == "outer" else value
    return out


def _fractal(name: str, ref: Callable[[Grid], int], table: tuple) -> Fitted:
    """The fractal of ``table`` keyed on the reference colour ``ref`` reads off the grid."""
    shown = ",".join("?" if v is None else str(v) for v in table)
    return Fitted(f"fractal(ref={name}:{shown})", lambda g: fractal(g, ref(g), table))


# --------------------------------------------------------------------------- cuts


def _runs(free: np.ndarray) -> Runs:
    """[start, end) of every maximal run of True in the 1-D bool mask ``free``."""
    edges = np.diff(np.concatenate([[0], free.astype(np.int8), [0]]))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def _even(length: int, parts: int) -> Runs:
    """``parts`` equal runs covering 0..length; NotApplicable when it does not divide."""
    if parts < 1 or length % parts:
        raise NotApplicable(f"{length} cells do not split into {parts} equal parts")
    starts = np.arange(parts) * (length // parts)
    return starts, starts + length // parts


def counted_cut(rows: int, cols: int) -> CutRule:
    """Cut into rows x cols equal blocks."""
    return lambda g: (_even(g.shape[0], rows), _even(g.shape[1], cols))


def sized_cut(height: int, width: int) -> CutRule:
    """Cut into blocks of height x width."""
    def cut(g: Grid) -> Cut:
        if g.shape[0] % height or g.shape[1] % width:
            raise NotApplicable("grid is not a whole number of blocks")
        return _even(g.shape[0], g.shape[0] // height), _even(g.shape[1], g.shape[1] // width)
    return cut


def separator_cut(colour: Optional[int]) -> CutRule:
    """The rectangles between full rows and columns of ``colour`` (None: of the one colour
    that has such lines); at least one line and two parts, else NotApplicable."""
    def cut(g: Grid) -> Cut:
        lined = _line_colours(g)
        if colour is None and len(lined) != 1:
            raise NotApplicable("not exactly one colour draws separator lines")
        c = lined[0] if colour is None else colour
        if c not in lined:
            raise NotApplicable(f"no separator lines of colour {c}")
        full_rows, full_cols = (g == c).all(axis=1), (g == c).all(axis=0)
        runs = _runs(~full_rows), _runs(~full_cols)
        if len(runs[0][0]) * len(runs[1][0]) < 2:
            raise NotApplicable("separator lines leave fewer than two parts")
        return runs
    return cut


def _line_colours(g: Grid) -> list[int]:
    """Colours with a full row or column that do not fill every row or every column."""
    onehot = g[..., None] == np.arange(N_COLOURS)  # (h, w, 10)
    full_rows, full_cols = onehot.all(axis=1), onehot.all(axis=0)  # (h, 10), (w, 10)
    lined = (full_rows.any(axis=0) | full_cols.any(axis=0)) & ~full_rows.all(axis=0) & ~full_cols.all(axis=0)
    return np.flatnonzero(lined).tolist()


def longer_side_cut(parts: int) -> CutRule:
    """Cut into ``parts`` equal blocks along the grid's longer side (NotApplicable when square)."""
    def cut(g: Grid) -> Cut:
        if g.shape[0] == g.shape[1]:
            raise NotApplicable("a square grid has no longer side")
        return counted_cut(parts, 1)(g) if g.shape[0] > g.shape[1] else counted_cut(1, parts)(g)
    return cut


def native_cut(g: Grid) -> Cut:
    """The blocks of the coarsest uniform-block grid ``g`` is an upscale of (both sides > 1 cell)."""
    sizes = []
    for axis in (0, 1):
        lines = np.moveaxis(g, axis, 0)
        changes = np.flatnonzero((lines[1:] != lines[:-1]).any(axis=1)) + 1
        sizes.append(int(np.gcd.reduce(np.diff(np.concatenate([[0], changes, [len(lines)]])))))
    if sizes == [1, 1] or tuple(sizes) == g.shape:
        raise NotApplicable("grid is not an upscale of a grid of several cells")
    return sized_cut(*sizes)(g)


def _cut_shape(cut: Cut) -> Shape:
    """(rows, columns) of rectangles in ``cut``."""
    return len(cut[0][0]), len(cut[1][0])


def _separator_rules(inputs: list[Grid]) -> list[tuple[str, CutRule]]:
    """Separator cuts: each colour drawing lines in every input, then whichever colour does."""
    common = set.intersection(*(set(_line_colours(g)) for g in inputs))
    rules = [(f"separator {c}", separator_cut(c)) for c in sorted(common)]
    return rules + [("separator lines", separator_cut(None))]


def _cuts_giving(inputs: list[Grid], rules: list[tuple[str, CutRule]],
                 wanted: Callable[[Grid, Cut], bool]) -> Iterator[tuple[str, CutRule, list[Cut]]]:
    """The rules whose cut of every input satisfies ``wanted``, with those cuts."""
    for name, rule in rules:
        try:
            cuts = [rule(g) for g in inputs]
        except NotApplicable:
            continue
        if all(wanted(g, c) for g, c in zip(inputs, cuts)):
            yield name, rule, cuts


# --------------------------------------------------------------------------- shrinks


def _shrinks(inputs: list[Grid], targets: list[Grid], elaborate: bool) -> Iterator[Fitted]:
    """Each rectangle of a cut reduced to one output cell: by a fixed reducer (``elaborate``
    False), or by a count table or with the result then transformed (``elaborate`` True)."""
    if not all(t.shape[0] <= g.shape[0] and t.shape[1] <= g.shape[1] and t.size < g.size
               for g, t in zip(inputs, targets)):
        return
    rules: list[tuple[str, CutRule]] = []
    factors = [(g.shape[0] // t.shape[0], g.shape[1] // t.shape[1]) for g, t in zip(inputs, targets)]
    if _same(factors):
        rules.append((f"blocks {factors[0][0]}x{factors[0][1]}", sized_cut(*factors[0])))
    if _same([t.shape for t in targets]):
        rules.append((f"{targets[0].shape[0]}x{targets[0].shape[1]} blocks", counted_cut(*targets[0].shape)))
    rules.append(("native blocks", native_cut))
    rules += _separator_rules(inputs)
    # a cut into one rectangle is no shrink: its "cell" would stand for the whole grid
    shapes = {id(g): {t.shape, t.shape[::-1]} - {(1, 1)} for g, t in zip(inputs, targets)}
    cuts = [(name, rule, [histograms(g, c) for g, c in zip(inputs, cs)])
            for name, rule, cs in _cuts_giving(inputs, rules, lambda g, c: _cut_shape(c) in shapes[id(g)])]
    for transform in TRANSFORMS:  # identity first: a plain shrink before a shrink-then-turn
        wanted = [INVERSES[transform](t) for t in targets]
        for name, rule, hists in cuts:
            if all(h.shape[:2] == w.shape for h, w in zip(hists, wanted)):
                for reducer_name, reducer in _reducers(hists, wanted):
                    plain = transform == "identity" and reducer_name in REDUCERS
                    if plain != elaborate:
                        yield _shrink(name, rule, reducer_name, reducer, transform)


INVERSES = {name: name for name in TRANSFORMS} | {"rot90": "rot270", "rot270": "rot90"}
INVERSES = {name: TRANSFORMS[inverse] for name, inverse in INVERSES.items()}


def histograms(grid: Grid, cut: Cut) -> np.ndarray:
    """(R, C, 10) colour counts of the cut's rectangles, from one integral image of the grid."""
    onehot = (grid[..., None] == np.arange(N_COLOURS)).astype(np.int32)  # (h, w, 10)
    integral = np.zeros((grid.shape[0] + 1, grid.shape[1] + 1, N_COLOURS), dtype=np.int32)
    integral[1:, 1:] = onehot.cumsum(axis=0).cumsum(axis=1)
    (r0, r1), (c0, c1) = cut
    return (integral[r1][:, c1] - integral[r0][:, c1] - integral[r1][:, c0] + integral[r0][:, c0])


def _uniform(hist: np.ndarray, bg: int) -> np.ndarray:
    """The colour of each rectangle; NotApplicable unless every rectangle is one colour."""
    if ((hist > 0).sum(axis=-1) != 1).any():
        raise NotApplicable("a rectangle is not uniform")
    return hist.argmax(axis=-1)


def _majority(hist: np.ndarray, bg: int) -> np.ndarray:
    """The commonest colour of each rectangle; NotApplicable on a tie."""
    if ((hist == hist.max(axis=-1, keepdims=True)).sum(axis=-1) > 1).any():
        raise NotApplicable("a rectangle has no single commonest colour")
    return hist.argmax(axis=-1)


def _foreground(hist: np.ndarray, bg: int) -> np.ndarray:
    """The one non-background colour of each rectangle (background when none; NotApplicable if several)."""
    fg = hist.copy()
    fg[..., bg] = 0
    count = (fg > 0).sum(axis=-1)
    if (count > 1).any():
        raise NotApplicable("a rectangle has several foreground colours")
    return np.where(count == 1, fg.argmax(axis=-1), bg)


def _foreground_majority(hist: np.ndarray, bg: int) -> np.ndarray:
    """The commonest non-background colour of each rectangle (background when none; NotApplicable on a tie)."""
    fg = hist.copy()
    fg[..., bg] = 0
    top = fg.max(axis=-1, keepdims=True)
    if ((fg == top) & (top > 0)).sum(axis=-1).max() > 1:
        raise NotApplicable("a rectangle has no single commonest foreground colour")
    return np.where(top[..., 0] > 0, fg.argmax(axis=-1), bg)


Reducer = Callable[[np.ndarray, int], np.ndarray]  # (R, C, 10) histograms, background -> (R, C)
REDUCERS: dict[str, Reducer] = {"uniform": _uniform, "majority": _majority, "foreground": _foreground,
                                "foreground_majority": _foreground_majority}
# what a fitted table reads off a rectangle: whether it has foreground, how many cells of it
TABLE_KEYS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "marked": lambda counts: np.minimum(counts, 1), "count": lambda counts: counts}


def _hist_background(hist: np.ndarray) -> int:
    """The commonest colour inside all the rectangles together."""
    return int(hist.sum(axis=(0, 1)).argmax())


def _foreground_counts(hist: np.ndarray, bg: int) -> np.ndarray:
    """(R, C) number of cells of each rectangle not of colour ``bg``."""
    return hist.sum(axis=-1) - hist[..., bg]


def _reducers(hists: list[np.ndarray], wanted: list[Grid]) -> Iterator[tuple[str, Reducer]]:
    """The fixed reducers, then tables fitted on the pairs from a rectangle's foreground
    (marked or not, then its cell count) to a colour."""
    yield from REDUCERS.items()
    for key_name, key in TABLE_KEYS.items():
        table = _fit_key_table(hists, wanted, key)
        if table is not None:
            shown = ",".join(f"{n}:{c}" for n, c in sorted(table.items()))
            yield f"{key_name} {shown}", lambda hist, bg, key=key, table=table: _key_table(hist, bg, key, table)


def _fit_key_table(hists: list[np.ndarray], wanted: list[Grid],
                   key: Callable[[np.ndarray], np.ndarray]) -> Optional[dict[int, int]]:
    """Key -> colour over every rectangle of every pair; None when a key has two colours, when
    an entry is seen in fewer than MIN_COUNT_SUPPORT rectangles (no evidence of a rule) or
    when the table has one colour (it would ignore the input)."""
    table: dict[int, int] = {}
    support: dict[int, int] = {}
    for hist, target in zip(hists, wanted):
        keys = key(_foreground_counts(hist, _hist_background(hist))).ravel()
        # the distinct (key, colour) pairs of this grid's rectangles and how often each occurs
        pairs, seen = np.unique(keys * N_COLOURS + target.ravel(), return_counts=True)
        for pair, times in zip(pairs.tolist(), seen.tolist()):
            k, colour = divmod(pair, N_COLOURS)
            if table.setdefault(k, colour) != colour:
                return None
            support[k] = support.get(k, 0) + times
    if len(set(table.values())) < 2 or min(support.values()) < MIN_COUNT_SUPPORT:
        return None
    return table


def _key_table(hist: np.ndarray, bg: int, key: Callable[[np.ndarray], np.ndarray],
               table: dict[int, int]) -> np.ndarray:
    """Per rectangle the table's colour for its key; NotApplicable for a key never seen."""
    keys = key(_foreground_counts(hist, bg))
    unseen = set(np.unique(keys).tolist()) - set(table)
    if unseen:
        raise NotApplicable(f"rectangle keys {sorted(unseen)} never seen in the pairs")
    lookup = np.zeros(max(table) + 1, dtype=np.uint8)  # keys seen are all <= max(table)
    lookup[list(table)] = list(table.values())
    return lookup[keys]


def shrunk(grid: Grid, cut: Cut, reducer: Reducer) -> Grid:
    """One cell per rectangle of ``cut`` (background: the commonest colour inside the rectangles)."""
    hist = histograms(grid, cut)
    return reducer(hist, _hist_background(hist)).astype(np.uint8)


def _shrink(name: str, rule: CutRule, reducer_name: str, reducer: Reducer, transform: str) -> Fitted:
    turn = TRANSFORMS[transform]
    then = "" if transform == "identity" else f",then {transform}"
    return Fitted(f"shrink({name},{reducer_name}{then})",
                  lambda g: np.ascontiguousarray(turn(shrunk(g, rule(g), reducer))))


# --------------------------------------------------------------------------- overlays


def _overlays(inputs: list[Grid], targets: list[Grid]) -> Iterator[Fitted]:
    """Equal parts of the output's shape combined cell by cell."""
    if not all(t.shape[0] <= g.shape[0] and t.shape[1] <= g.shape[1] and t.size < g.size
               for g, t in zip(inputs, targets)):
        return
    rules: list[tuple[str, CutRule]] = []
    counts = [(g.shape[0] // t.shape[0], g.shape[1] // t.shape[1]) for g, t in zip(inputs, targets)]
    if _same(counts):
        rules.append((f"{counts[0][0]}x{counts[0][1]} blocks", counted_cut(*counts[0])))
    longer = [max(c) for c in counts]
    if _same(longer) and all(min(c) == 1 and g.shape[0] != g.shape[1] for c, g in zip(counts, inputs)):
        rules.append((f"{longer[0]} along longer side", longer_side_cut(longer[0])))
    rules += _separator_rules(inputs)
    shape_of = {id(g): t.shape for g, t in zip(inputs, targets)}
    found = [(name, rule, cuts) for name, rule, cuts in
             _cuts_giving(inputs, rules, lambda g, c: _parts_shaped(c, shape_of[id(g)]))
             if _same([np.prod(_cut_shape(c)) for c in cuts])]  # a fixed number of parts
    for folded in (False, True):  # parts as they lie, then folded onto the first one
        for name, rule, cuts in found:
            parts = [stacked_parts(g, c, folded) for g, c in zip(inputs, cuts)]
            yield from _combinations(name + (" folded" if folded else ""), _folding(rule, folded), parts, targets)


def _folding(rule: CutRule, folded: bool) -> PartsRule:
    """The cut of ``rule`` with whether its parts are folded."""
    return lambda g: (rule(g), folded)


def _parts_shaped(cut: Cut, shape: Shape) -> bool:
    """Whether every rectangle of ``cut`` has ``shape``."""
    (r0, r1), (c0, c1) = cut
    return bool((r1 - r0 == shape[0]).all() and (c1 - c0 == shape[1]).all())


def stacked_parts(grid: Grid, cut: Cut, folded: bool = False) -> Grid:
    """(k, H, W) the cut's rectangles in reading order; ``folded``: the rectangles in odd rows
    of the cut flipped top-bottom and in odd columns left-right, as if the grid were folded
    along its cut lines onto the first. NotApplicable unless all share one shape."""
    (r0, r1), (c0, c1) = cut
    if len(set((r1 - r0).tolist())) != 1 or len(set((c1 - c0).tolist())) != 1:
        raise NotApplicable("parts of different shapes")
    def step(index: int) -> int:  # -1 reverses the odd rows/columns of parts when folding
        return -1 if folded and index % 2 else 1
    return np.stack([grid[a:b, c:d][::step(i), ::step(j)]
                     for i, (a, b) in enumerate(zip(r0, r1)) for j, (c, d) in enumerate(zip(c0, c1))])


BgRule = Callable[[Grid], int]  # (k, H, W) parts -> their background colour


def _background_rules(parts: list[Grid]) -> Iterator[tuple[str, BgRule]]:
    """The parts' background: one colour for the whole task (the commonest over every train
    input's parts), then each grid's own commonest part colour where that differs somewhere."""
    pooled = ob.background(np.concatenate([ps.ravel() for ps in parts])[None])
    yield f"bg {pooled}", lambda ps: pooled
    if any(_commonest(ps) != pooled for ps in parts):
        yield "bg commonest", _commonest


def _commonest(parts: Grid) -> int:
    """The commonest colour of all the parts together."""
    return ob.background(parts.reshape(1, -1))


def _combinations(name: str, rule: PartsRule, parts: list[Grid], targets: list[Grid]) -> Iterator[Fitted]:
    """One fixed part, then stacking orders, then truth tables (each checked later by ``fit``)."""
    k = parts[0].shape[0]
    for p in range(k):
        if all(np.array_equal(ps[p], t) for ps, t in zip(parts, targets)):
            yield _overlay(name, rule, k, f"part {p}", lambda ps, p=p: ps[p].copy())
    for bg_name, bg in _background_rules(parts):
        how = f"{name},{bg_name}"
        yield from itertools.islice(_stacking_orders(how, rule, bg, parts, targets), MAX_ORDERS)
        if k <= MAX_TABLE_PARTS:
            yield from _truth_tables(how, rule, bg, parts, targets)


def _overlay(name: str, rule: PartsRule, k: int, how: str,
             combine: Callable[[Grid], Grid]) -> Fitted:
    """A Fitted combining the ``k`` parts that ``rule`` cuts (and folds or not); NotApplicable
    for another number of parts."""
    def apply(g: Grid) -> Grid:
        parts = stacked_parts(g, *rule(g))
        if parts.shape[0] != k:
            raise NotApplicable(f"{parts.shape[0]} parts, the pairs had {k}")
        return combine(parts)
    return Fitted(f"overlay({name},{how})", apply)


def stacked(parts: Grid, order: Sequence[int], bg: int) -> Grid:
    """Per cell the colour of the first part in ``order`` that is not ``bg`` there (else ``bg``)."""
    ordered = parts[list(order)]  # (k, H, W)
    fg = ordered != bg
    first = fg.argmax(axis=0)[None]  # (1, H, W) index of the topmost foreground part
    top = np.take_along_axis(ordered, first, axis=0)[0]
    return np.where(fg.any(axis=0), top, np.uint8(bg)).astype(np.uint8)


def _stacking_orders(name: str, rule: PartsRule, bg: BgRule, parts: list[Grid],
                     targets: list[Grid]) -> Iterator[Fitted]:
    """Priority orders of the parts that reproduce every target."""
    k = parts[0].shape[0]
    if k > MAX_PRIORITY_PARTS:
        return
    for order in itertools.permutations(range(k)):
        if all(np.array_equal(stacked(ps, order, bg(ps)), t) for ps, t in zip(parts, targets)):
            yield _overlay(name, rule, k, f"stack {''.join(map(str, order))}",
                           lambda ps, order=order: stacked(ps, order, bg(ps)))


def _bit_keys(parts: Grid, bg: int) -> Grid:
    """(H, W) sum over parts p of 2**p where part p is not ``bg``."""
    weights = (1 << np.arange(parts.shape[0]))[:, None, None]
    return ((parts != bg) * weights).sum(axis=0)


def _truth_tables(name: str, rule: PartsRule, bg: BgRule, parts: list[Grid],
                  targets: list[Grid]) -> Iterator[Fitted]:
    """Tables key -> fixed colour or part colour: fixed colours preferred, then part colours."""
    k = parts[0].shape[0]
    allowed: dict[int, set] = {}
    for ps, target in zip(parts, targets):
        keys = _bit_keys(ps, bg(ps))
        for key in np.unique(keys).tolist():
            cells = keys == key
            sources = {("part", p): ps[p][cells] for p in range(k) if key >> p & 1}
            fitting = _values_fitting(target[cells], sources)
            allowed[key] = allowed[key] & fitting if key in allowed else fitting
            if not allowed[key]:
                return
    part_values = [("part", p) for p in range(k)]
    tables: list[dict] = []
    for prefer_parts in (False, True):
        table = {key: _pick(a, part_values, prefer_parts) for key, a in allowed.items()}
        if table not in tables:
            tables.append(table)
            shown = ",".join(f"{key}:{_show(v)}" for key, v in sorted(table.items()))
            yield _overlay(name, rule, k, f"table {shown}",
                           lambda ps, table=table: truth_table(ps, table, bg(ps)))


def _pick(allowed: set, part_values: list, prefer_parts: bool) -> Value:
    """A table entry among ``allowed``: a fixed colour first, or a part's colour first."""
    colours = sorted(v for v in allowed if isinstance(v, int))
    parts = [v for v in part_values if v in allowed]
    return (parts + colours)[0] if prefer_parts else (colours + parts)[0]


def _show(value: Value) -> str:
    """A table entry as shown in a candidate's name."""
    return f"p{value[1]}" if isinstance(value, tuple) else str(value)


def truth_table(parts: Grid, table: dict[int, Value], bg: int) -> Grid:
    """Per cell the table's value for the parts' foreground bits (not ``bg``) there."""
    keys = _bit_keys(parts, bg)
    out = np.empty(keys.shape, dtype=np.uint8)
    for key in np.unique(keys).tolist():
        if key not in table:
            raise NotApplicable("a combination of parts the train pairs never showed")
        cells = keys == key
        value = table[key]
        out[cells] = parts[value[1]][cells] if isinstance(value, tuple) else value
    return out


# --------------------------------------------------------------------------- sampling

SAMPLE_TRIES = 4  # draws per family before trying the next one
# how often real ARC tasks of this family use each kind (layouts and overlays lead)
FAMILY_WEIGHTS = {"layout": 0.3, "overlay": 0.25, "upscale": 0.2, "fractal": 0.1, "shrink": 0.15}
LAYOUT_COUNTS = [(1, 2), (2, 1), (2, 2), (2, 2), (3, 3), (1, 3), (3, 1), (2, 3), (3, 2)]
LAYOUT_STYLES = ("tile", "mirror", "mirror", "rotate", "random")
FRACTAL_TABLES = {  # keys: 0 outer and inner coloured, 1 outer coloured, 2 inner coloured, 3 neither
    "copy_where_coloured": ("inner", "inner", 0, 0),
    "copy_where_blank": (0, 0, "inner", "inner"),
    "paint_outer_colour": ("outer", 0, 0, 0),
}
TWO_PART_OPS = {  # foreground bits (part 0, part 1) -> painted?
    "and": (False, False, False, True), "or": (False, True, True, True), "xor": (False, True, True, False),
    "nor": (True, False, False, False), "first_only": (False, True, False, False),
}


def sample(rng: np.random.Generator, inputs: Sequence[Grid]) -> Optional[Fitted]:
    """A random hypothesis of this family that applies to and changes every input; None if none does."""
    inputs = [np.asarray(g, dtype=np.uint8) for g in inputs]
    if not inputs:
        return None
    names = list(FAMILY_WEIGHTS)
    weights = np.array([FAMILY_WEIGHTS[n] for n in names])
    for index in rng.choice(len(names), size=len(names), replace=False, p=weights / weights.sum()):
        for _ in range(SAMPLE_TRIES):
            candidate = DRAWERS[names[index]](rng, inputs)
            if candidate is not None and _changes_all(candidate, inputs):
                return candidate
    return None


def _changes_all(candidate: Fitted, inputs: list[Grid]) -> bool:
    """Whether ``candidate`` applies to every input and changes each one."""
    try:
        outputs = [candidate.apply(g) for g in inputs]
    except NotApplicable:
        return False
    return all(o.shape != g.shape or not np.array_equal(o, g) for o, g in zip(outputs, inputs))


def _largest_side(inputs: list[Grid]) -> Shape:
    """The largest row and column counts among ``inputs``."""
    return max(g.shape[0] for g in inputs), max(g.shape[1] for g in inputs)


def _draw_upscale(rng: np.random.Generator, inputs: list[Grid]) -> Optional[Fitted]:
    """A random upscale that keeps every input within 30 x 30."""
    h, w = _largest_side(inputs)
    factors = [(a, b) for a, b in [(2, 2), (2, 2), (3, 3), (3, 3), (4, 4), (1, 2), (2, 1)]
               if a * h <= MAX_SIDE and b * w <= MAX_SIDE]
    if not factors:
        return None
    a, b = factors[rng.integers(len(factors))]
    return _upscale(f"{a}x{b}", lambda g: (a, b))


def _draw_layout(rng: np.random.Generator, inputs: list[Grid]) -> Optional[Fitted]:
    """A random tiling, mirroring, rotating or mixed layout that fits 30 x 30."""
    h, w = _largest_side(inputs)
    counts = [(a, b) for a, b in LAYOUT_COUNTS if a * h <= MAX_SIDE and b * w <= MAX_SIDE]
    if not counts:
        return None
    a, b = counts[rng.integers(len(counts))]
    square = all(g.shape[0] == g.shape[1] for g in inputs)
    style = LAYOUT_STYLES[rng.integers(len(LAYOUT_STYLES))]
    if style == "tile":
        names = ["identity"] * (a * b)
    elif style == "mirror":
        names = [MIRRORED[i % 2, j % 2] for i in range(a) for j in range(b)]
    elif style == "rotate" and square and (a, b) == (2, 2):
        names = ["identity", "rot270", "rot90", "rot180"]  # quarter turns round the centre
    else:
        allowed = list(TRANSFORMS)[:8 if square else 4]
        names = [allowed[k] for k in rng.integers(len(allowed), size=a * b)]
    return _layout(a, b, [("transform", n) for n in names])


def _draw_fractal(rng: np.random.Generator, inputs: list[Grid]) -> Optional[Fitted]:
    """A classic fractal (reference colour 0) for inputs of at most 5 a side."""
    if any(g.shape[0] ** 2 > MAX_SIDE or g.shape[1] ** 2 > MAX_SIDE for g in inputs):
        return None
    if not all((g == 0).any() and (g != 0).any() for g in inputs):
        return None  # the classic fractal shows where the input is coloured and where it is blank
    names = list(FRACTAL_TABLES)
    table = FRACTAL_TABLES[names[rng.integers(len(names))]]
    return _fractal("0", lambda g: 0, table)


def _draw_shrink(rng: np.random.Generator, inputs: list[Grid]) -> Optional[Fitted]:
    """A random shrink: native blocks, rooms between separator lines, or k x k blocks."""
    rules: list[tuple[str, CutRule, tuple[str, ...]]] = [
        ("native blocks", native_cut, ("uniform",)),
        ("separator lines", separator_cut(None), ("majority", "foreground"))]
    for k in (2, 3):
        if all(g.shape[0] % k == 0 and g.shape[1] % k == 0 and g.shape[0] > k for g in inputs):
            rules.append((f"blocks {k}x{k}", sized_cut(k, k), ("majority", "foreground")))
    name, rule, reducers = rules[rng.integers(len(rules))]
    reducer = reducers[rng.integers(len(reducers))]
    return _shrink(name, rule, reducer, REDUCERS[reducer], "identity")


def _draw_overlay(rng: np.random.Generator, inputs: list[Grid]) -> Optional[Fitted]:
    """Two-part boolean overlays painted one colour, or a random stacking order of the parts."""
    rules = [("separator lines", separator_cut(None)), ("2x1 blocks", counted_cut(2, 1)),
             ("1x2 blocks", counted_cut(1, 2))]
    name, rule = rules[rng.integers(len(rules))]
    try:
        parts = [stacked_parts(g, rule(g)) for g in inputs]
    except NotApplicable:
        return None
    k = parts[0].shape[0]
    if not _same([ps.shape[0] for ps in parts]):
        return None
    pooled = ob.background(np.concatenate([ps.ravel() for ps in parts])[None])
    if k == 2 and rng.random() < 0.7:
        op = list(TWO_PART_OPS)[rng.integers(len(TWO_PART_OPS))]
        colour = int(rng.choice([c for c in range(N_COLOURS) if c != pooled]))
        table = {key: (colour if on else pooled) for key, on in enumerate(TWO_PART_OPS[op])}
        return _overlay(f"{name},bg {pooled}", _folding(rule, False), k, f"table {op}",
                        lambda ps: truth_table(ps, table, pooled))
    order = tuple(rng.permutation(k).tolist())
    return _overlay(f"{name},bg {pooled}", _folding(rule, False), k, f"stack {''.join(map(str, order))}",
                    lambda ps: stacked(ps, order, pooled))


DRAWERS: dict[str, Callable[[np.random.Generator, list[Grid]], Optional[Fitted]]] = {
    "layout": _draw_layout, "overlay": _draw_overlay, "upscale": _draw_upscale,
    "fractal": _draw_fractal, "shrink": _draw_shrink}

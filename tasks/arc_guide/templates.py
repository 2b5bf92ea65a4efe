"""DSL v2 steps: object-level templates with arguments, each a grid -> grid step.

A template is a name (what the guide ranks) and a function ``f(grid, *args) -> grid`` over
the objects layer (tasks.arc_guide.objects). Its arguments are enumerated per task from
the train pairs (:func:`task_steps`): colours from the task's palette, directions,
selectors, connectivity. A step's name spells its arguments, e.g.
``crop_selected(largest,8,multi)``, so a program stays a tuple of strings and
:func:`apply_step` can run any step from its name alone.

Like the whole-grid primitives (tasks.arc_guide.dsl), a step never mutates its input and
raises ``NotApplicable`` when it is undefined (no object qualifies, no separator, a
result outside 1..30 a side). Segmentations are cached per grid (a search applies many
steps to the same few train inputs), step names per palette (:func:`steps_for_colours`).
:func:`may_map` rules steps out without running them: what each template can do to a grid
(keep its shape, paint only its colour arguments, erase to background...) against what
some pairs show (:func:`pair_facts`); it never rules out a step that maps the pairs.
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from tasks.arc_guide import objects as ob
from tasks.arc_guide import rays
from tasks.arc_guide.dsl import MAX_SIDE, NotApplicable, apply_primitive, bounded

Grid = np.ndarray
Pair = tuple[np.ndarray, np.ndarray]


@functools.lru_cache(maxsize=4096)
def _segment(key: bytes, shape: tuple[int, int], connectivity: int, multicolour: bool) -> tuple[ob.Obj, ...]:
    grid = np.frombuffer(key, dtype=np.uint8).reshape(shape)
    return tuple(ob.objects(grid, connectivity, multicolour))


def segment(grid: Grid, connectivity: int, multicolour: bool) -> list[ob.Obj]:
    """objects.objects with the background the most common colour, cached by content."""
    return list(_segment(np.ascontiguousarray(grid, dtype=np.uint8).tobytes(), grid.shape, connectivity, multicolour))


def _selected(grid: Grid, selector: str, connectivity: int, multicolour: bool) -> ob.Obj:
    chosen = ob.select(segment(grid, connectivity, multicolour), selector, grid.shape)
    if chosen is None:
        raise NotApplicable(f"no single object is {selector}")
    return chosen


def _flag(multicolour: str) -> bool:
    return multicolour == "multi"


# --------------------------------------------------------------------------- templates


def crop_selected(g: Grid, selector: str, connectivity: int, multicolour: str) -> Grid:
    """The selected object's box, background elsewhere."""
    return ob.crop(_selected(g, selector, connectivity, _flag(multicolour)), ob.background(g))


def keep_selected(g: Grid, selector: str, connectivity: int, multicolour: str) -> Grid:
    """Only the selected object stays; every other cell becomes background."""
    obj = _selected(g, selector, connectivity, _flag(multicolour))
    return ob.paint(np.full(g.shape, ob.background(g), dtype=np.uint8), obj)


def remove_selected(g: Grid, selector: str, connectivity: int, multicolour: str) -> Grid:
    """The selected object is erased."""
    return ob.erase(g, _selected(g, selector, connectivity, _flag(multicolour)), ob.background(g))


def recolour_selected(g: Grid, selector: str, colour: int) -> Grid:
    """The selected (8-connected, any colours) object in ``colour``."""
    obj = _selected(g, selector, 8, True)
    return ob.paint(g, ob.recolour(obj, colour))


def move_selected(g: Grid, selector: str, direction: str) -> Grid:
    """The selected object slides in ``direction`` until contact."""
    return ob.move_until_contact(g, _selected(g, selector, 8, True), direction, ob.background(g))


def gravitate_objects(g: Grid, direction: str) -> Grid:
    """Every object falls as a rigid body towards ``direction``."""
    out = ob.gravitate(g, direction, 8)
    if np.array_equal(out, g):
        raise NotApplicable("nothing moves")
    return out


def fill_enclosed_with(g: Grid, colour: int) -> Grid:
    """Enclosed background cells in ``colour``."""
    return ob.fill_enclosed(g, colour)


def complete_symmetry(g: Grid, hole: int) -> Grid:
    """Cells of colour ``hole`` restored from the symmetries the rest obeys."""
    if not (g == hole).any():
        raise NotApplicable("no cell of the hole colour")
    return ob.complete_symmetry(g, hole)


def crop_hole(g: Grid, hole: int) -> Grid:
    """What the box of the ``hole``-coloured cells hides, restored by symmetry."""
    rows, cols = np.nonzero(g == hole)
    if not len(rows):
        raise NotApplicable("no cell of the hole colour")
    done = ob.complete_symmetry(g, hole)
    patch = done[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    if (patch == hole).any():
        raise NotApplicable("the symmetries do not reach the hole")
    return patch.copy()


def lines_from(g: Grid, colour: int, direction: str) -> Grid:
    """From every cell of ``colour``, a line of that colour in ``direction`` over background."""
    cells = np.argwhere(g == colour)
    if not len(cells):
        raise NotApplicable("no cell of that colour")
    out, bg = g, ob.background(g)
    for r, c in cells:
        out = ob.draw_line(out, int(r), int(c), direction, colour, through=False, bg=bg)
    return out


def corner_rays(g: Grid, corners: str) -> Grid:
    """Diagonal rays from each (8-connected, one-colour) object's box corners, ``missing``
    (those it leaves empty) or ``all``, away from the box in the object's colour."""
    return rays.corner_rays(g, segment(g, 8, False), corners)


def connect_same_colour(g: Grid, colour: int) -> Grid:
    """Cells of ``colour`` on a common row or column joined by lines of that colour (over background)."""
    cells = np.argwhere(g == colour)
    if len(cells) < 2:
        raise NotApplicable("fewer than two cells of that colour")
    out, bg = g.copy(), ob.background(g)
    for axis in (0, 1):
        for line in np.unique(cells[:, axis]):
            others = np.sort(cells[cells[:, axis] == line][:, 1 - axis])
            if len(others) < 2:
                continue
            span = slice(int(others[0]), int(others[-1]) + 1)
            view = out[line, span] if axis == 0 else out[span, line]
            view[view == bg] = colour
    return out


def box_objects(g: Grid, colour: int) -> Grid:
    """A ring of ``colour`` around every object's box."""
    out = g
    for obj in segment(g, 8, True):
        out = ob.box(out, obj, colour)
    return out


def outline_objects(g: Grid, colour: int) -> Grid:
    """The border cells of every object in ``colour``."""
    out = g
    for obj in segment(g, 8, True):
        out = ob.outline(out, obj, colour)
    return out


OVERLAYS = {"and": np.logical_and, "or": np.logical_or, "xor": np.logical_xor,
            "nor": lambda a, b: ~(a | b), "left_only": lambda a, b: a & ~b}


def overlay_parts(g: Grid, split: str, op: str, colour: int) -> Grid:
    """The grid cut in two (``split``: at separator lines, or into halves ``rows``/``cols``),
    the parts' foreground masks combined by ``op``, set cells in ``colour``."""
    if split == "separator":
        parts = ob.separator_cells(g)
        if len(parts) != 2:
            raise NotApplicable("not two separated parts")
        a, b = parts[0].patch, parts[1].patch
    else:
        a, b = ob.halves(g, 0 if split == "rows" else 1)
    if a.shape != b.shape:
        raise NotApplicable("parts of different shapes")
    bg = ob.background(g) if split != "separator" else _part_background(a, b)
    mask = OVERLAYS[op](a != bg, b != bg)
    return np.where(mask, np.uint8(colour), np.uint8(bg)).astype(np.uint8)


def _part_background(a: Grid, b: Grid) -> int:
    return ob.background(np.concatenate([a.ravel(), b.ravel()])[None, :])


def select_part(g: Grid, selector: str) -> Grid:
    """The part between separator lines that ``selector`` picks (parts as objects of their foreground)."""
    parts = ob.separator_cells(g)
    if len(parts) < 2:
        raise NotApplicable("no separated parts")
    bg = _part_background(parts[0].patch, parts[-1].patch)
    as_objects = [ob.Obj(p.top, p.left, p.patch, p.patch != bg) for p in parts]
    chosen = _select_parts(as_objects, selector, g.shape)
    return parts[as_objects.index(chosen)].patch.copy()


def _select_parts(parts: list[ob.Obj], selector: str, shape: tuple[int, int]) -> ob.Obj:
    if selector == "unique_pattern":
        keys = [p.patch.tobytes() for p in parts]
        once = [p for p, k in zip(parts, keys) if keys.count(k) == 1]
        chosen = once[0] if len(once) == 1 else None
    else:
        chosen = ob.select([p for p in parts if p.mask.any()], selector, shape)
    if chosen is None:
        raise NotApplicable(f"no single part is {selector}")
    return chosen


def count_objects(g: Grid, colour: int, connectivity: int) -> Grid:
    """A 1 x n row of ``colour``, n the number of objects."""
    n = len(segment(g, connectivity, False))
    if not 1 <= n <= MAX_SIDE:
        raise NotApplicable(f"{n} objects")
    return ob.count_row(n, colour)


def recolour_by_size(g: Grid, largest: int, others: int) -> Grid:
    """The largest (8-connected, one colour) object in ``largest``, the other objects in ``others``."""
    objs = segment(g, 8, False)
    chosen = ob.select(objs, "largest", g.shape)
    if chosen is None or len(objs) < 2:
        raise NotApplicable("no single largest object among several")
    out = g
    for obj in objs:
        out = ob.paint(out, ob.recolour(obj, largest if obj is chosen else others))
    return out


def remove_colour(g: Grid, colour: int) -> Grid:
    """Cells of ``colour`` become background."""
    bg = ob.background(g)
    if colour == bg or not (g == colour).any():
        raise NotApplicable("nothing of that colour to remove")
    return np.where(g == colour, np.uint8(bg), g).astype(np.uint8)


def keep_colour(g: Grid, colour: int) -> Grid:
    """Only cells of ``colour`` stay; the rest becomes background."""
    bg = ob.background(g)
    if colour == bg or not (g == colour).any():
        raise NotApplicable("no cell of that colour")
    return np.where(g == colour, g, np.uint8(bg)).astype(np.uint8)


def crop_colour(g: Grid, colour: int, inside: str) -> Grid:
    """The box of the cells of ``colour``; ``inside``: without its outer ring (a frame's content)."""
    rows, cols = np.nonzero(g == colour)
    if not len(rows):
        raise NotApplicable("no cell of that colour")
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    if inside == "inner":
        top, bottom, left, right = top + 1, bottom - 1, left + 1, right - 1
        if bottom <= top or right <= left:
            raise NotApplicable("no inside")
    return g[top:bottom, left:right].copy()


def collapse_repeats(g: Grid, axis: str) -> Grid:
    """Runs of equal adjacent rows (``rows``), columns (``cols``) or both (``both``, rows first)
    each kept once."""
    out = g
    for k, name in ((0, "rows"), (1, "cols")):
        if axis in (name, "both"):
            lines = np.moveaxis(out, k, 0)  # (n, m): the lines along this axis
            keep = np.concatenate([[True], (lines[1:] != lines[:-1]).any(axis=1)])
            out = np.moveaxis(lines[keep], 0, k)
    if out.shape == g.shape:
        raise NotApplicable("no repeated line")
    return np.ascontiguousarray(out)


def parts_to_cells(g: Grid, rule: str) -> Grid:
    """One cell per part between separator lines (the parts' layout kept): the part's most
    common foreground colour (``rule`` majority), or background unless it has any
    foreground (``rule`` any: then the foreground colour of the whole grid)."""
    parts = ob.separator_cells(g)
    if len(parts) < 2:
        raise NotApplicable("no separated parts")
    tops = sorted({p.top for p in parts})
    lefts = sorted({p.left for p in parts})
    if len(tops) * len(lefts) != len(parts):
        raise NotApplicable("parts are not a regular layout")
    bg = _part_background(parts[0].patch, parts[-1].patch)
    foreground = np.concatenate([p.patch[p.patch != bg] for p in parts])
    if not len(foreground):
        raise NotApplicable("no foreground")
    overall = int(np.bincount(foreground, minlength=10).argmax())
    out = np.full((len(tops), len(lefts)), bg, dtype=np.uint8)
    for p in parts:
        cells = p.patch[p.patch != bg]
        if len(cells):
            out[tops.index(p.top), lefts.index(p.left)] = (
                int(np.bincount(cells, minlength=10).argmax()) if rule == "majority" else overall)
    return out


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Template:
    function: Callable[..., Grid]
    arguments: tuple[str, ...]  # kinds: colour (the task's palette) or a key of CHOICES


OBJECT_SELECTORS = tuple(sorted(ob.SELECTORS))
PART_SELECTORS = ("largest", "smallest", "unique_colour", "unique_pattern")
CHOICES = {
    "selector": OBJECT_SELECTORS, "connectivity": (4, 8), "multicolour": ("single", "multi"),
    "direction": ob.STRAIGHT, "diagonal": tuple(ob.DIRECTIONS), "split": ("separator", "rows", "cols"),
    "op": tuple(OVERLAYS), "part": PART_SELECTORS, "inside": ("outer", "inner"), "rule": ("majority", "any"),
    "lines": ("rows", "cols", "both"), "slant": rays.AXES["diagonals"], "axis": tuple(rays.AXES),
    "way": ("toward", "away"), "side": tuple(rays.TURNS), "corners": ("missing", "all"),
}

_SPELT_CHOICES = {kind: tuple(str(a) for a in choices) for kind, choices in CHOICES.items()}

TEMPLATES: dict[str, Template] = {
    "crop_selected": Template(crop_selected, ("selector", "connectivity", "multicolour")),
    "keep_selected": Template(keep_selected, ("selector", "connectivity", "multicolour")),
    "remove_selected": Template(remove_selected, ("selector", "connectivity", "multicolour")),
    "recolour_selected": Template(recolour_selected, ("selector", "colour")),
    "move_selected": Template(move_selected, ("selector", "direction")),
    "gravitate_objects": Template(gravitate_objects, ("direction",)),
    "fill_enclosed_with": Template(fill_enclosed_with, ("colour",)),
    "complete_symmetry": Template(complete_symmetry, ("colour",)),
    "crop_hole": Template(crop_hole, ("colour",)),
    "lines_from": Template(lines_from, ("colour", "diagonal")),
    "connect_same_colour": Template(connect_same_colour, ("colour",)),
    "lines_across": Template(rays.lines_across, ("colour", "axis")),
    "rays_to_wall": Template(rays.rays_to_wall, ("colour", "way")),
    "bounce_rays": Template(rays.bounce_rays, ("colour", "slant")),
    "sidestep_rays": Template(rays.sidestep_rays, ("colour", "direction", "side")),
    "corner_rays": Template(corner_rays, ("corners",)),
    "box_objects": Template(box_objects, ("colour",)),
    "outline_objects": Template(outline_objects, ("colour",)),
    "overlay_parts": Template(overlay_parts, ("split", "op", "colour")),
    "select_part": Template(select_part, ("part",)),
    "count_objects": Template(count_objects, ("colour", "connectivity")),
    "recolour_by_size": Template(recolour_by_size, ("colour", "colour")),
    "remove_colour": Template(remove_colour, ("colour",)),
    "keep_colour": Template(keep_colour, ("colour",)),
    "crop_colour": Template(crop_colour, ("colour", "inside")),
    "parts_to_cells": Template(parts_to_cells, ("rule",)),
    "collapse_repeats": Template(collapse_repeats, ("lines",)),
}


def task_colours(train: Sequence[Pair]) -> tuple[int, ...]:
    """The colours of a task's train grids, inputs and outputs, in order."""
    seen = np.zeros(10, dtype=bool)
    for i, o in train:
        seen[np.unique(i)] = True
        seen[np.unique(o)] = True
    return tuple(int(c) for c in np.flatnonzero(seen))


def step_name(template: str, args: Sequence[object]) -> str:
    return f"{template}({','.join(str(a) for a in args)})"


def template_of(step: str) -> str:
    """The template name of a step name (a whole-grid primitive is its own template)."""
    return step.split("(", 1)[0]


def task_steps(train: Sequence[Pair]) -> dict[str, list[str]]:
    """Every template's steps (names with arguments) for this task's train pairs."""
    return {name: list(steps) for name, steps in steps_for_colours(task_colours(train)).items()}


@functools.lru_cache(maxsize=1024)
def steps_for_colours(colours: tuple[int, ...]) -> dict[str, tuple[str, ...]]:
    """Every template's steps for a task whose palette is ``colours`` (cached: a generator
    asks for the same palettes again and again; callers must not modify the dict)."""
    spelt = tuple(str(c) for c in colours)
    out = {}
    for name, template in TEMPLATES.items():
        # the arguments as they are spelt in step names (step_name), first argument outermost
        combos = itertools.product(*(spelt if kind == "colour" else _SPELT_CHOICES[kind] for kind in template.arguments))
        if name == "recolour_by_size":
            combos = (c for c in combos if c[0] != c[1])
        out[name] = tuple(f"{name}({','.join(c)})" for c in combos)
    return out


@functools.lru_cache(maxsize=65536)
def _parse(step: str) -> tuple[Template, tuple]:
    name, _, rest = step.partition("(")
    template = TEMPLATES.get(name)
    if template is None or not rest.endswith(")"):
        raise KeyError(step)
    raw = rest[:-1].split(",") if rest[:-1] else []
    args = tuple(int(a) if kind in ("colour", "connectivity") else a for a, kind in zip(raw, template.arguments))
    return template, args


def is_step(name: str) -> bool:
    return "(" in name


def apply_step(step: str, grid: Grid) -> Grid:
    """Run a template step by its name on ``grid``; NotApplicable when undefined or when
    the result leaves ARC bounds (checked here once, as dsl.apply_primitive does)."""
    template, args = _parse(step)
    return bounded(template.function(grid, *args))


def apply_any(step: str, grid: Grid) -> Grid:
    """A whole-grid primitive (tasks.arc_guide.dsl) or a template step, by name."""
    return apply_step(step, grid) if is_step(step) else apply_primitive(step, grid)


def run_steps(program: Sequence[str], grid: Grid) -> Grid:
    """``program`` (names of primitives and template steps) applied left to right."""
    for step in program:
        grid = apply_any(step, grid)
    return grid


# --------------------------------------------------------------------------- ruling steps out unrun

# What each template can do to a grid, read off the functions above: a step that breaks one
# of these cannot map a pair, so a search for the steps that map given pairs may skip it.
# Every template's output colours are its input's plus its colour arguments.
KEEPS_SHAPE = frozenset({
    "keep_selected", "remove_selected", "recolour_selected", "move_selected", "gravitate_objects",
    "fill_enclosed_with", "complete_symmetry", "lines_from", "connect_same_colour", "box_objects",
    "outline_objects", "recolour_by_size", "remove_colour", "keep_colour", "lines_across", "rays_to_wall",
    "bounce_rays", "sidestep_rays", "corner_rays"})
# the others but count_objects return a part of the grid or one cell per part: never a larger side
NEVER_LARGER = frozenset(TEMPLATES) - KEEPS_SHAPE - {"count_objects"}
# every cell these change takes one of the step's colour arguments
PAINTS_ARGUMENTS = frozenset({
    "recolour_selected", "fill_enclosed_with", "lines_from", "connect_same_colour", "box_objects",
    "outline_objects", "recolour_by_size", "lines_across", "rays_to_wall", "bounce_rays", "sidestep_rays"})
ERASES = frozenset({"keep_selected", "remove_selected", "remove_colour", "keep_colour"})  # changed cells become background
FILLS_BACKGROUND = frozenset({  # only background cells change
    "lines_from", "connect_same_colour", "fill_enclosed_with", "rays_to_wall", "bounce_rays", "sidestep_rays",
    "corner_rays"})
MOVES = frozenset({"move_selected", "gravitate_objects"})  # cells move onto background: colour counts stay
# a part between separator lines, one cell per part, or the grid less its repeated lines: always
# smaller than the grid on some side
SMALLER = frozenset({"overlay_parts", "select_part", "parts_to_cells", "collapse_repeats"})
_COLOUR_SLOTS = {name: tuple(k for k, kind in enumerate(t.arguments) if kind == "colour") for name, t in TEMPLATES.items()}


@dataclass(frozen=True)
class PairFacts:
    """What some (input, output) pairs show, for :func:`may_map`: whether every pair / some
    pair keeps its shape, whether some output has a side longer than its input's, the output colours
    no input of their pair has, the colours of changed cells before and after (same-shape
    pairs), whether every changed cell becomes / was its input's background, whether every
    pair keeps its colour counts, and whether every output is one row of one colour (that
    colour, else None)."""

    same_shape: bool
    some_same_shape: bool
    larger: bool
    new_colours: frozenset
    changed_from: frozenset
    changed_to: frozenset
    erased: bool
    over_background: bool
    same_counts: bool
    count_colour: Optional[int]


def pair_facts(pairs: Sequence[Pair]) -> PairFacts:
    """The PairFacts of ``pairs``."""
    new, before, after, row_colours = set(), set(), set(), set()
    same_shape, some_same_shape, larger, rows = True, False, False, True
    erased, over_background, same_counts = True, True, True
    for i, o in pairs:
        out_colours = np.unique(o)
        new.update(np.setdiff1d(out_colours, i).tolist())
        larger |= o.shape[0] > i.shape[0] or o.shape[1] > i.shape[1]
        rows &= o.shape[0] == 1 and len(out_colours) == 1
        row_colours.update(out_colours[:1].tolist())
        if i.shape != o.shape:
            same_shape = False
            continue
        some_same_shape = True
        changed = i != o  # (h, w) bool
        was, became = i[changed], o[changed]
        before.update(np.unique(was).tolist())
        after.update(np.unique(became).tolist())
        bg = ob.background(i)
        erased &= bool((became == bg).all())
        over_background &= bool((was == bg).all())
        same_counts &= np.array_equal(np.bincount(i.ravel(), minlength=10), np.bincount(o.ravel(), minlength=10))
    count_colour = row_colours.pop() if rows and len(row_colours) == 1 else None
    return PairFacts(same_shape, some_same_shape, larger, frozenset(new), frozenset(before), frozenset(after),
                     erased, over_background, same_counts, count_colour)


def may_map(step: str, facts: PairFacts) -> bool:
    """False when template step ``step`` cannot map every pair that ``facts`` describes
    (the properties above); True says nothing (the step must still be run)."""
    name = template_of(step)
    if (name in KEEPS_SHAPE and not facts.same_shape) or (name in NEVER_LARGER and facts.larger) or (
            name in SMALLER and facts.some_same_shape):
        return False
    # facts.erased, .over_background, .changed_* speak of the pairs that keep their shape only;
    # a crop the size of its grid is the grid itself (crop_colour), the grid with the other
    # objects' cells erased (crop_selected) or with its hole cells restored (crop_hole)
    if (name in ERASES or name == "crop_selected") and not facts.erased:
        return False
    if (name in FILLS_BACKGROUND and not facts.over_background) or (name in MOVES and not facts.same_counts):
        return False
    if name == "crop_colour" and facts.changed_from:
        return False
    args = _parse(step)[1]
    colours = {args[k] for k in _COLOUR_SLOTS[name]}
    if not facts.new_colours <= colours:
        return False
    if name in PAINTS_ARGUMENTS and not facts.changed_to <= colours:
        return False
    if name == "count_objects":
        return facts.count_colour == args[0]
    if name in ("complete_symmetry", "crop_hole", "remove_colour"):  # only cells of the argument's colour change
        return facts.changed_from <= colours
    return True

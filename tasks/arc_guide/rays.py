"""Rays: lines drawn from seed cells, the DSL v2 steps of ARC's "draw lines" tasks.

Hodel's arc-dsl solvers draw lines in 62 of the 400 ARC-AGI-1 training tasks; of the
ARC-AGI-1 training tasks this project's search left unsolved, a quarter of a sample of 43
drew rays the single ``lines_from`` template could not (full lines across other colours,
rays toward a wall line, rays from an object's missing corner, a ray that bounces between
the side walls or steps around an obstacle). Each function here is one such rule, over a
grid (h, w) uint8, returning a new grid (the input is never modified) or raising
NotApplicable when the rule has no seed to start from or changes nothing, or when a
bouncing or sidestepping ray never bounces or steps aside (a plain ray: ``lines_from``).

A ray starts at the cell after its seed and, unless a function says it paints over
anything, covers background cells only: it stops before the first cell that is not the
background (an obstacle) or at the grid's edge.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from tasks.arc_guide import objects as ob
from tasks.arc_guide.dsl import NotApplicable

Grid = np.ndarray

# the directions a line along each axis runs in from its seed
AXES = {
    "row": ("left", "right"),
    "col": ("up", "down"),
    "cross": ob.STRAIGHT,
    "diagonals": ("up_left", "up_right", "down_left", "down_right"),
    "star": tuple(ob.DIRECTIONS),
}
TURNS = {"cw": {"up": "right", "right": "down", "down": "left", "left": "up"},
         "ccw": {"up": "left", "left": "down", "down": "right", "right": "up"}}


def _seeds(g: Grid, colour: int) -> np.ndarray:
    """(n, 2) cells of ``colour``; NotApplicable when there is none."""
    cells = np.argwhere(g == colour)
    if not len(cells):
        raise NotApplicable("no cell of that colour")
    return cells


def _changed(out: Grid, g: Grid) -> Grid:
    if np.array_equal(out, g):
        raise NotApplicable("no ray has room")
    return out


def _inside(shape: tuple[int, int], r: int, c: int) -> bool:
    return 0 <= r < shape[0] and 0 <= c < shape[1]


def _walk(g: Grid, r: int, c: int, dr: int, dc: int, bg: int) -> Iterator[tuple[int, int]]:
    """The background cells after (r, c) in direction (dr, dc), up to an obstacle or the edge
    (a Python loop: ARC's rays are short, and numpy's per-call cost is larger than theirs)."""
    r, c = r + dr, c + dc
    while _inside(g.shape, r, c) and g[r, c] == bg:
        yield r, c
        r, c = r + dr, c + dc


def lines_across(g: Grid, colour: int, axis: str) -> Grid:
    """Through every cell of ``colour``, lines of that colour along ``axis`` (row, col,
    cross, diagonals, star) from edge to edge, painted over anything (as masks: a colour
    with hundreds of cells would otherwise draw hundreds of lines)."""
    seeds = _seeds(g, colour)
    rows, cols = np.indices(g.shape)  # (h, w) each
    directions = AXES[axis]
    on = np.zeros(g.shape, dtype=bool)
    if "right" in directions:  # every row through a seed
        on |= np.isin(rows, seeds[:, 0])
    if "down" in directions:  # every column through a seed
        on |= np.isin(cols, seeds[:, 1])
    if "down_right" in directions:  # both diagonals through a seed
        on |= np.isin(rows - cols, seeds[:, 0] - seeds[:, 1]) | np.isin(rows + cols, seeds[:, 0] + seeds[:, 1])
    return _changed(np.where(on, np.uint8(colour), g).astype(np.uint8), g)


def walls(g: Grid) -> tuple[np.ndarray, np.ndarray]:
    """(row indices, column indices) of full lines of one colour other than the background."""
    bg = ob.background(g)
    full_rows = (g == g[:, :1]).all(axis=1) & (g[:, 0] != bg)
    full_cols = (g == g[:1, :]).all(axis=0) & (g[0, :] != bg)
    return np.flatnonzero(full_rows), np.flatnonzero(full_cols)


def rays_to_wall(g: Grid, colour: int, way: str) -> Grid:
    """From every cell of ``colour`` off the walls (full lines of one colour), a ray of that
    colour perpendicular to the nearest wall, ``toward`` it or ``away`` from it."""
    rows, cols = walls(g)
    if not len(rows) and not len(cols):
        raise NotApplicable("no wall")
    bg, out = ob.background(g), g.copy()
    sign = 1 if way == "toward" else -1
    for r, c in _seeds(g, colour):
        if r in rows or c in cols:
            continue
        # (distance, drow, dcol) to each wall: the nearest decides the direction
        options = ([(abs(w - r), int(np.sign(w - r)), 0) for w in rows] +
                   [(abs(w - c), 0, int(np.sign(w - c))) for w in cols])
        _, dr, dc = min(options)
        for cell in _walk(g, int(r), int(c), sign * dr, sign * dc, bg):
            out[cell] = colour
    return _changed(out, g)


def bounce_rays(g: Grid, colour: int, diagonal: str) -> Grid:
    """From every cell of ``colour``, a diagonal ray of that colour that reflects off the
    left and right edges (its column step turns round) until it leaves through the top or
    bottom edge or meets an obstacle. NotApplicable when no ray bounces: that is a plain
    diagonal ray (``lines_from``), and one name per rule keeps the guide's labels apart."""
    h, w = g.shape
    if w < 2:
        raise NotApplicable("no room to bounce")
    bg, out = ob.background(g), g.copy()
    dr, start_dc = ob.DIRECTIONS[diagonal]
    bounced = False
    for r, c in _seeds(g, colour):
        r, c, dc = int(r), int(c), start_dc
        while True:
            turned = not 0 <= c + dc < w
            if turned:
                dc = -dc
            r, c = r + dr, c + dc
            if not 0 <= r < h or g[r, c] != bg:
                break
            out[r, c] = colour
            bounced |= turned
    if not bounced:
        raise NotApplicable("no ray bounces")
    return out


def sidestep_rays(g: Grid, colour: int, direction: str, side: str) -> Grid:
    """From every cell of ``colour``, a straight ray of that colour in ``direction``; before
    an obstacle it steps one cell aside (``cw``: a quarter turn clockwise of its direction,
    ``ccw``: counter-clockwise) and carries on, stopping when that cell is taken too.
    NotApplicable when no ray steps aside: that is a plain ray (``lines_from``)."""
    bg, out = ob.background(g), g.copy()
    dr, dc = ob.DIRECTIONS[direction]
    sr, sc = ob.DIRECTIONS[TURNS[side][direction]]
    stepped_aside = False
    for r, c in _seeds(g, colour):
        r, c = int(r), int(c)
        while _inside(g.shape, r + dr, c + dc):
            if g[r + dr, c + dc] == bg:
                r, c = r + dr, c + dc
            elif _inside(g.shape, r + sr, c + sc) and g[r + sr, c + sc] == bg:
                r, c = r + sr, c + sc
                stepped_aside = True
            else:
                break
            out[r, c] = colour
    if not stepped_aside:
        raise NotApplicable("no ray steps aside")
    return out


def corner_rays(g: Grid, objs: Sequence[ob.Obj], corners: str) -> Grid:
    """Diagonal rays in each object's colour (``objs``: a segmentation of ``g``) pointing away
    from its box, from the box corners the object leaves empty (``missing``) or from all
    four (``all``); each ray starts at the cell past its corner."""
    bg, out = ob.background(g), g.copy()
    for obj in objs:
        h, w = obj.mask.shape
        # each box corner (i, j) in the box's coordinates, with the diagonal pointing away from it
        for (i, j), (dr, dc) in (((0, 0), (-1, -1)), ((0, w - 1), (-1, 1)),
                                 ((h - 1, 0), (1, -1)), ((h - 1, w - 1), (1, 1))):
            if corners == "missing" and obj.mask[i, j]:
                continue
            for cell in _walk(g, obj.top + i, obj.left + j, dr, dc, bg):
                out[cell] = obj.colour
    return _changed(out, g)

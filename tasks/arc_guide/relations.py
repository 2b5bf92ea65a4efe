"""Exact relations between a pair's input and output grids, as a fixed-length feature vector.

The guide's convolutional codes see colours and layouts; what tells DSL v2's families apart
is often an exact fact that a network learns only from many examples: the output *is* the
input turned (a dihedral primitive), *is* a piece of it (a crop: select_crop, crop_selected),
*contains* it (a tiling or an upscale: compose_tiles), keeps its shape but repaints some
cells (cell_rule, recolouring templates) or only fills background (drawing, pattern
completion). :func:`relations` computes those facts in numpy, per pair, and the model takes
them beside its learned codes (tasks.arc_guide.model). Every value is in [0, 1].

``RELATIONS`` names the entries in order; ``N_RELATIONS`` is the vector's length.
"""
from __future__ import annotations

import numpy as np

from tasks.arc_guide.dsl import N_COLOURS

Grid = np.ndarray

# the 8 symmetries of the square, as in tasks.arc_guide.dsl's dihedral primitives
DIHEDRAL = (
    ("identity", lambda g: g), ("rot90", lambda g: np.rot90(g, 1)), ("rot180", lambda g: g[::-1, ::-1]),
    ("rot270", lambda g: np.rot90(g, -1)), ("flip_h", lambda g: g[:, ::-1]), ("flip_v", lambda g: g[::-1, :]),
    ("transpose", lambda g: g.T), ("anti_transpose", lambda g: g[::-1, ::-1].T),
)

RELATIONS = (
    *(f"output_is_{name}_of_input" for name, _ in DIHEDRAL),
    "same_shape", "transposed_shape", "output_is_whole_multiple", "input_is_whole_multiple",
    "output_smaller", "output_larger",
    "output_is_piece_of_input", "output_is_turned_piece_of_input", "input_is_piece_of_output",
    "colour_map_explains", "changed_share", "only_background_painted", "only_painted_to_background",
    "only_foreground_recoloured",
    "new_colours", "lost_colours", "input_colours", "output_colours", "output_one_colour",
    "input_mirror_lr", "input_mirror_ud", "output_mirror_lr", "output_mirror_ud",
    "output_cells_share",
)
N_RELATIONS = len(RELATIONS)


def relations(grid_in: Grid, grid_out: Grid) -> np.ndarray:
    """(N_RELATIONS,) float32 in [0, 1]: the facts RELATIONS names, for one (input, output) pair."""
    i = np.asarray(grid_in, dtype=np.uint8)
    o = np.asarray(grid_out, dtype=np.uint8)
    same = i.shape == o.shape
    values = [float(t(i).shape == o.shape and np.array_equal(t(i), o)) for _, t in DIHEDRAL]
    (h, w), (oh, ow) = i.shape, o.shape
    values += [
        float(same), float(i.shape == o.shape[::-1] and not same),
        float(oh % h == 0 and ow % w == 0 and not same), float(h % oh == 0 and w % ow == 0 and not same),
        float(oh <= h and ow <= w and not same), float(oh >= h and ow >= w and not same),
        float(_occurs(o, i)), float(any(_occurs(t(o), i) for _, t in DIHEDRAL[1:])), float(_occurs(i, o)),
    ]
    values += _repaint(i, o) if same else [0.0] * 5
    colours_in, colours_out = set(np.unique(i).tolist()), set(np.unique(o).tolist())
    values += [
        len(colours_out - colours_in) / N_COLOURS, len(colours_in - colours_out) / N_COLOURS,
        len(colours_in) / N_COLOURS, len(colours_out) / N_COLOURS, float(len(colours_out) == 1),
        float(np.array_equal(i, i[:, ::-1])), float(np.array_equal(i, i[::-1, :])),
        float(np.array_equal(o, o[:, ::-1])), float(np.array_equal(o, o[::-1, :])),
        min(1.0, o.size / i.size / 4),  # output cells per input cell, 4 and more -> 1
    ]
    return np.asarray(values, dtype=np.float32)


def _occurs(piece: Grid, grid: Grid) -> bool:
    """Whether ``piece`` appears in ``grid`` at some position (a strictly smaller grid)."""
    ph, pw = piece.shape
    if ph > grid.shape[0] or pw > grid.shape[1] or piece.size == grid.size:
        return False
    rows = np.lib.stride_tricks.sliding_window_view(grid, pw, axis=1)  # (H, W-pw+1, pw): every row segment
    first = (rows[: grid.shape[0] - ph + 1] == piece[0]).all(axis=-1)  # (H-ph+1, W-pw+1): the first row fits
    return any(np.array_equal(grid[r:r + ph, c:c + pw], piece) for r, c in np.argwhere(first))


def _repaint(i: Grid, o: Grid) -> list[float]:
    """Same-shape pairs: a consistent colour map explains the output; the share of changed
    cells; whether only background cells were painted, only cells turned to background, or
    only foreground cells recoloured (background: the input's commonest colour)."""
    bg = int(np.bincount(i.ravel(), minlength=N_COLOURS).argmax())
    changed = i != o
    pairs = np.unique(i.astype(np.int64) * N_COLOURS + o)
    consistent = len(np.unique(pairs // N_COLOURS)) == len(pairs)  # each input colour has one output colour
    any_change = bool(changed.any())
    return [
        float(consistent and any_change), float(changed.mean()),
        float(any_change and (i[changed] == bg).all()),
        float(any_change and (o[changed] == bg).all()),
        float(any_change and ((i[changed] != bg) & (o[changed] != bg)).all()),
    ]


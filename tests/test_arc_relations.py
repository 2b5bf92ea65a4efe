"""Exact input/output relations of a pair (tasks.arc_guide.relations), the guide's symbolic features."""
from __future__ import annotations

import numpy as np
from hypothesis import given, strategies as st

from tasks.arc_guide.relations import DIHEDRAL, N_RELATIONS, RELATIONS, relations

grids = st.integers(2, 12).flatmap(lambda h: st.integers(2, 12).flatmap(
    lambda w: st.lists(st.integers(0, 9), min_size=h * w, max_size=h * w).map(
        lambda cells: np.asarray(cells, dtype=np.uint8).reshape(h, w))))


def fact(values: np.ndarray, name: str) -> float:
    return float(values[RELATIONS.index(name)])


@given(grids, st.sampled_from(DIHEDRAL))
def test_a_turned_output_is_recognised_as_that_turn(grid, named):
    name, turn = named
    values = relations(grid, turn(grid))
    assert values.shape == (N_RELATIONS,) and values.dtype == np.float32
    assert ((values >= 0) & (values <= 1)).all()
    assert fact(values, f"output_is_{name}_of_input") == 1.0
    # another turn is flagged only when it gives the very same grid
    for other, t in DIHEDRAL:
        same = t(grid).shape == turn(grid).shape and np.array_equal(t(grid), turn(grid))
        assert fact(values, f"output_is_{other}_of_input") == float(same)


@given(grids, st.data())
def test_pieces_and_tilings_are_found_where_they_are(grid, data):
    h, w = grid.shape
    top, left = data.draw(st.integers(0, h - 1)), data.draw(st.integers(0, w - 1))
    bottom, right = data.draw(st.integers(top + 1, h)), data.draw(st.integers(left + 1, w))
    piece = grid[top:bottom, left:right]
    values = relations(grid, piece)
    if piece.shape != grid.shape:
        assert fact(values, "output_is_piece_of_input") == 1.0 and fact(values, "output_smaller") == 1.0
        assert fact(values, "output_is_turned_piece_of_input") in (0.0, 1.0)
    tiled = relations(grid, np.tile(grid, (2, 3)))
    assert fact(tiled, "input_is_piece_of_output") == 1.0 and fact(tiled, "output_is_whole_multiple") == 1.0
    # one cell of a colour the input lacks is no piece of it; one of a colour it has is
    missing = [c for c in range(10) if not (grid == c).any()]
    if missing:
        assert fact(relations(grid, np.full((1, 1), missing[0], np.uint8)), "output_is_piece_of_input") == 0.0
    assert fact(relations(grid, grid[:1, :1].copy()), "output_is_piece_of_input") == 1.0


def test_repaint_facts_tell_filling_erasing_and_recolouring_apart():
    grid = np.zeros((5, 5), dtype=np.uint8)
    grid[1:4, 1:4] = 2
    grid[2, 2] = 0  # background 0 (the commonest colour), a hole in a square of 2s
    filled, erased, recoloured = grid.copy(), grid.copy(), grid.copy()
    filled[2, 2] = 4
    erased[1, 1] = 0
    recoloured[grid == 2] = 3
    f, e, r = relations(grid, filled), relations(grid, erased), relations(grid, recoloured)
    assert fact(f, "only_background_painted") == 1 and fact(f, "only_painted_to_background") == 0
    assert fact(e, "only_painted_to_background") == 1 and fact(e, "only_background_painted") == 0
    assert fact(r, "only_foreground_recoloured") == 1 and fact(r, "colour_map_explains") == 1
    assert fact(f, "colour_map_explains") == 0  # one 0 became 4, the other 0s stayed 0
    assert np.isclose(fact(r, "changed_share"), 8 / 25) and np.isclose(fact(r, "new_colours"), 0.1)
    assert np.isclose(fact(r, "lost_colours"), 0.1)  # 3 is new, 2 is gone

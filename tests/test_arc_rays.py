"""Ray templates (tasks.arc_guide.rays): hand-built ARC-like grids and properties over random ones."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tasks.arc_guide import objects as ob
from tasks.arc_guide import rays
from tasks.arc_guide.dsl import NotApplicable
from tasks.arc_guide.templates import apply_step

SETTINGS = settings(max_examples=60, deadline=None)


def grid_of(rows: list[str]) -> np.ndarray:
    return np.array([[int(ch) for ch in row] for row in rows], dtype=np.uint8)


@st.composite
def seeded_grids(draw) -> tuple[np.ndarray, int]:
    """(grid, seed colour): background 0, 1..4 seed cells of colour 1..9, 0..4 obstacle cells
    of another colour."""
    h, w = draw(st.integers(2, 12)), draw(st.integers(2, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    colour, obstacle = (int(c) for c in rng.choice(np.arange(1, 10), size=2, replace=False))
    g = np.zeros((h, w), dtype=np.uint8)
    cells = rng.choice(h * w, size=min(h * w // 2, draw(st.integers(1, 8))), replace=False)
    n_seeds = max(1, min(4, len(cells) // 2))
    g.flat[cells[:n_seeds]] = colour
    g.flat[cells[n_seeds:]] = obstacle
    return g, colour


# --------------------------------------------------------------------------- hand-built cases


def test_lines_across_paint_rows_over_columns_in_program_order():
    g = grid_of(["00000", "03000", "00000", "00020", "00000"])
    out = apply_step("lines_across(3,row)", apply_step("lines_across(2,col)", g))
    assert out[1].tolist() == [3, 3, 3, 3, 3]  # the row crosses the column of 2 and wins
    assert out[:, 3].tolist() == [2, 3, 2, 2, 2]
    star = apply_step("lines_across(3,star)", grid_of(["000", "030", "000"]))
    assert (star == 3).all()
    with pytest.raises(NotApplicable):  # a full line already there: nothing changes
        apply_step("lines_across(3,row)", grid_of(["333", "000"]))


def test_rays_to_wall_aim_at_the_nearest_wall_or_away_from_it():
    g = grid_of(["0200", "0000", "5555", "0000", "0010", "0000"])
    toward = apply_step("rays_to_wall(2,toward)", g)
    assert toward[:, 1].tolist() == [2, 2, 5, 0, 0, 0]  # stops before the wall
    away = apply_step("rays_to_wall(1,away)", g)
    assert away[:, 2].tolist() == [0, 0, 5, 0, 1, 1]  # down to the edge, away from the wall above
    with pytest.raises(NotApplicable):
        apply_step("rays_to_wall(2,toward)", grid_of(["020", "000"]))  # no wall


def test_bounce_rays_zigzag_between_the_side_walls():
    g = np.zeros((7, 3), dtype=np.uint8)
    g[6, 0] = 1
    out = apply_step("bounce_rays(1,up_right)", g)
    assert [int(np.flatnonzero(row)[0]) for row in out[::-1]] == [0, 1, 2, 1, 0, 1, 2]
    assert (out == 1).sum() == 7


def test_sidestep_rays_go_round_an_obstacle():
    g = grid_of(["000", "000", "500", "000", "200"])
    out = apply_step("sidestep_rays(2,up,cw)", g)
    assert out.tolist() == [[0, 2, 0], [0, 2, 0], [5, 2, 0], [2, 2, 0], [2, 0, 0]]
    boxed = grid_of(["0000", "0550", "0250", "0000"])
    with pytest.raises(NotApplicable):  # blocked ahead and aside
        apply_step("sidestep_rays(2,up,cw)", boxed)


def test_corner_rays_leave_an_l_through_its_missing_corner():
    g = np.zeros((6, 6), dtype=np.uint8)
    g[1, 1] = g[1, 2] = g[2, 2] = 9  # an L: its box's bottom-left corner (2, 1) is empty
    out = apply_step("corner_rays(missing)", g)
    assert {tuple(int(x) for x in rc) for rc in np.argwhere(out != g)} == {(3, 0)}
    every = apply_step("corner_rays(all)", g)
    assert every[0, 0] == every[0, 3] == every[3, 3] == every[5, 5] == 9 and every[3, 0] == 9


# --------------------------------------------------------------------------- properties


@SETTINGS
@given(seeded_grids(), st.sampled_from(tuple(rays.AXES)))
def test_lines_across_cover_every_line_through_a_seed_and_nothing_else(case, axis):
    g, colour = case
    try:
        out = rays.lines_across(g, colour, axis)
    except NotApplicable:
        out = g
    expected = g.copy()
    for r, c in np.argwhere(g == colour):
        for direction in rays.AXES[axis]:
            dr, dc = ob.DIRECTIONS[direction]
            i, j = r, c
            while 0 <= i < g.shape[0] and 0 <= j < g.shape[1]:
                expected[i, j] = colour
                i, j = i + dr, j + dc
    assert np.array_equal(out, expected)


@SETTINGS
@given(seeded_grids(), st.data())
def test_stopping_rays_only_paint_background_in_the_seed_colour(case, data):
    g, colour = case
    step = data.draw(st.sampled_from([
        f"rays_to_wall({colour},toward)", f"rays_to_wall({colour},away)", f"bounce_rays({colour},down_left)",
        f"bounce_rays({colour},up_right)", f"sidestep_rays({colour},left,ccw)", f"sidestep_rays({colour},down,cw)",
        f"lines_from({colour},right)"]))
    try:
        out = apply_step(step, g)
    except NotApplicable:
        return
    changed = out != g
    assert changed.any() or step.startswith("lines_from")  # the ray templates refuse to change nothing
    assert (g[changed] == 0).all() and (out[changed] == colour).all()


@SETTINGS
@given(st.integers(2, 10), st.integers(2, 10), st.data(), st.sampled_from(ob.STRAIGHT), st.sampled_from(("cw", "ccw")))
def test_a_sidestep_ray_needs_an_obstacle_to_step_round(h, w, data, direction, side):
    g = np.zeros((h, w), dtype=np.uint8)
    r, c = data.draw(st.integers(0, h - 1)), data.draw(st.integers(0, w - 1))
    g[r, c] = 4
    with pytest.raises(NotApplicable):  # nothing in its way: a plain ray, lines_from's
        apply_step(f"sidestep_rays(4,{direction},{side})", g)
    dr, dc = ob.DIRECTIONS[direction]
    sr, sc = ob.DIRECTIONS[rays.TURNS[side][direction]]
    if not (0 <= r + dr < h and 0 <= c + dc < w and 0 <= r + sr < h and 0 <= c + sc < w):
        return
    g[r + dr, c + dc] = 5  # an obstacle right ahead, room aside: the ray steps round it
    out = apply_step(f"sidestep_rays(4,{direction},{side})", g)
    assert out[r + sr, c + sc] == 4 and out[r + dr, c + dc] == 5
    assert np.array_equal(out[g != 0], g[g != 0])


@SETTINGS
@given(st.integers(2, 14), st.integers(2, 14), st.integers(0, 13), st.sampled_from(rays.AXES["diagonals"]))
def test_a_bounce_ray_crosses_every_row_once_moving_one_column_a_row(h, w, col, diagonal):
    g = np.zeros((h, w), dtype=np.uint8)
    start_row, col = (h - 1 if diagonal.startswith("up") else 0), col % w
    g[start_row, col] = 6  # a seed on the edge it leaves from
    to_side_wall = w - 1 - col if diagonal.endswith("right") else col
    if h - 1 <= to_side_wall:  # it leaves through the far edge before it can bounce
        with pytest.raises(NotApplicable):
            rays.bounce_rays(g, 6, diagonal)
        return
    painted = np.argwhere(rays.bounce_rays(g, 6, diagonal) != g)  # (n, 2) in row order
    assert sorted(painted[:, 0].tolist()) == sorted(set(range(h)) - {start_row})
    path = painted[::-1] if diagonal.startswith("up") else painted  # in the order drawn
    columns = [col] + path[:, 1].tolist()
    assert all(abs(a - b) == 1 for a, b in zip(columns, columns[1:]))

"""DSL v2's object layer (tasks.arc_guide.objects): properties over random ARC-like grids."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from tasks.arc_guide import objects as ob

side = st.integers(1, 12)


@st.composite
def sparse_grids(draw, max_side: int = 12) -> np.ndarray:
    """Objects on a background: a background colour and 0..60% cells of 1..4 other colours."""
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    bg = draw(st.integers(0, 9))
    colours = rng.choice([c for c in range(10) if c != bg], size=draw(st.integers(1, 4)), replace=False)
    grid = np.full((h, w), bg, dtype=np.uint8)
    on = rng.random((h, w)) < draw(st.floats(0, 0.6))
    grid[on] = rng.choice(colours, size=int(on.sum()))
    if (grid == bg).sum() * 2 <= grid.size:  # keep bg the most common colour
        grid[rng.random((h, w)) < 0.7] = bg
    return grid


SETTINGS = settings(max_examples=60, deadline=None)


@SETTINGS
@given(sparse_grids(), st.sampled_from([4, 8]), st.booleans())
def test_objects_partition_the_foreground_and_repaint_the_grid(grid, connectivity, multicolour):
    bg = ob.background(grid)
    objs = ob.objects(grid, connectivity, multicolour, bg)
    canvas = np.full(grid.shape, bg, dtype=np.uint8)
    covered = np.zeros(grid.shape, dtype=int)
    for o in objs:
        canvas = ob.paint(canvas, o)
        r, c = o.cells()
        covered[r, c] += 1
        if not multicolour:
            assert len(o.colours) == 1
    assert np.array_equal(canvas, grid)
    assert np.array_equal(covered, (grid != bg).astype(int))  # every foreground cell exactly once
    assert len(ob.objects(grid, 8, multicolour, bg)) <= len(ob.objects(grid, 4, multicolour, bg))


@SETTINGS
@given(sparse_grids(), st.sampled_from(ob.STRAIGHT))
def test_move_until_contact_stops_at_contact_and_keeps_the_cells(grid, direction):
    bg = ob.background(grid)
    objs = ob.objects(grid, 4, True, bg)
    if not objs:
        return
    obj = objs[0]
    moved = ob.move_until_contact(grid, obj, direction, bg)
    assert np.array_equal(np.bincount(moved.ravel(), minlength=10), np.bincount(grid.ravel(), minlength=10))
    rest = ob.erase(grid, obj, bg)
    # find where it went: the moved copy fits, one more step does not
    dr, dc = ob.DIRECTIONS[direction]
    k = 0
    while ob.fits(rest, ob.translate(obj, dr * (k + 1), dc * (k + 1)), bg):
        k += 1
    assert np.array_equal(moved, ob.paint(rest, ob.translate(obj, dr * k, dc * k)))


@SETTINGS
@given(sparse_grids(), st.sampled_from(ob.STRAIGHT))
def test_gravity_keeps_colours_and_is_idempotent(grid, direction):
    once = ob.gravitate(grid, direction)
    assert np.array_equal(np.bincount(once.ravel(), minlength=10), np.bincount(grid.ravel(), minlength=10))
    assert np.array_equal(ob.gravitate(once, direction), once)


@SETTINGS
@given(sparse_grids(), st.integers(0, 9))
def test_fill_enclosed_only_fills_background_and_is_idempotent(grid, colour):
    bg = ob.background(grid)
    filled = ob.fill_enclosed(grid, colour, bg)
    changed = filled != grid
    assert (grid[changed] == bg).all() and (filled[changed] == colour).all()
    # a filled cell is never on the edge
    assert not changed[[0, -1], :].any() and not changed[:, [0, -1]].any()
    if colour != bg:
        assert np.array_equal(ob.fill_enclosed(filled, colour, bg), filled)


def test_fill_enclosed_fills_a_ring_inside():
    g = np.zeros((5, 5), dtype=np.uint8)
    g[1:4, 1:4] = 3
    g[2, 2] = 0
    assert ob.fill_enclosed(g, 7)[2, 2] == 7 and ob.fill_enclosed(g, 7).sum() == g.sum() + 7


@SETTINGS
@given(sparse_grids(max_side=8), st.sampled_from(["flip_lr", "flip_ud", "rot180"]), st.integers(0, 2**32 - 1))
def test_symmetry_completion_restores_a_symmetric_grid(half, symmetry, seed):
    f = ob.SYMMETRIES[symmetry]
    grid = np.concatenate([half, half[:, ::-1]], axis=1) if symmetry == "flip_lr" else \
        np.concatenate([half, half[::-1, :]], axis=0) if symmetry == "flip_ud" else \
        np.concatenate([half, half[::-1, ::-1]], axis=0)
    assert np.array_equal(f(grid), grid)
    hole = next(c for c in range(10) if c not in grid)
    rng = np.random.default_rng(seed)
    damaged = grid.copy()
    patch = rng.random(grid.shape) < 0.2
    patch &= ~f(patch)  # never both a cell and its image
    damaged[patch] = hole
    assert np.array_equal(ob.complete_symmetry(damaged, hole), grid)


@SETTINGS
@given(sparse_grids(), st.sampled_from(sorted(ob.SELECTORS)))
def test_a_selection_is_one_of_the_objects_and_has_its_property(grid, by):
    objs = ob.objects(grid, 4, False)
    chosen = ob.select(objs, by, grid.shape)
    if chosen is None:
        return
    assert any(chosen is o for o in objs)
    if by == "largest":
        assert all(o.size < chosen.size for o in objs if o is not chosen)
    if by == "smallest":
        assert all(o.size > chosen.size for o in objs if o is not chosen)
    if by == "touching_border":
        assert ob.touches_border(chosen, grid.shape)
        assert sum(ob.touches_border(o, grid.shape) for o in objs) == 1
    if by == "unique_shape":
        assert sum(o.shape_key == chosen.shape_key for o in objs) == 1


@SETTINGS
@given(sparse_grids(), st.sampled_from(list(ob.DIRECTIONS)), st.integers(0, 9))
def test_a_line_runs_to_the_edge(grid, direction, colour):
    h, w = grid.shape
    row, col = h // 2, w // 2
    out = ob.draw_line(grid, row, col, direction, colour)
    dr, dc = ob.DIRECTIONS[direction]
    r, c, n = row + dr, col + dc, 0
    while 0 <= r < h and 0 <= c < w:
        assert out[r, c] == colour
        r, c, n = r + dr, c + dc, n + 1
    assert (out != grid).sum() <= n and out[row, col] == grid[row, col]


@SETTINGS
@given(sparse_grids())
def test_object_transforms_keep_their_cells(grid):
    objs = ob.objects(grid, 8, True)
    for o in objs[:3]:
        assert ob.mirror(ob.mirror(o, 0), 0).mask.tolist() == o.mask.tolist()
        assert ob.rotate(o, 4).patch.tolist() == o.patch.tolist()
        assert ob.scale(o, 2).size == 4 * o.size and ob.recolour(o, 5).colours == {5}
        bg = ob.background(grid)
        assert np.array_equal(ob.paint(ob.erase(grid, o, bg), o), grid)
        assert ob.crop(o, bg).shape == o.mask.shape


def test_separator_cells_split_a_grid_on_its_lines():
    g = np.zeros((7, 7), dtype=np.uint8)
    g[3, :] = 5
    g[:, 3] = 5
    g[0, 0], g[6, 6] = 1, 2
    cells = ob.separator_cells(g)
    assert [(c.top, c.left, c.patch.shape) for c in cells] == [(0, 0, (3, 3)), (0, 4, (3, 3)), (4, 0, (3, 3)),
                                                               (4, 4, (3, 3))]
    assert cells[0].patch[0, 0] == 1 and cells[3].patch[2, 2] == 2
    assert ob.separator_cells(np.zeros((3, 3), dtype=np.uint8)) == []


def test_halves_box_outline_and_counting():
    g = np.arange(30, dtype=np.uint8).reshape(5, 6) % 10
    top, bottom = ob.halves(g, 0)
    assert top.shape == bottom.shape == (2, 6) and np.array_equal(bottom, g[3:])
    left, right = ob.halves(g, 1)
    assert np.array_equal(ob.concat(left, right, 1), g)
    square = np.zeros((6, 6), dtype=np.uint8)
    square[2:4, 2:4] = 1
    (o,) = ob.objects(square)
    boxed = ob.box(square, o, 4)
    assert (boxed == 4).sum() == 12 and boxed[1, 1] == 4 and boxed[2, 2] == 1
    big = np.zeros((5, 5), dtype=np.uint8)
    big[1:4, 1:4] = 2
    (b,) = ob.objects(big)
    assert (ob.outline(big, b, 6) == 6).sum() == 8 and ob.outline(big, b, 6)[2, 2] == 2
    assert ob.count_row(len(ob.objects(g, 4, True)) or 1, 3).shape[0] == 1
    assert ob.tile(top, 2, 1).shape == (4, 6)


@settings(max_examples=40, deadline=None)
@given(sparse_grids(), st.data())
def test_every_template_step_gives_a_valid_grid_or_not_applicable(grid, data):
    from tasks.arc_guide.dsl import NotApplicable, is_valid_grid
    from tasks.arc_guide.templates import TEMPLATES, apply_step, task_steps

    steps = task_steps([(grid, grid)])
    assert set(steps) == set(TEMPLATES)
    assert all(steps[name] for name in TEMPLATES if name != "recolour_by_size")  # that one needs two colours
    for name in TEMPLATES:
        if not steps[name]:
            continue
        step = data.draw(st.sampled_from(steps[name]), label=name)
        before = grid.copy()
        try:
            out = apply_step(step, grid)
        except NotApplicable:
            continue
        assert np.array_equal(grid, before)  # never mutates its input
        assert is_valid_grid(out) and out.dtype == np.uint8, step
        assert np.array_equal(apply_step(step, grid), out)  # deterministic


def test_colour_and_part_templates_on_hand_built_grids():
    from tasks.arc_guide.templates import apply_step

    g = np.zeros((7, 7), dtype=np.uint8)
    g[1, 1:6] = g[5, 1:6] = g[1:6, 1] = g[1:6, 5] = 3  # a frame of colour 3
    g[3, 3], g[0, 6] = 7, 2
    assert apply_step("crop_colour(3,outer)", g).shape == (5, 5)
    assert apply_step("crop_colour(3,inner)", g).tolist() == [[0, 0, 0], [0, 7, 0], [0, 0, 0]]
    assert (apply_step("remove_colour(2)", g) == 2).sum() == 0 and apply_step("remove_colour(2)", g)[3, 3] == 7
    assert set(np.unique(apply_step("keep_colour(7)", g)).tolist()) == {0, 7}
    # 2 x 3 parts split by lines of 5: one cell per part
    parts = np.zeros((5, 11), dtype=np.uint8)
    parts[2, :] = 5
    parts[:, [3, 7]] = 5
    parts[0, 0], parts[1, 1] = 4, 4  # part (0, 0): two cells of 4
    parts[0, 1] = 6
    parts[4, 9] = 6  # part (1, 2)
    assert apply_step("parts_to_cells(majority)", parts).tolist() == [[4, 0, 0], [0, 0, 6]]
    assert apply_step("parts_to_cells(any)", parts).tolist() == [[4, 0, 0], [0, 0, 4]]


@SETTINGS
@given(sparse_grids(max_side=8), st.integers(1, 3), st.integers(1, 3), st.sampled_from(["rows", "cols", "both"]))
def test_collapse_repeats_undoes_repeating_lines(grid, row_repeats, col_repeats, axis):
    from tasks.arc_guide.dsl import NotApplicable
    from tasks.arc_guide.templates import apply_step

    def collapse(g: np.ndarray, lines: str) -> np.ndarray:
        try:
            return apply_step(f"collapse_repeats({lines})", g)
        except NotApplicable:  # nothing repeated: the grid is its own collapse
            return g

    core = collapse(grid, "both")
    assert np.array_equal(collapse(core, "both"), core)  # no adjacent lines repeat any more
    stretched = np.repeat(np.repeat(core, row_repeats, axis=0), col_repeats, axis=1)
    expected = {"rows": np.repeat(core, col_repeats, axis=1), "cols": np.repeat(core, row_repeats, axis=0),
                "both": core}[axis]
    assert np.array_equal(collapse(stretched, axis), expected)

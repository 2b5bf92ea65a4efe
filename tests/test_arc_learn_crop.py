"""The select_crop learner (tasks.arc_guide.learn_crop): planted crop hypotheses are
recovered and predict fresh grids, every candidate reproduces its pairs, inputs stay
untouched, contradictory pairs and ambiguous selections give nothing, and ``sample`` draws
hypotheses that apply, change their inputs and are found again by ``fit``."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.arc_guide import learn_crop as lc
from tasks.arc_guide import scenes
from tasks.arc_guide.dsl import MAX_SIDE, NotApplicable
from tasks.arc_guide.fitting import learner, reproduces

SEEDS = st.integers(0, 2**32 - 1)
EXAMPLES = settings(max_examples=20)


# --------------------------------------------------------------------------- scenes


def rectangles_scene(rng: np.random.Generator, n: int, bg: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """A grid with ``n`` solid rectangles of distinct areas and colours, no two touching
    (not even diagonally); returns the grid and the rectangles' patches (largest first)."""
    while True:
        h, w = (int(v) for v in rng.integers(10, 17, size=2))
        grid = np.full((h, w), bg, dtype=np.uint8)
        taken = np.zeros((h, w), dtype=bool)  # cells of a placed rectangle or next to one
        sides = _distinct_area_sides(rng, n)
        colours = rng.permutation([c for c in range(1, 10) if c != bg])[:n]
        patches = []
        for (rh, rw), colour in zip(sides, colours):
            spots = [(t, l) for t in range(h - rh + 1) for l in range(w - rw + 1)
                     if not taken[t:t + rh, l:l + rw].any()]
            if not spots:
                break
            t, l = spots[int(rng.integers(len(spots)))]
            grid[t:t + rh, l:l + rw] = colour
            taken[max(t - 1, 0):t + rh + 1, max(l - 1, 0):l + rw + 1] = True
            patches.append(np.full((rh, rw), colour, dtype=np.uint8))
        if len(patches) == n:
            return grid, sorted(patches, key=lambda p: -p.size)


def _distinct_area_sides(rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
    sides: list[tuple[int, int]] = []
    while len(sides) < n:
        rh, rw = (int(v) for v in rng.integers(1, 5, size=2))
        if rh * rw not in {a * b for a, b in sides}:
            sides.append((rh, rw))
    return sides


def separated_scene(rng: np.random.Generator, special: int, layout: tuple[int, int],
                    side: int) -> np.ndarray:
    """A layout of side x side cells split by lines of colour 5; every cell has the same
    number of coloured cells (never on its diagonal, so no colour makes a full line of the
    grid but 5), all of colour 2 in cell ``special``, of 1 or 3 elsewhere."""
    rows, cols = layout
    grid = np.full((rows * (side + 1) - 1, cols * (side + 1) - 1), 5, dtype=np.uint8)
    free = np.flatnonzero(~np.eye(side, dtype=bool).ravel())  # off-diagonal cells of a cell
    filled = int(rng.integers(2, len(free) + 1))
    for k in range(rows * cols):
        cell = np.zeros(side * side, dtype=np.uint8)
        cell[rng.permutation(free)[:filled]] = 2 if k == special else rng.choice([1, 3], size=filled)
        top, left = (k // cols) * (side + 1), (k % cols) * (side + 1)
        grid[top:top + side, left:left + side] = cell.reshape(side, side)
    return grid


def attempts(candidates: list, grid: np.ndarray, n: int = 2) -> list[np.ndarray]:
    """The first ``n`` distinct predictions for ``grid`` (the ARC two-attempt rule)."""
    out: list[np.ndarray] = []
    for candidate in candidates:
        try:
            prediction = candidate.apply(grid)
        except NotApplicable:
            continue
        if not any(p.shape == prediction.shape and np.array_equal(p, prediction) for p in out):
            out.append(prediction)
        if len(out) == n:
            break
    return out


def solved(candidates: list, grid: np.ndarray, expected: np.ndarray) -> bool:
    return any(p.shape == expected.shape and np.array_equal(p, expected) for p in attempts(candidates, grid))


# --------------------------------------------------------------------------- planted hypotheses


def test_registered_as_select_crop():
    assert learner("select_crop") is lc.fit


@EXAMPLES
@given(SEEDS)
def test_planted_largest_object_is_recovered_and_predicts_a_fresh_grid(seed):
    rng = np.random.default_rng(seed)
    scenes_ = [rectangles_scene(rng, int(rng.integers(2, 5))) for _ in range(4)]
    inputs, targets = [g for g, _ in scenes_[:3]], [p[0] for _, p in scenes_[:3]]
    candidates = list(lc.fit(inputs, targets))
    assert candidates, "a largest-object task must be explained"
    assert all(reproduces(c, inputs, targets) for c in candidates)
    fresh, patches = scenes_[3]
    assert solved(candidates, fresh, patches[0])


@EXAMPLES
@given(SEEDS)
def test_planted_separated_cell_is_recovered_and_predicts_a_fresh_grid(seed):
    rng = np.random.default_rng(seed)
    layout, side = (int(rng.integers(1, 3)), int(rng.integers(3, 5))), int(rng.integers(2, 5))
    n = layout[0] * layout[1]
    grids, targets = [], []
    for pair in range(4):  # the special cell moves: its place explains nothing
        special = (seed + pair) % n
        grid = separated_scene(rng, special, layout, side)
        top, left = (special // layout[1]) * (side + 1), (special % layout[1]) * (side + 1)
        grids.append(grid)
        targets.append(grid[top:top + side, left:left + side].copy())
    candidates = list(lc.fit(grids[:3], targets[:3]))
    assert candidates and all(reproduces(c, grids[:3], targets[:3]) for c in candidates)
    assert solved(candidates, grids[3], targets[3])


def test_a_frame_inside_turned_is_recovered():
    rng = np.random.default_rng(0)
    inputs, targets = [], []
    for _ in range(3):
        grid = (rng.random((12, 12)) < 0.3).astype(np.uint8) * 3  # noise of colour 3
        t, l = (int(v) for v in rng.integers(0, 6, size=2))
        grid[t:t + 6, l:l + 6] = 4
        inside = rng.integers(0, 4, size=(4, 4)).astype(np.uint8)
        grid[t + 1:t + 5, l + 1:l + 5] = inside
        inputs.append(grid)
        targets.append(np.rot90(inside).copy())
    first = next(lc.fit(inputs, targets))
    assert first.name == "select_crop(frame_insides,only,rot90)"


def test_the_object_with_a_hole_answers_with_its_colour():
    inputs, targets = [], []
    for colours in ((1, 2, 3), (4, 5, 6), (7, 8, 9)):
        grid = np.zeros((9, 9), dtype=np.uint8)
        grid[0:3, 0:3] = colours[0]
        grid[1, 1] = 0  # the hole
        grid[5:8, 1:4] = colours[1]
        grid[4:6, 6:9] = colours[2]
        inputs.append(grid)
        targets.append(np.array([[colours[0]]], dtype=np.uint8))
    candidates = list(lc.fit(inputs, targets))
    assert candidates and all(reproduces(c, inputs, targets) for c in candidates)
    fresh = np.zeros((9, 9), dtype=np.uint8)
    fresh[0:2, 0:2] = 6
    fresh[4:8, 4:8] = 2
    fresh[5:7, 5:7] = 0
    assert solved(candidates, fresh, np.array([[2]], dtype=np.uint8))


def test_the_commonest_pattern_and_a_fixed_recolouring():
    shape = np.array([[1, 1], [0, 1]], dtype=np.uint8)
    inputs, targets = [], []
    for k in range(3):
        grid = np.zeros((8, 8), dtype=np.uint8)
        grid[0:2, 0:2] = shape * (k + 1)
        grid[0:2, 4:6] = shape * (k + 1)
        grid[5:7, 2:4] = np.array([[2, 0], [2, 2]], dtype=np.uint8) * ((k + 1) % 3 + 1)
        inputs.append(grid)
        targets.append(np.where(shape == 1, k + 1, 9).astype(np.uint8))  # background 0 -> 9
    names = [c.name for c in lc.fit(inputs, targets)]
    assert "select_crop(objects(8,multi),common(pattern),recolour(0>9))" in names


# --------------------------------------------------------------------------- contract


@EXAMPLES
@given(SEEDS)
def test_every_candidate_reproduces_and_inputs_are_never_mutated(seed):
    rng = np.random.default_rng(seed)
    family = ("objects", "separated", "halves")[seed % 3]
    style = scenes.style(rng, family)
    inputs = [scenes.scene(rng, family, style) for _ in range(3)]
    targets = []
    for grid in inputs:  # an arbitrary window of each input: explained or not
        h, w = (int(rng.integers(1, s + 1)) for s in grid.shape)
        t, l = int(rng.integers(grid.shape[0] - h + 1)), int(rng.integers(grid.shape[1] - w + 1))
        targets.append(grid[t:t + h, l:l + w].copy())
    before = [g.copy() for g in inputs + targets]
    for candidate in lc.fit(inputs, targets):
        assert reproduces(candidate, inputs, targets), candidate.name
    assert all(np.array_equal(a, b) for a, b in zip(before, inputs + targets))


@EXAMPLES
@given(SEEDS)
def test_contradicting_pairs_yield_nothing(seed):
    rng = np.random.default_rng(seed)
    grid, patches = rectangles_scene(rng, 3)
    # one input, two different answers: no function of the grid explains both
    assert list(lc.fit([grid, grid.copy()], [patches[0], patches[1]])) == []


def test_outputs_that_are_no_part_of_the_input_yield_nothing():
    rng = np.random.default_rng(1)
    inputs = [rectangles_scene(rng, 3)[0] for _ in range(3)]
    targets = [np.kron(g, np.ones((2, 2), dtype=np.uint8))[:20, :20] for g in inputs]  # upscaled
    assert list(lc.fit(inputs, targets)) == []


def test_a_tie_is_no_selection():
    rng = np.random.default_rng(2)
    pairs = [rectangles_scene(rng, 3) for _ in range(3)]
    largest = next(c for c in lc.fit([g for g, _ in pairs], [p[0] for _, p in pairs])
                   if c.name == "select_crop(objects(8,multi),max(size))")
    tied = np.zeros((8, 8), dtype=np.uint8)
    tied[0:2, 0:2], tied[5:7, 5:7] = 1, 2  # two largest objects of equal size
    with pytest.raises(NotApplicable):
        largest.apply(tied)


def test_a_layout_position_needs_the_same_layout():
    rng = np.random.default_rng(3)
    inputs = [rng.integers(0, 4, size=(3, 9)).astype(np.uint8) for _ in range(3)]
    targets = [g[:, 3:6].copy() for g in inputs]  # the middle one of three squares
    middle = {c.name: c for c in lc.fit(inputs, targets)}["select_crop(squares,at(1/3))"]
    fresh = rng.integers(0, 4, size=(3, 9)).astype(np.uint8)
    assert np.array_equal(middle.apply(fresh), fresh[:, 3:6])
    with pytest.raises(NotApplicable):  # four squares: not the layout it learnt
        middle.apply(rng.integers(0, 4, size=(3, 12)).astype(np.uint8))


def test_unchanged_pairs_yield_nothing():
    grid = np.eye(4, dtype=np.uint8)
    assert list(lc.fit([grid], [grid.copy()])) == []


# --------------------------------------------------------------------------- generators


def test_generators_cut_what_they_name():
    grid = np.zeros((7, 9), dtype=np.uint8)
    grid[1:6, 1:6] = 2
    grid[2:5, 2:5] = np.array([[1, 0, 1], [0, 3, 0], [1, 0, 1]])
    grid[6, 8] = 4
    frames = lc.frames(False)(grid)
    assert len(frames) == 1 and np.array_equal(frames.images[0], grid[1:6, 1:6])
    assert np.array_equal(lc.frames(True)(grid).images[0], grid[2:5, 2:5])
    assert np.array_equal(lc.content(grid).images[0], grid[1:7, 1:9])
    boxes = lc.colour_boxes(False)(grid)
    assert [im.shape for im in boxes.images] == [(3, 3), (5, 5), (1, 1), (1, 1)]  # colours 1, 2, 3, 4
    tiled = np.tile(np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8), (2, 3))
    assert np.array_equal(lc.period_tile(tiled).images[0], tiled[:2, :3])
    assert lc.period_tile(grid) is None
    assert [im.shape for im in lc.squares(np.zeros((3, 9), dtype=np.uint8)).images] == [(3, 3)] * 3
    assert np.array_equal(lc.window("bottom_right", 2, 3)(grid).images[0], grid[5:, 6:])


def test_separated_cells_use_their_own_background():
    grid = np.full((5, 5), 8, dtype=np.uint8)  # the separator colour is the commonest
    grid[:2, :2], grid[3:, 3:] = [[0, 1], [0, 0]], [[2, 0], [0, 0]]
    grid[:2, 3:], grid[3:, :2] = 0, 0
    regions = lc.separated(grid)
    assert len(regions) == 4
    assert regions.feature("size").tolist() == [1, 0, 0, 1]  # non-background cells, background 0


def test_colour_changes_swap_flatten_and_fill():
    grid = np.zeros((6, 6), dtype=np.uint8)
    grid[0:3, 0:3], grid[1, 1] = 4, 7
    grid[4:6, 4:6] = 2
    regions = lc.objects(8, True, True)(grid)
    big = int(np.argmax(regions.feature("size")))
    swapped = lc.Transform(colours="swap")(regions, big)
    assert swapped[1, 1] == 4 and swapped[0, 0] == 7
    assert (lc.Transform(colours="flatten")(regions, big) == 4).all()
    assert np.array_equal(lc.Transform(colours="fill", fill_shape=(2, 3))(regions, big), np.full((2, 3), 4))
    with pytest.raises(NotApplicable):  # one colour: nothing to swap with
        lc.Transform(colours="swap")(regions, 1 - big)


# --------------------------------------------------------------------------- sample


def _scene_inputs(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    family = ("objects", "separated", "halves", "objects")[seed % 4]
    style = scenes.style(rng, family)
    return [scenes.scene(rng, family, style) for _ in range(3)]


@EXAMPLES
@given(SEEDS)
def test_sampled_hypotheses_make_valid_changed_grids_that_fit_recovers(seed):
    inputs = _scene_inputs(seed)
    fitted = lc.sample(np.random.default_rng(seed), inputs)
    if fitted is None:
        return
    outputs = [fitted.apply(g) for g in inputs]
    for grid, out in zip(inputs, outputs):
        assert out.dtype == np.uint8 and out.ndim == 2
        assert 1 <= min(out.shape) and max(out.shape) <= MAX_SIDE and out.max() < 10
        assert out.shape != grid.shape or not np.array_equal(out, grid)
    assert fitted.name in [h.name for h in lc.explain(inputs, outputs)]
    first = next(lc.fit(inputs, outputs))
    assert reproduces(first, inputs, outputs)


def test_sample_mostly_finds_a_hypothesis_and_is_deterministic():
    drawn = [lc.sample(np.random.default_rng(seed), _scene_inputs(seed)) for seed in range(20)]
    assert sum(f is not None for f in drawn) >= 16
    again = lc.sample(np.random.default_rng(3), _scene_inputs(3))
    assert again is not None and drawn[3] is not None and again.name == drawn[3].name


def test_sample_returns_none_when_nothing_can_be_cropped():
    cells = [np.full((1, 1), c, dtype=np.uint8) for c in (1, 2, 3)]
    assert lc.sample(np.random.default_rng(0), cells) is None

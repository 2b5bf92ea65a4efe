"""The compose_tiles learner (tasks.arc_guide.learn_tiles): planted layouts, upscales, fractals,
shrinks and overlays are recovered from their pairs and predict fresh grids; every candidate
reproduces its pairs, inputs are never mutated, contradicting pairs yield nothing, unseen
situations raise NotApplicable, and ``sample`` draws hypotheses that ``fit`` recovers."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tasks.arc_guide import learn_tiles as lt
from tasks.arc_guide.dsl import MAX_SIDE, NotApplicable, is_valid_grid
from tasks.arc_guide.fitting import Fitted, learner, reproduces

SETTINGS = settings(max_examples=25, deadline=None)
seeds = st.integers(0, 2**32 - 1)


def noisy(rng: np.random.Generator, h: int, w: int, colours=(1, 2, 3), density: float = 0.5) -> np.ndarray:
    """A (h, w) grid of background 0 with ``density`` of its cells in random ``colours``."""
    grid = np.zeros((h, w), dtype=np.uint8)
    on = rng.random((h, w)) < density
    grid[on] = rng.choice(colours, size=int(on.sum()))
    return grid


def planted(hypothesis: Fitted, grids: list[np.ndarray]) -> tuple[list, list, np.ndarray, np.ndarray]:
    """Train pairs from all grids but the last; the last grid and its expected output held out."""
    outputs = [hypothesis.apply(g) for g in grids]
    return grids[:-1], outputs[:-1], grids[-1], outputs[-1]


def first_candidate(inputs: list[np.ndarray], targets: list[np.ndarray]) -> Fitted:
    candidate = next(lt.fit(inputs, targets), None)
    assert candidate is not None, "the planted hypothesis was not recovered"
    assert reproduces(candidate, inputs, targets)
    return candidate


def test_registered_as_compose_tiles():
    assert learner("compose_tiles") is lt.fit


# --------------------------------------------------------------------------- planted hypotheses


@SETTINGS
@given(seeds, st.sampled_from([(1, 2), (2, 1), (2, 2), (3, 3), (2, 3)]))
def test_planted_layout_is_recovered_and_predicts_a_fresh_grid(seed, counts):
    rng = np.random.default_rng(seed)
    a, b = counts
    side = int(rng.integers(3, MAX_SIDE // max(a, b) + 1))
    names = [list(lt.TRANSFORMS)[k] for k in rng.integers(8, size=a * b)]
    hypothesis = lt._layout(a, b, [("transform", n) for n in names])
    grids = [noisy(rng, s, s) for s in rng.integers(3, side + 1, size=4)]
    inputs, targets, fresh, expected = planted(hypothesis, grids)
    assert np.array_equal(first_candidate(inputs, targets).apply(fresh), expected)


@SETTINGS
@given(seeds, st.sampled_from([(2, 2), (3, 3), (1, 2), (4, 3)]))
def test_planted_upscale_is_recovered_and_predicts_a_fresh_grid(seed, factors):
    rng = np.random.default_rng(seed)
    grids = [noisy(rng, *rng.integers(2, 8, size=2)) for _ in range(4)]
    inputs, targets, fresh, expected = planted(lt._upscale("planted", lambda g: factors), grids)
    candidate = first_candidate(inputs, targets)
    assert candidate.name.startswith("upscale")
    assert np.array_equal(candidate.apply(fresh), expected)


@SETTINGS
@given(seeds, st.sampled_from(sorted(lt.FRACTAL_TABLES)))
def test_planted_fractal_is_recovered_and_predicts_a_fresh_grid(seed, table_name):
    rng = np.random.default_rng(seed)
    grids = []
    for h, w in rng.integers(2, 6, size=(5, 2)):
        grid = noisy(rng, h, w, colours=(int(rng.integers(1, 10)),))
        grid[0, 0], grid[-1, -1] = 0, 4  # blank and coloured cells in every grid
        grids.append(grid)
    hypothesis = lt._fractal("0", lambda g: 0, lt.FRACTAL_TABLES[table_name])
    inputs, targets, fresh, expected = planted(hypothesis, grids)
    assert np.array_equal(first_candidate(inputs, targets).apply(fresh), expected)


def test_fractal_of_a_three_by_three_grid():
    # the classic: a copy of the input wherever the input is coloured, blank elsewhere
    grids = [np.array([[0, 7, 7], [7, 7, 7], [0, 7, 7]]), np.array([[4, 0, 4], [0, 0, 0], [0, 4, 0]]),
             np.array([[0, 0, 0], [0, 0, 2], [2, 0, 2]]), np.array([[6, 6, 0], [6, 0, 0], [0, 6, 6]])]
    fractal = [np.kron(g != 0, g).astype(np.uint8) for g in grids]
    candidate = first_candidate(grids[:3], fractal[:3])
    assert candidate.name.startswith("fractal")
    assert np.array_equal(candidate.apply(grids[3]), fractal[3])


def separated(parts: list[np.ndarray], axis: int, colour: int = 5) -> np.ndarray:
    """The parts joined along ``axis`` with one line of ``colour`` between neighbours."""
    line_shape = (1, parts[0].shape[1]) if axis == 0 else (parts[0].shape[0], 1)
    pieces = [parts[0]]
    for part in parts[1:]:
        pieces += [np.full(line_shape, colour, dtype=np.uint8), part]
    return np.concatenate(pieces, axis=axis)


def separator_overlay(parts: int, combine) -> Fitted:
    """The ``parts`` parts between lines of colour 5 (as they lie) combined by ``combine``."""
    return lt._overlay("separator 5", lt._folding(lt.separator_cut(5), False), parts, "planted", combine)


@SETTINGS
@given(seeds, st.sampled_from(sorted(lt.TWO_PART_OPS)), st.integers(0, 1), st.integers(6, 9))
def test_planted_two_part_overlay_is_recovered_and_predicts_a_fresh_grid(seed, op, axis, colour):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(3, 7, size=2)
    grids = []
    for _ in range(4):
        first, second = noisy(rng, h, w, colours=(1,)), noisy(rng, h, w, colours=(2,))
        first[0, :2], second[0, :2] = (0, 1), (0, 2)  # show every pair of bits at least once...
        first[1, :2], second[1, :2] = (0, 1), (2, 0)  # ...in every grid (no unseen table key)
        grids.append(separated([first, second], axis))
    table = {key: (colour if on else 0) for key, on in enumerate(lt.TWO_PART_OPS[op])}
    hypothesis = separator_overlay(2, lambda ps: lt.truth_table(ps, table, 0))
    inputs, targets, fresh, expected = planted(hypothesis, grids)
    assert np.array_equal(first_candidate(inputs, targets).apply(fresh), expected)


@SETTINGS
@given(seeds, st.permutations([0, 1, 2]))
def test_planted_stacking_order_is_recovered(seed, order):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(3, 6, size=2)
    grids = [separated([noisy(rng, h, w, colours=(c,), density=0.45) for c in (1, 2, 3)], axis=1)
             for _ in range(4)]
    hypothesis = separator_overlay(3, lambda ps: lt.stacked(ps, tuple(order), 0))
    inputs, targets, fresh, expected = planted(hypothesis, grids)
    assert np.array_equal(first_candidate(inputs, targets).apply(fresh), expected)


@SETTINGS
@given(seeds, st.integers(2, 4))
def test_planted_noisy_downscale_is_recovered_by_majority(seed, factor):
    rng = np.random.default_rng(seed)
    grids, small = [], []
    for h, w in rng.integers(2, MAX_SIDE // factor + 1, size=(4, 2)):
        cells = noisy(rng, h, w, density=0.7)
        big = lt.upscaled(cells, factor, factor)
        # one noise cell per block: the block's own colour still holds the majority
        rows = np.arange(h)[:, None] * factor + rng.integers(factor, size=(h, w))
        cols = np.arange(w)[None, :] * factor + rng.integers(factor, size=(h, w))
        big[rows, cols] = np.where(cells == 7, 8, 7)
        grids.append(big)
        small.append(cells)
    candidate = first_candidate(grids[:3], small[:3])
    assert np.array_equal(candidate.apply(grids[3]), small[3])


def test_parts_between_separator_lines_shrink_to_cells():
    # a grid of rooms: each room's one colour becomes a cell, whatever the separator colour
    rng = np.random.default_rng(3)
    grids, cells = [], []
    for line in (5, 8, 6):
        room_colours = rng.choice([0, 1, 2], size=(2, 3))
        rooms = [[np.full((int(rng.integers(1, 4)),) * 2, c, dtype=np.uint8) for c in row] for row in room_colours]
        width = max(r.shape[1] for row in rooms for r in row)
        rooms = [[np.full((2, width), r[0, 0], dtype=np.uint8) for r in row] for row in rooms]
        grids.append(separated([separated(row, axis=1, colour=line) for row in rooms], 0, line))
        cells.append(room_colours.astype(np.uint8))
    candidate = first_candidate(grids[:2], cells[:2])
    assert np.array_equal(candidate.apply(grids[2]), cells[2])


# --------------------------------------------------------------------------- contract


@SETTINGS
@given(seeds, st.sampled_from(["bigger", "smaller", "same"]))
def test_candidates_reproduce_the_pairs_and_leave_inputs_untouched(seed, relation):
    rng = np.random.default_rng(seed)
    inputs = [noisy(rng, 4, 6) for _ in range(3)]
    if relation == "bigger":  # half the pairs a real layout, the rest random grids of its shape
        targets = [np.tile(g, (2, 1)) if k % 2 else noisy(rng, 8, 6) for k, g in enumerate(inputs)]
    elif relation == "smaller":
        targets = [g[:, :3] if k % 2 else noisy(rng, 4, 3) for k, g in enumerate(inputs)]
    else:
        targets = [noisy(rng, 4, 6) for _ in inputs]
    before = [g.copy() for g in inputs + targets]
    for candidate in lt.fit(inputs, targets):
        assert reproduces(candidate, inputs, targets)
    assert all(np.array_equal(a, b) for a, b in zip(before, inputs + targets))


@SETTINGS
@given(seeds)
def test_pairs_contradicting_every_layout_yield_nothing(seed):
    rng = np.random.default_rng(seed)
    grids = [noisy(rng, 4, 4, density=0.6) for _ in range(2)]
    grids = [g for g in grids if not np.array_equal(g, g[:, ::-1])]
    if len(grids) < 2:
        return
    # one pair tiled, the other mirrored: no block choice explains both
    targets = [np.concatenate([grids[0], grids[0]], axis=1), np.concatenate([grids[1], grids[1][:, ::-1]], axis=1)]
    assert list(lt.fit(grids, targets)) == []


def test_same_input_with_two_outputs_yields_nothing():
    grid = np.array([[1, 0], [0, 2]], dtype=np.uint8)
    assert list(lt.fit([grid, grid.copy()], [np.tile(grid, (2, 2)), lt.upscaled(grid, 2, 2)])) == []


def test_an_unseen_situation_is_not_guessed():
    tile = next(lt.fit([np.eye(3, dtype=np.uint8)], [np.tile(np.eye(3, dtype=np.uint8), (2, 2))]))
    with pytest.raises(NotApplicable):
        tile.apply(np.ones((16, 16), dtype=np.uint8))  # 32 x 32 is past ARC bounds
    halves = separator_overlay(2, lambda ps: lt.truth_table(ps, {3: 1}, 0))
    with pytest.raises(NotApplicable):
        halves.apply(np.zeros((3, 3), dtype=np.uint8))  # no separator line
    with pytest.raises(NotApplicable):
        halves.apply(np.array([[1, 5, 1, 5, 1]], dtype=np.uint8))  # three parts, not two
    with pytest.raises(NotApplicable):
        halves.apply(np.array([[0, 5, 1]], dtype=np.uint8))  # a table key never seen
    shrink = lt._shrink("blocks 3x3", lt.sized_cut(3, 3), "uniform", lt.REDUCERS["uniform"], "identity")
    with pytest.raises(NotApplicable):
        shrink.apply(np.zeros((7, 6), dtype=np.uint8))  # 7 rows are no whole number of blocks


def test_count_table_needs_more_than_one_sighting_per_entry():
    # one 1x1-rectangle-per-count pair: counts seen once each are no rule
    grid = np.array([[1, 0, 5, 1, 1]], dtype=np.uint8)
    assert not any("count" in c.name for c in lt.fit([grid], [np.array([[3, 4]], dtype=np.uint8)]))


# --------------------------------------------------------------------------- sample


def sample_inputs(rng: np.random.Generator) -> list[np.ndarray]:
    """Grids like real task inputs: small noisy ones, sometimes halves split by a line."""
    h, w = rng.integers(2, 7, size=2)
    if rng.random() < 0.3:
        return [separated([noisy(rng, h, w, (1,)), noisy(rng, h, w, (2,))], int(rng.integers(2)))
                for _ in range(4)]
    return [noisy(rng, h, w) for _ in range(4)]


@SETTINGS
@given(seeds)
def test_sample_makes_valid_changed_outputs_that_fit_recovers(seed):
    rng = np.random.default_rng(seed)
    inputs = sample_inputs(rng)
    hypothesis = lt.sample(rng, inputs)
    assert hypothesis is not None
    outputs = [hypothesis.apply(g) for g in inputs]
    assert all(is_valid_grid(o) and o.dtype == np.uint8 for o in outputs)
    assert all(o.shape != g.shape or not np.array_equal(o, g) for o, g in zip(inputs, outputs))
    assert next(lt.fit(inputs, outputs), None) is not None


def test_sample_hypotheses_are_recovered_well_enough_to_predict_held_out_grids():
    rng = np.random.default_rng(11)
    agreed = tried = 0
    for _ in range(60):
        inputs = sample_inputs(rng)
        hypothesis = lt.sample(rng, inputs)
        outputs = [hypothesis.apply(g) for g in inputs]
        candidates = list(lt.fit(inputs[:-1], outputs[:-1]))[:2]  # the two ARC attempts
        tried += 1
        agreed += any(_predicts(c, inputs[-1], outputs[-1]) for c in candidates)
    assert agreed >= 0.85 * tried


def _predicts(candidate: Fitted, grid: np.ndarray, expected: np.ndarray) -> bool:
    try:
        return np.array_equal(candidate.apply(grid), expected)
    except NotApplicable:
        return False


def test_sample_returns_none_when_nothing_applies():
    # a 29 x 29 grid of one colour: too big to enlarge, no lines or blocks to cut it into
    assert lt.sample(np.random.default_rng(0), [np.zeros((29, 29), dtype=np.uint8)]) is None


def test_halves_folded_onto_each_other_are_overlaid():
    # the right half mirrored onto the left one: cells coloured in either half keep their colour
    rng = np.random.default_rng(5)
    grids = [np.concatenate([noisy(rng, 4, 3, (1,)), noisy(rng, 4, 3, (2,))], axis=1) for _ in range(4)]
    fold = [np.where(g[:, :3] != 0, g[:, :3], g[:, 3:][:, ::-1]) for g in grids]
    candidate = first_candidate(grids[:3], fold[:3])
    assert "folded" in candidate.name
    assert np.array_equal(candidate.apply(grids[3]), fold[3])


def test_halves_along_the_longer_side_whatever_its_axis():
    rng = np.random.default_rng(6)
    grids = [noisy(rng, 3, 8), noisy(rng, 6, 2), noisy(rng, 2, 6), noisy(rng, 10, 4)]
    first_half = [g[:, :g.shape[1] // 2] if g.shape[1] > g.shape[0] else g[:g.shape[0] // 2] for g in grids]
    candidate = first_candidate(grids[:3], first_half[:3])
    assert np.array_equal(candidate.apply(grids[3]), first_half[3])
    with pytest.raises(NotApplicable):
        candidate.apply(noisy(rng, 4, 4))  # a square grid has no longer side


def test_blocks_with_any_foreground_become_marked_cells():
    # 3x3 blocks with a few coloured cells -> 4, empty blocks -> 0, whatever the count
    rng = np.random.default_rng(7)
    grids, marks = [], []
    for _ in range(4):
        marked = rng.random((3, 4)) < 0.5
        big = np.zeros((9, 12), dtype=np.uint8)
        for r, c in zip(*np.nonzero(marked)):
            cells = rng.choice(9, size=int(rng.integers(1, 4)), replace=False)
            big[3 * r + cells // 3, 3 * c + cells % 3] = rng.integers(1, 4)
        grids.append(big)
        marks.append(np.where(marked, 4, 0).astype(np.uint8))
    candidate = first_candidate(grids[:3], marks[:3])
    assert np.array_equal(candidate.apply(grids[3]), marks[3])


def test_foreground_majority_reduces_blocks_and_refuses_ties():
    hist = np.zeros((1, 2, 10), dtype=np.int32)
    hist[0, 0, [0, 3, 5]] = (6, 2, 1)  # mostly background; 3 is the commonest foreground colour
    hist[0, 1, 0] = 9  # no foreground at all
    assert lt.REDUCERS["foreground_majority"](hist, 0).tolist() == [[3, 0]]
    hist[0, 0, 5] = 2  # 3 and 5 tie
    with pytest.raises(NotApplicable):
        lt.REDUCERS["foreground_majority"](hist, 0)

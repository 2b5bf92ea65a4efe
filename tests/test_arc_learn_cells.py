"""Learner ``cell_rule`` (tasks.arc_guide.learn_cells): planted rules are recovered and
generalise, every candidate reproduces its pairs, contradictions yield nothing, unseen
situations raise NotApplicable, and ``sample`` draws rules that ``fit`` recovers."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tasks.arc_guide import learn_cells as lc
from tasks.arc_guide import scenes
from tasks.arc_guide.dsl import NotApplicable
from tasks.arc_guide.fitting import learner, reproduces

SETTINGS = settings(max_examples=12, deadline=None)


# --------------------------------------------------------------------------- grids


def boxes_grid(rng: np.random.Generator, palette: tuple[int, ...] = (1, 2, 3)) -> np.ndarray:
    """A 8..14 square-ish grid on black with 2..3 hollow or filled boxes (no two overlapping)."""
    h, w = (int(v) for v in rng.integers(8, 15, size=2))
    grid = np.zeros((h, w), dtype=np.uint8)
    taken = np.zeros((h, w), dtype=bool)
    for _ in range(int(rng.integers(2, 4))):
        for _ in range(20):  # a few tries to place a box clear of the others
            bh, bw = (int(v) for v in rng.integers(3, 6, size=2))
            top, left = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
            margin = taken[max(top - 1, 0): top + bh + 1, max(left - 1, 0): left + bw + 1]
            if not margin.any():
                break
        else:
            continue
        colour = int(rng.choice(palette))
        grid[top: top + bh, left: left + bw] = colour
        if rng.random() < 0.6:
            grid[top + 1: top + bh - 1, left + 1: left + bw - 1] = 0  # hollow: an enclosed hole
        taken[top: top + bh, left: left + bw] = True
    return grid


def first_attempts(candidates, grid: np.ndarray, n: int = 2) -> list[np.ndarray]:
    """The first ``n`` distinct predictions for ``grid`` (candidates that do not apply skipped)."""
    attempts: list[np.ndarray] = []
    for candidate in candidates:
        try:
            prediction = candidate.apply(grid)
        except NotApplicable:
            continue
        if not any(np.array_equal(prediction, a) for a in attempts):
            attempts.append(prediction)
        if len(attempts) == n:
            break
    return attempts


def solves(inputs, targets, fresh_input, fresh_target) -> bool:
    """Whether fit on the pairs predicts the fresh pair within two attempts (the ARC rule)."""
    return any(np.array_equal(a, fresh_target) for a in first_attempts(lc.fit(inputs, targets), fresh_input))


def fill_enclosed(grid: np.ndarray, colour: int) -> np.ndarray:
    """Reference: black cells not 4-connected to the border through black become ``colour``."""
    from scipy import ndimage
    black = grid == 0
    labels, _ = ndimage.label(black)
    outside = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])).tolist())
    enclosed = black & ~np.isin(labels, list(outside))
    return np.where(enclosed, colour, grid).astype(np.uint8)


# --------------------------------------------------------------------------- planted rules


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.sampled_from([4, 6, 7]))
def test_planted_enclosed_fill_is_recovered_and_predicts_a_fresh_grid(seed, colour):
    rng = np.random.default_rng(seed)
    grids = []
    while len(grids) < 4:  # every grid shows an enclosed hole
        g = boxes_grid(rng)
        if not np.array_equal(fill_enclosed(g, colour), g):
            grids.append(g)
    targets = [fill_enclosed(g, colour) for g in grids]
    assert solves(grids[:3], targets[:3], grids[3], targets[3])


@SETTINGS
@given(st.integers(0, 2**32 - 1))
def test_planted_colour_map_is_recovered_and_generalises_to_a_fresh_grid(seed):
    rng = np.random.default_rng(seed)
    mapping = np.arange(10, dtype=np.uint8)
    mapping[[1, 2, 3]] = rng.permutation([5, 6, 8])
    grids = [boxes_grid(rng) for _ in range(4)]
    for g in grids:  # every grid shows every mapped colour
        g[0, :3] = [1, 2, 3]
    targets = [mapping[g] for g in grids]
    assert solves(grids[:3], targets[:3], grids[3], targets[3])


@SETTINGS
@given(st.integers(0, 2**32 - 1))
def test_planted_neighbour_rule_is_recovered_like_a_local_rule(seed):
    # the cross-neighbourhood rules of tasks.arc_guide.local_rules: a cell takes the colour above it
    rng = np.random.default_rng(seed)
    grids = [(rng.random((9, 9)) < 0.3) * rng.integers(1, 4, size=(9, 9)) for _ in range(4)]
    grids = [g.astype(np.uint8) for g in grids]
    targets = [np.concatenate([np.zeros((1, 9), np.uint8), g[:-1]]) for g in grids]
    assert solves(grids[:3], targets[:3], grids[3], targets[3])


def test_rule_copies_a_colour_it_never_saw():
    # "extend every cell downwards in its own colour": the train pairs use colours 1 and 2,
    # the fresh grid colour 5, which only a copy action can paint
    def extend_down(grid):
        out = grid.copy()
        for r in range(1, grid.shape[0]):
            out[r] = np.where(out[r] == 0, out[r - 1], out[r])
        return out

    rng = np.random.default_rng(3)
    grids = []
    for k in range(4):
        g = np.zeros((8, 8), dtype=np.uint8)
        cols = rng.choice(8, size=3, replace=False)
        g[rng.integers(0, 4, size=3), cols] = [1, 2, 1] if k < 3 else [5, 5, 5]
        grids.append(g)
    targets = [extend_down(g) for g in grids]
    assert solves(grids[:3], targets[:3], grids[3], targets[3])


# --------------------------------------------------------------------------- the learner contract


@st.composite
def sampled_tasks(draw):
    """3 pairs made by a sampled rule on ARC-like scenes (None when nothing applies)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    family = draw(st.sampled_from(["objects", "points", "symmetric"]))
    style = scenes.style(rng, family)
    grids = [scenes.scene(rng, family, style) for _ in range(3)]
    rule = lc.sample(rng, grids)
    return grids, [rule.apply(g) for g in grids] if rule is not None else None


@SETTINGS
@given(sampled_tasks())
def test_every_candidate_reproduces_the_pairs_and_inputs_are_never_mutated(task):
    grids, targets = task
    if targets is None:
        return
    copies = [g.copy() for g in grids], [t.copy() for t in targets]
    candidates = list(lc.fit(grids, targets))
    assert candidates, "a rule of the family explains its own pairs"
    assert len(candidates) <= lc.MAX_CANDIDATES
    for candidate in candidates:
        assert reproduces(candidate, grids, targets), candidate.name
    assert all(np.array_equal(a, b) for a, b in zip(grids + targets, copies[0] + copies[1]))


@SETTINGS
@given(st.integers(0, 2**32 - 1))
def test_contradicting_pairs_yield_nothing(seed):
    # the same input with two different outputs: no function of the input explains both
    rng = np.random.default_rng(seed)
    grid = boxes_grid(rng)
    first = fill_enclosed(grid, 4)
    second = first.copy()
    second[0, 0] = 9 if second[0, 0] != 9 else 8
    assert list(lc.fit([grid, grid], [first, second])) == []


def test_contradicting_pairs_without_any_feature_yield_nothing():
    cell = np.array([[3]], dtype=np.uint8)  # every feature is constant: only the empty subset exists
    assert list(lc.fit([cell, cell], [cell + 1, cell + 2])) == []


def test_nothing_to_learn_yields_nothing():
    grid = boxes_grid(np.random.default_rng(0))
    assert list(lc.fit([grid, grid], [grid, grid])) == []  # every target equals its input
    assert list(lc.fit([grid], [grid[:-1]])) == []  # shapes differ
    assert list(lc.fit([], [])) == []


def test_noise_targets_are_not_explained():
    # targets unrelated to the inputs: consistent tables may exist, but none generalises
    rng = np.random.default_rng(5)
    grids = [boxes_grid(rng) for _ in range(3)]
    targets = [rng.integers(0, 10, size=g.shape).astype(np.uint8) for g in grids]
    assert list(lc.fit(grids, targets)) == []


def test_an_unseen_situation_raises_not_applicable():
    # "recolour 1 to 3": the simplest rule is keyed by the colour, so a colour no train cell had is unseen
    rng = np.random.default_rng(1)
    grids = [boxes_grid(rng, palette=(1, 2)) for _ in range(3)]
    for g in grids:
        g[0, :2] = [1, 2]
    targets = [np.where(g == 1, 3, g).astype(np.uint8) for g in grids]
    first = next(lc.fit(grids, targets))
    assert first.name == "cell_rule(colour)"
    fresh = grids[0].copy()
    fresh[0, 0] = 7
    with pytest.raises(NotApplicable):
        first.apply(fresh)


def test_a_rule_never_changes_a_kind_of_cell_it_has_not_seen():
    # "black cells between two 1s in a row become 8": a 2 between two 1s was never shown
    grids = []
    for k in range(3):
        g = np.zeros((6, 9), dtype=np.uint8)
        g[k, [1, 6]] = 1
        g[k + 2, [0, 3 + k]] = 1
        g[5, 8] = 2
        grids.append(g)
    targets = []
    for g in grids:
        t = g.copy()
        for r in range(g.shape[0]):
            ones = np.flatnonzero(g[r] == 1)
            if len(ones) == 2:
                t[r, ones[0] + 1: ones[1]] = 8
        targets.append(t)
    candidates = list(lc.fit(grids, targets))
    assert candidates
    fresh = grids[0].copy()
    fresh[0, 3] = 2  # between the two 1s of row 0
    for candidate in candidates:
        try:
            out = candidate.apply(fresh)
        except NotApplicable:
            continue
        assert out[0, 3] == 2, candidate.name


def test_registered_as_the_cell_rule_family():
    assert learner("cell_rule") is lc.fit


def test_fit_is_lazy_and_bounded_on_a_large_noisy_task():
    rng = np.random.default_rng(2)
    grids = [rng.integers(0, 4, size=(30, 30)).astype(np.uint8) for _ in range(4)]
    targets = [np.where(g == 1, 5, g).astype(np.uint8) for g in grids]
    first = next(lc.fit(grids, targets))
    assert reproduces(first, grids, targets)
    assert list(lc.fit(grids, [rng.integers(0, 10, size=g.shape).astype(np.uint8) for g in grids])) == []


# --------------------------------------------------------------------------- sample


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.sampled_from(["objects", "points", "symmetric"]))
def test_sample_draws_valid_changing_rules(seed, family):
    rng = np.random.default_rng(seed)
    style = scenes.style(rng, family)
    grids = [scenes.scene(rng, family, style) for _ in range(3)]
    before = [g.copy() for g in grids]
    rule = lc.sample(rng, grids)
    assert all(np.array_equal(a, b) for a, b in zip(grids, before))
    if rule is None:
        return
    for g in grids:
        out = rule.apply(g)
        assert out.dtype == np.uint8 and out.shape == g.shape and out.max() < 10
        assert not np.array_equal(out, g)


def test_sample_gives_none_without_inputs():
    assert lc.sample(np.random.default_rng(0), []) is None


def test_fit_recovers_most_sampled_rules_on_a_held_out_grid():
    rng = np.random.default_rng(11)
    drawn = recovered = 0
    for _ in range(40):
        family = str(rng.choice(["objects", "points", "symmetric"]))
        style = scenes.style(rng, family)
        grids = [scenes.scene(rng, family, style) for _ in range(4)]
        rule = lc.sample(rng, grids)
        if rule is None:
            continue
        targets = [rule.apply(g) for g in grids]
        drawn += 1
        recovered += solves(grids[:3], targets[:3], grids[3], targets[3])
    assert drawn >= 30
    assert recovered >= 0.8 * drawn

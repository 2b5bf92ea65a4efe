"""The complete_pattern learner (tasks.arc_guide.learn_patterns): its building blocks
against brute force, planted patterns recovered from their pairs, and the learner contract."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from tasks.arc_guide import learn_patterns as lp
from tasks.arc_guide.dsl import NotApplicable
from tasks.arc_guide.fitting import learner, reproduces
from tasks.arc_guide.scenes import FAMILIES, scene, style

SETTINGS = settings(max_examples=40, deadline=None)
FEW = settings(max_examples=15, deadline=None)
seeds = st.integers(0, 2**32 - 1)


# --------------------------------------------------------------------------- planted tasks


def periodic(rng: np.random.Generator, shape: tuple[int, int], lattice: lp.Lattice, palette) -> np.ndarray:
    """A grid whose cells are coloured by their lattice class (random colour per class)."""
    classes = lattice.classes(shape)
    colours = rng.choice(np.asarray(palette), size=classes.max() + 1)
    return colours[classes].astype(np.uint8)


def hide(rng: np.random.Generator, grid: np.ndarray, colour: int, max_side: int) -> np.ndarray:
    """A copy of ``grid`` with one random rectangle of at most max_side a side in ``colour``."""
    out = grid.copy()
    h, w = rng.integers(1, max_side + 1, size=2)
    h, w = min(h, grid.shape[0] - 1), min(w, grid.shape[1] - 1)
    top, left = rng.integers(0, grid.shape[0] - h + 1), rng.integers(0, grid.shape[1] - w + 1)
    out[top:top + h, left:left + w] = colour
    return out


def periodic_task(seed: int, n: int = 4):
    """n pairs of one planted family: a wallpaper (axis or shifted lattice) with one hidden
    rectangle of colour 0, repaired; the lattice differs per grid, the family does not."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        pr, pc = int(rng.integers(2, 5)), int(rng.integers(2, 5))
        lattice = lp.Lattice(pr, pc, int(rng.integers(0, pc)))
        shape = (int(rng.integers(3 * pr, 3 * pr + 6)), int(rng.integers(3 * pc, 3 * pc + 6)))
        full = periodic(rng, shape, lattice, range(1, 10))
        pairs.append((hide(rng, full, 0, min(pr, pc) - 1 or 1), full))
    return pairs


def symmetric_task(seed: int, n: int = 4, crop: bool = False):
    """n pairs of a picture with a random point symmetry about an off-centre point, a patch
    hidden under colour 0; the target is the repaired grid or, with ``crop``, the patch."""
    rng = np.random.default_rng(seed)
    element = str(rng.choice(["flip_lr", "flip_ud", "rot180", "transpose"]))
    pairs = []
    for _ in range(n):
        side = int(rng.integers(10, 16))
        core = rng.integers(1, 10, size=(side, side)).astype(np.uint8)
        symmetric = np.maximum(core, lp.ARRAY_MAPS[element](core))  # the max is as symmetric as the maps
        cut_top, cut_left = int(rng.integers(0, 3)), int(rng.integers(0, 3))
        full = np.ascontiguousarray(symmetric[cut_top:, cut_left:])  # off-centre: a margin cut away
        mirror = lp.group_about(element, side - 1 - 2 * cut_top, side - 1 - 2 * cut_left)[0]
        hidden = hide(rng, full, 0, 3)
        while not _mirrored_cells_visible(hidden == 0, mirror):
            hidden = hide(rng, full, 0, 3)
        rows, cols = lp.bounding_box(hidden == 0)
        pairs.append((hidden, full[rows, cols].copy() if crop else full))
    return pairs


def _mirrored_cells_visible(hidden: np.ndarray, mirror: lp.Isometry) -> bool:
    """Whether the symmetry maps every hidden cell to a visible cell of the grid."""
    r, c = mirror.image(*np.nonzero(hidden))
    inside = (r >= 0) & (c >= 0) & (r < hidden.shape[0]) & (c < hidden.shape[1])
    return bool(inside.all() and not hidden[r, c].any())


def figure_task(seed: int, n: int = 4):
    """n pairs of a four-fold mirror-symmetric figure on background 0 whose top-right
    quarter is erased from the input; the target is the whole figure."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        q = int(rng.integers(3, 6))
        quarter = _asymmetric_quarter(rng, q)
        top = np.concatenate([quarter, quarter[:, ::-1]], axis=1)
        figure = np.concatenate([top, top[::-1]], axis=0)
        grid = np.zeros((2 * q + int(rng.integers(2, 6)), 2 * q + int(rng.integers(2, 6))), dtype=np.uint8)
        r, c = int(rng.integers(0, grid.shape[0] - 2 * q + 1)), int(rng.integers(0, grid.shape[1] - 2 * q + 1))
        grid[r:r + 2 * q, c:c + 2 * q] = figure
        partial = grid.copy()
        partial[r:r + q, c + q:c + 2 * q] = 0
        pairs.append((partial, grid))
    return pairs


def _asymmetric_quarter(rng: np.random.Generator, q: int) -> np.ndarray:
    """A q x q patch of colours 1..9 (70% of cells, the rest 0) with a full last row and
    column (so the quarters touch) and no symmetry of its own (so the centre is unique)."""
    while True:
        quarter = np.where(rng.random((q, q)) < 0.7, rng.integers(1, 10, size=(q, q)), 0).astype(np.uint8)
        quarter[-1, :] = rng.integers(1, 10, size=q)
        quarter[:, -1] = rng.integers(1, 10, size=q)
        if not any(np.array_equal(f(quarter), quarter) for f in lp.ARRAY_MAPS.values()):
            return quarter


def attempts(inputs, targets, grid, limit: int = 2):
    """The first ``limit`` distinct predictions of fit's candidates for ``grid`` (the ARC rule)."""
    found = []
    for candidate in lp.fit(inputs, targets):
        try:
            prediction = candidate.apply(grid)
        except NotApplicable:
            continue
        if not any(np.array_equal(prediction, p) for p in found):
            found.append(prediction)
        if len(found) == limit:
            break
    return found


def recovered(pairs) -> bool:
    """Fit on all pairs but the last; whether an attempt predicts the last target."""
    inputs, targets = [i for i, _ in pairs[:-1]], [t for _, t in pairs[:-1]]
    fresh_input, fresh_target = pairs[-1]
    return any(np.array_equal(p, fresh_target) for p in attempts(inputs, targets, fresh_input))


# --------------------------------------------------------------------------- building blocks


@SETTINGS
@given(seeds, st.sampled_from(list(lp.MATRICES)))
def test_pair_counts_match_a_direct_count(seed, element):
    rng = np.random.default_rng(seed)
    grid = rng.integers(0, 3, size=tuple(rng.integers(1, 7, size=2))).astype(np.uint8)
    known = rng.random(grid.shape) < 0.8
    counts = lp.PairCounts(grid, known, element)
    rows, cols = np.indices(grid.shape)
    for t in [tuple(int(v) for v in rng.integers(-8, 9, size=2)) for _ in range(6)]:
        r, c = lp.Isometry(element, t).image(rows, cols)
        inside = (r >= 0) & (c >= 0) & (r < grid.shape[0]) & (c < grid.shape[1])
        both = known & inside
        both[inside] &= known[r[inside], c[inside]]
        clashes = (grid[both] != grid[r[both], c[both]]).sum()
        assert tuple(int(v) for v in np.ravel(counts.at(*t))) == (both.sum(), clashes)


@SETTINGS
@given(st.sampled_from(lp.POINT_SYMMETRIES), st.integers(0, 20), st.integers(0, 20))
def test_centre_offsets_fix_the_centre_and_flips_are_involutions(element, twice_row, twice_col):
    assume(element not in lp.NEEDS_EVEN_CENTRE or (twice_row - twice_col) % 2 == 0)
    t = lp.centre_offsets(element, np.int64(twice_row), np.int64(twice_col))
    iso = lp.Isometry(element, (int(t[0]), int(t[1])))
    # the centre (in doubled coordinates, the map is linear plus twice the offset) stays put
    m = lp.MATRICES[element]
    assert tuple(m @ np.array([twice_row, twice_col]) + 2 * np.array(t)) == (twice_row, twice_col)
    if element not in ("rot90", "rot270"):
        r, c = iso.image(*iso.image(np.arange(5), np.arange(5)[::-1]))
        assert np.array_equal(r, np.arange(5)) and np.array_equal(c, np.arange(5)[::-1])


@st.composite
def lattices(draw) -> lp.Lattice:
    rows = draw(st.one_of(st.none(), st.integers(1, 5)))
    cols = draw(st.integers(1, 5)) if rows is None else draw(st.one_of(st.none(), st.integers(1, 5)))
    shift = 0 if rows is None else draw(st.integers(0, cols - 1)) if cols else draw(st.integers(-4, 4))
    return lp.Lattice(rows, cols, shift)


@SETTINGS
@given(lattices(), st.integers(1, 9), st.integers(1, 9))
def test_lattice_classes_vectors_and_membership_agree(lattice, h, w):
    shape = (h, w)
    classes = lattice.classes(shape).ravel()
    rows, cols = (a.ravel() for a in np.indices(shape))
    same = classes[:, None] == classes[None, :]
    member = np.array([[lattice.contains((int(rows[j] - rows[i]), int(cols[j] - cols[i])))
                        for j in range(h * w)] for i in range(h * w)])
    assert np.array_equal(same, member)
    in_range = {(int(rows[j] - rows[i]), int(cols[j] - cols[i])) for i, j in zip(*np.nonzero(member)) if i < j}
    canonical = {v if v[0] > 0 or (v[0] == 0 and v[1] > 0) else (-v[0], -v[1]) for v in in_range}
    assert set(lattice.vectors(shape)) >= canonical
    assert all(lattice.contains(v) for v in lattice.vectors(shape))
    assert lattice.size(shape) >= len(np.unique(classes))


def test_generated_lattices_are_recognised():
    diagonal = lp.Lattice(1, 3, 2)  # (r + c) mod 3
    assert lp._generates([(1, -1), (1, 2)], diagonal)
    assert not lp._generates([(1, -1), (2, -2)], diagonal)  # only the diagonal direction
    assert lp._generates([(0, 2), (0, 3)], lp.Lattice(None, 1))  # gcd of the periods
    assert not lp._generates([(2, 0)], lp.Lattice(1, None, 0))


@SETTINGS
@given(seeds)
def test_smallest_lattice_finds_the_planted_periods_of_a_full_grid(seed):
    rng = np.random.default_rng(seed)
    pr, pc = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    planted = lp.Lattice(pr, pc, int(rng.integers(0, pc)))
    grid = periodic(rng, (3 * pr + 2, 3 * pc + 2), planted, range(10))
    found = lp.smallest_lattice(grid, np.ones(grid.shape, dtype=bool))
    # no smaller lattice than the planted one, and the grid is periodic under the found one
    assert found.size(grid.shape) <= planted.size(grid.shape)
    classes = found.classes(grid.shape)
    for k in np.unique(classes):
        assert len(np.unique(grid[classes == k])) == 1


def test_majority_repair_restores_noisy_stripes():
    rng = np.random.default_rng(0)
    clean = np.repeat(np.array([[1, 1, 1, 2, 2, 3, 3, 3, 3, 4, 4]], dtype=np.uint8), 12, axis=0)
    noisy = clean.copy()
    hit = rng.random(clean.shape) < 0.12
    noisy[hit] = rng.integers(5, 10, size=int(hit.sum()))
    assert np.array_equal(lp.majority_repair(noisy), clean)


# --------------------------------------------------------------------------- planted families


@FEW
@given(seeds)
def test_a_planted_wallpaper_is_repaired_on_a_fresh_grid(seed):
    assert recovered(periodic_task(seed))


@FEW
@given(seeds, st.booleans())
def test_a_planted_off_centre_symmetry_is_repaired_or_revealed_on_a_fresh_grid(seed, crop):
    assert recovered(symmetric_task(seed, crop=crop))


@FEW
@given(seeds)
def test_a_planted_figure_is_completed_on_a_fresh_grid(seed):
    assert recovered(figure_task(seed))


def test_an_occluding_rectangle_of_any_colour_is_lifted_off_a_symmetric_picture():
    pairs = []
    for seed, colour in ((1, 0), (2, 7), (3, 9), (4, 8), (5, 7), (6, 0)):
        _, full = symmetric_task(seed, 1)[0]
        picture = (full % 6 + 1).astype(np.uint8)  # colours 1..6: the occluder's are free
        hidden = picture.copy()
        hidden[2:4, 3:6] = colour  # a solid rectangle laid over the picture
        mirror = lp.consistent_symmetries(picture, np.ones(picture.shape, dtype=bool))[0]
        if _mirrored_cells_visible(hidden == colour, mirror):
            pairs.append((hidden, picture))
    assert len(pairs) >= 3
    assert recovered(pairs)
    assert next(lp.fit(*map(list, zip(*pairs[:-1])))).name.startswith("complete_pattern(occluder")


def test_noisy_stripes_are_learned_as_a_damaged_pattern():
    rng = np.random.default_rng(2)
    pairs = []
    for width in (9, 11, 12, 10):
        stripes = rng.integers(1, 5, size=width).astype(np.uint8)
        clean = np.repeat(stripes[None, :], 10, axis=0)
        noisy = clean.copy()
        hit = rng.random(clean.shape) < 0.1
        noisy[hit] = rng.integers(5, 10, size=int(hit.sum()))
        pairs.append((noisy, clean))
    assert recovered(pairs)


def test_a_pattern_band_is_continued_over_a_wider_canvas():
    rng = np.random.default_rng(1)
    pairs = []
    for width in (5, 6, 7, 8):
        tile = rng.integers(1, 10, size=(2, 3)).astype(np.uint8)
        band = np.tile(tile, (1, 6))
        grid = np.zeros((5, 2 * width), dtype=np.uint8)
        grid[1:3] = band[:, :2 * width]
        pairs.append((grid[:, :width].copy(), grid))
    assert recovered(pairs)
    names = [c.name for c in lp.fit(*map(list, zip(*pairs)))]
    assert names and names[0] == "complete_pattern(extend,lattice,scale=1x2)"


def test_a_pivot_object_mirrors_the_rest_of_the_figure():
    pairs = []
    for r, c in ((3, 4), (5, 2), (2, 6), (4, 4)):
        grid = np.zeros((13, 13), dtype=np.uint8)
        grid[r + 2:r + 4, c + 2:c + 4] = 3  # the pivot, a 2x2 block
        arm = np.array([[2, 0], [2, 2]], dtype=np.uint8)
        full = grid.copy()
        for flip_r in (False, True):
            for flip_c in (False, True):
                a = arm[::-1] if flip_r else arm
                a = a[:, ::-1] if flip_c else a
                rr, cc = (r + 4 if flip_r else r), (c + 4 if flip_c else c)
                full[rr:rr + 2, cc:cc + 2] = np.maximum(full[rr:rr + 2, cc:cc + 2], a)
        grid[r:r + 2, c:c + 2] = arm  # only one arm in the input
        pairs.append((grid, full))
    assert recovered(pairs)


# --------------------------------------------------------------------------- the learner contract


@st.composite
def tasks(draw):
    """Pairs of the planted families, or arbitrary ones (random recolourings, noise)."""
    seed = draw(seeds)
    kind = draw(st.sampled_from(["periodic", "symmetric", "crop", "figure", "noise", "recolour"]))
    if kind == "periodic":
        return periodic_task(seed, 3)
    if kind in ("symmetric", "crop"):
        return symmetric_task(seed, 3, crop=kind == "crop")
    if kind == "figure":
        return figure_task(seed, 3)
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(2, 10, size=2))
    inputs = [rng.integers(0, 4, size=shape).astype(np.uint8) for _ in range(3)]
    if kind == "noise":
        return [(i, rng.integers(0, 4, size=shape).astype(np.uint8)) for i in inputs]
    return [(i, np.where(i == 0, 5, i).astype(np.uint8)) for i in inputs]


@SETTINGS
@given(tasks())
def test_every_candidate_reproduces_the_pairs_and_inputs_stay_untouched(pairs):
    inputs, targets = [i for i, _ in pairs], [t for _, t in pairs]
    copies = [g.copy() for g in inputs + targets]
    for k, candidate in enumerate(lp.fit(inputs, targets)):
        assert reproduces(candidate, inputs, targets), candidate.name
        if k == 5:
            break
    assert all(np.array_equal(a, b) for a, b in zip(inputs + targets, copies))


@SETTINGS
@given(seeds, st.sampled_from(["periodic", "symmetric"]))
def test_pairs_that_contradict_the_family_yield_nothing(seed, family):
    pairs = periodic_task(seed, 3) if family == "periodic" else symmetric_task(seed, 3)
    inputs, targets = [i for i, _ in pairs], [t.copy() for _, t in pairs]
    # one repaired cell of one target takes another colour: no regularity fills it so
    r, c = np.argwhere(inputs[0] == 0)[0]
    targets[0][r, c] = targets[0][r, c] % 9 + 1
    assert list(lp.fit(inputs, targets)) == []
    # arbitrary targets of the same shapes: nothing of the family either
    rng = np.random.default_rng(seed)
    noise = [rng.integers(0, 10, size=t.shape).astype(np.uint8) for t in targets]
    assert list(lp.fit(inputs, noise)) == []


def test_unseen_situations_are_not_applicable():
    pairs = periodic_task(3)
    inputs, targets = [i for i, _ in pairs], [t for _, t in pairs]
    candidate = next(lp.fit(inputs, targets))
    with pytest.raises(NotApplicable):  # no cell of the mask colour: nothing to repair
        candidate.apply(targets[0])
    with pytest.raises(NotApplicable):  # the whole grid hidden: nothing to repair from
        candidate.apply(np.zeros((6, 6), dtype=np.uint8))


def test_the_registry_points_at_this_learner():
    assert learner("complete_pattern") is lp.fit


# --------------------------------------------------------------------------- sampling


@FEW
@given(seeds, st.sampled_from(FAMILIES))
def test_sampled_hypotheses_make_valid_pairs_that_fit_recovers(seed, family):
    rng = np.random.default_rng(seed)
    look = style(rng, family)
    inputs = [scene(rng, family, look) for _ in range(3)]
    drawn = lp.sample(rng, inputs)
    if drawn is None:
        return
    outputs = [drawn.apply(g) for g in inputs]
    for g, o in zip(inputs, outputs):
        assert o.dtype == np.uint8 and 1 <= min(o.shape) and max(o.shape) <= 30 and o.max() <= 9
        assert o.shape != g.shape or not np.array_equal(o, g)
    names = [c.name for c in lp.fit(inputs, outputs)]
    assert drawn.name in names


def test_sample_draws_a_mask_repair_for_hidden_symmetric_patches():
    rng = np.random.default_rng(5)
    inputs = [pair[0] for pair in symmetric_task(11, 3)]
    kinds = {lp.sample(rng, inputs).name.split(",")[0] for _ in range(12)}
    assert "complete_pattern(mask=0" in kinds


def test_sample_returns_none_when_nothing_applies():
    one_cell = [np.zeros((1, 1), dtype=np.uint8)]
    assert lp.sample(np.random.default_rng(0), one_cell) is None

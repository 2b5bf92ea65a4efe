"""Property tests of the ARC guide DSL (tasks/arc_guide/dsl.py)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from tasks.arc_guide import dsl
from tasks.arc_guide.dsl import DIHEDRAL, IDEMPOTENT, PRIMITIVES, NotApplicable, apply_primitive

grids = arrays(
    np.uint8,
    st.tuples(st.integers(1, 30), st.integers(1, 30)),
    elements=st.integers(0, 9),
)
# mostly-background grids: objects, holes and noise, like the generator's inputs
sparse_grids = arrays(
    np.uint8,
    st.tuples(st.integers(1, 14), st.integers(1, 14)),
    elements=st.sampled_from([0, 0, 0, 0, 1, 2, 5]),
)
SETTINGS = settings(max_examples=60, deadline=None)


def test_primitives_are_an_ordered_mapping_of_at_least_17():
    assert len(PRIMITIVES) >= 17
    assert list(PRIMITIVES) == list(dict.fromkeys(PRIMITIVES))  # unique names, stable order
    assert list(PRIMITIVES)[:3] == ["rot90", "rot180", "rot270"]
    assert DIHEDRAL <= set(PRIMITIVES) and IDEMPOTENT <= set(PRIMITIVES)


@SETTINGS
@given(grids)
def test_four_quarter_turns_are_the_identity(g):
    out = g
    for _ in range(4):
        out = dsl.rot90(out)
    assert np.array_equal(out, g)
    assert np.array_equal(dsl.rot270(dsl.rot90(g)), g)
    assert np.array_equal(dsl.rot90(dsl.rot90(g)), dsl.rot180(g))


@SETTINGS
@given(grids)
def test_flips_and_transposes_are_involutions(g):
    for name in ("flip_h", "flip_v", "transpose", "anti_transpose", "rot180"):
        f = PRIMITIVES[name]
        assert np.array_equal(f(f(g)), g), name


@SETTINGS
@given(grids)
def test_transpose_and_quarter_turns_swap_the_shape(g):
    h, w = g.shape
    for name in ("transpose", "anti_transpose", "rot90", "rot270"):
        assert PRIMITIVES[name](g).shape == (w, h)
    assert dsl.transpose(g)[0, -1] == g[-1, 0]


@SETTINGS
@given(grids)
def test_two_dihedral_steps_equal_one_or_none(g):
    """What canonical labels rely on: a chain of dihedral steps is never shortest."""
    names = sorted(DIHEDRAL)
    singles = [g] + [PRIMITIVES[n](g) for n in names]
    for a in names:
        for b in names:
            twice = PRIMITIVES[b](PRIMITIVES[a](g))
            assert any(s.shape == twice.shape and np.array_equal(s, twice) for s in singles), (a, b)


@SETTINGS
@given(st.one_of(grids, sparse_grids), st.sampled_from(list(PRIMITIVES)))
def test_results_stay_in_arc_bounds_and_inputs_are_untouched(g, name):
    before = g.copy()
    try:
        out = apply_primitive(name, g)
    except NotApplicable:
        return
    assert np.array_equal(g, before), "a primitive mutated its argument"
    assert out.ndim == 2 and 1 <= out.shape[0] <= 30 and 1 <= out.shape[1] <= 30
    assert out.min() >= 0 and out.max() <= 9
    assert not np.shares_memory(out, g)


@SETTINGS
@given(sparse_grids, st.sampled_from(sorted(IDEMPOTENT)))
def test_idempotent_primitives_are_idempotent(g, name):
    """Canonical labels never repeat these back to back: f(f(x)) must equal f(x)."""
    try:
        once = apply_primitive(name, g)
    except NotApplicable:
        return
    assert np.array_equal(apply_primitive(name, once), once)


@SETTINGS
@given(sparse_grids)
def test_gravity_keeps_each_colour_count(g):
    counts = np.bincount(g.ravel(), minlength=10)
    for name in ("gravity_down", "gravity_up", "gravity_left", "gravity_right"):
        assert np.array_equal(np.bincount(PRIMITIVES[name](g).ravel(), minlength=10), counts)
    down = dsl.gravity_down(g)
    # in every column, no background cell lies below a non-background one
    fg = down != 0
    assert not np.any(fg[:-1] & ~fg[1:])


@SETTINGS
@given(arrays(np.uint8, st.tuples(st.integers(1, 15), st.integers(1, 15)), elements=st.integers(0, 9)))
def test_downscale_inverts_upscale(g):
    assert np.array_equal(dsl.downscale_2(dsl.upscale_2(g)), g)
    assert dsl.tile_2x2(g).shape == (2 * g.shape[0], 2 * g.shape[1])


def test_inapplicable_and_out_of_bounds_raise_the_dedicated_exception():
    assert issubclass(NotApplicable, ValueError)
    with pytest.raises(NotApplicable):
        dsl.crop_to_content(np.zeros((3, 3), np.uint8))  # no content
    with pytest.raises(NotApplicable):
        dsl.upscale_3(np.ones((11, 2), np.uint8))  # 33 rows
    with pytest.raises(NotApplicable):
        dsl.downscale_2(np.arange(4, dtype=np.uint8).reshape(2, 2))  # not uniform blocks
    with pytest.raises(NotApplicable):
        dsl.mirror_h(np.ones((2, 16), np.uint8))


def test_object_primitives_on_a_known_grid():
    g = np.array([
        [0, 0, 0, 0, 0, 3],
        [0, 1, 1, 1, 0, 0],
        [0, 1, 0, 1, 0, 0],
        [0, 1, 1, 1, 0, 2],
        [0, 0, 0, 0, 0, 2],
    ], dtype=np.uint8)
    filled = dsl.fill_enclosed(g)
    assert filled[2, 2] == 1 and np.count_nonzero(filled != g) == 1
    assert np.array_equal(dsl.largest_object(g), np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]]))
    assert dsl.remove_noise(g)[0, 5] == 0 and dsl.remove_noise(g)[3, 5] == 2  # only the lone cell goes
    assert set(np.unique(dsl.recolor_by_frequency(g))) == {0, 1}
    assert dsl.crop_to_content(g).shape == (5, 5)
    solid = np.full((4, 4), 7, np.uint8)
    assert np.count_nonzero(dsl.outline(solid)) == 12  # the 2x2 interior is cleared

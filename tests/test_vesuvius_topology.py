"""TopoScore and the leaderboard score (tasks/vesuvius/topology.py, metrics.leaderboard_score).

The Betti-matching tests need the reference extension (``pip install --no-deps
topolosses==0.2.0``; .ci/run installs it) and skip with that reason where it is missing.
Their expected counts come from hand reasoning and from an independent oracle below:
Betti numbers of the same cubical complex (surface voxels as vertices, 6-connected; cells
where all corners are surface) from component labelling and the Euler characteristic.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from core.errors import UserError
from tasks.vesuvius import topology
from tasks.vesuvius.metrics import leaderboard_score, surface_dice, voi_score
from tasks.vesuvius.task import resolve_monitor

needs_betti = pytest.mark.skipif(not topology.available(), reason=topology.unavailable_reason() or "available")
N = 20  # volumes are 20^3: octants split every axis at 10; structures sit in octant 0 ([1, 9)^3)


def finite_betti(mask: np.ndarray) -> np.ndarray:
    """(b0 - 1, b1, b2) of a binary volume: the finite features of the metric's filtration."""
    m = mask.astype(bool)
    if not m.any():
        return np.zeros(3, np.int64)
    _, b0 = ndimage.label(m, ndimage.generate_binary_structure(3, 1))
    background, n_bg = ndimage.label(~m, np.ones((3, 3, 3), bool))
    faces = [background[0], background[-1], background[:, 0], background[:, -1], background[:, :, 0], background[:, :, -1]]
    b2 = n_bg - len(set(np.unique(np.concatenate([f.ravel() for f in faces]))) - {0})
    cells = [int(m.sum())]  # vertices, then edges, squares, cubes whose corners are all surface
    for k in (1, 2, 3):
        total = 0
        for axes in itertools.combinations(range(3), k):
            block = m
            for a in axes:  # a cell along these axes: the AND of the block and its shift by one
                lo, hi = [slice(None)] * 3, [slice(None)] * 3
                lo[a], hi[a] = slice(0, -1), slice(1, None)
                block = block[tuple(lo)] & block[tuple(hi)]
            total += int(block.sum())
        cells.append(total)
    chi = cells[0] - cells[1] + cells[2] - cells[3]
    return np.array([b0 - 1, b0 + b2 - chi, b2], np.int64)


def octant_betti(mask: np.ndarray) -> np.ndarray:
    return sum(finite_betti(o) for o in topology.octants(mask))


def volume(*structures: tuple[slice, slice, slice], holes: tuple = ()) -> np.ndarray:
    v = np.zeros((N, N, N), np.uint8)
    for s in structures:
        v[s] = 1
    for s in holes:
        v[s] = 0
    return v


def sheet(z: int) -> tuple[slice, slice, slice]:
    return (slice(z, z + 1), slice(1, 9), slice(1, 9))


TWO_SHEETS = volume(sheet(2), sheet(6))
PILLAR = volume(sheet(2), sheet(6), (slice(2, 7), slice(4, 5), slice(4, 5)))
SPECK = volume(sheet(2), sheet(6), (slice(4, 5), slice(4, 5), slice(4, 5)))
HOLED = volume(sheet(2), sheet(6), holes=[(slice(2, 3), slice(4, 5), slice(4, 5))])
SOLID = volume((slice(2, 8), slice(2, 8), slice(2, 8)))
CAVITY = volume((slice(2, 8), slice(2, 8), slice(2, 8)), holes=[(slice(3, 7), slice(3, 7), slice(3, 7))])


def test_the_oracle_counts_the_hand_built_volumes():
    assert finite_betti(TWO_SHEETS).tolist() == [1, 0, 0]  # two components: one finite feature
    assert finite_betti(PILLAR).tolist() == [0, 0, 0]
    assert finite_betti(SPECK).tolist() == [2, 0, 0]
    assert finite_betti(HOLED).tolist() == [1, 1, 0]  # the hole: a loop around it
    assert finite_betti(CAVITY).tolist() == [0, 0, 1]
    assert finite_betti(volume((slice(2, 3), slice(2, 3), slice(2, 3)), (slice(3, 4), slice(3, 4), slice(3, 4)))
                        ).tolist() == [1, 0, 0]  # corner-touching voxels are two components


# (pred, gt, expected counts {matched, pred, gt} per dimension, expected TopoScore)
CASES = {
    "identical sheets": (TWO_SHEETS, TWO_SHEETS, ([1, 0, 0], [1, 0, 0], [1, 0, 0]), 1.0),
    "pillar merges the sheets": (PILLAR, TWO_SHEETS, ([0, 0, 0], [0, 0, 0], [1, 0, 0]), 0.0),
    "an extra small component": (SPECK, TWO_SHEETS, ([1, 0, 0], [2, 0, 0], [1, 0, 0]), 2 / 3),
    # dimension 0 matched (F1 1), dimension 1 only in pred (0.5 / 1.5); weights 0.34, 0.33
    "a hole through a sheet": (HOLED, TWO_SHEETS, ([1, 0, 0], [1, 1, 0], [1, 0, 0]), (0.34 + 0.33 / 3) / 0.67),
    "a closed cavity": (CAVITY, SOLID, ([0, 0, 0], [0, 0, 1], [0, 0, 0]), 1 / 3),
    "both empty": (np.zeros((N, N, N), np.uint8), np.zeros((N, N, N), np.uint8), ([0, 0, 0],) * 3, 1.0),
}


@needs_betti
@pytest.mark.parametrize("case", sorted(CASES))
def test_leaderboard_score_on_hand_built_volumes(case):
    pred, gt, (matched, in_pred, in_gt), topo = CASES[case]
    result = leaderboard_score(pred, gt)
    assert result["betti"] == {"matched": matched, "pred": in_pred, "gt": in_gt}
    assert result["betti"]["pred"] == octant_betti(pred).tolist() and result["betti"]["gt"] == octant_betti(gt).tolist()
    assert result["topo_score"] == pytest.approx(topo)
    sd, voi = surface_dice(pred, gt), voi_score(pred, gt)
    assert result["surface_dice"] == sd and result["voi_score"] == voi
    assert result["score"] == pytest.approx(min(1.0, 0.30 * topo + 0.35 * sd + 0.35 * voi))


@needs_betti
def test_ignored_voxels_are_cleared_before_topology():
    """gt label 2 clears both masks first: a pillar inside the ignored region is not seen."""
    gt = TWO_SHEETS.copy()
    gt[3:6, 4, 4] = 2
    result = leaderboard_score(PILLAR, gt)
    assert result["topo_score"] == 1.0 and result["betti"]["pred"] == [1, 0, 0]


def random_sheets(seed: int, size: int = 24) -> np.ndarray:
    """Wavy sheets (z planes bent by a smooth field) with random holes and specks."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:size, :size, :size]
    bend = ndimage.gaussian_filter(rng.normal(0, 6, (size, size)), 4)
    v = np.zeros((size, size, size), bool)
    for centre in rng.choice(np.arange(3, size - 3), size=rng.integers(1, 4), replace=False):
        v |= np.abs(z - centre - bend[None]) < rng.uniform(0.5, 1.5)
    v &= rng.random(v.shape) > rng.uniform(0.0, 0.08)  # holes
    v |= rng.random(v.shape) < rng.uniform(0.0, 0.003)  # specks
    return v.astype(np.uint8)


@needs_betti
@settings(max_examples=12, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1))
def test_feature_counts_equal_the_oracle_on_random_sheet_volumes(seed_pred, seed_gt):
    pred, gt = random_sheets(seed_pred), random_sheets(seed_gt)
    result = leaderboard_score(pred, gt, ignore_label=None)
    assert result["betti"]["pred"] == octant_betti(pred).tolist()
    assert result["betti"]["gt"] == octant_betti(gt).tolist()
    assert all(m <= min(p, g) for m, p, g in zip(*result["betti"].values()))
    assert 0.0 <= result["topo_score"] <= 1.0
    same = leaderboard_score(pred, pred, ignore_label=None)  # a prediction equal to gt matches everything
    assert same["topo_score"] == 1.0 and same["betti"]["matched"] == same["betti"]["pred"]


def test_f1_rules_dropped_dimensions_and_weights():
    counts = topology.BettiCounts(np.array([2, 0, 0]), np.array([3, 2, 0]), np.array([4, 0, 0]))
    assert counts.f1() == [pytest.approx(4 / 7), pytest.approx(0.5 / 2.5), None]
    assert counts.score() == pytest.approx((0.34 * 4 / 7 + 0.33 * 0.2) / 0.67)
    assert topology.BettiCounts().score() == 1.0  # no feature anywhere


def test_octants_cover_the_volume_with_sides_differing_by_at_most_one():
    v = np.arange(5 * 6 * 7).reshape(5, 6, 7)
    parts = topology.octants(v)
    assert len(parts) == 8 and sum(p.size for p in parts) == v.size
    assert sorted(np.concatenate([p.ravel() for p in parts]).tolist()) == v.ravel().tolist()
    assert {p.shape for p in parts} <= {(a, b, c) for a in (2, 3) for b in (3,) for c in (3, 4)}


def test_without_topology_the_score_says_so_and_reports_the_other_two():
    result = leaderboard_score(TWO_SHEETS, TWO_SHEETS, topology=False)
    assert result["score"] is None and result["topo_score"] is None and result["betti"] is None
    assert result["topology"] and "\n" not in result["topology"]
    assert result["surface_dice"] == 1.0 and result["voi_score"] == 1.0


def test_monitor_falls_back_to_surface_dice_only_when_asked_for_auto(monkeypatch):
    """Where Betti matching cannot load, "auto" monitors surface_dice and a topology metric
    asked for by name is a config error naming the install command."""
    monkeypatch.setattr(topology, "_load", lambda: (None, "TopoScore not computed: Betti matching is not installed"))
    assert resolve_monitor("auto", quiet=True) == "surface_dice"
    with pytest.raises(UserError, match="eval.monitor = 'score' needs TopoScore"):
        resolve_monitor("score")
    assert resolve_monitor("voi_score") == "voi_score"

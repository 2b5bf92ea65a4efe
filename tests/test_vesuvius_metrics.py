"""Surface Dice and VOI score on hand-made volumes with known answers."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tasks.vesuvius.metrics import surface_dice, surfel_area_table, variation_of_information, voi_score


def plate(z: int, shape=(24, 24, 24), thickness: int = 1) -> np.ndarray:
    """A uint8 gt-style volume: a plate of 1s at depth z (full in-plane extent within a margin)."""
    v = np.zeros(shape, np.uint8)
    v[z : z + thickness, 4:20, 4:20] = 1
    return v


def test_surfel_area_table_known_entries():
    table = surfel_area_table()
    assert table.shape == (256,)
    assert table[0] == 0 and table[255] == 0
    assert table[1] == pytest.approx(math.sqrt(3) / 8)  # one corner: triangle through 3 edge midpoints
    assert table[0b11] == pytest.approx(math.sqrt(2) / 2)  # two corners on an edge: 1 x sqrt(1/2) rectangle
    assert table[0b1111] == pytest.approx(1.0)  # a whole face: unit square


def test_identical_masks_score_one():
    gt = plate(10, thickness=3)
    assert surface_dice(gt, gt) == 1.0
    assert voi_score(gt, gt) == 1.0


def test_one_voxel_shift_is_within_tolerance():
    gt = plate(10, thickness=3)
    pred = np.roll(gt, 1, axis=0)
    assert surface_dice(pred, gt, tolerance=2.0) == pytest.approx(1.0)
    # at tolerance 0 the shifted plate's two big faces (each 16 x 16) miss exactly
    assert surface_dice(pred, gt, tolerance=0.0) < 0.5


def test_far_shift_scores_zero_and_partial_shift_in_between():
    gt = plate(6)
    assert surface_dice(plate(11), gt, tolerance=2.0) == 0.0  # surfel cubes >= 4 apart
    partial = surface_dice(plate(9), gt, tolerance=2.0)  # nearest surfel cubes 2 apart: some match
    assert 0.0 < partial < 1.0


def test_empty_masks():
    empty = np.zeros((12, 12, 12), np.uint8)
    gt = plate(5, shape=(12, 12, 12))
    assert surface_dice(empty, empty) == 1.0
    assert voi_score(empty, empty) == 1.0
    assert surface_dice(empty, gt) == 0.0
    assert surface_dice(gt, empty) == 0.0


def test_all_ignore_counts_as_both_empty():
    gt = np.full((12, 12, 12), 2, np.uint8)
    pred = np.ones_like(gt)  # whatever is predicted under label 2 is dropped
    assert surface_dice(pred, gt) == 1.0
    assert voi_score(pred, gt) == 1.0


def test_prediction_under_ignore_label_is_dropped():
    gt = plate(10, thickness=3)
    gt[:, :, 14:] = 2
    pred = gt.copy()
    pred[pred == 2] = 1  # predicted surface where gt is unlabelled
    assert surface_dice(pred, gt) == 1.0
    assert voi_score(pred, gt) == 1.0


def test_voi_of_a_merge_is_the_entropy_of_the_gt_split():
    gt = np.zeros((16, 16, 16), np.uint8)
    gt[2:6, 2:14, 2:14] = 1  # component A: 4 * 12 * 12 = 576 voxels
    gt[8:12, 2:14, 2:14] = 1  # component B: 576 voxels
    pred = gt.copy()
    pred[6:8, 7:9, 7:9] = 1  # a 2x2x2 bridge (8 voxels) merges them
    counts = np.array([576, 576, 8], float)
    p = counts / counts.sum()
    h = float(-(p * np.log2(p)).sum())  # H(gt | pred) in bits; H(pred | gt) = 0
    assert variation_of_information(pred, gt) == pytest.approx(h)
    assert voi_score(pred, gt) == pytest.approx(1 / (1 + 0.3 * h))


def test_voi_of_a_split_is_the_entropy_of_the_pred_split():
    gt = np.zeros((16, 16, 16), np.uint8)
    gt[4:8, 2:14, 2:14] = 1
    pred = gt.copy()
    pred[4:8, 2:14, 7:9] = 0  # cut into two 4 x 12 x 5 halves (240 voxels each), gap 96
    counts = np.array([240, 240, 96], float)
    p = counts / counts.sum()
    h = float(-(p * np.log2(p)).sum())  # bits
    assert voi_score(pred, gt) == pytest.approx(1 / (1 + 0.3 * h))
    assert voi_score(pred, gt, alpha=1.0) == pytest.approx(1 / (1 + h))


def test_diagonal_contact_is_26_connected():
    gt = np.zeros((6, 6, 6), np.uint8)
    gt[1, 1, 1] = gt[2, 2, 2] = 1  # corner-touching voxels: one component under 26-connectivity
    assert variation_of_information(gt, gt) == 0.0
    pred = gt.copy()
    pred[2, 2, 2] = 0
    # union is both voxels; gt is one component; pred labels {1, 0}: H(pred|gt) = 1 bit
    assert variation_of_information(pred, gt) == pytest.approx(1.0)


def test_voi_is_in_bits_on_a_hand_counted_case():
    """Union of 4 voxels: gt one component, pred three (2 + 1 voxels) plus 1 background voxel.
    H(pred | gt) = -(1/2 log2 1/2 + 2 x 1/4 log2 1/4) = 1.5 bits; H(gt | pred) = 0."""
    gt = np.zeros((3, 3, 9), np.uint8)
    gt[1, 1, 1:5] = 1  # a rod of 4 voxels
    pred = np.zeros_like(gt)
    pred[1, 1, 1:3] = 1  # component of 2
    pred[1, 1, 4] = 1  # component of 1 (voxel 3 is background: the gap)
    assert variation_of_information(pred, gt) == pytest.approx(1.5)
    assert voi_score(pred, gt) == pytest.approx(1 / (1 + 0.3 * 1.5))

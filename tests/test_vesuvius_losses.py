"""Losses: label 2 takes no part; fp32 results; clDice behaves as a loss."""
from __future__ import annotations

import pytest
import torch

from tasks.vesuvius.losses import masked_cross_entropy, segmentation_loss, soft_cldice, soft_dice, soft_skeleton
from tasks.vesuvius.task import LossConfig


def _case(seed=0, shape=(2, 12, 12, 12)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn((shape[0], 2) + shape[1:], generator=g)
    labels = torch.randint(0, 3, shape, generator=g)
    return logits, labels


@pytest.mark.parametrize("weights", [dict(ce_weight=1, dice_weight=0, cldice_weight=0),
                                     dict(ce_weight=0, dice_weight=1, cldice_weight=0),
                                     dict(ce_weight=0, dice_weight=0, cldice_weight=1),
                                     dict()])
def test_predictions_under_label_2_change_nothing(weights):
    cfg = LossConfig(**weights)
    logits, labels = _case()
    ignored = (labels == 2).unsqueeze(1).expand_as(logits)
    other = logits.clone()
    other[ignored] = torch.randn(int(ignored.sum())) * 10  # anything at all where the label is 2
    logits.requires_grad_(True)
    loss_a, _ = segmentation_loss(logits, labels, cfg)
    loss_b, _ = segmentation_loss(other, labels, cfg)
    assert torch.equal(loss_a, loss_b)
    loss_a.backward()
    assert logits.grad[ignored].abs().max() == 0  # no gradient flows into ignored voxels
    assert logits.grad[~ignored].abs().max() > 0


def test_all_ignored_batch_gives_a_finite_loss():
    logits, labels = _case()
    labels[:] = 2
    loss, logs = segmentation_loss(logits, labels, LossConfig())
    assert torch.isfinite(loss) and all(v == v for v in logs.values())


def test_loss_is_fp32_from_half_logits():
    logits, labels = _case()
    loss, _ = segmentation_loss(logits.to(torch.bfloat16), labels, LossConfig())
    assert loss.dtype == torch.float32


def test_cross_entropy_matches_torch_with_smoothing_and_weights():
    logits, labels = _case()
    labels[labels == 2] = 1  # nothing ignored: then it equals torch's weighted smoothed CE
    ours = masked_cross_entropy(logits, labels, (1.0, 1.0), 0.01)
    ref = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.01)
    torch.testing.assert_close(ours, ref)
    # a larger surface weight raises the loss share of surface voxels
    assert masked_cross_entropy(logits, labels, (1.0, 5.0), 0.0) != masked_cross_entropy(logits, labels, (1.0, 1.0), 0.0)


def test_soft_dice_and_cldice_are_zero_for_a_perfect_prediction():
    target = torch.zeros(1, 16, 16, 16)
    target[0, 6:9, 2:14, 2:14] = 1  # a sheet 3 voxels thick
    assert soft_dice(target, target) < 1e-6
    assert soft_cldice(target, target) < 1e-6
    assert soft_cldice(torch.zeros_like(target), target) > 0.4
    skel = soft_skeleton(target.unsqueeze(1), iterations=3)
    assert skel.sum() > 0 and (skel <= 1).all() and skel[target.unsqueeze(1) == 0].max() == 0

"""Segmentation losses: weighted cross-entropy with label smoothing, soft Dice, soft clDice.

All terms take logits (B, 2, D, H, W) and labels (B, D, H, W) with values 0, 1 and 2
(unlabelled). Voxels labelled 2 take no part in any term: they are masked out of the CE
sums, and their probabilities and targets are zeroed before Dice and before the soft
skeleton, so changing the prediction there changes neither the loss nor any gradient.
Everything is computed in float32 (logits are cast), also under autocast: fp16 sums over a
128^3 patch overflow.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = 2


def masked_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, class_weights=(1.0, 1.0), label_smoothing: float = 0.01
) -> torch.Tensor:
    """Class-weighted CE with label smoothing over voxels whose label is not 2.

    Per voxel: w[y] * -sum_c q_c log p_c with q = (1 - eps) onehot(y) + eps / 2; the mean is
    weighted by w[y] (as torch's weighted CE). No valid voxel: 0 (not NaN).
    """
    logits = logits.float()
    valid = labels != IGNORE  # (B, D, H, W) bool
    target = torch.where(valid, labels, torch.zeros_like(labels)).long()
    logp = F.log_softmax(logits, dim=1)  # (B, 2, D, H, W)
    nll = -logp.gather(1, target.unsqueeze(1)).squeeze(1)
    smooth = -logp.mean(dim=1)
    per_voxel = (1 - label_smoothing) * nll + label_smoothing * smooth
    w = torch.as_tensor(class_weights, dtype=torch.float32, device=logits.device)[target] * valid
    return (per_voxel * w).sum() / w.sum().clamp_min(1e-6)


def soft_dice(probs: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice of foreground probabilities (B, D, H, W) against a 0/1 target, over the
    batch as one volume (nnU-Net's batch Dice), restricted to ``valid`` voxels."""
    probs, target = probs.float(), target.float()
    if valid is not None:
        probs, target = probs * valid, target * valid
    inter = (probs * target).sum()
    return 1 - (2 * inter + smooth) / (probs.sum() + target.sum() + smooth)


def _soft_erode(x: torch.Tensor) -> torch.Tensor:
    # min over three 1-D min-pools (3x1x1, 1x3x1, 1x1x3); x: (B, 1, D, H, W)
    p1 = -F.max_pool3d(-x, (3, 1, 1), stride=1, padding=(1, 0, 0))
    p2 = -F.max_pool3d(-x, (1, 3, 1), stride=1, padding=(0, 1, 0))
    p3 = -F.max_pool3d(-x, (1, 1, 3), stride=1, padding=(0, 0, 1))
    return torch.minimum(torch.minimum(p1, p2), p3)


def _soft_dilate(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool3d(x, 3, stride=1, padding=1)


def _soft_open(x: torch.Tensor) -> torch.Tensor:
    return _soft_dilate(_soft_erode(x))


def soft_skeleton(x: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """Soft skeleton (Shit et al., CVPR 2021) of a (B, 1, D, H, W) map in [0, 1]."""
    skel = F.relu(x - _soft_open(x))
    for _ in range(iterations):
        x = _soft_erode(x)
        delta = F.relu(x - _soft_open(x))
        skel = skel + F.relu(delta - skel * delta)
    return skel


def soft_cldice(probs: torch.Tensor, target: torch.Tensor, iterations: int = 3, valid: torch.Tensor | None = None, smooth: float = 1.0) -> torch.Tensor:
    """Soft clDice loss = 1 - 2 Tprec Tsens / (Tprec + Tsens).

    probs: (B, D, H, W) foreground probabilities (never logits or thresholded masks); target:
    (B, D, H, W) 0/1. Where ``valid`` is False both are zeroed first, so the skeletons there
    are 0 and the ignored region cannot leak into the terms through the pooling.
    """
    probs, target = probs.float(), target.float()
    if valid is not None:
        probs, target = probs * valid, target * valid
    p, g = probs.unsqueeze(1), target.unsqueeze(1)
    skel_p, skel_g = soft_skeleton(p, iterations), soft_skeleton(g, iterations)
    tprec = ((skel_p * g).sum() + smooth) / (skel_p.sum() + smooth)
    tsens = ((skel_g * p).sum() + smooth) / (skel_g.sum() + smooth)
    return 1 - 2 * tprec * tsens / (tprec + tsens)


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, cfg) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted sum configured in ``[loss]``; returns (fp32 scalar, per-term floats)."""
    logits = logits.float()
    valid = (labels != IGNORE).float()
    target = (labels == 1).float()
    probs = torch.softmax(logits, dim=1)[:, 1]
    terms = {"ce": masked_cross_entropy(logits, labels, cfg.class_weights, cfg.label_smoothing)}
    if cfg.dice_weight:
        terms["dice"] = soft_dice(probs, target, valid)
    if cfg.cldice_weight:
        terms["cldice"] = soft_cldice(probs, target, cfg.cldice_iterations, valid)
    weights = {"ce": cfg.ce_weight, "dice": cfg.dice_weight, "cldice": cfg.cldice_weight}
    total = sum(weights[k] * v for k, v in terms.items())
    return total, {f"loss_{k}": v.detach() for k, v in terms.items()}  # tensors: no GPU sync per step

"""Whole-volume sliding-window inference with Gaussian blending (validation and predict).

Windows of ``patch`` voxels overlap by ``overlap`` (fraction); each window's image is read
with the features' context margin (mirrored at the volume edge, like the training patches),
features are computed on the model's device, and the foreground probabilities are blended
with a Gaussian importance map (sigma = patch / 8, nnU-Net's choice) so window edges weigh
little. Optional mirror test-time augmentation averages the 8 axis-flip combinations
(the features are flip-equivariant, so the flip is applied to the feature tensor).
"""
from __future__ import annotations

import itertools

import numpy as np
import torch

from tasks.vesuvius.data import read_box
from tasks.vesuvius.features import compute_features, context_margin, normalize_features


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start offsets covering [0, size) with windows of ``patch`` (size >= patch)."""
    step = max(1, int(round(patch * (1 - overlap))))
    starts = list(range(0, size - patch + 1, step))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def gaussian_importance(patch: int, device: torch.device) -> torch.Tensor:
    """(patch, patch, patch) float32 weights, 1 at the centre, floored at 1e-3 (never zero)."""
    x = torch.arange(patch, dtype=torch.float32, device=device) - (patch - 1) / 2
    g = torch.exp(-0.5 * (x / (patch / 8)) ** 2)
    w = g[:, None, None] * g[None, :, None] * g[None, None, :]
    return (w / w.max()).clamp_min(1e-3)


def model_input(image: torch.Tensor, channels, margin: int) -> torch.Tensor:
    """(B, 1, P+2m, ...) uint8 (or float in [0, 1]) on the device -> (B, C, P, P, P) normalised features."""
    x = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
    feats = compute_features(x, channels)
    if margin:
        feats = feats[:, :, margin:-margin, margin:-margin, margin:-margin]
    return normalize_features(feats, channels)


@torch.no_grad()
def sliding_window_probs(
    model: torch.nn.Module,
    volume: np.ndarray,
    channels,
    patch: int,
    overlap: float = 0.5,
    mirror: bool = False,
    batch_size: int = 1,
) -> np.ndarray:
    """Foreground probability (D, H, W) float32 of a uint8 volume (D, H, W); model in eval mode."""
    device = next(model.parameters()).device
    margin = context_margin(channels)
    shape = np.array(volume.shape)
    padded = np.maximum(shape, patch)  # volumes smaller than a window are mirrored up to it
    # (D' + 2m, H' + 2m, W' + 2m) uint8: the whole volume with context, read once
    source = read_box(volume, -margin * np.ones(3, np.int64), padded + 2 * margin, "symmetric")
    prob_sum = torch.zeros(tuple(padded), dtype=torch.float32)
    weight_sum = torch.zeros(tuple(padded), dtype=torch.float32)
    importance = gaussian_importance(patch, device)
    starts = list(itertools.product(*(window_starts(int(s), patch, overlap) for s in padded)))
    flips = [axes for k in range(4) for axes in itertools.combinations((2, 3, 4), k)] if mirror else [()]
    for i in range(0, len(starts), batch_size):
        group = starts[i : i + batch_size]
        crops = np.stack([source[z : z + patch + 2 * margin, y : y + patch + 2 * margin, x : x + patch + 2 * margin] for z, y, x in group])
        inputs = model_input(torch.from_numpy(crops)[:, None].to(device), channels, margin)  # (b, C, P, P, P)
        probs = torch.zeros((len(group), patch, patch, patch), device=device)
        for axes in flips:
            flipped = inputs.flip(axes) if axes else inputs
            out = torch.softmax(model(flipped).float(), dim=1)[:, 1]  # (b, P, P, P)
            probs += out.flip([a - 1 for a in axes]) if axes else out
        probs = (probs / len(flips) * importance).cpu()
        for (z, y, x), p in zip(group, probs):
            prob_sum[z : z + patch, y : y + patch, x : x + patch] += p
            weight_sum[z : z + patch, y : y + patch, x : x + patch] += importance.cpu()
    prob = (prob_sum / weight_sum)[: shape[0], : shape[1], : shape[2]]
    return prob.numpy()


def run_probs(model: torch.nn.Module, cfg, volume: np.ndarray) -> np.ndarray:
    """:func:`sliding_window_probs` with the run's own settings (training patch, ``eval``
    overlap, mirroring and windows per batch): what validation, post-processing tuning and
    their benchmark score."""
    e = cfg.eval
    return sliding_window_probs(model, volume, cfg.features.channels, cfg.data.patch_size, e.overlap, e.mirror_tta,
                                e.windows_per_batch)

"""Synthetic scroll volumes in the Kaggle layout, so the demo and the tests run offline.

    python -m tasks.vesuvius.synth --out DIR --volumes N --size S --seed K [--scrolls M]

writes DIR/train_images/<id>.tif, DIR/train_labels/<id>.tif (uint8, LZW) and DIR/train.csv
(``id,scroll_id``; volumes are dealt round-robin over M scroll ids, default 3).

A volume looks like a CT crop of a rolled scroll: papyrus sheets wound as an Archimedean
spiral around an axis roughly along D, with quasi-periodic, uneven spacing (a slow
modulation of the turn radius plus a per-sheet wobble, so neighbouring sheets come close and
touch in places), fibre texture (anisotropic smoothed noise), bright inclusions, blur and
noise. A scroll id fixes the spiral's spacing and thickness; each volume is a crop at its own
position. Labels: 1 on the sheets, 0 labelled background, 2 unlabelled (the outer 3 voxels
of every face plus a random slab, as in the competition data).
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

from core.atomic import atomic_write
from core.errors import UserError, exit_on_user_error

BORDER = 3  # outer voxels of every face labelled 2


@dataclass(frozen=True)
class ScrollParams:
    spacing: float  # mean radial distance between turns (voxels)
    thickness: float  # sheet thickness (voxels)
    modulation: float  # amplitude of the slow spacing modulation (fraction of spacing)
    period: float  # period of that modulation, in turns
    phase: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "ScrollParams":
        return cls(
            spacing=float(rng.uniform(10.0, 14.0)),
            thickness=float(rng.uniform(2.6, 3.4)),
            modulation=float(rng.uniform(0.12, 0.2)),
            period=float(rng.uniform(2.5, 4.5)),
            phase=float(rng.uniform(0, 2 * np.pi)),
        )


def _sheet_distance(z, y, x, centre, tilt, scroll: ScrollParams, wobble_phase, wobble_amp) -> np.ndarray:
    """Radial distance (voxels) of each point to the nearest spiral sheet; arrays broadcast."""
    cy = centre[0] + tilt[0] * z
    cx = centre[1] + tilt[1] * z
    dy, dx = y - cy, x - cx
    r = np.sqrt(dy * dy + dx * dx)
    theta = np.arctan2(dy, dx)
    turn = theta / (2 * np.pi)
    s = scroll.spacing
    u0 = np.floor(r / s - turn)
    best = np.full(np.broadcast(z, y, x).shape, np.inf, dtype=np.float32)
    for dk in (-2, -1, 0, 1, 2):
        k = u0 + dk
        u = k + turn  # continuous turn index of sheet k at this angle
        radius = s * (u + scroll.modulation * np.sin(2 * np.pi * u / scroll.period + scroll.phase))
        ki = np.mod(k, len(wobble_phase)).astype(np.int64)
        radius = radius + wobble_amp * s * np.sin(3 * theta + 0.04 * z + wobble_phase[ki])
        best = np.minimum(best, np.abs(r - radius).astype(np.float32))
    return best


def _smooth_field(rng: np.random.Generator, shape, sigma: float, lo: float, hi: float) -> np.ndarray:
    """A smooth random field rescaled to [lo, hi] (float32)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    field = (field - field.min()) / (np.ptp(field) + 1e-6)
    return (lo + (hi - lo) * field).astype(np.float32)


def make_volume(size: int, scroll: ScrollParams, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One (size, size, size) uint8 image and its uint8 label volume (0/1/2)."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(-0.6 * size, 1.6 * size, size=2)  # often outside the crop: gentle curvature
    tilt = rng.uniform(-0.15, 0.15, size=2)
    wobble_phase = rng.uniform(0, 2 * np.pi, size=64)
    wobble_amp = float(rng.uniform(0.15, 0.25))
    density = np.empty((size,) * 3, np.float32)
    labels = np.empty((size,) * 3, np.uint8)
    yy, xx = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32), indexing="ij")
    half = scroll.thickness / 2
    for z0 in range(0, size, 16):  # slabs bound the float temporaries for 320^3 volumes
        z = np.arange(z0, min(size, z0 + 16), dtype=np.float32)[:, None, None]
        d = _sheet_distance(z, yy[None], xx[None], centre, tilt, scroll, wobble_phase, wobble_amp)
        density[z0 : z0 + len(z)] = np.exp(-((d / half) ** 4))  # flat-topped sheet profile
        labels[z0 : z0 + len(z)] = d <= half
    # fibre texture: two anisotropic noise fields (fibres along D and along W)
    fibres = ndimage.gaussian_filter(rng.standard_normal(density.shape, dtype=np.float32), (4.0, 0.7, 0.7))
    fibres += ndimage.gaussian_filter(rng.standard_normal(density.shape, dtype=np.float32), (0.7, 0.7, 4.0))
    fibres *= 0.35 / (fibres.std() + 1e-6)
    # papyrus density varies slowly along the sheets (thin, damaged or faint stretches)
    faint = _smooth_field(rng, density.shape, 6.0, 0.35, 1.0)
    # loose debris between the sheets: faint blobs that are not surface
    debris = ndimage.gaussian_filter(rng.standard_normal(density.shape, dtype=np.float32), 1.5)
    debris = np.clip((debris - 1.2 * debris.std()) / (debris.std() + 1e-6), 0, 1)
    image = 0.12 + 0.45 * density * faint * (1 + fibres) + 0.25 * debris
    # bright inclusions (mineral grains): small dense blobs, not surface
    n_inclusions = max(1, size**3 // 20000)
    spots = np.zeros(density.shape, np.float32)
    idx = rng.integers(0, size, size=(n_inclusions, 3))
    spots[idx[:, 0], idx[:, 1], idx[:, 2]] = 1.0
    spots = ndimage.gaussian_filter(spots, 1.2)
    image += 0.6 * spots / (spots.max() + 1e-6)
    image = ndimage.gaussian_filter(image, 1.0)
    image *= _smooth_field(rng, density.shape, 16.0, 0.75, 1.25)  # beam-hardening-like gain drift
    image += rng.normal(0, 0.09, size=image.shape).astype(np.float32)
    image = np.clip(image * 255, 0, 255).astype(np.uint8)
    # unlabelled regions: a random slab (annotators skipped it) and the 3-voxel border
    axis = int(rng.integers(0, 3))
    start = int(rng.integers(0, size))
    width = int(size * rng.uniform(0.1, 0.3))
    sl = [slice(None)] * 3
    sl[axis] = slice(start, start + width)
    labels[tuple(sl)] = 2
    b = BORDER
    labels[:b], labels[-b:], labels[:, :b], labels[:, -b:], labels[:, :, :b], labels[:, :, -b:] = 2, 2, 2, 2, 2, 2
    return image, labels


def write_tiff(path: Path, volume: np.ndarray) -> None:
    """Write a uint8 3D volume as an LZW-compressed multi-page TIFF, atomically."""
    with atomic_write(path, "wb") as f:
        tifffile.imwrite(f, volume, compression="lzw")


def generate(out: Path, volumes: int, size: int, seed: int, scrolls: int = 3, progress: bool = True) -> Path:
    """Write the Kaggle layout under ``out``; returns ``out``."""
    if volumes < 1 or size < 16 or scrolls < 1:
        raise UserError(f"synth: need volumes >= 1, size >= 16, scrolls >= 1 (got {volumes}, {size}, {scrolls})")
    out = Path(out)
    (out / "train_images").mkdir(parents=True, exist_ok=True)
    (out / "train_labels").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    params = [ScrollParams.draw(rng) for _ in range(scrolls)]
    scroll_ids = [str(90001 + j) for j in range(scrolls)]  # fixed, so a config can hold one out
    rows = []
    for i in range(volumes):
        t0 = time.perf_counter()
        vid = str(1000 + i)
        image, labels = make_volume(size, params[i % scrolls], seed=int(rng.integers(0, 2**31)))
        write_tiff(out / "train_images" / f"{vid}.tif", image)
        write_tiff(out / "train_labels" / f"{vid}.tif", labels)
        rows.append((vid, scroll_ids[i % scrolls]))
        if progress:
            print(f"synth [{i + 1}/{volumes}] {vid}.tif {size}^3 scroll {rows[-1][1]} ({time.perf_counter() - t0:.1f}s)", file=sys.stderr)
    with atomic_write(out / "train.csv", "w") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["id", "scroll_id"])
        writer.writerows(rows)
    return out


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tasks.vesuvius.synth", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="output folder (Kaggle layout)")
    ap.add_argument("--volumes", type=int, default=6)
    ap.add_argument("--size", type=int, default=96, help="edge length of each cubic volume")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scrolls", type=int, default=3, help="number of scroll ids")
    args = ap.parse_args(argv)
    generate(args.out, args.volumes, args.size, args.seed, args.scrolls)


if __name__ == "__main__":
    main()

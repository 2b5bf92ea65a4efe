"""Vesuvius volumes: reading, the decode-once cache, the whole-dataset check, split, datasets.

Layout (the Kaggle competition's): ROOT/train_images/<id>.tif, ROOT/train_labels/<id>.tif
(uint8 3D TIFFs, often LZW: tifffile + imagecodecs), ROOT/train.csv with ``id,scroll_id``.

Decode-once cache: each TIFF is decoded a single time into ``<cache>/<stem>-<key>.npy``
(key = hash of the absolute path, size and mtime, so an edited file is decoded again),
written to a temporary name and renamed, and afterwards opened with ``np.load(mmap_mode="r")``:
a patch read touches only its own pages and forked workers share them. A small JSON
sidecar holds shape, dtype and (labels) the values present and the capped int16 surface
coordinates' file, so re-checking a cached dataset costs no decoding.

Datasets hold only small numpy arrays (offsets, int16 coordinates) and paths; memory maps
are opened lazily in each process.
"""
from __future__ import annotations

import csv
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import torch

from core import atomic
from core.atomic import atomic_write
from core.errors import DataError
from core.paths import cache_dir

IGNORE = 2


# ----------------------------------------------------------------------------- decode cache


def _cache_key(path: Path) -> str:
    st = path.stat()
    text = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_write(path, "wb") as f:
        np.save(f, array)


def read_tiff(path: Path) -> np.ndarray:
    """Decode a whole 3D TIFF; DataError naming the file when it cannot be read."""
    try:
        return tifffile.imread(path)
    except Exception as e:  # tifffile raises many types for damaged files
        raise DataError(f"{path} is unreadable ({type(e).__name__}: {e}); replace the file or remove it") from None


@dataclass(frozen=True)
class Decoded:
    """A decoded volume in the cache: the .npy path and what the check needs."""

    npy: Path
    shape: tuple[int, ...]
    dtype: str
    values: tuple[int, ...] | None = None  # label volumes: the values present
    surface: Path | None = None  # label volumes: (n, 3) int16 surface coordinates


def decode(path: Path, is_label: bool, max_surface_points: int = 32768, cache: Path | None = None) -> Decoded:
    """Decode ``path`` into the cache once (returns the cached entry when it is current)."""
    cache = cache or cache_dir("vesuvius", "decoded")
    stem = f"{path.stem}-{'label' if is_label else 'image'}-{_cache_key(path)}"
    meta_path = cache / f"{stem}.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("max_surface_points") in (None, max_surface_points):
            return _decoded_from_meta(cache, meta)
    volume = read_tiff(path)
    meta = {"npy": f"{stem}.npy", "shape": list(volume.shape), "dtype": str(volume.dtype)}
    _atomic_save_npy(cache / meta["npy"], volume)
    if is_label:
        if volume.dtype == np.uint8:  # a histogram is ~10x faster than np.unique on 320^3
            meta["values"] = [int(v) for v in np.flatnonzero(np.bincount(volume.ravel(), minlength=256))]
        else:
            meta["values"] = [int(v) for v in np.unique(volume)[:16]]
        meta["max_surface_points"] = max_surface_points
        meta["surface"] = f"{stem}-surface.npy"
        _atomic_save_npy(cache / meta["surface"], surface_coordinates(volume, max_surface_points, seed=_seed_of(stem)))
    atomic.write_json(meta_path, meta, indent=None)
    return _decoded_from_meta(cache, meta)


def _seed_of(text: str) -> int:
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16)


def _decoded_from_meta(cache: Path, meta: dict) -> Decoded:
    return Decoded(
        npy=cache / meta["npy"],
        shape=tuple(meta["shape"]),
        dtype=meta["dtype"],
        values=tuple(meta["values"]) if "values" in meta else None,
        surface=cache / meta["surface"] if "surface" in meta else None,
    )


def surface_coordinates(labels: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """(n <= cap, 3) int16 coordinates of surface voxels (label 1), a seeded random subset.

    int16 and a cap keep the index small: 786 volumes x 32768 x 3 x 2 B = 155 MB at most.
    """
    coords = np.argwhere(labels == 1)
    if len(coords) > cap:
        keep = np.random.default_rng(seed).choice(len(coords), cap, replace=False)
        coords = coords[np.sort(keep)]
    return coords.astype(np.int16)


# ----------------------------------------------------------------------------- the check


@dataclass(frozen=True)
class Volume:
    id: str
    scroll_id: str
    image: Decoded
    label: Decoded


def read_index(root: Path) -> list[tuple[str, str]]:
    """Rows of train.csv as (id, scroll_id); DataError for a missing or malformed file."""
    path = root / "train.csv"
    if not root.is_dir():
        raise DataError(
            f"data.root {root} does not exist; point it at the folder holding train_images/, train_labels/ "
            f"and train.csv (--set data.root=DIR), or use configs/vesuvius/demo.toml for synthetic data"
        )
    if not path.is_file():
        raise DataError(f"{path} is missing; data.root must hold train.csv with columns id,scroll_id")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"id", "scroll_id"} <= set(reader.fieldnames):
            raise DataError(f"{path}: expected a header with columns id,scroll_id (got {reader.fieldnames})")
        rows = []
        for line, row in enumerate(reader, start=2):
            vid, scroll = (row.get("id") or "").strip(), (row.get("scroll_id") or "").strip()
            if not vid or not scroll:
                raise DataError(f"{path} line {line}: empty id or scroll_id")
            rows.append((vid, scroll))
    return rows


def check_dataset(root: Path, on_bad_volume: str = "error", max_surface_points: int = 32768) -> list[Volume]:
    """Check every volume of ROOT and decode it into the cache; returns the good volumes.

    Problems found (all collected before reporting): images without labels, labels without
    images (ids in train.csv or files on disk), unreadable files, shape mismatches, dtypes
    other than uint8, label values outside {0, 1, 2}. ``on_bad_volume="error"`` raises one
    DataError listing them all; ``"skip"`` reports them on stderr and drops those volumes.
    """
    root = Path(root)
    rows = read_index(root)
    images_dir, labels_dir = root / "train_images", root / "train_labels"
    problems: list[str] = []
    good: list[Volume] = []
    listed = {vid for vid, _ in rows}
    on_disk_images = {p.stem for p in images_dir.glob("*.tif")} if images_dir.is_dir() else set()
    on_disk_labels = {p.stem for p in labels_dir.glob("*.tif")} if labels_dir.is_dir() else set()
    for vid in sorted((on_disk_images | on_disk_labels) - listed):
        problems.append(f"{vid}.tif is on disk but not in train.csv")
    for vid, scroll in rows:
        image_path, label_path = images_dir / f"{vid}.tif", labels_dir / f"{vid}.tif"
        if not image_path.is_file() and not label_path.is_file():
            problems.append(f"train.csv lists {vid} but neither {image_path} nor {label_path} exists")
            continue
        if not label_path.is_file():
            problems.append(f"{label_path} is missing (image {image_path} has no label)")
            continue
        if not image_path.is_file():
            problems.append(f"{image_path} is missing (label {label_path} has no image)")
            continue
        try:
            image = decode(image_path, is_label=False, max_surface_points=max_surface_points)
            label = decode(label_path, is_label=True, max_surface_points=max_surface_points)
        except DataError as e:
            problems.append(str(e).split(";")[0])
            continue
        bad = []
        if len(image.shape) != 3:
            bad.append(f"{image_path} is not a 3D volume (shape {image.shape})")
        if image.dtype != "uint8":
            bad.append(f"{image_path} has dtype {image.dtype}, expected uint8")
        if label.dtype != "uint8":
            bad.append(f"{label_path} has dtype {label.dtype}, expected uint8")
        if image.shape != label.shape:
            bad.append(f"{label_path} has shape {label.shape} but its image {image_path} has {image.shape}")
        extra = sorted(set(label.values or ()) - {0, 1, 2})
        if extra:
            bad.append(f"{label_path} has label values {extra[:5]} outside {{0, 1, 2}}")
        if bad:
            problems.extend(bad)
            continue
        good.append(Volume(vid, scroll, image, label))
    if problems:
        summary = f"{len(problems)} problem(s) in {root}: " + "; ".join(problems)
        if on_bad_volume == "error":
            raise DataError(summary + '; fix or remove them, or run with --set data.on_bad_volume=skip to train without them')
        print(f"warning: skipping bad volumes: {summary}", file=sys.stderr)
    if not good:
        raise DataError(f"no usable volumes in {root}; check the layout (train_images/, train_labels/, train.csv)")
    return good


def split(volumes: list[Volume], val_scrolls: list[str], val_fraction: float, seed: int) -> tuple[list[Volume], list[Volume]]:
    """Hold out whole scrolls (``val_scrolls``) or else a seeded ``val_fraction`` of volumes."""
    if val_scrolls:
        known = {v.scroll_id for v in volumes}
        unknown = sorted(set(val_scrolls) - known)
        if unknown:
            raise DataError(f"data.val_scrolls {unknown} not in train.csv (scroll ids present: {', '.join(sorted(known))})")
        val = [v for v in volumes if v.scroll_id in val_scrolls]
        train = [v for v in volumes if v.scroll_id not in val_scrolls]
    else:
        order = np.random.default_rng(seed).permutation(len(volumes))
        n_val = max(1, int(round(val_fraction * len(volumes)))) if val_fraction > 0 else 0
        val = [volumes[i] for i in sorted(order[:n_val])]
        train = [volumes[i] for i in sorted(order[n_val:])]
    if not train:
        raise DataError("the validation split leaves no training volumes; hold out fewer scrolls or a smaller data.val_fraction")
    return train, val


# ----------------------------------------------------------------------------- datasets

_MMAPS: dict[str, np.ndarray] = {}  # per process: path -> memory map (a handful of small objects)


def _open(npy: Path) -> np.ndarray:
    key = str(npy)
    if key not in _MMAPS:
        _MMAPS[key] = np.load(npy, mmap_mode="r")
    return _MMAPS[key]


def read_box(volume: np.ndarray, lo, size, pad_mode: str, fill: int = 0) -> np.ndarray:
    """volume[lo : lo + size] on each axis (size: int or per-axis); parts outside are padded.

    pad_mode "symmetric" mirrors like scipy's "reflect" (images: features stay natural at the
    volume edge); "constant" fills with ``fill`` (labels: 2 = ignore).
    """
    lo = np.asarray(lo, dtype=np.int64)
    hi = lo + np.broadcast_to(np.asarray(size, dtype=np.int64), lo.shape)
    shape = np.array(volume.shape)
    src_lo, src_hi = np.clip(lo, 0, shape), np.clip(hi, 0, shape)
    box = np.asarray(volume[tuple(slice(a, b) for a, b in zip(src_lo, src_hi))])
    pads = [(int(a - l), int(h - b)) for l, h, a, b in zip(lo, hi, src_lo, src_hi)]
    if any(p for pair in pads for p in pair):
        if pad_mode == "symmetric" and box.size:
            while any(p > s for (p, _), s in zip(pads, box.shape)) or any(p > s for (_, p), s in zip(pads, box.shape)):
                step = [(min(a, s), min(b, s)) for (a, b), s in zip(pads, box.shape)]
                box = np.pad(box, step, mode="symmetric")
                pads = [(a - sa, b - sb) for (a, b), (sa, sb) in zip(pads, step)]
            box = np.pad(box, pads, mode="symmetric")
        else:
            box = np.pad(box, pads, mode="constant", constant_values=fill)
    return box


class PatchDataset(torch.utils.data.Dataset):
    """Random training patches: item i of epoch e is a pure function of (seed, e, i).

    Returns {"image": (1, P+2m, P+2m, P+2m) uint8, "label": (P, P, P) uint8}: the image
    carries ``margin`` voxels of context per side so the features are exact over the label's
    extent; the device-side ``to_device`` computes features and crops the margin.
    A ``surface_fraction`` of items is centred on a (jittered) surface voxel.
    """

    def __init__(self, volumes: list[Volume], patch_size: int, margin: int, surface_fraction: float, samples_per_volume: int, seed: int):
        self.images = [str(v.image.npy) for v in volumes]  # short list of paths (small)
        self.labels = [str(v.label.npy) for v in volumes]
        self.shapes = np.array([v.image.shape for v in volumes], dtype=np.int64)
        coords = [np.load(v.label.surface) for v in volumes]
        self.surface_offsets = np.cumsum([0] + [len(c) for c in coords]).astype(np.int64)
        self.surface = np.concatenate(coords) if coords else np.zeros((0, 3), np.int16)  # (total, 3) int16
        self.patch_size, self.margin = patch_size, margin
        self.surface_fraction = surface_fraction
        self.length = samples_per_volume * len(volumes)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        v = index % len(self.images)
        shape = self.shapes[v]
        p = self.patch_size
        n_surface = self.surface_offsets[v + 1] - self.surface_offsets[v]
        if n_surface and rng.random() < self.surface_fraction:
            centre = self.surface[self.surface_offsets[v] + rng.integers(n_surface)].astype(np.int64)
            centre = centre + rng.integers(-p // 4, p // 4 + 1, size=3)
        else:
            centre = np.array([rng.integers(0, s) for s in shape])
        lo = np.clip(centre - p // 2, 0, np.maximum(shape - p, 0))  # keep the patch inside when it fits
        image = read_box(_open(Path(self.images[v])), lo - self.margin, p + 2 * self.margin, "symmetric")
        label = read_box(_open(Path(self.labels[v])), lo, p, "constant", fill=IGNORE)
        return {"image": torch.from_numpy(np.ascontiguousarray(image))[None], "label": torch.from_numpy(np.ascontiguousarray(label))}


class VolumeDataset(torch.utils.data.Dataset):
    """Whole validation volumes: {"image": (1, D, H, W) uint8, "label": (D, H, W) uint8}."""

    def __init__(self, volumes: list[Volume]):
        self.images = [str(v.image.npy) for v in volumes]
        self.labels = [str(v.label.npy) for v in volumes]
        self.ids = np.array([v.id for v in volumes])
        self.scroll_ids = np.array([v.scroll_id for v in volumes])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = np.array(_open(Path(self.images[index])))
        label = np.array(_open(Path(self.labels[index])))
        return {"image": torch.from_numpy(image)[None], "label": torch.from_numpy(label)}

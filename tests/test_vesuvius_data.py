"""Reading, caching and checking Vesuvius volumes; every bad-data case exits 2 naming the file."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from core.errors import DataError
from tasks.vesuvius import data as vdata
from tasks.vesuvius.synth import generate, write_tiff

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TWOTRACK_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def root(tmp_path) -> Path:
    """A small good dataset: 4 volumes of 20^3 over 2 scrolls, written by the real generator."""
    return generate(tmp_path / "data", volumes=4, size=20, seed=1, scrolls=2, progress=False)


def _ids(root: Path) -> list[str]:
    with (root / "train.csv").open() as f:
        return [row["id"] for row in csv.DictReader(f)]


def test_synth_writes_lzw_tiffs_in_the_kaggle_layout(root):
    ids = _ids(root)
    assert len(ids) == 4
    with (root / "train.csv").open() as f:
        assert len({row["scroll_id"] for row in csv.DictReader(f)}) == 2
    with tifffile.TiffFile(root / "train_images" / f"{ids[0]}.tif") as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.LZW
        image = tif.asarray()
    labels = tifffile.imread(root / "train_labels" / f"{ids[0]}.tif")
    assert image.shape == labels.shape == (20, 20, 20) and image.dtype == labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1, 2} and (labels == 1).any()
    # the 3-voxel border is unlabelled on every face
    for axis in range(3):
        assert (np.take(labels, range(3), axis=axis) == 2).all()
        assert (np.take(labels, range(17, 20), axis=axis) == 2).all()


def test_good_dataset_passes_and_is_cached_as_memmaps(root):
    volumes = vdata.check_dataset(root)
    assert [v.id for v in volumes] == _ids(root)
    v = volumes[0]
    cached = np.load(v.image.npy, mmap_mode="r")
    assert isinstance(cached, np.memmap)
    np.testing.assert_array_equal(cached, tifffile.imread(root / "train_images" / f"{v.id}.tif"))
    coords = np.load(v.label.surface)
    assert coords.dtype == np.int16 and coords.shape[1] == 3
    labels = tifffile.imread(root / "train_labels" / f"{v.id}.tif")
    assert (labels[tuple(coords.T.astype(int))] == 1).all()
    # decoded once: a second check reuses the same cache file untouched
    mtime = v.image.npy.stat().st_mtime_ns
    assert vdata.check_dataset(root)[0].image.npy == v.image.npy
    assert v.image.npy.stat().st_mtime_ns == mtime
    # an edited file gets a new cache entry
    write_tiff(root / "train_images" / f"{v.id}.tif", np.zeros((20, 20, 20), np.uint8))
    os.utime(root / "train_images" / f"{v.id}.tif", ns=(mtime + 10**9, mtime + 10**9))
    assert vdata.check_dataset(root)[0].image.npy != v.image.npy


def test_surface_coordinates_are_capped(root):
    volumes = vdata.check_dataset(root, max_surface_points=50)
    assert all(len(np.load(v.label.surface)) <= 50 for v in volumes)


def _break(root: Path, case: str) -> str:
    """Damage the dataset one way; returns the file name the error must mention."""
    ids = _ids(root)
    image = root / "train_images" / f"{ids[0]}.tif"
    label = root / "train_labels" / f"{ids[0]}.tif"
    if case == "missing_label":
        label.unlink()
        return f"train_labels/{ids[0]}.tif"
    if case == "missing_image":
        image.unlink()
        return f"train_images/{ids[0]}.tif"
    if case == "truncated":
        data = image.read_bytes()
        image.write_bytes(data[: len(data) // 3])
        return f"train_images/{ids[0]}.tif"
    if case == "not_a_tiff":
        label.write_bytes(b"this is not a tiff file")
        return f"train_labels/{ids[0]}.tif"
    if case == "shape_mismatch":
        write_tiff(label, np.zeros((20, 20, 16), np.uint8))
        return f"train_labels/{ids[0]}.tif"
    if case == "dtype_mismatch":
        write_tiff(image, np.zeros((20, 20, 20), np.uint16))
        return f"train_images/{ids[0]}.tif"
    if case == "label_values":
        bad = tifffile.imread(label)
        bad[5, 5, 5] = 7
        write_tiff(label, bad)
        return f"train_labels/{ids[0]}.tif"
    raise AssertionError(case)


CASES = ["missing_label", "missing_image", "truncated", "not_a_tiff", "shape_mismatch", "dtype_mismatch", "label_values"]


@pytest.mark.parametrize("case", CASES)
def test_each_bad_case_is_a_data_error_naming_the_file(root, case):
    name = _break(root, case)
    with pytest.raises(DataError) as err:
        vdata.check_dataset(root)
    message = str(err.value)
    assert name in message and "on_bad_volume=skip" in message and "\n" not in message


def test_all_problems_are_listed_and_skip_trains_without_them(root, capsys):
    ids = _ids(root)
    first = _break(root, "missing_label")
    (root / "train_images" / f"{ids[1]}.tif").unlink()
    with pytest.raises(DataError) as err:
        vdata.check_dataset(root)
    assert first in str(err.value) and f"train_images/{ids[1]}.tif" in str(err.value)
    assert str(err.value).startswith("2 problem(s)")
    good = vdata.check_dataset(root, on_bad_volume="skip")
    assert [v.id for v in good] == ids[2:]
    assert "skipping bad volumes" in capsys.readouterr().err


def test_unlisted_file_and_missing_csv(root):
    write_tiff(root / "train_images" / "999.tif", np.zeros((20, 20, 20), np.uint8))
    with pytest.raises(DataError, match="999.tif is on disk but not in train.csv"):
        vdata.check_dataset(root)
    (root / "train.csv").unlink()
    with pytest.raises(DataError, match="train.csv is missing"):
        vdata.check_dataset(root)


def test_bad_volume_exits_2_through_the_real_cli(root, tmp_path):
    name = _break(root, "truncated")
    env = dict(os.environ, TWOTRACK_CACHE=str(tmp_path / "cli-cache"), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "core.cli", "vesuvius", "--config", str(REPO / "configs/vesuvius/demo.toml"),
         "--set", f"data.root={root}", "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
    )
    assert proc.returncode == 2, proc.stderr
    assert name in proc.stderr and "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.startswith("error:")]) == 1


def test_split_by_scroll_and_by_fraction(root):
    volumes = vdata.check_dataset(root)
    scrolls = sorted({v.scroll_id for v in volumes})
    train, val = vdata.split(volumes, [scrolls[0]], 0.0, seed=0)
    assert {v.scroll_id for v in val} == {scrolls[0]} and scrolls[0] not in {v.scroll_id for v in train}
    train, val = vdata.split(volumes, [], 0.25, seed=0)
    assert len(val) == 1 and len(train) == 3 and not {v.id for v in val} & {v.id for v in train}
    with pytest.raises(DataError, match="not in train.csv"):
        vdata.split(volumes, ["12345"], 0.0, seed=0)


def test_patch_dataset_is_a_pure_function_of_epoch_and_index(root):
    volumes = vdata.check_dataset(root)
    ds = vdata.PatchDataset(volumes, patch_size=8, margin=3, surface_fraction=0.5, samples_per_volume=3, seed=0)
    assert len(ds) == 12
    a = ds[5]
    assert a["image"].shape == (1, 14, 14, 14) and a["image"].dtype.is_floating_point is False
    assert a["label"].shape == (8, 8, 8)
    again = vdata.PatchDataset(volumes, 8, 3, 0.5, 3, seed=0)[5]
    assert (again["image"] == a["image"]).all() and (again["label"] == a["label"]).all()
    ds.set_epoch(1)
    others = [ds[i]["image"] for i in range(12)]
    ds.set_epoch(0)
    firsts = [ds[i]["image"] for i in range(12)]
    assert any(not (x == y).all() for x, y in zip(others, firsts))


def test_read_box_pads_like_scipy_reflect_and_labels_with_ignore():
    vol = np.arange(5 * 6 * 7, dtype=np.uint8).reshape(5, 6, 7)
    box = vdata.read_box(vol, np.array([-2, -1, 3]), 8, "symmetric")
    assert box.shape == (8, 8, 8)
    want = np.pad(vol, ((2, 1), (1, 1), (0, 4)), mode="symmetric")[:8, :8, 3:11]
    np.testing.assert_array_equal(box, want)
    lab = vdata.read_box(vol, np.array([3, 0, 0]), 4, "constant", fill=2)
    assert (lab[2:] == 2).all()

"""The pack cache: a dataset's packed arrays, written once next to it and memory-mapped later.

Layout: ``<dataset>.arc-cache/<key>/`` (one ``.npy`` per array of packed.ARRAY_NAMES and a
``meta.json``), or a per-path folder under core.paths.cache_dir when the dataset's folder
is read-only. The key is the BLAKE2b hash of the file's bytes, the loader version and the
file's primitive names (the vocabulary its program ids index). ``index.json`` maps the
file's (size, mtime, inode) to the key, so a warm load does not re-read the file. A folder
is written to a temporary name and renamed, so a killed writer never leaves a half cache;
older keys of the same file are removed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from core import atomic
from core.atomic import atomic_write
from core.paths import cache_dir
from tasks.arc_guide.packed import ARRAY_NAMES

LOADER_VERSION = 4  # bump when the packed layout or the parsing changes: invalidates caches (4: relations)


def cache_root(path: Path) -> Path:
    """<dataset>.arc-cache next to the dataset, or a per-path folder in the user cache."""
    beside = path.parent / f"{path.name}.arc-cache"
    try:
        beside.mkdir(exist_ok=True)
        if os.access(beside, os.W_OK):
            return beside
    except OSError:
        pass
    tag = hashlib.blake2b(str(path.resolve()).encode(), digest_size=8).hexdigest()
    return cache_dir("arc_guide", "packed", f"{path.name}-{tag}")


def stat_tag(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def cached_key(root: Path, tag: str) -> str | None:
    try:
        return json.loads((root / "index.json").read_text()).get(tag)
    except (OSError, ValueError, AttributeError):
        return None


def open_cached(folder: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """Memory-map a complete cache folder; None if it is missing, incomplete or older."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in ARRAY_NAMES}
    except (OSError, ValueError):
        return None
    if meta.get("version") != LOADER_VERSION or not isinstance(meta.get("names"), list):
        return None
    return arrays, meta


def write_cache(root: Path, key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any], tag: str) -> None:
    """Write folder root/key atomically (temp folder + rename), point the index at it and
    remove older versions of this file's cache."""
    final = root / key
    if not final.exists():
        tmp = root / f".tmp-{key}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name in ARRAY_NAMES:
            with atomic_write(tmp / f"{name}.npy", "wb") as f:
                np.save(f, np.ascontiguousarray(arrays[name]))
        atomic.write_json(tmp / "meta.json", meta, indent=None)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first: its copy is identical
            shutil.rmtree(tmp, ignore_errors=True)
    atomic.write_json(root / "index.json", {tag: key}, indent=None)
    for old in root.iterdir():
        if old.is_dir() and old.name != key and not old.name.startswith(".tmp-"):
            shutil.rmtree(old, ignore_errors=True)

"""Where the project keeps generated data (embedded demo datasets, decoded-volume caches).

``$TWOTRACK_CACHE`` if set, else ``~/.cache/twotrack``. Works from an installed wheel:
nothing here depends on the source checkout.
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    root = Path(os.environ.get("TWOTRACK_CACHE") or Path.home() / ".cache" / "twotrack")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path

"""Environment defaults for processes that train, set before torch loads its libraries.

Both are read once, when OpenMP / oneDNN start, so they must be in the environment before
``import torch``: the CLI applies them first thing, and the batch-size probes pass them to
their child processes (a probe must run under the settings the training process runs
under). A value the user set (either OpenMP variable, or the oneDNN one) wins.

- OpenMP spinning: how long idle OpenMP threads spin before they sleep. libgomp's default
  (300,000 spins, about 3 ms) burns the cores DataLoader workers or other processes need:
  on a busy 2-core machine that made CPU training 5x slower. Never spinning
  (OMP_WAIT_POLICY=PASSIVE) is safe but pays a wake-up between the many small ops of a
  step: the ARC guide trained 20-25% slower on an idle machine. 1,000 spins (about 10 us)
  kept the idle speed and lost ~7% to PASSIVE with a busy core beside it.
- oneDNN's primitive cache: one compiled primitive (with its buffers) per distinct conv
  shape, up to 1,024 by default. Inputs whose shapes change every batch (the ARC guide
  packs each batch's real grid cells onto a canvas of its own size) fill it with entries
  that are never reused: resident memory grew by ~1 MB per step, 249 -> 711 MiB over 300
  steps at batch 32 (default config, 2 cores), which no memory plan can foresee. 32 entries
  kept the speed (the fixed-shape primitives stay cached) and bounded the growth (585 MiB).
  (The canvas sides now take a few size classes, so its shapes recur too.)
"""
from __future__ import annotations

import os
from typing import MutableMapping

ONEDNN_PRIMITIVE_CACHE_CAPACITY = "32"


def apply_defaults(env: MutableMapping[str, str] = os.environ) -> None:
    if "OMP_WAIT_POLICY" not in env and "GOMP_SPINCOUNT" not in env:
        env["GOMP_SPINCOUNT"] = "1000"
    env.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", ONEDNN_PRIMITIVE_CACHE_CAPACITY)

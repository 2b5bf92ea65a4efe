"""TopoScore, the topology third of the competition's score: Betti matching per octant.

As the competition's metric computes it (its toposcore.py; ../shared/FACTS.md): after the
ignore step, both binary masks are inverted (surface 0, background 1) and cut into 2x2x2
octants (chunk sides along an axis differ by at most 1). Each octant pair goes through
Betti-Matching-3D (Stucki et al.): the persistence features of the prediction and of the
ground truth in dimension k (0 components, 1 tunnels and handles, 2 cavities) are matched
through the comparison image. Counts are summed over the octants, then per dimension

    F1_k = 2 m_k / (p_k + g_k)         if g_k > 0
         = 0.5 / (p_k + g_k + 0.5)     if g_k = 0 < p_k
         (dimension dropped)           if p_k + g_k = 0

with m_k matched features, p_k = m_k + unmatched prediction features, g_k likewise for the
ground truth. TopoScore = the mean of the remaining F1_k weighted 0.34 / 0.33 / 0.33 and
renormalised; 1.0 when none remains. Only finite features count: an octant holding one
component in each mask adds nothing to dimension 0. In this filtration the surface is
6-connected (two voxels touching along an edge or a corner are two components).

Betti-Matching-3D is C++ and not on PyPI by itself. We use the reference build rather than a
re-implementation (the induced matching through the comparison image is the part that
would drift from the competition): the ``topolosses`` 0.2.0 wheel ships it compiled, and
``pip install --no-deps topolosses==0.2.0`` installs it without the torchvision/OpenCV stack
the wheel declares. This module loads that one extension file by path (the topolosses
package itself, which imports torch and cv2, is never imported). Where it is missing,
:func:`unavailable_reason` says so in one line and callers report the other two scores.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass, field
from functools import lru_cache
from types import ModuleType

import numpy as np

INSTALL = "pip install --no-deps topolosses==0.2.0"
DIMENSION_WEIGHTS = (0.34, 0.33, 0.33)


@lru_cache(maxsize=None)
def _load() -> tuple[ModuleType | None, str]:
    """(the betti_matching extension module, "") or (None, why it cannot be loaded)."""
    try:
        dist = importlib.metadata.distribution("topolosses")
    except importlib.metadata.PackageNotFoundError:
        return None, f"TopoScore not computed: Betti matching is not installed ({INSTALL})"
    files = [f for f in dist.files or [] if f.name.startswith("betti_matching") and f.suffix == ".so"]
    if not files:
        return None, f"TopoScore not computed: topolosses {dist.version} has no betti_matching extension ({INSTALL})"
    try:
        spec = importlib.util.spec_from_file_location("betti_matching", dist.locate_file(files[0]))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except (ImportError, OSError) as e:
        return None, f"TopoScore not computed: cannot load {files[0]} ({e})"
    return module, ""


def available() -> bool:
    return _load()[0] is not None


def unavailable_reason() -> str:
    """One line saying why TopoScore cannot be computed here ("" when it can)."""
    return _load()[1]


@dataclass
class BettiCounts:
    """Feature counts per dimension (0, 1, 2), summed over octants."""

    matched: np.ndarray = field(default_factory=lambda: np.zeros(3, np.int64))
    pred: np.ndarray = field(default_factory=lambda: np.zeros(3, np.int64))  # matched + unmatched in pred
    gt: np.ndarray = field(default_factory=lambda: np.zeros(3, np.int64))  # matched + unmatched in gt

    def f1(self) -> list[float | None]:
        """F1 per dimension as the competition defines it; None where the dimension drops."""
        out: list[float | None] = []
        for m, p, g in zip(self.matched, self.pred, self.gt):
            if p + g == 0:
                out.append(None)
            elif g == 0:
                out.append(0.5 / (p + g + 0.5))
            else:
                out.append(2 * m / (p + g))
        return out

    def score(self) -> float:
        kept = [(w, f) for w, f in zip(DIMENSION_WEIGHTS, self.f1()) if f is not None]
        if not kept:
            return 1.0
        return float(sum(w * f for w, f in kept) / sum(w for w, _ in kept))

    def as_dict(self) -> dict[str, list[int]]:
        return {"matched": self.matched.tolist(), "pred": self.pred.tolist(), "gt": self.gt.tolist()}


def octants(volume: np.ndarray) -> list[np.ndarray]:
    """The 8 chunks of a (D, H, W) volume, halves along each axis (the first the larger
    where a side is odd), in (z, y, x) order."""
    return [c for a in np.array_split(volume, 2, axis=0)
            for b in np.array_split(a, 2, axis=1)
            for c in np.array_split(b, 2, axis=2)]


def _inverted(mask: np.ndarray) -> np.ndarray:
    """Surface 0, background 1 (uint8, C order): the filtration the metric builds."""
    return np.ascontiguousarray(1 - mask.astype(np.uint8))


def betti_counts(pred: np.ndarray, gt: np.ndarray) -> BettiCounts:
    """Betti matching of two binary (D, H, W) masks, octant by octant. Raises RuntimeError with :func:`unavailable_reason` where the
    extension is missing."""
    module, why = _load()
    if module is None:
        raise RuntimeError(why)
    counts = BettiCounts()
    for p, g in zip(octants(pred), octants(gt)):
        # one octant at a time: the extension can run the 8 in threads, but a 320^3 volume
        # then held 24 GB at once (killed on a 23 GB machine); one 160^3 octant takes ~3 GB
        r = module.compute_matching(_inverted(p), _inverted(g))
        for k in range(3):
            m = len(r.input1_matched_birth_coordinates[k])
            counts.matched[k] += m
            counts.pred[k] += m + len(r.input1_unmatched_birth_coordinates[k])
            counts.gt[k] += m + len(r.input2_unmatched_birth_coordinates[k])
    return counts

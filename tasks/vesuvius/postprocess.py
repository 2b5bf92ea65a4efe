"""Post-processing of predicted surface probabilities, tuned by the leaderboard score.

    python -m tasks.vesuvius.postprocess --checkpoint runs/vesuvius/<run>/checkpoints/best.pt \
        [--volumes N] [--crop C] [--device auto|cpu|cuda] [--dry-run]

The steps, in order (the top teams' late gains came from these; ../shared/FACTS.md):
1. threshold the probabilities;
2. remove connected components smaller than ``min_component`` voxels (6- or 26-connected);
3. plug 1-voxel holes: a background voxel whose two neighbours along at least two of the
   three axes are surface (a pinhole through a sheet of any orientation, a 1-voxel gap);
4. morphological closing with a 3x3x3 cube, ``closing`` times.
Components and morphology come from scipy.ndimage.

:func:`tune` picks the parameters on validation volumes greedily, one step at a time, as the
1st-place team added theirs: the smallest component size (each connectivity), then hole
plugging, then closing, all at the run's ``eval.threshold``; then, where allowed, the
threshold. A step is kept only if it raises the mean leaderboard score
(metrics.leaderboard_score; where TopoScore cannot be computed, the mean of Surface Dice and
VOI score, and the result says so). The threshold is the knob that transfers worst: it
follows the model's calibration on the volumes at hand (the 1st-place team's tuned 0.26
lost to 0.35-0.4 on the private set), and in our demo one validation scroll's best
threshold (0.7) lowered the score on other scrolls. So ``postprocess.tune_threshold =
"auto"`` tunes it only when the validation volumes span at least two scrolls. Training tunes at its end on the best
checkpoint (``postprocess.tune``) and stores the parameters in that checkpoint's ``meta``;
``predict`` applies them unless ``--no-postprocess``. This command does the same for an
existing checkpoint, on the validation volumes of the run's config.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy import ndimage

from core.errors import UserError, exit_on_user_error
from tasks.vesuvius import topology
from tasks.vesuvius.metrics import leaderboard_score

THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
MIN_COMPONENT_FRACTIONS = (1e-5, 1e-4, 5e-4, 2e-3)  # of the volume's voxels: 320^3 -> 328 ... 65,536
IMPROVEMENT = 1e-4  # a step must raise the mean score by more than this to be kept


@dataclass(frozen=True)
class PostProcess:
    """Parameters of :func:`apply`; the defaults do nothing but threshold at 0.5."""

    threshold: float = 0.5
    min_component: int = 0  # voxels; 0 = keep every component
    connectivity: int = 26  # 6 or 26, for component removal
    plug_holes: bool = False
    closing: int = 0  # iterations of a 3x3x3 closing

    @classmethod
    def from_meta(cls, meta: dict[str, Any] | None) -> "PostProcess | None":
        return cls(**meta) if meta else None


def remove_small_components(mask: np.ndarray, min_size: int, connectivity: int) -> np.ndarray:
    """``mask`` (bool) without its components of fewer than ``min_size`` voxels."""
    structure = ndimage.generate_binary_structure(3, 1 if connectivity == 6 else 3)
    labels, n = ndimage.label(mask, structure=structure)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return keep[labels]


def plug_pinholes(mask: np.ndarray) -> np.ndarray:
    """Background voxels enclosed along at least two axes (both neighbours surface) become surface."""
    padded = np.pad(mask, 1)
    enclosed = np.zeros(mask.shape, np.uint8)
    centre = (slice(1, -1),) * 3
    for axis in range(3):
        lo, hi = list(centre), list(centre)
        lo[axis], hi[axis] = slice(0, -2), slice(2, None)
        enclosed += padded[tuple(lo)] & padded[tuple(hi)]
    return mask | (enclosed >= 2)


def apply(prob: np.ndarray, p: PostProcess) -> np.ndarray:
    """(D, H, W) probabilities -> uint8 0/1 mask of the same shape."""
    mask = prob > p.threshold
    if p.min_component > 1:
        mask = remove_small_components(mask, p.min_component, p.connectivity)
    if p.plug_holes:
        mask = plug_pinholes(mask)
    if p.closing:
        mask = ndimage.binary_closing(mask, np.ones((3, 3, 3), bool), iterations=p.closing, border_value=0)
    return mask.astype(np.uint8)


def objective_name() -> str:
    return "score" if topology.available() else "mean of surface_dice and voi_score"


def mean_score(probs: list[np.ndarray], labels: list[np.ndarray], p: PostProcess, tolerance: float = 2.0) -> dict[str, float]:
    """Leaderboard parts averaged over volumes for parameters ``p``; ``objective`` is what tuning maximises."""
    with_topology = topology.available()
    rows = [leaderboard_score(apply(prob, p), label, 2, tolerance, topology=with_topology)
            for prob, label in zip(probs, labels)]
    out = {k: float(np.mean([r[k] for r in rows])) for k in ("surface_dice", "voi_score")}
    if with_topology:
        out["topo_score"] = float(np.mean([r["topo_score"] for r in rows]))
        out["score"] = float(np.mean([r["score"] for r in rows]))
    out["objective"] = out["score"] if with_topology else (out["surface_dice"] + out["voi_score"]) / 2
    return out


def tune(probs: list[np.ndarray], labels: list[np.ndarray], tolerance: float = 2.0,
         log: Callable[[str], None] = lambda line: None, threshold: float = 0.5,
         tune_threshold: bool = True) -> tuple[PostProcess, list[dict[str, Any]]]:
    """Greedy search (module docstring) from ``threshold`` -> (parameters, one row per step:
    the parameters chosen after it and their scores). The first row is the raw thresholded
    mask; the objective never decreases from row to row."""
    voxels = int(np.mean([p.size for p in probs]))
    best = PostProcess(threshold=threshold)
    best_scores = mean_score(probs, labels, best, tolerance)
    trace = [{"step": f"raw (threshold {threshold})", "params": asdict(best), **best_scores}]
    log(f"postprocess raw: {best_scores['objective']:.4f}")

    def stage(name: str, candidates: list[PostProcess]) -> None:
        nonlocal best, best_scores
        for candidate in candidates:
            scores = mean_score(probs, labels, candidate, tolerance)
            if scores["objective"] > best_scores["objective"] + IMPROVEMENT:
                best, best_scores = candidate, scores
        trace.append({"step": name, "params": asdict(best), **best_scores})
        log(f"postprocess {name}: {best_scores['objective']:.4f} {asdict(best)}")

    stage("remove small components", [replace(best, min_component=max(2, int(f * voxels)), connectivity=c)
                                      for c in (6, 26) for f in MIN_COMPONENT_FRACTIONS])
    stage("plug 1-voxel holes", [replace(best, plug_holes=True)])
    stage("closing", [replace(best, closing=1)])
    if tune_threshold:
        stage("threshold", [replace(best, threshold=t) for t in THRESHOLDS if t != best.threshold])
    return best, trace


def centre_crop(volume: np.ndarray, side: int) -> np.ndarray:
    """The central ``side``^3 block (the whole volume where it is smaller)."""
    starts = [max(0, (s - side) // 2) for s in volume.shape]
    return volume[tuple(slice(a, a + side) for a in starts)]


def validation_probabilities(cfg: Any, model: Any, val: Any, volumes: int, crop: int,
                             log: Callable[[str], None] = lambda line: None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Sliding-window probabilities and labels of the first ``volumes`` validation volumes,
    centre-cropped to ``crop``^3 after inference (TopoScore on a 320^3 volume takes minutes)."""
    from tasks.vesuvius.inference import run_probs

    probs, labels = [], []
    for i in range(min(volumes, len(val))):
        item = val[i]
        probs.append(centre_crop(run_probs(model, cfg, item["image"][0].numpy()), crop))
        labels.append(centre_crop(item["label"].numpy(), crop))
        log(f"postprocess: validation volume {i + 1}/{min(volumes, len(val))} predicted")
    return probs, labels


def tune_checkpoint(path: Path, device: str = "auto", volumes: int | None = None, crop: int | None = None,
                    write: bool = True, log: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Tune on the validation volumes of the checkpoint's run and (``write``) store the result
    in its ``meta["postprocess"]`` (core.checkpoint.update_meta: atomic). Returns
    {"params", "trace", "objective", "volumes", "scrolls", "threshold_tuned", "crop"}."""
    from core.checkpoint import update_meta
    from core.inference import load_for_inference

    task, cfg, model, _ = load_for_inference(path, device, expected_task="vesuvius")
    settings = cfg.postprocess
    volumes, crop = volumes or settings.tune_volumes, crop or settings.tune_crop
    _, val = task.build_datasets(cfg)
    probs, labels = validation_probabilities(cfg, model, val, volumes, crop, log)  # sliding window: no_grad
    if not probs:
        raise UserError(f"{path}: its run has no validation volumes to tune post-processing on "
                        "(set data.val_scrolls or data.val_fraction)")
    scrolls = len(set(val.scroll_ids[: len(probs)].tolist()))
    with_threshold = settings.tune_threshold == "on" or (settings.tune_threshold == "auto" and scrolls >= 2)
    if not with_threshold:
        log(f"postprocess: threshold kept at {cfg.eval.threshold} (postprocess.tune_threshold = "
            f"{settings.tune_threshold!r}, validation volumes from {scrolls} scroll(s))")
    params, trace = tune(probs, labels, cfg.eval.tolerance, log, cfg.eval.threshold, with_threshold)
    if write:
        update_meta(path, {"postprocess": asdict(params)})
    return {"params": asdict(params), "trace": trace, "objective": objective_name(), "volumes": len(probs),
            "scrolls": scrolls, "threshold_tuned": with_threshold, "crop": crop}


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tasks.vesuvius.postprocess", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, type=Path)
    ap.add_argument("--volumes", type=int, help="validation volumes to tune on (default: the run's postprocess.tune_volumes)")
    ap.add_argument("--crop", type=int, help="centre crop side for scoring (default: postprocess.tune_crop)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--dry-run", action="store_true", help="print the tuned parameters without writing the checkpoint")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    result = tune_checkpoint(args.checkpoint, args.device, args.volumes, args.crop, not args.dry_run,
                             log=lambda line: print(line, file=sys.stderr))
    where = "not written (--dry-run)" if args.dry_run else f"written into {args.checkpoint}"
    print(f"post-processing tuned on {result['volumes']} volume(s) by {result['objective']} in "
          f"{time.perf_counter() - started:.0f}s: {result['params']}; {where}", file=sys.stderr)


if __name__ == "__main__":
    main()

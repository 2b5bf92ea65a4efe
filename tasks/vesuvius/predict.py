"""Predict surface masks with a trained checkpoint.

    python -m tasks.vesuvius.predict --checkpoint C --input IN --output OUT
        [--overlap 0.5] [--patch-size P] [--tta] [--threshold T] [--no-postprocess] [--device auto|cpu|cuda]

IN is one .tif (OUT is then the output .tif) or a folder of .tif volumes (OUT is then a
folder receiving ``<id>.tif`` for each: the submission layout). Each output is a uint8 0/1
TIFF (LZW) of the input's shape. Sliding window with Gaussian blending and the given
overlap; ``--tta`` averages the 8 mirrorings. The post-processing tuned for the checkpoint
(tasks/vesuvius/postprocess.py, stored in its meta at the end of training) is applied by
default; ``--no-postprocess`` writes the thresholded mask alone; ``--threshold`` overrides the
tuned threshold. Progress: one line per volume on stderr.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from core.errors import DataError, UserError, exit_on_user_error
from core.inference import load_for_inference
from tasks.vesuvius.data import read_tiff
from tasks.vesuvius.inference import sliding_window_probs
from tasks.vesuvius.postprocess import PostProcess, apply
from tasks.vesuvius.synth import write_tiff


def load_model(path: Path, device: str | torch.device = "auto"):
    """(model in eval mode on device, resolved config, meta) of a vesuvius checkpoint, loaded
    safely (core.inference.load_for_inference: nothing in the file runs)."""
    _, cfg, model, meta = load_for_inference(path, device, expected_task="vesuvius")
    return model, cfg, meta


def predict_volume(model, cfg, volume: np.ndarray, overlap: float, tta: bool, post: PostProcess,
                   patch: int | None = None) -> np.ndarray:
    """uint8 0/1 mask of the volume's shape after ``post`` (a bare threshold: ``PostProcess(threshold=t)``);
    ``patch`` = window edge (default: the training patch)."""
    if volume.ndim != 3:
        raise DataError(f"expected a 3D volume, got shape {volume.shape}")
    patch = patch or cfg.data.patch_size
    prob = sliding_window_probs(model, volume, cfg.features.channels, patch, overlap, tta, cfg.eval.windows_per_batch)
    return apply(prob, post)


def _pairs(inp: Path, out: Path) -> list[tuple[Path, Path]]:
    if inp.is_dir():
        files = sorted(inp.glob("*.tif")) + sorted(inp.glob("*.tiff"))
        if not files:
            raise UserError(f"{inp} holds no .tif volumes")
        if out.suffix.lower() in (".tif", ".tiff"):
            raise UserError(f"--input {inp} is a folder, so --output must be a folder too (got {out})")
        out.mkdir(parents=True, exist_ok=True)
        return [(f, out / f"{f.stem}.tif") for f in files]
    if not inp.is_file():
        raise UserError(f"--input {inp} does not exist (give a .tif volume or a folder of them)")
    if out.is_dir():
        return [(inp, out / f"{inp.stem}.tif")]
    out.parent.mkdir(parents=True, exist_ok=True)
    return [(inp, out)]


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tasks.vesuvius.predict", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, type=Path)
    ap.add_argument("--input", required=True, type=Path, help="a .tif volume or a folder of them")
    ap.add_argument("--output", required=True, type=Path, help="output .tif, or folder for a folder input")
    ap.add_argument("--overlap", type=float, default=None, help="window overlap fraction (default: the run's eval.overlap)")
    ap.add_argument("--patch-size", type=int, default=None,
                    help="window edge (default: the training patch; the U-Net is fully convolutional, so larger windows "
                         "divisible by 2**(depth-1) cut the number of windows)")
    ap.add_argument("--tta", action="store_true", help="mirror test-time augmentation (8 flips)")
    ap.add_argument("--threshold", type=float, default=None,
                    help="probability threshold (default: the tuned one, else the run's eval.threshold)")
    ap.add_argument("--no-postprocess", action="store_true",
                    help="write the thresholded mask without the checkpoint's tuned post-processing")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = ap.parse_args(argv)
    if args.overlap is not None and not 0 <= args.overlap < 1:
        raise UserError(f"--overlap must be in [0, 1), got {args.overlap}")
    if args.threshold is not None and not 0 < args.threshold < 1:
        raise UserError(f"--threshold must be in (0, 1), got {args.threshold}")
    model, cfg, meta = load_model(args.checkpoint, args.device)
    divisor = 2 ** (cfg.model.depth - 1)
    if args.patch_size is not None and (args.patch_size < divisor or args.patch_size % divisor):
        raise UserError(f"--patch-size must be a positive multiple of {divisor} for this model, got {args.patch_size}")
    overlap = cfg.eval.overlap if args.overlap is None else args.overlap
    tuned = None if args.no_postprocess else PostProcess.from_meta(meta.get("postprocess"))
    post = tuned or PostProcess(threshold=cfg.eval.threshold)
    if args.threshold is not None:
        post = replace(post, threshold=args.threshold)
    if tuned:
        what = f"post-processing {asdict(post)}"
    else:
        what = f"threshold {post.threshold} only" + ("" if args.no_postprocess else " (no tuned post-processing in this checkpoint)")
    print(f"predict: {what}", file=sys.stderr)
    pairs = _pairs(args.input, args.output)
    for i, (src, dst) in enumerate(pairs, start=1):
        t0 = time.perf_counter()
        volume = read_tiff(src)
        mask = predict_volume(model, cfg, volume, overlap, args.tta, post, args.patch_size)
        write_tiff(dst, mask)
        print(f"predict [{i}/{len(pairs)}] {src.name} {'x'.join(map(str, volume.shape))} -> {dst} "
              f"({mask.mean() * 100:.1f}% surface, {time.perf_counter() - t0:.1f}s)", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Does the tuned post-processing raise the leaderboard score, off the volumes it was tuned on?

    python -m benchmarks.vesuvius_postprocess [--config configs/vesuvius/demo.toml] \
        [--held-out-scrolls 5] [--held-out 2] [--held-out-seed 2000] [--predict-size 320] [--predict-patch 64] [--out OUT]

1. Trains ``train vesuvius --config CONFIG`` in a temporary run folder; at its end training
   tunes post-processing on the validation volumes (tasks/vesuvius/postprocess.py) and
   stores it in best.pt. The record keeps that tuning trace: raw vs each greedy step, per
   component (score, topo_score, surface_dice, voi_score) on the validation volumes.
2. Held out: ``--held-out-scrolls`` scrolls drawn from ``--held-out-seed`` (each its own
   spacing, thickness, modulation: scrolls neither training nor tuning saw), ``--held-out``
   volumes each, at the config's synthetic size. best.pt's probabilities scored raw
   (threshold 0.5) and with the stored post-processing, per component: the mean over all
   held-out volumes and per scroll (one scroll's preferences, e.g. its best threshold, need
   not be another's).
3. ``python -m tasks.vesuvius.predict`` on one ``--predict-size``^3 synthetic volume with
   the stored post-processing (wall time of the command, on this machine; 0 skips it).

``--out`` writes ``vesuvius_postprocess.json``/``.md`` (benchmarks/results_io.py).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.results_io import add_out_argument, given_argv, provenance, relative, report
from core.checkpoint import load as load_checkpoint
from core.errors import exit_on_user_error
from core.inference import load_for_inference
from tasks.vesuvius import postprocess as pp
from tasks.vesuvius.inference import run_probs
from tasks.vesuvius.synth import ScrollParams, make_volume, write_tiff

PARTS = ("score", "topo_score", "surface_dice", "voi_score")


def held_out_scores(checkpoint: Path, scrolls: int, volumes: int, seed: int) -> dict[str, Any]:
    """Raw vs post-processed leaderboard parts on ``scrolls`` new synthetic scrolls of
    ``volumes`` volumes each: per scroll, and the mean over all their volumes."""
    _, cfg, model, meta = load_for_inference(checkpoint, "cpu", expected_task="vesuvius")
    tuned = pp.PostProcess.from_meta(meta.get("postprocess"))
    rng = np.random.default_rng(seed)
    rows, all_probs, all_labels = [], [], []
    for _ in range(scrolls):
        scroll = ScrollParams.draw(rng)
        probs, labels = [], []
        for _ in range(volumes):
            image, label = make_volume(cfg.data.synthetic.size, scroll, int(rng.integers(0, 2**31)))
            probs.append(run_probs(model, cfg, image))
            labels.append(label)
        rows.append({"scroll": asdict(scroll), "raw": pp.mean_score(probs, labels, pp.PostProcess(), cfg.eval.tolerance),
                     "postprocessed": pp.mean_score(probs, labels, tuned, cfg.eval.tolerance)})
        all_probs += probs
        all_labels += labels
    return {"scrolls": scrolls, "volumes_per_scroll": volumes, "size": cfg.data.synthetic.size, "params": asdict(tuned),
            "raw": pp.mean_score(all_probs, all_labels, pp.PostProcess(), cfg.eval.tolerance),
            "postprocessed": pp.mean_score(all_probs, all_labels, tuned, cfg.eval.tolerance), "per_scroll": rows}


def predict_time(checkpoint: Path, size: int, patch: int, work: Path) -> dict[str, Any]:
    image, _ = make_volume(size, ScrollParams.draw(np.random.default_rng(7)), 7)
    write_tiff(work / "big.tif", image)
    cmd = [sys.executable, "-m", "tasks.vesuvius.predict", "--checkpoint", str(checkpoint), "--input",
           str(work / "big.tif"), "--output", str(work / "big_mask.tif"), "--device", "cpu", "--patch-size", str(patch)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"predict failed:\n{proc.stderr[-3000:]}")
    return {"size": size, "patch_size": patch, "wall_s": round(time.perf_counter() - started, 1),
            "stderr_tail": proc.stderr.strip().splitlines()[-1]}


def _row(name: str, scores: dict[str, float]) -> str:
    return f"| {name} | " + " | ".join(f"{scores[k]:.4f}" if k in scores else "n/a" for k in PARTS) + " |"


def markdown(result: dict[str, Any]) -> str:
    head = ["| | score | topo_score | surface_dice | voi_score |", "|---|---|---|---|---|"]
    lines = [f"Training: `train vesuvius --config {result['config']}` ({result['train_wall_s']:.0f} s in all, "
             f"post-processing tuning included: {result['tuning_s']:.0f} s), tuned by {result['objective']}.", "",
             "Validation volumes (tuned on them), greedy steps:", "", *head]
    lines += [_row(f"{row['step']}: {row['params']}", row) for row in result["validation_trace"]]
    h = result["held_out"]
    lines += ["", f"Held-out synthetic scrolls ({h['scrolls']} scrolls drawn from seed {result['held_out_seed']}, "
              f"{h['volumes_per_scroll']} volumes of {h['size']}^3 each; neither training nor tuning saw them), best.pt, "
              f"post-processing {h['params']}:", "", *head,
              _row("all held-out volumes, raw (threshold 0.5)", h["raw"]), _row("all held-out volumes, post-processed", h["postprocessed"])]
    for i, row in enumerate(h["per_scroll"], start=1):
        spacing, thickness = row["scroll"]["spacing"], row["scroll"]["thickness"]
        name = f"scroll {i} (spacing {spacing:.1f}, thickness {thickness:.1f})"
        lines += [_row(f"{name}, raw", row["raw"]), _row(f"{name}, post-processed", row["postprocessed"])]
    if result["predict"]:
        p = result["predict"]
        lines += ["", f"`predict` on one {p['size']}^3 volume (window {p['patch_size']}, post-processing on, this CPU): "
                  f"{p['wall_s']} s ({p['stderr_tail']})."]
    return "\n".join(lines) + "\n"


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = given_argv(argv)
    ap = argparse.ArgumentParser(prog="python -m benchmarks.vesuvius_postprocess", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=Path("configs/vesuvius/demo.toml"))
    ap.add_argument("--held-out-scrolls", type=int, default=5, help="held-out synthetic scrolls")
    ap.add_argument("--held-out", type=int, default=2, help="volumes per held-out scroll")
    ap.add_argument("--held-out-seed", type=int, default=2000,
                    help="seed of the held-out scrolls (1000 served to diagnose the first tuning order; 2000 was unseen)")
    ap.add_argument("--predict-size", type=int, default=320, help="side of the volume predict is timed on (0: skip)")
    ap.add_argument("--predict-patch", type=int, default=64, help="predict's --patch-size for that volume")
    add_out_argument(ap, "vesuvius_postprocess")
    args = ap.parse_args(argv)
    prov = provenance("vesuvius_postprocess", argv, args)
    with tempfile.TemporaryDirectory(prefix="vesuvius-postprocess-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "core.cli", "vesuvius", "--config", str(args.config),
                               "--run-dir", str(work / "run")], capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"training failed:\n{proc.stderr[-3000:]}")
        train_wall = time.perf_counter() - started
        summary = json.loads((work / "run" / "summary.json").read_text())
        tuning = summary["after_training"]["postprocess"]
        best = work / "run" / "checkpoints" / "best.pt"
        assert "postprocess" in load_checkpoint(best)["meta"]
        print("trained and tuned; scoring the held-out scroll", file=sys.stderr)
        held = held_out_scores(best, args.held_out_scrolls, args.held_out, args.held_out_seed)
        timing = predict_time(best, args.predict_size, args.predict_patch, work) if args.predict_size else None
    result = {"config": relative(args.config), "train_wall_s": train_wall, "tuning_s": tuning["seconds"],
              "objective": tuning["objective"], "validation_trace": tuning["trace"],
              "final_metrics": summary["final_metrics"], "held_out_seed": args.held_out_seed,
              "held_out": held, "predict": timing}
    return report(prov, result, "Vesuvius post-processing: tuned on validation, checked on a held-out scroll",
                  markdown(result), args.out, "vesuvius_postprocess")


if __name__ == "__main__":
    main()

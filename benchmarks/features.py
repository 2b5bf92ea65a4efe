"""Vesuvius filter features: on-device torch (tasks.vesuvius.features) vs the scipy reference.

    python -m benchmarks.features [--batch 2] [--size 128] [--repeats 3] [--json OUT]

Both sides get the same patches (synthetic scroll crops, uint8 -> [0, 1]) in one run;
each timing is the min and median over ``--repeats`` after one warm-up. Rows: scipy (one
core, as one DataLoader worker ran it), torch on the CPU with its default threads and with
one thread (a per-core comparison), and torch on CUDA when available (synchronised). The
ratio is scipy time / torch time on min timings. Also checks the largest difference to
scipy at voxels >= 12 (= 4 * the largest sigma) from the border. Writes
benchmarks/results/features.json and .md (and --json OUT).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from tasks.vesuvius.features import FEATURES, compute_features, compute_features_reference
from tasks.vesuvius.synth import ScrollParams, make_volume

RESULTS = Path(__file__).resolve().parent / "results"


def _time(fn, repeats: int, sync=lambda: None) -> tuple[float, float]:
    fn()  # warm-up: caches, thread pools, CUDA context
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def run(batch: int, size: int, repeats: int) -> dict:
    load_before = os.getloadavg()[0]  # a shared machine's load skews every row; recorded with them
    rng = np.random.default_rng(0)
    vols = [make_volume(size, ScrollParams.draw(rng), seed=i)[0].astype(np.float32) / 255 for i in range(batch)]
    x = torch.from_numpy(np.stack(vols))[:, None]  # (B, 1, S, S, S) float32
    rows = []
    ref = None

    def scipy_all():
        nonlocal ref
        ref = np.stack([compute_features_reference(v) for v in vols])

    rows.append({"impl": "scipy.ndimage (1 core)", "device": "cpu", "threads": 1, **dict(zip(("min_s", "median_s"), _time(scipy_all, repeats)))})
    threads = torch.get_num_threads()
    out = None

    def torch_cpu():
        nonlocal out
        out = compute_features(x)

    rows.append({"impl": "torch", "device": "cpu", "threads": threads, **dict(zip(("min_s", "median_s"), _time(torch_cpu, repeats)))})
    m = 12
    err = float(np.abs(out.numpy() - ref)[..., m:-m, m:-m, m:-m].max())
    if threads > 1:
        torch.set_num_threads(1)
        rows.append({"impl": "torch", "device": "cpu", "threads": 1, **dict(zip(("min_s", "median_s"), _time(torch_cpu, repeats)))})
        torch.set_num_threads(threads)
    if torch.cuda.is_available():
        xc = x.cuda()
        rows.append({"impl": "torch", "device": f"cuda ({torch.cuda.get_device_name()})", "threads": None,
                     **dict(zip(("min_s", "median_s"), _time(lambda: compute_features(xc), repeats, torch.cuda.synchronize)))})
        err = max(err, float(np.abs(compute_features(xc).cpu().numpy() - ref)[..., m:-m, m:-m, m:-m].max()))
    base = rows[0]["min_s"]
    for r in rows:
        r["speedup_vs_scipy"] = base / r["min_s"]
    return {
        "benchmark": "features", "batch": batch, "size": size, "repeats": repeats, "channels": list(FEATURES),
        "max_abs_diff_interior": err, "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__, "cpu_count": os.cpu_count(),
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]}, "rows": rows,
    }


def table(result: dict) -> str:
    lines = [f"features, batch {result['batch']} x {result['size']}^3, {len(result['channels'])} channels, "
             f"min/median of {result['repeats']} (max |torch - scipy| interior = {result['max_abs_diff_interior']:.2e}; "
             f"{result['cpu_count']} CPUs, 1-min load {result['load_average_1min']['before']:.1f} -> {result['load_average_1min']['after']:.1f})",
             "", "| implementation | device | threads | min s | median s | speed-up vs scipy |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['impl']} | {r['device']} | {r['threads'] or '-'} | {r['min_s']:.3f} | {r['median_s']:.3f} | {r['speedup_vs_scipy']:.1f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.features", description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the JSON here")
    args = ap.parse_args(argv)
    result = run(args.batch, args.size, args.repeats)
    text = table(result)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "features.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "features.md").write_text(text + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

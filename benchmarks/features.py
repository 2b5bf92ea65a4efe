"""Vesuvius filter features: on-device torch (tasks.vesuvius.features) vs the scipy reference.

    python -m benchmarks.features [--batch 2] [--size 128] [--repeats 3] [--out OUT]

All rows get the same patches (synthetic scroll crops, uint8 -> [0, 1]) in one run; each
timing is the min and median over ``--repeats`` after one warm-up. Rows:

- scipy, 1 process: the volumes one after another (as one DataLoader worker ran it);
- scipy, N processes: the fair baseline on the same cores, a ``ProcessPoolExecutor`` (fork)
  with as many processes as torch has threads, one volume per task (volumes and features
  travel through its pipes, and that is timed too). With fewer volumes than processes some
  stay idle, as DataLoader workers would;
- torch on the CPU with its default N threads, and with one thread (a per-core comparison);
- torch on CUDA when available (synchronised).

The headline is scipy on N processes / torch on N threads (min timings); every row also
has its ratio to scipy on 1 process. ``cores_busy`` (CPU seconds of this process's threads
and the pool's processes / wall seconds, median over repeats) shows how many cores a row
kept busy. Also checks the largest
difference to scipy at voxels >= 12 (= 4 * the largest sigma) from the border.

The machine may be shared: compare rows within one run (the 1-minute load average before
and after is recorded). ``--out`` writes ``features.json``/``.md`` into a folder, or
``OUT.json``/``OUT.md`` for a file stem (benchmarks/results_io.py); without it only the
table is printed. The committed record: ``--out benchmarks/results``.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import statistics
import time

import numpy as np
import torch

from benchmarks.results_io import add_out_argument, given_argv, provenance, report
from tasks.vesuvius.features import FEATURES, compute_features, compute_features_reference
from tasks.vesuvius.synth import ScrollParams, make_volume

BORDER = 12  # = 4 * the largest sigma: voxels nearer the border see the padding differ


def _cpu_seconds(pids) -> float | None:
    """CPU time (user + system) of other live processes, from /proc/PID/stat (clock ticks);
    None without /proc."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            return None
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat
    return total / os.sysconf("SC_CLK_TCK")


def _time(fn, repeats: int, sync=lambda: None, workers=lambda: ()) -> dict[str, float | None]:
    """min and median wall seconds of ``fn`` after a warm-up, and the cores it kept busy: the
    median over repeats of CPU seconds (this process's threads and ``workers()``'s) / wall."""
    fn()  # warm-up: caches, thread pools, pool processes, CUDA context
    sync()
    times, busy = [], []
    for _ in range(repeats):
        pids = list(workers())
        t0, c0, w0 = time.perf_counter(), time.process_time(), _cpu_seconds(pids)
        fn()
        sync()
        wall = time.perf_counter() - t0
        times.append(wall)
        w1 = _cpu_seconds(pids)
        busy.append(None if w0 is None or w1 is None else (time.process_time() - c0 + w1 - w0) / wall)
    return {"min_s": min(times), "median_s": statistics.median(times),
            "cores_busy": None if None in busy else statistics.median(busy)}


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork: the workers start with the modules loaded, as DataLoader workers do on Linux
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def run(batch: int, size: int, repeats: int) -> dict:
    load_before = os.getloadavg()[0]  # a shared machine's load skews every row; recorded with them
    rng = np.random.default_rng(0)
    vols = [make_volume(size, ScrollParams.draw(rng), seed=i)[0].astype(np.float32) / 255 for i in range(batch)]
    x = torch.from_numpy(np.stack(vols))[:, None]  # (B, 1, S, S, S) float32
    threads = torch.get_num_threads()
    rows = []
    ref = None

    def scipy_serial():
        nonlocal ref
        ref = np.stack([compute_features_reference(v) for v in vols])  # (B, C, S, S, S)

    rows.append({"impl": "scipy.ndimage, 1 process", "device": "cpu", "processes": 1, "threads": 1,
                 **_time(scipy_serial, repeats)})
    pooled = None
    with concurrent.futures.ProcessPoolExecutor(max_workers=threads, mp_context=_pool_context()) as pool:
        def scipy_pool():
            nonlocal pooled
            pooled = np.stack(list(pool.map(compute_features_reference, vols)))

        timing = _time(scipy_pool, repeats, workers=lambda: list(pool._processes))  # the pool's worker pids
    rows.append({"impl": f"scipy.ndimage, {threads} processes", "device": "cpu", "processes": threads, "threads": 1,
                 **timing})
    assert np.array_equal(pooled, ref)
    out = None

    def torch_cpu():
        nonlocal out
        out = compute_features(x)

    rows.append({"impl": "torch", "device": "cpu", "processes": 1, "threads": threads, **_time(torch_cpu, repeats)})
    m = BORDER
    err = float(np.abs(out.numpy() - ref)[..., m:-m, m:-m, m:-m].max())
    if threads > 1:
        torch.set_num_threads(1)
        rows.append({"impl": "torch", "device": "cpu", "processes": 1, "threads": 1, **_time(torch_cpu, repeats)})
        torch.set_num_threads(threads)
    if torch.cuda.is_available():
        xc = x.cuda()
        rows.append({"impl": "torch", "device": f"cuda ({torch.cuda.get_device_name()})", "processes": 1,
                     "threads": None, **_time(lambda: compute_features(xc), repeats, torch.cuda.synchronize)})
        err = max(err, float(np.abs(compute_features(xc).cpu().numpy() - ref)[..., m:-m, m:-m, m:-m].max()))
    serial, same_cores = rows[0]["min_s"], rows[1]["min_s"]
    for r in rows:
        r["speedup_vs_scipy_1_process"] = serial / r["min_s"]
        r["speedup_vs_scipy_same_cores"] = same_cores / r["min_s"]
    return {
        "benchmark": "features", "batch": batch, "size": size, "repeats": repeats, "channels": list(FEATURES),
        "torch_threads": threads, "max_abs_diff_interior": err,
        "headline": {"torch_cpu_vs_scipy_same_cores": rows[2]["speedup_vs_scipy_same_cores"],
                     "cores": threads, "what": f"scipy on {threads} processes / torch on {threads} threads, min times"},
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]}, "rows": rows,
    }


def table(result: dict) -> str:
    n = result["torch_threads"]
    lines = [f"features, batch {result['batch']} x {result['size']}^3, {len(result['channels'])} channels, "
             f"min/median of {result['repeats']} (max |torch - scipy| interior = {result['max_abs_diff_interior']:.2e}; "
             f"1-min load {result['load_average_1min']['before']:.1f} -> {result['load_average_1min']['after']:.1f})", "",
             f"Headline: torch on {n} threads is {result['headline']['torch_cpu_vs_scipy_same_cores']:.1f}x "
             f"scipy on {n} processes (the same cores).", "",
             "| implementation | device | threads | min s | median s | cores busy | vs scipy, same cores "
             "| vs scipy, 1 process |", "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        busy = f"{r['cores_busy']:.2f}" if r["cores_busy"] is not None else "-"
        lines.append(f"| {r['impl']} | {r['device']} | {r['threads'] or '-'} | {r['min_s']:.3f} | {r['median_s']:.3f} "
                     f"| {busy} | {r['speedup_vs_scipy_same_cores']:.1f}x | {r['speedup_vs_scipy_1_process']:.1f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    argv = given_argv(argv)
    ap = argparse.ArgumentParser(prog="python -m benchmarks.features", description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    add_out_argument(ap, "features")
    args = ap.parse_args(argv)
    prov = provenance("features", argv, args)
    result = run(args.batch, args.size, args.repeats)
    return report(prov, result, "Vesuvius features: torch vs scipy", table(result), args.out, "features")


if __name__ == "__main__":
    main()

"""ARC guide loading: ``load_dataset`` against the baseline users had (stdlib ``json.load``).

    python -m benchmarks.arc_loading [--records 100000] [--repeats 3] [--workdir DIR] [--json OUT]

Builds a dataset of realistic size (100,000 records, ~160 MB JSON array: records of the
generator, 2 pairs each, repeated with fresh task_ids), then measures in fresh processes,
in one run so every ratio compares like with like on the same (shared) machine:

- baseline: ``json.load`` into Python lists; time and peak RSS added;
- cold: ``load_dataset`` with no cache (parse, validate, pack, write the cache);
- warm: ``load_dataset`` with the cache (memory-mapped);
- resident: bytes of the packed arrays / file size, and RSS added by a warm load;
- workers: a DataLoader with 4 workers iterating one epoch over all records: growth of the
  anonymous (private, copied) memory of the parent and its workers (Pss_Anon of
  /proc/PID/smaps_rollup) from the moment every worker has delivered a batch to the end of
  the epoch, over their total PSS then. Python lists would be copied page by page here;
  the memory-mapped arrays show up under mapped files instead (page cache, shared).

Times are wall clock (the goals) and CPU time of the loading process (steadier when the
machine is shared).

Times are the median (and min) of ``--repeats`` runs. Goals from issue 3: cold <= baseline
time with peak RSS <= 2x the file; warm >= 50x faster than the baseline; resident <= 0.25x
the file; workers add <= 5%. Results go to benchmarks/results/arc_loading.json (and .md).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.results_io import RESULTS, report

REPO = Path(__file__).resolve().parents[1]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _smaps_rollup(pid: int) -> dict[str, int]:
    """Bytes of /proc/PID/smaps_rollup fields (Pss_Anon: private copies, Pss_File: mapped files)."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return out


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


# --------------------------------------------------------------------------- child processes


def _child(mode: str, path: str) -> dict:
    """Runs in a fresh interpreter; returns what it measured."""
    if mode == "baseline":
        import json as stdlib_json

        before = _rss_bytes()
        t, cpu = time.perf_counter(), time.process_time()
        with open(path) as f:
            data = stdlib_json.load(f)
        seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
        return {"seconds": seconds, "cpu_s": cpu, "peak_added": _peak_bytes() - before, "rss_added": _rss_bytes() - before, "n": len(data)}
    from tasks.arc_guide.dataset import load_dataset

    if mode in ("cold", "warm"):
        before = _rss_bytes()
        t, cpu = time.perf_counter(), time.process_time()
        data = load_dataset(path, verbose=False)
        seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
        return {
            "seconds": seconds, "cpu_s": cpu, "peak_added": _peak_bytes() - before, "rss_added": _rss_bytes() - before,
            "n": len(data), "packed_bytes": data.nbytes(), "cache": data.stats["cache"],
        }
    if mode == "workers":
        import psutil
        import torch

        from tasks.arc_guide.task import ArcPairsDataset, collate_records

        data = load_dataset(path, verbose=False)
        dataset = ArcPairsDataset(data, data.index, max_pairs=5)
        me = psutil.Process()

        def total_pss() -> dict[str, int]:  # parent + workers; PSS splits shared pages: nothing counts twice
            procs = [me] + me.children(recursive=True)
            rollups = [_smaps_rollup(p.pid) for p in procs]
            return {k: sum(r.get(k, 0) for r in rollups) for k in ("Pss", "Pss_Anon", "Pss_File")}

        loader = torch.utils.data.DataLoader(dataset, batch_size=256, num_workers=4, collate_fn=collate_records,
                                             persistent_workers=True)
        t = time.perf_counter()
        n, started = 0, None
        for i, batch in enumerate(loader):
            n += len(batch["labels"])
            if i == 3:  # batches come round-robin: each of the 4 workers has delivered one
                started = total_pss()
        ended = total_pss()  # workers still alive: whatever they copied is still counted
        seconds = time.perf_counter() - t
        return {"seconds": seconds, "pss_started": started, "pss_ended": ended, "workers": 4, "n": n}
    raise ValueError(mode)


def _run_child(mode: str, path: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.arc_loading", "--_child", mode, str(path)],
        cwd=REPO, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} child failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- dataset


def build_dataset(path: Path, records: int, pool_size: int = 2000, seed: int = 0) -> Path:
    """records generator records (2 pairs each), the pool repeated with fresh task_ids."""
    import orjson

    from tasks.arc_guide.generate import generate_bytes

    if path.is_file():
        return path
    pool = [orjson.loads(b) for b in generate_bytes(pool_size, seed, pairs=2, max_length=4, workers=2)]
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        f.write(b"[\n")
        for i in range(records):
            rec = dict(pool[i % pool_size], task_id=f"bench-{i:07d}")
            f.write((b",\n" if i else b"") + orjson.dumps(rec))
        f.write(b"\n]\n")
    os.replace(tmp, path)
    return path


def _summary(runs: list[dict], key: str = "seconds") -> dict:
    values = [r[key] for r in runs]
    return {"median": statistics.median(values), "min": min(values), "runs": values}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.arc_loading", description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/arc_loading_bench"))
    parser.add_argument("--json", type=Path, default=RESULTS / "arc_loading.json", help="where to write the results")
    parser.add_argument("--_child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        print(json.dumps(_child(*args._child)))
        return {}

    args.workdir.mkdir(parents=True, exist_ok=True)
    path = build_dataset(args.workdir / f"arc_{args.records}.json", args.records)
    cache = path.parent / f"{path.name}.arc-cache"
    size = path.stat().st_size

    baseline = [_run_child("baseline", path) for _ in range(args.repeats)]
    cold = []
    for _ in range(args.repeats):
        shutil.rmtree(cache, ignore_errors=True)
        cold.append(_run_child("cold", path))
    warm = [_run_child("warm", path) for _ in range(max(args.repeats, 3))]
    workers = _run_child("workers", path)

    base_t, cold_t, warm_t = _summary(baseline), _summary(cold), _summary(warm)
    result = {
        "benchmark": "arc_loading",
        "machine": {"cpus": os.cpu_count(), "platform": sys.platform},
        "records": args.records,
        "file_bytes": size,
        "baseline_json_load_s": base_t,
        "baseline_peak_added_bytes": max(r["peak_added"] for r in baseline),
        "cold_load_s": cold_t,
        "cold_peak_added_bytes": max(r["peak_added"] for r in cold),
        "warm_load_s": warm_t,
        "packed_bytes": cold[0]["packed_bytes"],
        "warm_rss_added_bytes": max(r["rss_added"] for r in warm),
        "workers": workers,
        "ratios": {
            "cold_time_vs_baseline": cold_t["median"] / base_t["median"],
            "cold_peak_rss_vs_file": max(r["peak_added"] for r in cold) / size,
            "warm_speedup_vs_baseline": base_t["median"] / warm_t["median"],
            "resident_vs_file": cold[0]["packed_bytes"] / size,
            # private (anonymous) memory the epoch added: copies of the dataset would show here
            "workers_pss_added": (workers["pss_ended"]["Pss_Anon"] - workers["pss_started"]["Pss_Anon"])
            / workers["pss_started"]["Pss"],
            "cold_cpu_vs_baseline": _summary(cold, "cpu_s")["median"] / _summary(baseline, "cpu_s")["median"],
            "baseline_peak_rss_vs_file": max(r["peak_added"] for r in baseline) / size,
        },
    }
    goals = {
        "cold_time_vs_baseline": ("<=", 1.0), "cold_peak_rss_vs_file": ("<=", 2.0),
        "warm_speedup_vs_baseline": (">=", 50.0), "resident_vs_file": ("<=", 0.25), "workers_pss_added": ("<=", 0.05),
    }
    result["goals_met"] = {
        k: (result["ratios"][k] <= v if op == "<=" else result["ratios"][k] >= v) for k, (op, v) in goals.items()
    }
    rows = [
        ("file", f"{size / 1e6:.1f} MB, {args.records} records", ""),
        ("baseline json.load", f"{base_t['median']:.2f} s (min {base_t['min']:.2f}); cpu {_summary(baseline, 'cpu_s')['median']:.2f} s",
         f"peak +{result['baseline_peak_added_bytes'] / 1e6:.0f} MB"),
        ("cold load_dataset", f"{cold_t['median']:.2f} s (min {cold_t['min']:.2f}); cpu {_summary(cold, 'cpu_s')['median']:.2f} s",
         f"peak +{result['cold_peak_added_bytes'] / 1e6:.0f} MB"),
        ("warm load_dataset", f"{warm_t['median'] * 1e3:.1f} ms (min {warm_t['min'] * 1e3:.1f})",
         f"rss +{result['warm_rss_added_bytes'] / 1e6:.1f} MB"),
        ("packed arrays", f"{result['packed_bytes'] / 1e6:.1f} MB", ""),
        ("4 workers, one epoch", f"{workers['seconds']:.1f} s", f"PSS {workers['pss_started']['Pss'] / 1e6:.0f} -> {workers['pss_ended']['Pss'] / 1e6:.0f} MB "
         f"(anon {workers['pss_started']['Pss_Anon'] / 1e6:.0f} -> {workers['pss_ended']['Pss_Anon'] / 1e6:.0f}, "
         f"mapped files {workers['pss_started']['Pss_File'] / 1e6:.0f} -> {workers['pss_ended']['Pss_File'] / 1e6:.0f})"),
    ]
    lines = ["| measurement | value | memory |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines += ["", "| ratio | value | goal | met |", "|---|---|---|---|"]
    for k, (op, v) in goals.items():
        lines.append(f"| {k} | {result['ratios'][k]:.3f} | {op} {v} | {'yes' if result['goals_met'][k] else 'NO'} |")
    report(args.json, result, "arc_loading", lines)
    return result


if __name__ == "__main__":
    main()

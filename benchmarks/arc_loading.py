"""ARC guide loading: ``load_dataset`` against what a user would write instead.

    python -m benchmarks.arc_loading [--records 100000] [--repeats 3] [--quality-threshold 0.85]
        [--workdir DIR] [--out OUT]

Builds a dataset of realistic size (100,000 records, ~190 MB JSON array: records of the
generator, 2 pairs each, repeated with fresh task_ids), then measures in fresh processes,
in one run so every ratio compares like with like on the same (shared) machine:

- baseline: ``orjson.loads`` of the whole file into Python objects, then the same quality
  filter (``quality >= --quality-threshold``) as a list comprehension: the user's fastest
  alternative; time and peak RSS added;
- json.load: the same with the stdlib parser (the slower alternative, for reference);
- cold: ``load_dataset`` with no cache (parse, validate, pack, write the cache, filter);
- warm: ``load_dataset`` with the cache (memory-mapped);
- resident: bytes of the packed arrays / file size, and RSS added by a warm load;
- workers: a DataLoader with 4 workers iterating one epoch over the kept records: growth of
  the anonymous (private, copied) memory of the parent and its workers (Pss_Anon of
  /proc/PID/smaps_rollup) from the moment every worker has delivered a batch to the end of
  the epoch, over their total PSS then. Python lists would be copied page by page here;
  the memory-mapped arrays show up under mapped files instead (page cache, shared).

Peak RSS is the process's VmHWM (/proc/self/status, as core.logging.peak_rss_bytes reads
it) less its RSS before the load. Times are wall clock (the goals) and CPU time of the
loading process (steadier when the machine is shared); each is the median (and min) of
``--repeats`` runs. Goals from issue 3, now against the orjson baseline: cold <= baseline
time with peak RSS <= 2x the file; warm >= 50x faster than the baseline; resident <= 0.25x
the file; workers add <= 5%.

The dataset is built in a temporary folder removed at the end, or in ``--workdir`` (kept
and reused: it is a pure function of ``--records``). ``--out`` writes
``arc_loading.json``/``.md`` into a folder, or ``OUT.json``/``OUT.md`` for a file stem
(benchmarks/results_io.py); without it only the table is printed. The committed record:
``--out benchmarks/results``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.results_io import REPO, add_out_argument, given_argv, provenance, report
from core import procfs
from core.atomic import atomic_write

DEFAULT_QUALITY = 0.85  # configs/arc_guide/demo.toml's: a filter that drops records


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_bytes() -> int:
    """VmHWM: this process's resident high-water mark (see core.logging.peak_rss_bytes; not
    ru_maxrss, which Linux carries over from the parent across fork and exec)."""
    peak = procfs.kib_field_bytes("/proc/self/status", "VmHWM")
    if peak is None:
        raise OSError("no VmHWM in /proc/self/status")
    return peak


def _smaps_rollup(pid: int) -> dict[str, int]:
    """Bytes of /proc/PID/smaps_rollup fields (Pss_Anon: private copies, Pss_File: mapped files)."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return out


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (from the parent ids in /proc/*/stat)."""
    parent_of = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:  # exited meanwhile
            continue
        parent_of[int(entry)] = int(stat.rpartition(")")[2].split()[1])  # field 4, after "(comm)" and state
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parent_of.items() if parent in frontier]
        found += children
        frontier = children
    return found


# --------------------------------------------------------------------------- child processes


def _load_python_objects(parser: str, path: str, quality_threshold: float) -> int:
    """The user's alternative: parse the whole array into Python objects, keep quality >= Q."""
    if parser == "orjson":
        import orjson

        with open(path, "rb") as f:
            records = orjson.loads(f.read())
    else:
        with open(path) as f:
            records = json.load(f)
    kept = [r for r in records if r["quality"] >= quality_threshold]
    return len(kept)


def _child(mode: str, path: str, quality_threshold: float) -> dict:
    """Runs in a fresh interpreter; returns what it measured."""
    if mode in ("orjson", "json"):
        before = _rss_bytes()
        t, cpu = time.perf_counter(), time.process_time()
        n = _load_python_objects(mode, path, quality_threshold)
        seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
        return {"seconds": seconds, "cpu_s": cpu, "peak_added": _peak_bytes() - before, "rss_added": _rss_bytes() - before,
                "n_kept": n}
    from tasks.arc_guide.dataset import load_dataset

    if mode in ("cold", "warm"):
        before = _rss_bytes()
        t, cpu = time.perf_counter(), time.process_time()
        data = load_dataset(path, quality_threshold, verbose=False)
        seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
        return {
            "seconds": seconds, "cpu_s": cpu, "peak_added": _peak_bytes() - before, "rss_added": _rss_bytes() - before,
            "n_kept": len(data.index), "packed_bytes": data.nbytes(), "cache": data.stats["cache"],
        }
    if mode == "workers":
        import torch

        from tasks.arc_guide.task import ArcPairsDataset, collate_records

        data = load_dataset(path, quality_threshold, verbose=False)
        dataset = ArcPairsDataset(data, data.index, max_pairs=5)
        me = os.getpid()

        def total_pss() -> dict[str, int]:  # parent + workers; PSS splits shared pages: nothing counts twice
            rollups = [_smaps_rollup(p) for p in [me, *_descendants(me)]]
            return {k: sum(r.get(k, 0) for r in rollups) for k in ("Pss", "Pss_Anon", "Pss_File")}

        loader = torch.utils.data.DataLoader(dataset, batch_size=256, num_workers=4, collate_fn=collate_records,
                                             persistent_workers=True)
        t = time.perf_counter()
        n, started, processes = 0, None, 0
        for i, batch in enumerate(loader):
            n += len(batch["labels"])
            if i == 3:  # batches come round-robin: each of the 4 workers has delivered one
                started = total_pss()
                processes = 1 + len(_descendants(me))
        ended = total_pss()  # workers still alive: whatever they copied is still counted
        seconds = time.perf_counter() - t
        return {"seconds": seconds, "pss_started": started, "pss_ended": ended, "workers": 4, "processes": processes,
                "n": n}
    raise ValueError(mode)


def _run_child(mode: str, path: Path, quality_threshold: float) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.arc_loading", "--_child", mode, str(path), str(quality_threshold)],
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
    with atomic_write(path, "wb") as f:
        f.write(b"[\n")
        for i in range(records):
            rec = dict(pool[i % pool_size], task_id=f"bench-{i:07d}")
            f.write((b",\n" if i else b"") + orjson.dumps(rec))
        f.write(b"\n]\n")
    return path


def _summary(runs: list[dict], key: str = "seconds") -> dict:
    values = [r[key] for r in runs]
    return {"median": statistics.median(values), "min": min(values), "runs": values}


GOALS = {
    "cold_time_vs_baseline": ("<=", 1.0), "cold_peak_rss_vs_file": ("<=", 2.0),
    "warm_speedup_vs_baseline": (">=", 50.0), "resident_vs_file": ("<=", 0.25), "workers_pss_added": ("<=", 0.05),
}


def measure(path: Path, repeats: int, quality_threshold: float) -> dict:
    cache = path.parent / f"{path.name}.arc-cache"
    size = path.stat().st_size
    runs: dict[str, list[dict]] = {"orjson": [], "json": [], "cold": []}
    for _ in range(repeats):  # interleaved: a load change on the shared machine hits every mode alike
        runs["orjson"].append(_run_child("orjson", path, quality_threshold))
        runs["json"].append(_run_child("json", path, quality_threshold))
        shutil.rmtree(cache, ignore_errors=True)
        runs["cold"].append(_run_child("cold", path, quality_threshold))
    warm = [_run_child("warm", path, quality_threshold) for _ in range(max(repeats, 3))]
    workers = _run_child("workers", path, quality_threshold)
    kept = {r["n_kept"] for rs in (*runs.values(), warm) for r in rs}
    if len(kept) != 1:
        raise RuntimeError(f"the modes kept different record counts: {sorted(kept)}")

    def mode(rs: list[dict]) -> dict:
        return {"seconds": _summary(rs), "cpu_s": _summary(rs, "cpu_s"),
                "peak_added_bytes": max(r["peak_added"] for r in rs), "rss_added_bytes": max(r["rss_added"] for r in rs)}

    base, stdlib, cold, warm_m = mode(runs["orjson"]), mode(runs["json"]), mode(runs["cold"]), mode(warm)
    t = {k: v["seconds"]["median"] for k, v in (("base", base), ("json", stdlib), ("cold", cold), ("warm", warm_m))}
    ratios = {
        "cold_time_vs_baseline": t["cold"] / t["base"],
        "cold_peak_rss_vs_file": cold["peak_added_bytes"] / size,
        "warm_speedup_vs_baseline": t["base"] / t["warm"],
        "resident_vs_file": runs["cold"][0]["packed_bytes"] / size,
        # private (anonymous) memory the epoch added: copies of the dataset would show here
        "workers_pss_added": (workers["pss_ended"]["Pss_Anon"] - workers["pss_started"]["Pss_Anon"])
        / workers["pss_started"]["Pss"],
        "cold_cpu_vs_baseline": cold["cpu_s"]["median"] / base["cpu_s"]["median"],
        "cold_peak_rss_vs_baseline": cold["peak_added_bytes"] / base["peak_added_bytes"],
        "baseline_peak_rss_vs_file": base["peak_added_bytes"] / size,
        "cold_time_vs_json_load": t["cold"] / t["json"],
        "warm_speedup_vs_json_load": t["json"] / t["warm"],
        "json_load_peak_rss_vs_file": stdlib["peak_added_bytes"] / size,
    }
    return {
        "benchmark": "arc_loading", "file_bytes": size, "quality_threshold": quality_threshold,
        "records_kept": kept.pop(), "repeats": repeats,
        "baseline_orjson": base, "json_load": stdlib, "cold": cold, "warm": warm_m,
        "packed_bytes": runs["cold"][0]["packed_bytes"], "workers": workers, "ratios": ratios,
        "goals_met": {k: (ratios[k] <= v if op == "<=" else ratios[k] >= v) for k, (op, v) in GOALS.items()},
    }


def table(result: dict) -> list[str]:
    def times(m: dict, scale: float = 1.0, unit: str = "s", digits: int = 2) -> str:
        s = m["seconds"]
        return (f"{s['median'] * scale:.{digits}f} {unit} (min {s['min'] * scale:.{digits}f}); "
                f"cpu {m['cpu_s']['median'] * scale:.{digits}f} {unit}")

    w = result["workers"]
    mb = 1e6
    rows = [
        ("file", f"{result['file_bytes'] / mb:.1f} MB, {result['records']} records, "
                 f"{result['records_kept']} with quality >= {result['quality_threshold']}", ""),
        ("baseline: orjson.loads + filter", times(result["baseline_orjson"]),
         f"peak +{result['baseline_orjson']['peak_added_bytes'] / mb:.0f} MB"),
        ("json.load + filter", times(result["json_load"]), f"peak +{result['json_load']['peak_added_bytes'] / mb:.0f} MB"),
        ("cold load_dataset", times(result["cold"]), f"peak +{result['cold']['peak_added_bytes'] / mb:.0f} MB"),
        ("warm load_dataset", times(result["warm"], 1e3, "ms", 1), f"rss +{result['warm']['rss_added_bytes'] / mb:.1f} MB"),
        ("packed arrays", f"{result['packed_bytes'] / mb:.1f} MB", ""),
        ("4 workers, one epoch", f"{w['seconds']:.1f} s",
         f"PSS {w['pss_started']['Pss'] / mb:.0f} -> {w['pss_ended']['Pss'] / mb:.0f} MB "
         f"(anon {w['pss_started']['Pss_Anon'] / mb:.0f} -> {w['pss_ended']['Pss_Anon'] / mb:.0f}, "
         f"mapped files {w['pss_started']['Pss_File'] / mb:.0f} -> {w['pss_ended']['Pss_File'] / mb:.0f})"),
    ]
    lines = ["| measurement | value | memory |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines += ["", "| ratio (baseline = orjson.loads + filter) | value | goal | met |", "|---|---|---|---|"]
    for k, v in result["ratios"].items():
        goal = GOALS.get(k)
        met = ("yes" if result["goals_met"][k] else "NO") if goal else ""
        lines.append(f"| {k} | {v:.3f} | {f'{goal[0]} {goal[1]}' if goal else ''} | {met} |")
    return lines


def main(argv: list[str] | None = None) -> dict:
    argv = given_argv(argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.arc_loading", description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quality-threshold", type=float, default=DEFAULT_QUALITY,
                        help="every mode keeps records with quality >= this")
    parser.add_argument("--workdir", type=Path, help="build (and keep) the dataset here (default: a temporary folder)")
    add_out_argument(parser, "arc_loading")
    parser.add_argument("--_child", nargs=3, metavar=("MODE", "PATH", "QUALITY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        mode, path, quality = args._child
        print(json.dumps(_child(mode, path, float(quality))))
        return {}

    prov = provenance("arc_loading", argv, args)
    with tempfile.TemporaryDirectory(prefix="arc_loading_") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        path = build_dataset(workdir / f"arc_{args.records}.json", args.records)
        result = {"records": args.records, **measure(path, args.repeats, args.quality_threshold)}
    return report(prov, result, "ARC guide loading: load_dataset vs orjson.loads and json.load", table(result),
                  args.out, "arc_loading")


if __name__ == "__main__":
    main()

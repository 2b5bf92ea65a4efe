"""Per-instance batch size, memory, workers, throughput and cost for one task's config.

    python -m benchmarks.batch_size --task vesuvius --config configs/vesuvius/default.toml \
        [--instances g4dn.xlarge,c5.4xlarge|all] [--measure] [--json OUT] [--markdown OUT]

How each column is obtained (the table's footnotes say the same):
- CPU instances: the task's real training step is probed here in child processes (peak
  RSS) and fitted as ``fixed + per_sample x batch``; the budget is the instance's RAM less
  the OS and the runtime, times the safety margin, less DataLoader workers.
- GPU instances: without a GPU here, the model is estimated on the meta device (AdamW
  state per parameter + the activations autograd saves, 16-bit under AMP); with a GPU here
  it is measured with ``torch.cuda.max_memory_allocated``.
- samples/s: measured here for this machine's row; CPU instances scale it by physical cores
  (x0.8 parallel efficiency, marked "est."); GPU rows are not guessed.
- ``--measure`` runs the real step at the three largest of: the size recommended for this
  machine, 2x/3x/4x and +1/+2 of the largest probe, among those predicted to need at most
  half the memory left here, and prints predicted vs measured peak memory (none of these
  sizes was probed).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from core import config as config_io
from core.batch_size import (Choice, choose, cpu_budget, estimate_cuda_model, measure, probe_cpu,
                             sample_bytes)
from core.errors import exit_on_user_error
from core.instances import catalog
from core.precision import Precision
from core.registry import get_task
from core.runtime import physical_cores

GiB = 2**30
# samples in one epoch when the dataset is not at hand: the users' datasets
EPOCH_SAMPLES = {"arc-guide": 100_000, "vesuvius": 786 * 4}  # vesuvius: 786 volumes x data.samples_per_volume
CPU_SCALING_EFFICIENCY = 0.8
THROUGHPUT_BATCH_CAP = 64


def measure_throughput(task: Any, cfg: Any, batch_size: int, steps: int = 3, repeats: int = 3) -> dict[str, float]:
    """Training samples/s of the real step here, on CPU (min/median over repeats of ``steps`` steps)."""
    torch.manual_seed(0)
    model = task.build_model(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.trainer.lr)
    precision = Precision.create(cfg.trainer.precision, torch.device("cpu"))
    batch = task.example_batch(cfg, batch_size)
    model.train()

    def step() -> None:
        b = task.to_device(batch, torch.device("cpu"))
        with precision.autocast():
            loss, _ = task.loss(model, b)
        loss.float().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    warm = time.perf_counter()
    step()  # warm-up: first-call allocations and kernel selection
    if time.perf_counter() - warm > 20:  # a heavy step (3D U-Net on a CPU): fewer, single-step repeats
        steps, repeats = 1, 2
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(batch_size * steps / (time.perf_counter() - started))
    rates.sort()
    return {"min": rates[0], "median": rates[len(rates) // 2], "max": rates[-1]}


def instance_rows(task: Any, cfg: Any, names: list[str], cpu_model: Any, epoch_samples: int,
                  local_sps: float | None) -> list[dict[str, Any]]:
    rows = []
    instances = catalog()
    for name in names:
        inst = instances[name]
        workers, threads = inst.workers_and_threads()
        row_cfg = cfg.model_copy(deep=True)
        row_cfg.trainer.num_workers = workers
        if inst.has_gpu:
            row_cfg.trainer.precision = inst.precision
            if torch.cuda.is_available():
                model, how = measure(task, row_cfg, torch.device("cuda")), "measured on this GPU"
            else:
                model, how = estimate_cuda_model(task, row_cfg, inst.precision), "estimated (meta device)"
            budget = inst.memory_budget("cuda")
            choice: Choice = choose(task, row_cfg, torch.device("cuda"), epoch_samples, model=model, budget=budget)
            sps, sps_note = None, "needs that GPU"
        else:
            budget_bytes, source = inst.memory_budget("cpu")
            budget = (budget_bytes - cpu_model.baseline_bytes, source + " and the Python/torch runtime")
            choice = choose(task, row_cfg, torch.device("cpu"), epoch_samples, model=cpu_model, budget=budget)
            how = "measured here (child-process RSS)"
            scale = (inst.vcpus // 2) / physical_cores() * CPU_SCALING_EFFICIENCY
            sps = local_sps * scale if local_sps else None
            sps_note = "est. from this machine x cores"
        epoch_h = epoch_samples / sps / 3600 if sps else None
        rows.append({
            "instance": name, "device": f"{inst.gpu_count}x {inst.gpu}" if inst.has_gpu else "CPU",
            "precision": row_cfg.trainer.precision if inst.has_gpu else "fp32",
            "memory_budget_bytes": budget[0] if inst.has_gpu else budget[0] + cpu_model.baseline_bytes,
            "batch_size": choice.batch_size,
            "predicted_peak_bytes": choice.predicted_peak_bytes + (0 if inst.has_gpu else cpu_model.baseline_bytes),
            "num_workers": workers, "torch_threads": threads, "memory_model": how,
            "samples_per_s": sps, "samples_per_s_note": sps_note,
            "epoch_hours": epoch_h,
            "cost_per_epoch_usd": epoch_h * inst.on_demand_usd_h if epoch_h else None,
            "spot_cost_per_epoch_usd": epoch_h * inst.spot_usd_h if epoch_h and inst.spot_usd_h else None,
            "on_demand_usd_h": inst.on_demand_usd_h,
        })
    return rows


def _fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if unit == "GiB":
        return f"{value / GiB:.{digits}f} GiB"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def markdown(result: dict[str, Any]) -> str:
    lines = [f"## {result['task']}: {result['config']}", "",
             f"Measured on {result['machine']}; epoch = {result['epoch_samples']} samples; "
             f"safety margin {result['safety_margin']:.0%}.", "",
             "| instance | device | precision | memory budget | batch | predicted peak | workers | threads "
             "| samples/s | epoch | $/epoch (spot) |", "|" + "---|" * 11]
    for r in result["rows"]:
        epoch = f"{r['epoch_hours'] * 60:.1f} min" if r["epoch_hours"] else "n/a"
        cost = (f"{r['cost_per_epoch_usd']:.3f} ({r['spot_cost_per_epoch_usd']:.3f})"
                if r["cost_per_epoch_usd"] is not None else "n/a")
        sps = f"{r['samples_per_s']:.3g} (est.)" if r["samples_per_s"] else f"n/a ({r['samples_per_s_note']})"
        lines.append(f"| {r['instance']} | {r['device']} | {r['precision']} | {_fmt(r['memory_budget_bytes'], 'GiB')} "
                     f"| {r['batch_size']} | {_fmt(r['predicted_peak_bytes'], 'GiB', 2)} | {r['num_workers']} "
                     f"| {r['torch_threads']} | {sps} | {epoch} | {cost} |")
    local = result["local"]
    lines += ["", f"This machine: batch {local['batch_size']} ({local['reason']}); "
              f"samples/s at batch {local['samples_per_s_batch_size']}: min {local['samples_per_s']['min']:.3g}, "
              f"median {local['samples_per_s']['median']:.3g}."]
    if not result["measurements"] and result.get("measure_requested"):
        lines += ["", "No unprobed size fits in half the memory left here: see the smaller-patch table for "
                  "predicted vs measured peaks of this model."]
    if result["measurements"]:
        lines += ["", "Predicted vs measured peak memory of the real step here (sizes not probed):", "",
                  "| batch | predicted | measured | error | growth predicted | growth measured | growth error |",
                  "|---|---|---|---|---|---|---|"]
        for m in result["measurements"]:
            lines.append(f"| {m['batch_size']} | {_fmt(m['predicted_peak_bytes'], 'GiB', 3)} "
                         f"| {_fmt(m['measured_peak_bytes'], 'GiB', 3)} | {m['error']:+.1%} "
                         f"| {m['growth_predicted_bytes'] / 2**20:.0f} MiB | {m['growth_measured_bytes'] / 2**20:.0f} MiB "
                         f"| {m['growth_error']:+.1%} |")
    lines += ["", "GPU rows: memory estimated on the meta device unless a GPU was present; "
              "CPU rows: probed here in child processes. Prices: configs/instances.toml."]
    return "\n".join(lines) + "\n"


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--instances", default="all", help="comma-separated names or 'all'")
    parser.add_argument("--epoch-samples", type=int, help="samples per epoch (default: the users' dataset size)")
    parser.add_argument("--measure", action="store_true", help="measure peak memory at unprobed sizes here")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)

    task = get_task(args.task)
    cfg = config_io.load(task, args.config, args.overrides)
    cfg.trainer.precision = "fp32"  # the CPU probes here; GPU rows set their own
    names = list(catalog()) if args.instances == "all" else args.instances.split(",")
    epoch_samples = args.epoch_samples or EPOCH_SAMPLES.get(task.name, 10_000)

    started = time.perf_counter()
    budget = cpu_budget()
    cpu_model = measure(task, cfg, torch.device("cpu"), budget_bytes=budget[0])
    local = choose(task, cfg, torch.device("cpu"), epoch_samples, model=cpu_model, budget=budget)
    # Throughput flattens long before memory runs out on a CPU: time the step at the config's
    # batch size (what users run), within the recommended size and THROUGHPUT_BATCH_CAP.
    configured = cfg.trainer.batch_size if isinstance(cfg.trainer.batch_size, int) else THROUGHPUT_BATCH_CAP
    sps_batch = min(local.batch_size, configured, THROUGHPUT_BATCH_CAP)
    sps = measure_throughput(task, cfg, sps_batch)
    rows = instance_rows(task, cfg, names, cpu_model, epoch_samples, sps["median"])

    measurements = []
    if args.measure:
        largest_probe = max(p.batch_size for p in cpu_model.probes)
        # unprobed sizes, each predicted to need at most half the memory left here (the machine
        # may be shared: an OOM kill must not be what ends the measurement)
        candidates = {local.batch_size, largest_probe * 2, largest_probe * 3, largest_probe * 4,
                      largest_probe + 1, largest_probe + 2}
        sizes = sorted(n for n in candidates - {p.batch_size for p in cpu_model.probes}
                       if cpu_model.growth(n) <= 0.5 * budget[0])[-3:]
        smallest = cpu_model.probes[0]
        for probe in probe_cpu(task, cfg, sizes):
            predicted = cpu_model.predict_peak(probe.batch_size)
            growth_pred = predicted - cpu_model.predict_peak(smallest.batch_size)
            growth_meas = probe.peak_bytes - smallest.peak_bytes
            measurements.append({
                "batch_size": probe.batch_size, "predicted_peak_bytes": predicted, "measured_peak_bytes": probe.peak_bytes,
                "error": predicted / probe.peak_bytes - 1, "growth_predicted_bytes": growth_pred,
                "growth_measured_bytes": growth_meas, "growth_error": growth_pred / growth_meas - 1 if growth_meas else None,
            })

    result = {
        "task": task.name, "config": str(args.config or "built-in defaults"),
        "machine": f"{platform.machine()} {physical_cores()} cores, {budget[0] / GiB:.1f} GiB {budget[1]}, "
                   f"torch {torch.__version__}",
        "epoch_samples": epoch_samples, "safety_margin": cfg.trainer.memory_safety_margin,
        "cpu_memory_model": {"baseline_bytes": cpu_model.baseline_bytes, "fixed_bytes": cpu_model.fixed_bytes,
                             "per_sample_bytes": cpu_model.per_sample_bytes,
                             "probes": [vars(p) for p in cpu_model.probes]},
        "sample_bytes": sample_bytes(task, cfg),
        "local": {"batch_size": local.batch_size, "reason": local.reason, "samples_per_s": sps,
                  "samples_per_s_batch_size": sps_batch},
        "rows": rows, "measurements": measurements, "measure_requested": args.measure, "wall_s": round(time.perf_counter() - started, 1),
    }
    text = markdown(result)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()

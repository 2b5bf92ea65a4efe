"""Per-instance batch size, memory, workers, throughput and cost for one task's config.

    python -m benchmarks.batch_size --task vesuvius --config configs/vesuvius/default.toml \
        [--set KEY=VALUE ...] [--instances g4dn.xlarge,c5.4xlarge|all] [--measure] [--out OUT]

How each column is obtained (the table's footnotes say the same):
- CPU instances: the task's real training step is probed here in child processes (peak
  RSS under the training process's allocator) on a ladder of batch sizes up to the largest
  this machine's run may take (5% of the training set), interpolated between them and
  continued past the last by its last segment (core.batch_size.memory_model); the budget
  is the instance's RAM less the OS and the runtime, times the safety margin, less
  DataLoader workers.
- GPU instances: without a GPU here, the model is estimated on the meta device (AdamW
  state per parameter + the activations autograd saves, 16-bit under AMP); with a GPU here
  it is measured with ``torch.cuda.max_memory_allocated``.
- samples/s: measured here for this machine's row; CPU instances scale it by physical cores
  (x0.8 parallel efficiency, marked "est."); GPU rows are not guessed.
- The probed batch is the task's ``example_batch`` for the training data the config names
  (its ``batch_extent``: for ARC, the heaviest batch the run draws) when that data can be
  loaded here; otherwise the task's upper bound without an extent (said in the record).
- ``--measure`` validates the plan against real training processes: ``train <task>`` runs
  ``--measure-steps`` steps (evaluation off) at the batch recommended for this machine when
  its predicted step memory fits in half the memory free here (else the largest that does)
  and at half and a quarter of it. Predicted peak = the process's own memory before its
  model is built (``memory_before_model_bytes`` in summary.json: interpreter, torch, the
  loaded data) + the planned step memory for a run of that many steps (the trainer's plan
  when it chooses the largest measured size: a ladder up to it); measured = the process's
  peak RSS (``peak_mem_bytes``).

``--set KEY=VALUE`` (repeatable) overrides the config as ``train --set`` does (core.config.load);
the record's command names every override. ``--out`` writes ``batch_size_<task>.json``/``.md``
(``-`` in the task name as ``_``) into a folder, or ``OUT.json``/``OUT.md`` for a file stem
(benchmarks/results_io.py); without it only the table is printed. The committed records:

    python -m benchmarks.batch_size --task vesuvius --config configs/vesuvius/default.toml \
        --out benchmarks/results
    python -m benchmarks.batch_size --task vesuvius --config configs/vesuvius/default.toml \
        --set data.patch_size=64 --instances c5.4xlarge,g4dn.xlarge \
        --out benchmarks/results/batch_size_vesuvius_patch64
    python -m benchmarks.batch_size --task arc-guide --config configs/arc_guide/default.toml --measure \
        --out benchmarks/results
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.results_io import add_out_argument, given_argv, provenance, relative, report
from core import config as config_io
from core.batch_size import Choice, batch_cap, choose, cpu_budget, estimate_cuda_model, measure, sample_bytes
from core.errors import UserError, exit_on_user_error
from core.instances import catalog
from core.precision import Precision
from core.registry import get_task
from core.cpus import physical_cores
from core.step import train_step

GiB = 2**30
# samples in one epoch when the dataset is not at hand: the users' datasets
EPOCH_SAMPLES = {"arc-guide": 100_000, "vesuvius": 786 * 4}  # vesuvius: 786 volumes x data.samples_per_volume
CPU_SCALING_EFFICIENCY = 0.8
THROUGHPUT_BATCH_CAP = 64


def measure_throughput(task: Any, cfg: Any, batch_size: int, extent: dict[str, Any], steps: int = 3,
                       repeats: int = 3) -> dict[str, float]:
    """Training samples/s of the real step (core.step.train_step) here, on CPU (min/median
    over repeats of ``steps`` steps)."""
    device = torch.device("cpu")
    torch.manual_seed(0)
    model = task.build_model(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.trainer.lr)
    precision = Precision.create(cfg.trainer.precision, device)
    batch = task.example_batch(cfg, batch_size, extent)
    model.train()

    def step() -> None:
        train_step(task, cfg, model, optimizer, precision, iter([batch] * cfg.trainer.grad_accum_steps), device)

    warm = time.perf_counter()
    step()  # warm-up: first-call allocations and kernel selection
    if time.perf_counter() - warm > 20:  # a heavy step (3D U-Net on a CPU): fewer, single-step repeats
        steps, repeats = 1, 2
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(batch_size * cfg.trainer.grad_accum_steps * steps / (time.perf_counter() - started))
    rates.sort()
    return {"min": rates[0], "median": rates[len(rates) // 2], "max": rates[-1]}


def data_extent(task: Any, cfg: Any) -> tuple[dict[str, Any], str, int | None]:
    """(the task's batch_extent of the config's training data, how it was obtained, its size)."""
    try:
        train, _ = task.build_datasets(cfg)
    except UserError as e:
        return {}, f"no extent: the config's data is not loadable here ({str(e).splitlines()[0][:120]})", None
    return task.batch_extent(cfg, train), f"batch_extent of the config's training data ({len(train)} samples)", len(train)


def measure_real_runs(task: Any, cfg: Any, config: Path | None, overrides: list[str], local: Choice,
                      budget: tuple[float, str], extent: dict[str, Any], steps: int) -> list[dict[str, Any]]:
    """Predicted vs measured peak of real ``train`` processes at three sizes (module docstring)."""
    run_overrides = [f"trainer.max_steps={steps}", "trainer.evaluate=false", "trainer.log_every_steps=1000000",
                     "trainer.checkpoint_every_steps=1000000", 'trainer.precision="fp32"']
    run_cfg = config_io.load(task, config, [*overrides, *run_overrides])  # what each train process runs
    top = local.batch_size
    while top > 1 and local.model.growth(top) > 0.5 * budget[0]:
        top = max(1, int(top * 0.9))
    # the plan of a run of ``steps`` steps (its heaviest batches are among those steps), as the
    # trainer makes it when its choice is ``top``: the ladder climbs to ``top``
    model = measure(task, run_cfg, torch.device("cpu"), budget_bytes=budget[0], extent=extent, max_batch=top)
    sizes = sorted({top, max(1, top // 2), max(1, top // 4)})
    rows = []
    with tempfile.TemporaryDirectory(prefix="batch-size-measure-") as work:
        for n in sizes:
            run = Path(work) / f"batch-{n}"
            args = [task.name, "--run-dir", str(run), "--device", "cpu"] + (["--config", str(config)] if config else [])
            for o in [*overrides, *run_overrides, f"trainer.batch_size={n}"]:
                args += ["--set", o]
            proc = subprocess.run([sys.executable, "-m", "core.cli", *args], capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"train {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
            summary = json.loads((run / "summary.json").read_text())
            before, measured = summary["memory_before_model_bytes"], summary["peak_mem_bytes"]
            predicted = before + model.growth(n)
            rows.append({"batch_size": n, "steps": steps, "memory_before_model_bytes": before,
                         "predicted_peak_bytes": predicted, "measured_peak_bytes": measured,
                         "error": predicted / measured - 1, "wall_s": summary["wall_s"],
                         "recommended": n == local.batch_size})
            print(f"batch {n}: predicted {predicted / 2**20:.0f} MiB, measured {measured / 2**20:.0f} MiB "
                  f"({predicted / measured - 1:+.1%})", file=sys.stderr)
    return rows


def instance_rows(task: Any, cfg: Any, names: list[str], cpu_model: Any, epoch_samples: int,
                  local_sps: float | None, extent: dict[str, Any]) -> list[dict[str, Any]]:
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
                model, how = measure(task, row_cfg, torch.device("cuda"), extent=extent), "measured on this GPU"
            else:
                model, how = estimate_cuda_model(task, row_cfg, inst.precision, extent=extent), "estimated (meta device)"
            budget = inst.memory_budget("cuda")
            choice: Choice = choose(task, row_cfg, torch.device("cuda"), epoch_samples, model=model, budget=budget,
                                    extent=extent)
            sps, sps_note = None, "needs that GPU"
        else:
            budget_bytes, source = inst.memory_budget("cpu")
            budget = (budget_bytes - cpu_model.baseline_bytes, source + " and the Python/torch runtime")
            choice = choose(task, row_cfg, torch.device("cpu"), epoch_samples, model=cpu_model, budget=budget,
                            extent=extent)
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
    lines = [f"Measured on {result['machine']}; epoch = {result['epoch_samples']} samples; "
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
    lines += ["", f"Probed batch: {result['extent']}."]
    if result["measurements"]:
        lines += ["", "Predicted vs measured peak memory of real `train` processes here "
                  f"({result['measurements'][0]['steps']} steps each, evaluation off):", "",
                  "| batch | before model | predicted peak | measured peak | error |", "|---|---|---|---|---|"]
        for m in result["measurements"]:
            mark = " (recommended)" if m["recommended"] else ""
            lines.append(f"| {m['batch_size']}{mark} | {_fmt(m['memory_before_model_bytes'], 'GiB', 3)} "
                         f"| {_fmt(m['predicted_peak_bytes'], 'GiB', 3)} | {_fmt(m['measured_peak_bytes'], 'GiB', 3)} "
                         f"| {m['error']:+.1%} |")
    lines += ["", "GPU rows: memory estimated on the meta device unless a GPU was present; "
              "CPU rows: probed here in child processes. Prices: core/instances.toml."]
    return "\n".join(lines) + "\n"


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = given_argv(argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch_size", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, as train --set (repeatable)")
    parser.add_argument("--instances", default="all", help="comma-separated names or 'all'")
    parser.add_argument("--epoch-samples", type=int, help="samples per epoch (default: the users' dataset size)")
    parser.add_argument("--measure", action="store_true",
                        help="validate the prediction against real training processes here")
    parser.add_argument("--measure-steps", type=int, default=30, help="steps of each --measure training process")
    add_out_argument(parser, "batch_size_<task>")
    args = parser.parse_args(argv)
    prov = provenance("batch_size", argv, args)

    task = get_task(args.task)
    cfg = config_io.load(task, args.config, args.overrides)
    cfg.trainer.precision = "fp32"  # the CPU probes here; GPU rows set their own
    names = list(catalog()) if args.instances == "all" else args.instances.split(",")
    epoch_samples = args.epoch_samples or EPOCH_SAMPLES.get(task.name, 10_000)

    started = time.perf_counter()
    extent, extent_note, train_samples = data_extent(task, cfg)
    budget = cpu_budget()
    cpu_model = measure(task, cfg, torch.device("cpu"), budget_bytes=budget[0], extent=extent,
                        max_batch=batch_cap(train_samples or epoch_samples))
    # this machine's recommendation is the trainer's for this config (its data, when loaded)
    local = choose(task, cfg, torch.device("cpu"), train_samples or epoch_samples, model=cpu_model, budget=budget,
                   extent=extent)
    # Throughput flattens long before memory runs out on a CPU: time the step at the config's
    # batch size (what users run), within the recommended size and THROUGHPUT_BATCH_CAP.
    configured = cfg.trainer.batch_size if isinstance(cfg.trainer.batch_size, int) else THROUGHPUT_BATCH_CAP
    sps_batch = min(local.batch_size, configured, THROUGHPUT_BATCH_CAP)
    sps = measure_throughput(task, cfg, sps_batch, extent)
    rows = instance_rows(task, cfg, names, cpu_model, epoch_samples, sps["median"], extent)

    measurements = []
    if args.measure:
        measurements = measure_real_runs(task, cfg, args.config, args.overrides, local, budget, extent,
                                         args.measure_steps)

    result = {
        "task": task.name, "config": relative(args.config) if args.config else "built-in defaults",
        "overrides": list(args.overrides),
        "machine": f"{platform.machine()} {physical_cores()} cores, {budget[0] / GiB:.1f} GiB {budget[1]}, "
                   f"torch {torch.__version__}",
        "epoch_samples": epoch_samples, "safety_margin": cfg.trainer.memory_safety_margin,
        "cpu_memory_model": {"baseline_bytes": cpu_model.baseline_bytes, "fixed_bytes": cpu_model.fixed_bytes,
                             "per_sample_bytes": cpu_model.per_sample_bytes, "points": cpu_model.points,
                             "probes": [vars(p) for p in cpu_model.probes]},
        "sample_bytes": sample_bytes(task, cfg, extent), "extent": extent_note,
        "local": {"batch_size": local.batch_size, "reason": local.reason, "samples_per_s": sps,
                  "samples_per_s_batch_size": sps_batch},
        "rows": rows, "measurements": measurements, "measure_requested": args.measure, "wall_s": round(time.perf_counter() - started, 1),
    }
    title = f"Batch size per instance: {result['task']}, {result['config']}"
    title += "".join(f" --set {o}" for o in args.overrides)
    return report(prov, result, title, markdown(result), args.out, f"batch_size_{task.name.replace('-', '_')}")


if __name__ == "__main__":
    main()

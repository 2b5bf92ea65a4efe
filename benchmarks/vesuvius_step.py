"""Vesuvius training iteration, part by part, and what the data pipeline can deliver.

    python -m benchmarks.vesuvius_step [--config configs/vesuvius/default.toml] [--cpu-patch 64] \
        [--iterations 4] [--capacity-batches 30] [--workers 0,1,2] [--volume-size 160] [--out OUT]

Data: synthetic scrolls (``data.root = ""``) of ``--volume-size``^3, so patches of 128 plus
the features' context margin (152^3) fit; generated once into the cache.

1. Loader capacity (no model): patches/s that a DataLoader with N workers delivers from the
   memory-mapped volume cache at patch 128 (uint8 image crop with margin + label), the
   config's batch, over ``--capacity-batches`` batches after a warm-up. Set against what a
   T4 consumes: about 1 s per iteration at batch 2 for the 27M-parameter 3D U-Net at 128^3
   (../shared/FACTS.md: nnU-Net anchors; public T4 notebooks report 1.2-2.4 s), i.e. 2 patches/s.
2. One training iteration of the config's model (core.step.train_step, the trainer's own),
   timed part by part (device synchronised): data wait (next batch from the DataLoader),
   features + augmentation on the device (``to_device``), forward + backward (with
   unscaling and clipping), the optimizer's step. On this
   CPU at ``--cpu-patch`` (a 128^3 iteration of the 27M model takes minutes on 2 cores); on
   CUDA, when present, at the config's patch with the planner's batch and mixed precision,
   with the planner's predicted peak against ``torch.cuda.max_memory_allocated``. Without
   a GPU the record says so. min/median over ``--iterations`` after one warm-up.

``--out`` writes ``vesuvius_step.json``/``.md`` (benchmarks/results_io.py).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.results_io import add_out_argument, given_argv, provenance, relative, report
from core import config as config_io
from core.errors import exit_on_user_error
from core.precision import Precision
from core.step import train_step
from core.trainer import _loader
from tasks.vesuvius.task import VesuviusTask

T4_PATCHES_PER_S = 2.0  # batch 2 per ~1 s iteration at 128^3 (FACTS.md anchors)
PARTS = ("data_wait", "features", "forward_backward", "optimizer")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stats(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values)}


def loader_capacity(task: Any, cfg: Any, workers: int, batches: int) -> dict[str, Any]:
    """Patches/s a DataLoader with ``workers`` workers delivers (no model, CPU batches)."""
    cfg = cfg.model_copy(deep=True)
    cfg.trainer.num_workers = workers
    train, _ = task.build_datasets(cfg)
    loader = iter(_loader(task, cfg, train, cfg.trainer.batch_size, 0, torch.device("cpu"), shuffle=True))
    for _ in range(2):  # warm-up: worker start, first page faults of the memory maps
        next(loader)
    started, patches = time.perf_counter(), 0
    for _ in range(batches):
        patches += len(next(loader)["image"])
    rate = patches / (time.perf_counter() - started)
    return {"workers": workers, "patches_per_s": rate, "t4_ratio": rate / T4_PATCHES_PER_S}


class _TimedToDevice:
    """The task, with ``to_device`` (features and augmentation on the device) timed and synchronised."""

    def __init__(self, task: Any):
        self.task, self.seconds = task, 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)

    def to_device(self, cfg: Any, batch: Any, device: torch.device) -> Any:
        started = time.perf_counter()
        out = self.task.to_device(cfg, batch, device)
        _sync(device)
        self.seconds += time.perf_counter() - started
        return out


def iteration_parts(task: Any, cfg: Any, device: torch.device, iterations: int) -> dict[str, Any]:
    """Seconds per part of a training iteration (module docstring), min/median.

    The iteration is the trainer's own, core.step.train_step: data wait is what it reports,
    features the task's ``to_device`` (timed through a wrapper), the optimizer its ``step``
    (timed by step hooks); forward + backward is the rest (with unscaling, clipping and the
    step's finite-loss agreement, all small)."""
    torch.manual_seed(0)
    train, _ = task.build_datasets(cfg)
    model = task.build_model(cfg).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.trainer.lr)
    optimizer_s = {"start": 0.0, "total": 0.0}

    def before_step(*_: Any) -> None:
        optimizer_s["start"] = time.perf_counter()

    def after_step(*_: Any) -> None:
        _sync(device)
        optimizer_s["total"] += time.perf_counter() - optimizer_s["start"]

    optimizer.register_step_pre_hook(before_step)
    optimizer.register_step_post_hook(after_step)
    precision = Precision.create(cfg.trainer.precision, device)
    timed = _TimedToDevice(task)
    loader = iter(_loader(task, cfg, train, cfg.trainer.batch_size, 0, device, shuffle=True))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rows = []
    for _ in range(iterations + 1):
        timed.seconds = optimizer_s["total"] = 0.0
        started = time.perf_counter()
        result = train_step(timed, cfg, model, optimizer, precision, loader, device)
        _sync(device)
        total = time.perf_counter() - started
        wait, features, step = result.data_wait_s, timed.seconds, optimizer_s["total"]
        rows.append(dict(zip(PARTS, (wait, features, total - wait - features - step, step))) | {"total": total})
    rows = rows[1:]  # the first iteration pays one-time costs (kernel selection, operator caches)
    out: dict[str, Any] = {k: _stats([r[k] for r in rows]) for k in (*PARTS, "total")}
    out["data_wait_frac"] = _stats([r["data_wait"] / r["total"] for r in rows])
    out["features_share"] = _stats([r["features"] / r["total"] for r in rows])
    out.update({"device": str(device), "patch_size": cfg.data.patch_size, "batch_size": cfg.trainer.batch_size,
                "precision": precision.name, "num_workers": cfg.trainer.num_workers, "iterations": iterations})
    if device.type == "cuda":
        out["max_memory_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
    return out


def markdown(r: dict[str, Any]) -> str:
    lines = [f"Data: synthetic scrolls, {r['volume_size']}^3 volumes. T4 consumption taken as "
             f"{T4_PATCHES_PER_S:g} patches/s (batch 2, ~1 s per iteration at 128^3).", "",
             f"Loader capacity at patch 128 (no model, batch {r['capacity_batch_size']}):", "", "| workers | patches/s | x T4 consumption |", "|---|---|---|"]
    lines += [f"| {c['workers']} | {c['patches_per_s']:.1f} | {c['t4_ratio']:.1f}x |" for c in r["capacity"]]
    lines += ["", "Training iteration, seconds (min / median):", "",
              "| device | patch | batch | precision | workers | data wait | features | fwd+bwd | optimizer | total "
              "| data_wait_frac | features share |", "|" + "---|" * 12]
    for it in r["iterations"]:
        cell = lambda k: f"{it[k]['min']:.3f} / {it[k]['median']:.3f}"  # noqa: E731
        lines.append(f"| {it['device']} | {it['patch_size']} | {it['batch_size']} | {it['precision']} | {it['num_workers']} "
                     f"| {cell('data_wait')} | {cell('features')} | {cell('forward_backward')} | {cell('optimizer')} "
                     f"| {cell('total')} | {it['data_wait_frac']['median']:.3f} | {it['features_share']['median']:.3f} |")
    lines += ["", r["gpu_note"]]
    return "\n".join(lines) + "\n"


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = given_argv(argv)
    ap = argparse.ArgumentParser(prog="python -m benchmarks.vesuvius_step", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=Path("configs/vesuvius/default.toml"))
    ap.add_argument("--cpu-patch", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--capacity-batches", type=int, default=30)
    ap.add_argument("--workers", default="0,1,2", help="DataLoader worker counts for the capacity rows")
    ap.add_argument("--volume-size", type=int, default=160)
    add_out_argument(ap, "vesuvius_step")
    args = ap.parse_args(argv)
    prov = provenance("vesuvius_step", argv, args)
    task = VesuviusTask()
    data = ["data.root=", f"data.synthetic.size={args.volume_size}"]
    # enough patches per epoch for the capacity batches (the loader is not re-created mid-count)
    cfg = config_io.load(task, args.config, [*data, "data.patch_size=128", "data.samples_per_volume=64"])
    capacity = [loader_capacity(task, cfg, int(w), args.capacity_batches) for w in args.workers.split(",")]
    cpu_cfg = config_io.load(task, args.config, [*data, f"data.patch_size={args.cpu_patch}", 'trainer.precision="fp32"',
                                                 "trainer.num_workers=1"])
    iterations = [iteration_parts(task, cpu_cfg, torch.device("cpu"), args.iterations)]
    if torch.cuda.is_available():
        from core.batch_size import choose, measure

        gpu_cfg = config_io.load(task, args.config, data)
        device = torch.device("cuda")
        plan_model = measure(task, gpu_cfg, device)
        choice = choose(task, gpu_cfg, device, 786 * gpu_cfg.data.samples_per_volume, model=plan_model)
        gpu_cfg.trainer.batch_size = choice.batch_size
        row = iteration_parts(task, gpu_cfg, device, args.iterations)
        row["predicted_peak_bytes"] = plan_model.predict_peak(choice.batch_size)
        iterations.append(row)
        gpu_note = (f"GPU {torch.cuda.get_device_name()}: planner's batch {choice.batch_size}, predicted peak "
                    f"{row['predicted_peak_bytes'] / 2**30:.2f} GiB vs max_memory_allocated "
                    f"{row['max_memory_allocated_bytes'] / 2**30:.2f} GiB.")
    else:
        gpu_note = "No GPU was lent to this run: the CUDA rows (patch 128, the planner's batch, fp16/bf16) are not measured."
    result = {"config": relative(args.config), "volume_size": args.volume_size, "t4_patches_per_s": T4_PATCHES_PER_S,
              "capacity_batch_size": cfg.trainer.batch_size, "capacity": capacity, "iterations": iterations, "gpu_note": gpu_note}
    return report(prov, result, "Vesuvius training iteration and loader capacity", markdown(result), args.out,
                  "vesuvius_step")


if __name__ == "__main__":
    main()

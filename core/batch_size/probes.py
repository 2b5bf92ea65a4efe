"""Measuring the real training step (core.step.train_step) at a series of batch sizes.

- CUDA: probes run in this process (an OOM there is an exception we can catch) and read
  ``torch.cuda.max_memory_allocated``; the series stops once three probes resolve a line.
- CPU: the kernel's OOM killer sends SIGKILL, which no process survives, so probes run in a
  child process (``python -m core.batch_size``) that reports its own peak RSS (VmHWM); a
  probe that dies costs nothing but the probe. The child runs under the training process's
  settings (its allocator, OpenMP and oneDNN environment: core.process_env), and the series
  climbs a ladder of sizes up to the largest batch the run may take, because resident
  memory there is not linear in the batch (core.batch_size.memory_model).

Each size runs PROBE_RANKS: the task's third, second and first heaviest batches of the run
(``example_batch(..., rank=k)``), the heaviest last, one training step each. A run meets
many batch shapes; the ones before its heaviest leave freed heap and cached kernels of
their own shapes behind, which a probe of one batch repeated would not hold (ARC guide,
default config, batch 1344: a 30-step training run grew by 2,449 MiB; the ladder with the
heaviest batch alone predicted 2,258 MiB, with the three heaviest batches per size 2,384).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict
from typing import Any

import torch

from core.batch_size.memory_model import (ADAMW_BYTES_PER_PARAM, MAX_PROBE_BATCH, MemoryModel, Probe, fit,
                                          ladder, parameter_count)
from core import process_env
from core.errors import UserError
from core.logging import peak_rss_bytes

MIN_GROWTH_BYTES = 48 << 20  # probes must span at least this much growth to resolve the slope
PROBE_ENV = "TWOTRACK_MEMORY_PROBE"  # set to "1" in a CPU probe process


def _task_target(task: Any) -> str:
    cls = type(task)
    return f"{cls.__module__}:{cls.__qualname__}"


PROBE_RANKS = (2, 1, 0)  # example_batch ranks each probed size runs, in this order (0: the heaviest)


def _run_step(task: Any, cfg: Any, model: torch.nn.Module, raw_model: torch.nn.Module,
              optimizer: torch.optim.Optimizer, batch_size: int, device: torch.device, extent: dict[str, Any]) -> None:
    """One training step through core.step.train_step per rank of PROBE_RANKS, as the trainer
    runs them (``grad_accum_steps`` micro-batches each; from the second step on AdamW's state
    exists, so the heaviest batch meets it)."""
    from core.precision import Precision
    from core.step import train_step

    precision = Precision.create(cfg.trainer.precision, device)
    model.train()
    for rank in PROBE_RANKS:
        batch = task.example_batch(cfg, batch_size, extent, rank=rank)  # a CPU batch, as the DataLoader gives
        train_step(task, cfg, model, optimizer, precision, iter([batch] * cfg.trainer.grad_accum_steps), device,
                   raw_model=raw_model)


def _probe_model(task: Any, cfg: Any, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(model as the step calls it, plain module): compiled when the run compiles."""
    raw = task.build_model(cfg).to(device)
    return (torch.compile(raw) if cfg.trainer.compile else raw), raw


def _probe_sizes(run: Any, sizes: list[int] | None, max_growth: float | None = None,
                 until: int | None = None) -> list[Probe]:
    """Probe the given sizes, or climb from batch 1 (x4 while the growth is tiny, then x2).
    With ``until`` (CPU) the ladder climbs to ``until`` itself, the largest batch the run may
    take; without it (CUDA) it stops once three probes span at least ``MIN_GROWTH_BYTES`` (a
    line through them is resolved). A ladder also stops before a size whose step,
    extrapolated through the origin from the last probe (an over-estimate), would take more
    than ``max_growth`` bytes (a quarter of the budget: probing must not crowd the machine).
    ``run(n)`` returns a Probe or None (out of memory), which ends the series."""
    probes: list[Probe] = []
    if sizes:
        for size in sizes:
            probe = run(size)
            if probe is None:
                break
            probes.append(probe)
        return probes
    n = 1
    while n <= MAX_PROBE_BATCH:
        if probes and max_growth:
            last = probes[-1]
            if (last.peak_bytes - last.baseline_bytes) * n / last.batch_size > max_growth:
                break
        probe = run(n)
        if probe is None:
            break
        probes.append(probe)
        spread = probes[-1].peak_bytes - probes[0].peak_bytes
        if until is None and len(probes) >= 3 and spread >= MIN_GROWTH_BYTES:
            break
        if until is not None and n >= until:
            break
        n *= 4 if spread < MIN_GROWTH_BYTES / 8 else 2
        if until is not None:
            n = min(n, until)
    return probes


def probe_cpu(task: Any, cfg: Any, sizes: list[int] | None = None, threads: int | None = None,
              timeout: float = 3600, max_growth: float | None = None,
              extent: dict[str, Any] | None = None, until: int | None = None) -> list[Probe]:
    """Probe in a child process, sizes in increasing order (peak RSS only grows, so the peak
    after size n is the peak of size n); without ``sizes``, a ladder up to ``until``. A child
    killed by the OOM killer keeps the probes it reported before dying."""
    spec = {"task": _task_target(task), "config": cfg.model_dump(mode="json"), "sizes": sizes,
            "threads": threads or torch.get_num_threads(), "max_growth": max_growth, "extent": extent or {},
            "until": until}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    process_env.apply_defaults(env)  # the training process's OpenMP/oneDNN settings
    env[PROBE_ENV] = "1"  # tasks with side effects in their hooks (test fault injection) hold them here
    proc = subprocess.run([sys.executable, "-m", "core.batch_size"], input=json.dumps(spec), env=env,
                          capture_output=True, text=True, timeout=timeout)
    probes = [Probe(**json.loads(line)) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode < 0:  # killed: by the OOM killer's SIGKILL, almost always
        print(f"batch-size probe killed by {signal.Signals(-proc.returncode).name} after sizes "
              f"{[p.batch_size for p in probes]}; using those", file=sys.stderr)
    elif proc.returncode != 0:  # the step itself is broken: a bug to show, not a size limit
        raise RuntimeError(f"batch-size probe failed:\n{proc.stderr[-4000:]}")
    return probes


def probe_child() -> None:
    """Entry of a CPU probe process: JSON spec on stdin, one JSON Probe per line on stdout."""
    import importlib

    from core import config as config_io

    spec = json.loads(sys.stdin.read())
    torch.set_num_threads(spec["threads"])
    module, _, cls = spec["task"].partition(":")
    task = getattr(importlib.import_module(module), cls)()
    cfg = config_io.from_dict(task, spec["config"], "probe")
    torch.manual_seed(0)
    baseline = peak_rss_bytes()
    device = torch.device("cpu")
    model, raw = _probe_model(task, cfg, device)
    optimizer = torch.optim.AdamW(raw.parameters(), lr=cfg.trainer.lr)

    def run(n: int) -> Probe:
        _run_step(task, cfg, model, raw, optimizer, n, device, spec["extent"])
        probe = Probe(n, peak_rss_bytes(), baseline)
        print(json.dumps(asdict(probe)), flush=True)
        return probe

    _probe_sizes(run, spec["sizes"], spec["max_growth"], spec["until"])


def probe_cuda(task: Any, cfg: Any, device: torch.device, sizes: list[int] | None = None,
               extent: dict[str, Any] | None = None) -> list[Probe]:
    """Probe on the GPU in this process (an OOM is an exception here); peak allocated bytes."""
    try:
        return _probe_cuda_sizes(task, cfg, device, sizes, extent or {})
    finally:
        torch.cuda.empty_cache()  # the probe's model and optimizer are gone by now: hand back their blocks


def _probe_cuda_sizes(task: Any, cfg: Any, device: torch.device, sizes: list[int] | None,
                      extent: dict[str, Any]) -> list[Probe]:
    model, raw = _probe_model(task, cfg, device)
    optimizer = torch.optim.AdamW(raw.parameters(), lr=cfg.trainer.lr)

    def run(n: int) -> Probe | None:
        try:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            _run_step(task, cfg, model, raw, optimizer, n, device, extent)
            return Probe(n, torch.cuda.max_memory_allocated(device), 0)
        except torch.cuda.OutOfMemoryError:
            optimizer.zero_grad(set_to_none=True)
            return None

    return _probe_sizes(run, sizes)


def measure(task: Any, cfg: Any, device: torch.device, sizes: list[int] | None = None,
            budget_bytes: float | None = None, extent: dict[str, Any] | None = None,
            max_batch: int = MAX_PROBE_BATCH) -> MemoryModel:
    """Probe the training step (at ``sizes``, or a growing series from 1) and model it: on
    CUDA the line through the last three probes, on the CPU the polyline through a ladder
    that climbs to ``max_batch`` (the largest batch the run may take; memory_model explains
    why).

    When only batch 1 can be probed (a 3D U-Net on 128^3 patches takes several GB per
    sample on a CPU), the line goes through that probe with the fixed part computed, not
    fitted: AdamW's 16 bytes per parameter (fp32 weights, gradients, two moments)."""
    max_growth = budget_bytes / 4 if budget_bytes else None
    if device.type == "cuda":
        probes = probe_cuda(task, cfg, device, sizes, extent)
    else:
        probes = probe_cpu(task, cfg, sizes, max_growth=max_growth, extent=extent, until=max_batch)
    if len(probes) == 1 and not sizes:
        only = probes[0]
        fixed = ADAMW_BYTES_PER_PARAM * parameter_count(task, cfg)
        per_sample = max(0.0, (only.peak_bytes - only.baseline_bytes - fixed) / only.batch_size)
        return MemoryModel(only.baseline_bytes, fixed, per_sample, device.type, probes)
    if len(probes) < 2:
        raise UserError(f"could not measure a training step on {device}: the probes at batch sizes "
                        f"{sizes or [1, 2]} ran out of memory; use a smaller model or set trainer.batch_size")
    if device.type == "cuda":
        return fit(probes if sizes else probes[-3:], device.type)
    return ladder(probes, device.type)

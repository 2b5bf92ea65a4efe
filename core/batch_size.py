"""Memory-aware batch sizing: probe a real training step, fit a line, choose, explain.

Peak memory of one training step (forward, fp32 loss, backward, clip, AdamW step) is, to a
good approximation, ``fixed + per_sample * batch``: ``fixed`` holds the weights, gradients
and optimizer state, ``per_sample`` the activations autograd keeps for backward. We measure
the real step of the task's ``example_batch`` at three small batch sizes and fit that line
by least squares, then pick the largest batch whose predicted peak fits the budget times
``trainer.memory_safety_margin`` (0.85 by default).

- CUDA: probes run in this process (an OOM there is an exception we can catch) and read
  ``torch.cuda.max_memory_allocated``; the budget is the device's free memory.
- CPU: the kernel's OOM killer sends SIGKILL, which no process survives, so probes run in
  child processes that report their own peak RSS (VmHWM); a probe that dies costs
  nothing but the probe. The budget is the memory this process may still take: the lower
  of the kernel's MemAvailable and the cgroup limit minus the cgroup's usage (containers,
  ``systemd-run -p MemoryMax``), less what DataLoader workers will hold
  (``num_workers x prefetch_factor x batch bytes``, plus a per-worker interpreter).

Datasets already loaded by this process are inside the measured usage; memory-mapped
arrays are file-backed pages the kernel can drop, so they are not charged. Probes run with
``core.runtime.predictable_malloc`` (their peak RSS then follows live tensors); the training
process keeps glibc's faster defaults and the safety margin covers the heap it retains.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from core.errors import UserError
from core.logging import peak_rss_bytes

WORKER_OVERHEAD_BYTES = 48 << 20  # a forked worker's private pages (interpreter state it touches)
MIN_GROWTH_BYTES = 48 << 20  # probes must span at least this much growth to resolve the slope
MAX_PROBE_BATCH = 4096
FRACTION_OF_DATASET = 0.05  # nnU-Net's rule: one batch covers at most 5% of the training set


@dataclass
class Probe:
    batch_size: int
    peak_bytes: int  # absolute peak of the step: RSS of the probe process, or CUDA allocated
    baseline_bytes: int  # before the model existed: interpreter, torch, the task's imports


@dataclass
class MemoryModel:
    """``peak(n) = baseline + fixed + per_sample * n`` fitted on ``probes``."""

    baseline_bytes: float
    fixed_bytes: float
    per_sample_bytes: float
    device: str
    probes: list[Probe] = field(default_factory=list)

    def growth(self, batch_size: int) -> float:
        """Memory the training step adds on top of the runtime that is already there."""
        return self.fixed_bytes + self.per_sample_bytes * batch_size

    def predict_peak(self, batch_size: int) -> float:
        return self.baseline_bytes + self.growth(batch_size)

    def largest_fitting(self, budget_bytes: float, extra_per_sample: float = 0.0) -> int:
        per_sample = self.per_sample_bytes + extra_per_sample
        if per_sample <= 0:
            return MAX_PROBE_BATCH
        return int((budget_bytes - self.fixed_bytes) // per_sample)


def fit(probes: list[Probe], device: str) -> MemoryModel:
    """Least-squares line through (batch size, peak - baseline)."""
    xs = [p.batch_size for p in probes]
    ys = [p.peak_bytes - p.baseline_bytes for p in probes]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0
    slope = max(slope, 0.0)
    baseline = max(p.baseline_bytes for p in probes)
    return MemoryModel(baseline, my - slope * mx, slope, device, probes)


# ----------------------------------------------------------------------------- probing


def _task_target(task: Any) -> str:
    cls = type(task)
    return f"{cls.__module__}:{cls.__qualname__}"


def _run_step(task: Any, cfg: Any, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
              batch_size: int, device: torch.device) -> None:
    """Two training steps exactly as the trainer runs them (the second holds AdamW's state)."""
    from core.precision import Precision

    precision = Precision.create(cfg.trainer.precision, device)
    model.train()
    for _ in range(2):
        batch = task.to_device(task.example_batch(cfg, batch_size), device)
        with precision.autocast():
            loss, _ = task.loss(model, batch)
        precision.backward(loss.float())
        precision.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.trainer.grad_clip or float("inf"))
        precision.step(optimizer)
        optimizer.zero_grad(set_to_none=True)
        del batch, loss


def _probe_sizes(run: Any, sizes: list[int] | None, max_growth: float | None = None) -> list[Probe]:
    """Probe the given sizes, or grow from batch 1 (x4 while the growth is tiny, then x2)
    until three probes span at least ``MIN_GROWTH_BYTES``. The series also stops before a
    size whose step, extrapolated through the origin from the last probe (an over-estimate),
    would take more than ``max_growth`` bytes (a quarter of the budget: probing must not
    crowd the machine). ``run(n)`` returns a Probe or None (out of memory), which ends it."""
    probes: list[Probe] = []
    n = 1
    while (sizes is None and n <= MAX_PROBE_BATCH) or (sizes and len(probes) < len(sizes)):
        size = sizes[len(probes)] if sizes else n
        if sizes is None and probes and max_growth:
            last = probes[-1]
            if (last.peak_bytes - last.baseline_bytes) * size / last.batch_size > max_growth:
                break
        probe = run(size)
        if probe is None:
            break
        probes.append(probe)
        spread = probes[-1].peak_bytes - probes[0].peak_bytes
        if sizes is None and len(probes) >= 3 and spread >= MIN_GROWTH_BYTES:
            break
        n *= 4 if spread < MIN_GROWTH_BYTES / 8 else 2
    return probes


def probe_cpu(task: Any, cfg: Any, sizes: list[int] | None = None, threads: int | None = None,
              timeout: float = 3600, max_growth: float | None = None) -> list[Probe]:
    """Probe in a child process, sizes in increasing order (peak RSS only grows, so the peak
    after size n is the peak of size n). A child killed by the OOM killer keeps the probes
    it reported before dying."""
    spec = {"task": _task_target(task), "config": cfg.model_dump(mode="json"), "sizes": sizes,
            "threads": threads or torch.get_num_threads(), "max_growth": max_growth}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.run([sys.executable, "-m", "core.batch_size"], input=json.dumps(spec), env=env,
                          capture_output=True, text=True, timeout=timeout)
    probes = [Probe(**json.loads(line)) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode < 0:  # killed: by the OOM killer's SIGKILL, almost always
        print(f"batch-size probe killed by {signal.Signals(-proc.returncode).name} after sizes "
              f"{[p.batch_size for p in probes]}; using those", file=sys.stderr)
    elif proc.returncode != 0:  # the step itself is broken: a bug to show, not a size limit
        raise RuntimeError(f"batch-size probe failed:\n{proc.stderr[-4000:]}")
    return probes


def _probe_child() -> None:
    """Entry of a CPU probe process: JSON spec on stdin, one JSON Probe per line on stdout."""
    import importlib

    from core import config as config_io
    from core.runtime import predictable_malloc

    predictable_malloc()
    spec = json.loads(sys.stdin.read())
    torch.set_num_threads(spec["threads"])
    module, _, cls = spec["task"].partition(":")
    task = getattr(importlib.import_module(module), cls)()
    cfg = config_io.from_dict(task, spec["config"], "probe")
    torch.manual_seed(0)
    baseline = peak_rss_bytes()
    model = task.build_model(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.trainer.lr)
    device = torch.device("cpu")

    def run(n: int) -> Probe:
        _run_step(task, cfg, model, optimizer, n, device)
        probe = Probe(n, peak_rss_bytes(), baseline)
        print(json.dumps(asdict(probe)), flush=True)
        return probe

    _probe_sizes(run, spec["sizes"], spec["max_growth"])


def probe_cuda(task: Any, cfg: Any, device: torch.device, sizes: list[int] | None = None) -> list[Probe]:
    """Probe on the GPU in this process (an OOM is an exception here); peak allocated bytes."""
    try:
        return _probe_cuda_sizes(task, cfg, device, sizes)
    finally:
        torch.cuda.empty_cache()  # the probe's model and optimizer are gone by now: hand back their blocks


def _probe_cuda_sizes(task: Any, cfg: Any, device: torch.device, sizes: list[int] | None) -> list[Probe]:
    model = task.build_model(cfg).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.trainer.lr)

    def run(n: int) -> Probe | None:
        try:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            _run_step(task, cfg, model, optimizer, n, device)
            return Probe(n, torch.cuda.max_memory_allocated(device), 0)
        except torch.cuda.OutOfMemoryError:
            optimizer.zero_grad(set_to_none=True)
            return None

    return _probe_sizes(run, sizes)


def measure(task: Any, cfg: Any, device: torch.device, sizes: list[int] | None = None,
            budget_bytes: float | None = None) -> MemoryModel:
    """Probe the training step (at ``sizes``, or a growing series from 1) and fit the line
    through the last three probes.

    When only batch 1 can be probed (a 3D U-Net on 128^3 patches takes several GB per
    sample on a CPU), the line goes through that probe with the fixed part computed, not
    fitted: AdamW's 16 bytes per parameter (fp32 weights, gradients, two moments)."""
    max_growth = budget_bytes / 4 if budget_bytes else None
    probes = probe_cuda(task, cfg, device, sizes) if device.type == "cuda" else \
        probe_cpu(task, cfg, sizes, max_growth=max_growth)
    probes = probes if sizes else probes[-3:]
    if len(probes) == 1 and not sizes:
        only = probes[0]
        fixed = ADAMW_BYTES_PER_PARAM * parameter_count(task, cfg)
        per_sample = max(0.0, (only.peak_bytes - only.baseline_bytes - fixed) / only.batch_size)
        return MemoryModel(only.baseline_bytes, fixed, per_sample, device.type, probes)
    if len(probes) < 2:
        raise UserError(f"could not measure a training step on {device}: the probes at batch sizes "
                        f"{sizes or [1, 2]} ran out of memory; use a smaller model or set trainer.batch_size")
    return fit(probes, device.type)


def parameter_count(task: Any, cfg: Any) -> int:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        return sum(p.numel() for p in task.build_model(cfg).parameters())


ADAMW_BYTES_PER_PARAM = 16


def saved_activation_bytes(task: Any, cfg: Any, batch_size: int, half: bool) -> tuple[int, int]:
    """(bytes autograd saves for backward, parameter count) of one forward + loss.

    First on the meta device (shapes and dtypes only: no memory, no arithmetic; ``half``
    runs the model in fp16 as autocast does for convolutions and matmuls on a GPU). Models
    that look at data (``.cpu()``, ``.item()``) cannot run there: they run for real on the
    CPU instead, under bf16 autocast when ``half`` (2 bytes per element, like fp16)."""
    try:
        return _saved_bytes(task, cfg, batch_size, torch.device("meta"), half)
    except (NotImplementedError, RuntimeError):
        return _saved_bytes(task, cfg, batch_size, torch.device("cpu"), half)


def _saved_bytes(task: Any, cfg: Any, batch_size: int, device: torch.device, half: bool) -> tuple[int, int]:
    with device:
        model = task.build_model(cfg)
    meta = device.type == "meta"
    if half and meta:
        model = model.half()
    # meta tensors have no addresses: tell tensors apart by their TensorImpl (``_cdata``)
    params = {p._cdata for p in model.parameters()}
    seen: set[int] = set()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        base = t._base if t._base is not None else t
        if base._cdata not in params and t._cdata not in seen:
            seen.add(t._cdata)
            total += t.nelement() * t.element_size()
        return t

    batch = task.to_device(task.example_batch(cfg, batch_size), device)
    if half and meta:
        batch = _to_half(batch)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if half and not meta else contextlib.nullcontext()
    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
        task.loss(model, batch)
    return total, sum(p.numel() for p in model.parameters())


def _to_half(batch: Any) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.half() if batch.is_floating_point() else batch
    if isinstance(batch, dict):
        return {k: _to_half(v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_half(v) for v in batch)
    return batch


CUDA_WORKSPACE_BYTES = 256 << 20  # cuDNN/cuBLAS workspaces and allocator rounding
BACKWARD_TRANSIENT = 1.25  # gradients of the largest activations exist alongside the saved ones


def estimate_cuda_model(task: Any, cfg: Any, precision: str, sizes: tuple[int, int] = (1, 2)) -> MemoryModel:
    """A GPU memory model without a GPU (for instance tables on a CPU machine): AdamW's
    16 bytes per parameter (fp32 weights, grads, two moments), a 16-bit weight copy under
    autocast, the activations autograd saves (counted on the meta device, in 16-bit when the
    instance runs fp16/bf16) times a backward transient factor, and a fixed workspace."""
    half = precision in ("fp16", "bf16")
    (a1, params), (a2, _) = (saved_activation_bytes(task, cfg, n, half) for n in sizes)
    per_sample = max(0.0, (a2 - a1) / (sizes[1] - sizes[0])) * BACKWARD_TRANSIENT
    fixed = ADAMW_BYTES_PER_PARAM * params + (2 * params if half else 0) + CUDA_WORKSPACE_BYTES + \
        max(0.0, a1 * BACKWARD_TRANSIENT - per_sample * sizes[0])
    return MemoryModel(0.0, fixed, per_sample, "cuda (estimated on meta)", [])


# ----------------------------------------------------------------------------- budgets


def _cgroup_memory_left() -> int | None:
    """Bytes the cgroup of this process may still use (v2 or v1), None without a limit."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2
            roots, limit_file, usage_file = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"], "memory.max", "memory.current"
        elif "memory" in controllers.split(","):
            roots, limit_file, usage_file = ["/sys/fs/cgroup/memory"], "memory.limit_in_bytes", "memory.usage_in_bytes"
        else:
            continue
        parts = [p for p in path.split("/") if p]
        for root in roots:
            # inside a container the mount's root is our own cgroup: try the path's suffixes
            for i in range(len(parts) + 1):
                folder = Path(root, *parts[i:])
                try:
                    limit_text = (folder / limit_file).read_text().strip()
                    usage = int((folder / usage_file).read_text().strip())
                except (OSError, ValueError):
                    continue
                if limit_text == "max" or int(limit_text) >= 1 << 60:
                    break
                return max(0, int(limit_text) - usage)
    return None


def mem_available() -> int:
    """The kernel's estimate of memory available without swapping (/proc/meminfo)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def cpu_budget() -> tuple[int, str]:
    available = mem_available()
    cgroup_left = _cgroup_memory_left()
    if cgroup_left is not None and cgroup_left < available:
        return cgroup_left, "left under the cgroup memory limit"
    return available, "MemAvailable"


def sample_bytes(task: Any, cfg: Any) -> int:
    """Bytes of one sample of a CPU batch (what a DataLoader worker holds per sample)."""
    def nbytes(x: Any) -> int:
        if isinstance(x, torch.Tensor):
            return x.nelement() * x.element_size()
        if isinstance(x, dict):
            return sum(map(nbytes, x.values()))
        if isinstance(x, (list, tuple)):
            return sum(map(nbytes, x))
        return 0

    return max(1, nbytes(task.example_batch(cfg, 2)) // 2)


@dataclass
class Choice:
    batch_size: int
    reason: str
    model: MemoryModel
    budget_bytes: float
    predicted_peak_bytes: float


def choose(task: Any, cfg: Any, device: torch.device, dataset_size: int | None = None,
           model: MemoryModel | None = None, budget: tuple[float, str] | None = None) -> Choice:
    """The largest batch whose predicted memory fits ``budget x margin``; explained in ``reason``."""
    t = cfg.trainer
    if budget is None:
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            budget = (free + torch.cuda.memory_allocated(device), "free GPU memory")
        else:
            budget = cpu_budget()
    budget_bytes, budget_source = budget
    model = model or measure(task, cfg, device, budget_bytes=budget_bytes)
    usable = budget_bytes * t.memory_safety_margin
    workers_fixed, per_sample_extra = 0.0, 0.0
    if device.type != "cuda" and t.num_workers:
        workers_fixed = t.num_workers * WORKER_OVERHEAD_BYTES
        per_sample_extra = t.num_workers * t.prefetch_factor * sample_bytes(task, cfg)
    fits = model.largest_fitting(usable - workers_fixed, per_sample_extra)
    cap = max(1, int(dataset_size * FRACTION_OF_DATASET)) if dataset_size else MAX_PROBE_BATCH
    chosen = min(fits, cap, MAX_PROBE_BATCH)
    if chosen < 1:
        need = model.growth(1) + workers_fixed + per_sample_extra
        raise UserError(f"batch size 1 needs about {need / 2**30:.2f} GiB but only {usable / 2**30:.2f} GiB "
                        f"({t.memory_safety_margin:.0%} of {budget_bytes / 2**30:.2f} GiB {budget_source}) is "
                        "available; use a smaller model or patch, or a machine with more memory")
    if chosen >= 16:
        chosen -= chosen % 8  # multiples of 8 suit tensor cores and vectorised CPU kernels
    limit = "memory" if fits <= cap else f"capped at 5% of {dataset_size} samples"
    reason = (f"auto ({limit}): step memory {max(model.fixed_bytes, 0) / 2**20:.0f} MiB + "
              f"{(model.per_sample_bytes + per_sample_extra) / 2**20:.2f} MiB/sample fitted on probes at "
              f"{[p.batch_size for p in model.probes]}, budget {t.memory_safety_margin:.0%} of "
              f"{budget_bytes / 2**30:.2f} GiB {budget_source} on {device.type}")
    predicted = model.growth(chosen) + workers_fixed + per_sample_extra * chosen
    return Choice(chosen, reason, model, budget_bytes, predicted)


def choose_batch_size(task: Any, cfg: Any, device: torch.device, train_set: Any) -> tuple[int, str]:
    """The trainer's entry: (batch size, reason). Honours ``trainer.instance`` when set."""
    budget = None
    if cfg.trainer.instance:
        from core.instances import get_instance

        budget = get_instance(cfg.trainer.instance).memory_budget(device.type)
    choice = choose(task, cfg, device, len(train_set), budget=budget)
    print(f"batch size: {choice.batch_size} ({choice.reason})", file=sys.stderr)
    return choice.batch_size, choice.reason


if __name__ == "__main__":
    _probe_child()

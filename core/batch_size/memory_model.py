"""The memory model of a training step: ``peak(n) = baseline + growth(n)``.

Three ways to get ``growth``:
- CUDA probes (core.batch_size.probes): a least-squares line ``fixed + per_sample * n``
  through the measured sizes (:func:`fit`): ``torch.cuda.max_memory_allocated`` counts
  live tensors, and those grow linearly with the batch.
- CPU probes: the process's peak RSS measured at a ladder of sizes up to the largest the
  run may take, interpolated between them (:func:`ladder`). Resident memory on a CPU is not
  live tensors alone: glibc keeps freed heap for reuse (its mmap threshold rises to 32 MiB
  as large blocks are freed, so mid-sized tensors come from a heap that fragments) and
  oneDNN caches a primitive, with its buffers, per conv shape. Both depend on the batch
  size in ways no line captures (measured on the ARC guide, 30-step training runs against
  a line through small probes: +22% at batch 64-336, +14% at 672, -3% at 1344, where most
  tensors pass 32 MiB and are unmapped on free), so the plan measures the sizes it may
  choose instead of extrapolating far.
- GPU instances without a GPU at hand: estimated on the meta device from the activations
  autograd saves (:func:`estimate_cuda_model`).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

MAX_PROBE_BATCH = 4096
ADAMW_BYTES_PER_PARAM = 16  # fp32 weights, gradients and AdamW's two moments
CUDA_WORKSPACE_BYTES = 256 << 20  # cuDNN/cuBLAS workspaces and allocator rounding
BACKWARD_TRANSIENT = 1.25  # gradients of the largest activations exist alongside the saved ones


@dataclass
class Probe:
    batch_size: int
    peak_bytes: int  # absolute peak of the step: RSS of the probe process, or CUDA allocated
    baseline_bytes: int  # before the model existed: interpreter, torch, the task's imports


@dataclass
class MemoryModel:
    """``peak(n) = baseline + growth(n)``: the line ``fixed + per_sample * n``, or, when
    ``points`` holds measured (batch size, growth) pairs (CPU), the polyline through them,
    continued past the last point by the line (its last segment)."""

    baseline_bytes: float
    fixed_bytes: float
    per_sample_bytes: float
    device: str
    probes: list[Probe] = field(default_factory=list)
    points: list[tuple[int, float]] = field(default_factory=list)  # (batch size, growth), sizes increasing

    def growth(self, batch_size: int) -> float:
        """Memory the training step adds on top of the runtime that is already there."""
        if len(self.points) >= 2 and batch_size <= self.points[-1][0]:
            sizes, growths = zip(*self.points)
            if batch_size >= sizes[0]:
                return float(np.interp(batch_size, sizes, growths))
            first_slope = (growths[1] - growths[0]) / (sizes[1] - sizes[0])
            return max(0.0, growths[0] - first_slope * (sizes[0] - batch_size))
        return self.fixed_bytes + self.per_sample_bytes * batch_size

    def predict_peak(self, batch_size: int) -> float:
        return self.baseline_bytes + self.growth(batch_size)

    def largest_fitting(self, budget_bytes: float, extra_per_sample: float = 0.0) -> int:
        """The largest batch whose growth plus ``extra_per_sample`` per sample fits ``budget_bytes``."""
        per_sample = self.per_sample_bytes + extra_per_sample
        line = MAX_PROBE_BATCH if per_sample <= 0 else int((budget_bytes - self.fixed_bytes) // per_sample)
        if len(self.points) < 2 or line > self.points[-1][0]:
            return line  # past the measured sizes: the line continues them
        low, high = 0, self.points[-1][0]  # growth is non-decreasing: bisect for the last size that fits
        while low < high:
            mid = (low + high + 1) // 2
            if self.growth(mid) + extra_per_sample * mid <= budget_bytes:
                low = mid
            else:
                high = mid - 1
        return low


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


def ladder(probes: list[Probe], device: str) -> MemoryModel:
    """The polyline through measured peaks (sizes increasing, growth made non-decreasing:
    peak RSS never falls), continued past the last size by its last segment's line (a
    non-negative slope) and below the first size by the first segment's."""
    points: list[tuple[int, float]] = []
    for p in sorted(probes, key=lambda p: p.batch_size):
        growth = max(p.peak_bytes - p.baseline_bytes, points[-1][1] if points else 0.0)
        if points and p.batch_size == points[-1][0]:
            points[-1] = (p.batch_size, growth)
        else:
            points.append((p.batch_size, growth))
    baseline = max(p.baseline_bytes for p in probes)
    if len(points) < 2:
        return MemoryModel(baseline, points[0][1], 0.0, device, probes, points)
    (n0, g0), (n1, g1) = points[-2], points[-1]
    slope = max(0.0, (g1 - g0) / (n1 - n0))
    return MemoryModel(baseline, g1 - slope * n1, slope, device, probes, points)


def parameter_count(task: Any, cfg: Any) -> int:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        return sum(p.numel() for p in task.build_model(cfg).parameters())



def saved_activation_bytes(task: Any, cfg: Any, batch_size: int, half: bool,
                           extent: dict[str, Any] | None = None) -> tuple[int, int]:
    """(bytes autograd saves for backward, parameter count) of one forward + loss.

    First on the meta device (shapes and dtypes only: no memory, no arithmetic; ``half``
    runs the model in fp16 as autocast does for convolutions and matmuls on a GPU). Models
    that look at data (``.cpu()``, ``.item()``) cannot run there: they run for real on the
    CPU instead, under bf16 autocast when ``half`` (2 bytes per element, like fp16)."""
    try:
        return _saved_bytes(task, cfg, batch_size, torch.device("meta"), half, extent or {})
    except (NotImplementedError, RuntimeError):
        return _saved_bytes(task, cfg, batch_size, torch.device("cpu"), half, extent or {})


def _saved_bytes(task: Any, cfg: Any, batch_size: int, device: torch.device, half: bool,
                 extent: dict[str, Any]) -> tuple[int, int]:
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

    batch = task.to_device(cfg, task.example_batch(cfg, batch_size, extent), device)
    if half and meta:
        batch = _to_half(batch)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if half and not meta else contextlib.nullcontext()
    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
        task.loss(cfg, model, batch)
    return total, sum(p.numel() for p in model.parameters())


def _to_half(batch: Any) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.half() if batch.is_floating_point() else batch
    if isinstance(batch, dict):
        return {k: _to_half(v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_half(v) for v in batch)
    return batch


def estimate_cuda_model(task: Any, cfg: Any, precision: str, sizes: tuple[int, int] = (1, 2),
                        extent: dict[str, Any] | None = None) -> MemoryModel:
    """A GPU memory model without a GPU (for instance tables on a CPU machine): AdamW's
    16 bytes per parameter (fp32 weights, grads, two moments), a 16-bit weight copy under
    autocast, the activations autograd saves (counted on the meta device, in 16-bit when the
    instance runs fp16/bf16) times a backward transient factor, and a fixed workspace."""
    half = precision in ("fp16", "bf16")
    (a1, params), (a2, _) = (saved_activation_bytes(task, cfg, n, half, extent) for n in sizes)
    per_sample = max(0.0, (a2 - a1) / (sizes[1] - sizes[0])) * BACKWARD_TRANSIENT
    fixed = ADAMW_BYTES_PER_PARAM * params + (2 * params if half else 0) + CUDA_WORKSPACE_BYTES + \
        max(0.0, a1 * BACKWARD_TRANSIENT - per_sample * sizes[0])
    return MemoryModel(0.0, fixed, per_sample, "cuda (estimated on meta)", [])

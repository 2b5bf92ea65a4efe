"""Run outputs for people and programs: progress bar, metrics.jsonl, summary.json, curves.png.

``metrics.jsonl`` holds one JSON object per log interval (``kind="train"``) and per
evaluation (``kind="eval"``); see ../shared/DESIGN.md for the fields. Lines are flushed as
they are written, so a killed run keeps everything up to its last interval. On resume the
records after the checkpoint's step are dropped (they are about to be recomputed).
"""
from __future__ import annotations

import json
import math
import resource
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import torch

from core import atomic, procfs


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this process so far: CUDA allocator peak, or peak RSS on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return peak_rss_bytes()


def memory_in_use_bytes(device: torch.device) -> int:
    """Memory this process holds now: CUDA allocated bytes, or resident set size on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.memory_allocated(device))
    return _proc_status_bytes("VmRSS") or 0


def peak_rss_bytes() -> int:
    """This process's resident high-water mark (VmHWM).

    Not ``getrusage().ru_maxrss``: Linux carries that over from the parent across fork and
    exec, so a child started by a big process would report its parent's size.
    """
    hwm = _proc_status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale)


def _proc_status_bytes(key: str) -> int | None:
    """A "kB" field of /proc/self/status in bytes (None where there is no /proc)."""
    return procfs.kib_field_bytes("/proc/self/status", key)


def _clean(value: Any) -> Any:
    """JSON has no NaN/Infinity: write them as strings so every line stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsLog:
    """Append-only metrics.jsonl writer (rank 0 only)."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path = path
        self.enabled = enabled
        self._file: TextIO | None = None

    def truncate_after(self, step: int) -> None:
        """Keep only records with ``step <= step`` (a resumed run recomputes the rest)."""
        if not self.enabled or not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines()
                if line.strip() and _step_of(line) <= step]
        atomic.write_text(self.path, "".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self._file is None:
            self._file = self.path.open("a")
        self._file.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 1 << 62  # an unreadable (half-written) line is dropped


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


class ProgressBar:
    """One self-rewriting status line on a terminal; silent when stderr is not a TTY."""

    def __init__(self, total_steps: int, enabled: bool = True, stream: TextIO = sys.stderr):
        self.total = total_steps
        self.stream = stream
        self.enabled = enabled and stream.isatty()
        self.start = time.perf_counter()
        self.start_step: int | None = None

    def update(self, step: int, loss: float, lr: float, samples_per_s: float) -> None:
        if not self.enabled:
            return
        if self.start_step is None:
            self.start_step = step - 1
        done = step - self.start_step
        elapsed = time.perf_counter() - self.start
        eta = elapsed / max(done, 1) * (self.total - step)
        width = 24
        filled = int(width * step / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r[{bar}] {step}/{self.total} loss {loss:.4f} lr {lr:.2e} "
                          f"{samples_per_s:.1f} samples/s ETA {_duration(eta)}   ")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically, with non-finite floats as strings (JSON has no NaN)."""
    atomic.write_json(path, {k: _clean(v) for k, v in data.items()})


def plot_curves(metrics_path: Path, out_path: Path, monitor: str) -> bool:
    """Loss and the monitored metric over steps; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    records = read_metrics(metrics_path) if metrics_path.exists() else []
    train = [r for r in records if r.get("kind") == "train" and isinstance(r.get("loss"), (int, float))]
    evals = [r for r in records if r.get("kind") == "eval" and isinstance(r.get(monitor), (int, float))]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    val_loss = [r for r in records if r.get("kind") == "eval" and isinstance(r.get("loss"), (int, float))]
    if val_loss:
        ax_loss.plot([r["step"] for r in val_loss], [r["loss"] for r in val_loss], "o-", label="val loss")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    ax_metric.plot([r["step"] for r in evals], [r[monitor] for r in evals], "o-")
    ax_metric.set_xlabel("step")
    ax_metric.set_ylabel(f"val {monitor}")
    fig.tight_layout()
    with atomic.atomic_write(out_path) as f:
        fig.savefig(f, dpi=100, format="png")
    plt.close(fig)
    return True


class MetricsWindow:
    """Accumulates one log interval of training: loss over the steps whose loss was finite,
    samples, time blocked on data; ``flush`` turns it into a ``kind="train"`` record."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss_sum, self.loss_steps, self.samples, self.data_wait = 0.0, 0, 0, 0.0
        self.started = time.perf_counter()

    def add(self, loss: float | None, samples: int, data_wait_s: float) -> None:
        """``loss`` None: a skipped non-finite step (its samples still count as consumed)."""
        if loss is not None:
            self.loss_sum += loss
            self.loss_steps += 1
        self.samples += samples
        self.data_wait += data_wait_s

    def exclude(self, seconds: float) -> None:
        """Leave ``seconds`` (an evaluation, a checkpoint) out of this interval's rates."""
        self.started += seconds

    def flush(self, step: int, epoch: int, lr: float, counters: dict[str, int], device: torch.device,
              logs: dict[str, Any]) -> dict[str, Any]:
        wall = max(time.perf_counter() - self.started, 1e-9)
        record = {
            "kind": "train", "epoch": epoch, "step": step,
            "loss": self.loss_sum / self.loss_steps if self.loss_steps else float("nan"),
            "lr": lr, "samples_per_s": self.samples / wall, "data_wait_frac": self.data_wait / wall,
            **counters, "peak_mem_bytes": peak_memory_bytes(device),
            **{k: float(v) for k, v in logs.items()},
        }
        self.reset()
        return record

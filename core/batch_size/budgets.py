"""How much memory a run may use, and what its DataLoader workers take of it.

The CPU budget is the memory this process may still take: the lower of the kernel's
MemAvailable and the cgroup limit minus the cgroup's usage (containers, ``systemd-run -p
MemoryMax``). Datasets already loaded by this process are inside the measured usage;
memory-mapped arrays are file-backed pages the kernel can drop, so they are not charged.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from core import procfs

WORKER_OVERHEAD_BYTES = 48 << 20  # a forked worker's private pages (interpreter state it touches)


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
    available = procfs.kib_field_bytes("/proc/meminfo", "MemAvailable")
    if available is not None:
        return available
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def cpu_budget() -> tuple[int, str]:
    available = mem_available()
    cgroup_left = _cgroup_memory_left()
    if cgroup_left is not None and cgroup_left < available:
        return cgroup_left, "left under the cgroup memory limit"
    return available, "MemAvailable"


def sample_bytes(task: Any, cfg: Any, extent: dict[str, Any] | None = None) -> int:
    """Bytes of one sample of a CPU batch (what a DataLoader worker holds per sample)."""
    def nbytes(x: Any) -> int:
        if isinstance(x, torch.Tensor):
            return x.nelement() * x.element_size()
        if isinstance(x, dict):
            return sum(map(nbytes, x.values()))
        if isinstance(x, (list, tuple)):
            return sum(map(nbytes, x))
        return 0

    return max(1, nbytes(task.example_batch(cfg, 2, extent or {})) // 2)

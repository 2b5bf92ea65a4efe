"""How many CPUs this process may use. Torch-free, so the data loaders can ask too
(tasks.arc_guide.packed_relations) without paying torch's import."""
from __future__ import annotations

import os
from pathlib import Path


def usable_cpus() -> int:
    """Logical CPUs this process may run on (its affinity mask where the OS has one, so a
    container's cpuset counts, not the host's CPUs)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def physical_cores() -> int:
    """Cores this process may use, counting each physical core once (SMT siblings share)."""
    logical = usable_cpus()
    siblings = Path("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list")
    try:
        text = siblings.read_text().strip()
        # "0,4" or "0-1" -> 2 hardware threads per core
        per_core = sum(len(range(int(a), int(b) + 1)) if "-" in part else 1
                       for part in text.split(",") for a, _, b in [part.partition("-")])
    except (OSError, ValueError):
        per_core = 1
    return max(1, logical // max(per_core, 1))

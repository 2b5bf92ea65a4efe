"""The cloud instance catalog (core/instances.toml): memory budgets, workers, prices.

The catalog is package data of ``core``: it ships in the wheel and is read with
importlib.resources, so ``--instance`` works from an installed package as from a checkout
(where configs/instances.toml is a link to it). ``TWOTRACK_INSTANCES=/path/to/more.toml``
adds or overrides entries (same shape).
"""
from __future__ import annotations

import os
from importlib import resources

from pydantic import Field

from core.config import Section, read_toml, validate
from core.errors import UserError

CATALOG = resources.files("core") / "instances.toml"  # package data (pyproject.toml: package-data)
OS_RESERVE_GIB = 1.0  # kernel, page tables, sshd, monitoring agents on a fresh cloud image
CUDA_CONTEXT_GIB = 0.6  # CUDA context + cuDNN/cuBLAS handles: outside max_memory_allocated


class Instance(Section):
    name: str = ""
    gpu: str = ""
    gpu_count: int = Field(0, ge=0)
    gpu_memory_gib: float = Field(0, ge=0)
    bf16: bool = False
    vcpus: int = Field(..., ge=1)
    ram_gib: float = Field(..., gt=0)
    on_demand_usd_h: float = Field(..., ge=0)
    spot_usd_h: float | None = Field(None, ge=0)

    @property
    def has_gpu(self) -> bool:
        return self.gpu_count > 0

    @property
    def precision(self) -> str:
        """What ``precision = "auto"`` resolves to there."""
        return ("bf16" if self.bf16 else "fp16") if self.has_gpu else "fp32"

    def memory_budget(self, device_type: str | None = None) -> tuple[float, str]:
        """Bytes one training process may use there: one GPU's memory less the CUDA context,
        or RAM less the operating system's share (the runtime is part of the probes' baseline)."""
        if self.has_gpu and device_type != "cpu":
            return ((self.gpu_memory_gib - CUDA_CONTEXT_GIB) * 2**30,
                    f"of a {self.gpu_memory_gib:g} GiB {self.gpu} ({self.name}) less the CUDA context")
        return (self.ram_gib - OS_RESERVE_GIB) * 2**30, f"RAM of {self.name} less the OS"

    def workers_and_threads(self) -> tuple[int, int]:
        """DataLoader workers and torch intra-op threads for one process.

        GPU: most vCPUs feed the GPU (workers decode and crop), 2 stay for the main process.
        CPU: the main process computes, so it takes most cores; 2 workers prefetch. vCPUs are
        hyperthreads: physical cores = vCPUs / 2 on these families.
        """
        cores = max(1, self.vcpus // 2)
        if self.has_gpu:
            return max(1, min(self.vcpus - 2, 8 * self.gpu_count) // self.gpu_count), 2
        workers = 2 if cores >= 4 else 0
        return workers, max(1, cores - workers)


def catalog() -> dict[str, Instance]:
    tree = {}
    if CATALOG.is_file():
        with resources.as_file(CATALOG) as path:  # a real file unless installed in a zip
            tree = read_toml(path)
    extra = os.environ.get("TWOTRACK_INSTANCES")
    if extra:
        tree.update(read_toml(extra))
    if not tree:
        raise UserError(f"no instance catalog: {CATALOG} is missing; set TWOTRACK_INSTANCES to a TOML file")
    return {name: validate(Instance, {**fields, "name": name}, f"instance [{name}]")
            for name, fields in tree.items()}


def get_instance(name: str) -> Instance:
    instances = catalog()
    if name not in instances:
        raise UserError(f"unknown instance type {name!r}; known: {', '.join(instances)} "
                        "(add yours to a TOML file named by TWOTRACK_INSTANCES)")
    return instances[name]

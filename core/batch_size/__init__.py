"""Memory-aware batch sizing: probe the real training step, model it, choose, explain.

Modules: ``memory_model`` (peak memory as a function of the batch), ``probes`` (measuring
the step), ``budgets`` (memory a run may use), ``choice`` (the batch size and its reason).

Peak memory of one training step (forward, fp32 loss, backward, clip, AdamW step) is
``baseline + growth(n)``: the runtime, then the weights, gradients and optimizer state plus
what the batch of n samples adds. We measure the real step of the task's ``example_batch``
(its heaviest batches) at a series of sizes, model ``growth`` from the probes, and pick the
largest batch whose predicted peak fits the budget times ``trainer.memory_safety_margin``
(0.85 by default), at most 5% of the training set.

- CUDA: probes run in this process (an OOM there is an exception we can catch) and read
  ``torch.cuda.max_memory_allocated``; live tensors grow linearly with the batch, so three
  small probes fit a line. The budget is the device's free memory.
- CPU: the kernel's OOM killer sends SIGKILL, which no process survives, so probes run in
  child processes that report their own peak RSS (VmHWM) under the training process's
  allocator and environment; a probe that dies costs nothing but the probe. Resident memory
  is not linear in the batch there (freed heap kept for reuse, cached kernels), so the
  probes climb a ladder up to the largest batch the run may take and the model
  interpolates between them (memory_model). The budget is the memory this process may
  still take: the lower of the kernel's MemAvailable and the cgroup limit minus the
  cgroup's usage (containers, ``systemd-run -p MemoryMax``), less what DataLoader workers
  will hold (``num_workers x prefetch_factor x batch bytes``, plus a per-worker interpreter).

Datasets already loaded by this process are inside the measured usage; memory-mapped
arrays are file-backed pages the kernel can drop, so they are not charged.
"""
from core.batch_size.budgets import WORKER_OVERHEAD_BYTES, cpu_budget, mem_available, sample_bytes
from core.batch_size.choice import Choice, batch_cap, choose, choose_batch_size
from core.batch_size.memory_model import (MemoryModel, Probe, estimate_cuda_model, fit, ladder, parameter_count,
                                          saved_activation_bytes)
from core.batch_size.probes import measure, probe_cpu, probe_cuda

__all__ = ["Choice", "MemoryModel", "Probe", "WORKER_OVERHEAD_BYTES", "batch_cap", "choose", "choose_batch_size",
           "cpu_budget", "estimate_cuda_model", "fit", "ladder", "measure", "mem_available", "parameter_count",
           "probe_cpu", "probe_cuda", "sample_bytes", "saved_activation_bytes"]

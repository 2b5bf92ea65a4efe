"""Memory-aware batch sizing: probe the real training step, fit a line, choose, explain.

Modules: ``memory_model`` (the fitted or estimated line), ``probes`` (measuring the step),
``budgets`` (memory a run may use), ``choice`` (the batch size and its reason).

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
from core.batch_size.budgets import WORKER_OVERHEAD_BYTES, cpu_budget, mem_available, sample_bytes
from core.batch_size.choice import Choice, choose, choose_batch_size
from core.batch_size.memory_model import (MemoryModel, Probe, estimate_cuda_model, fit, parameter_count,
                                          saved_activation_bytes)
from core.batch_size.probes import measure, probe_cpu, probe_cuda

__all__ = ["Choice", "MemoryModel", "Probe", "WORKER_OVERHEAD_BYTES", "choose", "choose_batch_size", "cpu_budget",
           "estimate_cuda_model", "fit", "measure", "mem_available", "parameter_count", "probe_cpu", "probe_cuda",
           "sample_bytes", "saved_activation_bytes"]

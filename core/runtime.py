"""Process-level setup: device choice, seeding, RNG capture/restore, CPU thread count."""
from __future__ import annotations

import contextlib
import os
import random
from typing import Any, Iterator

import numpy as np
import torch

from core.cpus import physical_cores
from core.errors import UserError


def resolve_device(requested: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when torch sees a GPU, else CPU; ``cuda`` without a GPU is a
    UserError (training checks ``--device`` with it before anything is built)."""
    if isinstance(requested, torch.device):
        return requested
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {requested} was requested but torch sees no CUDA GPU "
                        f"(torch {torch.__version__}); use --device cpu or auto")
    if requested != "cpu" and not requested.startswith("cuda"):
        raise UserError(f"unknown device {requested!r}; use auto, cpu or cuda")
    return torch.device(requested)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global random stream, as tensors and plain types (``torch.load(weights_only=True)``
    reads it back: numpy's key array travels as an int64 tensor)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),  # (version, tuple of 625 ints, None)
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block without moving any global random stream (python, numpy, torch, CUDA): a
    measurement inside it (the batch-size probes) does not change the run that follows."""
    saved = rng_state()
    try:
        yield
    finally:
        restore_rng_state(saved)


def rng_states_of_all_ranks() -> list[dict[str, Any]]:
    """Every process's :func:`rng_state`, in rank order (a collective: all ranks must call it).

    Ranks start from one seed but do not stay in step: a batch of other shapes (ARC grids
    padded per batch) draws another number of dropout bits. A bit-identical multi-process
    resume needs each rank's own state back."""
    mine = rng_state()
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [mine]
    states: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(states, mine)
    return states


def restore_rank_rng_state(saved: dict[str, Any] | list[dict[str, Any]], rank: int, world: int) -> int:
    """Restore this rank's state from a checkpoint's ``rng`` (a per-rank list, or one state
    from checkpoints written before the list); returns how many ranks it holds. When that
    is not this world size, every rank continues rank 0's stream."""
    states = saved if isinstance(saved, list) else [saved]
    restore_rng_state(states[rank] if len(states) == world else states[0])
    return len(states)


def set_cpu_threads(num_workers: int, local_world_size: int) -> int:
    """Intra-op threads: the physical cores of this process's share, minus DataLoader workers.

    An explicit ``OMP_NUM_THREADS`` or ``torch.set_num_threads`` by the user wins.
    """
    if "OMP_NUM_THREADS" in os.environ:
        return torch.get_num_threads()
    share = physical_cores() // max(local_world_size, 1)
    threads = max(1, share - num_workers)
    torch.set_num_threads(threads)
    return threads


"""The one way inference entry points load a checkpoint: safely, and with its task.

    task, cfg, model, meta = load_for_inference("runs/vesuvius/.../checkpoints/best.pt", "auto")

Every command that takes ``--checkpoint`` (``tasks.vesuvius.predict``,
``tasks.arc_guide.solve``, ...) goes through :func:`load_for_inference`: the file is read
with ``torch.load(weights_only=True)`` (core.checkpoint.load), so a crafted file cannot run
code; the task named in it is built from the registry with the config saved in it; the
weights must fit that model. Any failure is a UserError of one line naming the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch

from core import checkpoint, registry
from core.config import from_dict
from core.errors import UserError
from core.runtime import resolve_device


class Loaded(NamedTuple):
    task: Any
    cfg: Any  # the run's resolved config
    model: torch.nn.Module  # on the device, in eval mode
    meta: dict[str, Any]  # what the task's checkpoint_meta(cfg) saved


def load_for_inference(path: str | Path, device: str | torch.device = "auto",
                       expected_task: str | None = None) -> Loaded:
    """(task, cfg, model, meta) of the checkpoint at ``path``; ``expected_task`` (a registry
    name) refuses checkpoints of other tasks."""
    path = Path(path)
    state = checkpoint.load(path, map_location="cpu")
    name = state.get("task")
    if expected_task is not None and name != expected_task:
        raise UserError(f"{path} is a checkpoint of task {name!r}, not {expected_task!r}; "
                        f"pass checkpoints/best.pt of a `train {expected_task}` run")
    try:
        task = registry.get_task(name)
    except registry.UnknownTask as e:
        raise UserError(f"{path}: {e}") from None
    for key in ("model", "config"):
        if key not in state:
            raise UserError(f"{path} has no {key!r} entry; it is not a complete training checkpoint")
    cfg = from_dict(task, state["config"], f"checkpoint {path}")
    model = task.build_model(cfg)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:  # names or shapes do not match this code's model
        first = str(e).strip().splitlines()
        raise UserError(f"{path}: its weights do not fit the {name} model of this version "
                        f"({first[0] if first else e}...)") from None
    return Loaded(task, cfg, model.to(resolve_device(device)).eval(), dict(state.get("meta") or {}))

"""Task name -> "module:Class", imported only when that task is asked for.

Importing a task pulls in its dependencies (tifffile, scipy...); ``train --help`` and
``train arc-guide`` should not pay for the other track.

Tasks outside this package (a user's own, or the tests' toy task) are added with
:func:`register`, or for a subprocess through the environment:
``TWOTRACK_TASKS="toy=toy_task:ToyTask;other=pkg.mod:Other"``.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any

# name -> (import path "module:Class", one-line description for `train --help`)
TASKS: dict[str, tuple[str, str]] = {
    "vesuvius": ("tasks.vesuvius.task:VesuviusTask", "3D scroll-surface segmentation (Vesuvius Challenge)"),
    "arc-guide": ("tasks.arc_guide.task:ArcGuideTask", "ARC neural guide: predicts the DSL primitives of a program"),
}


for _entry in filter(None, os.environ.get("TWOTRACK_TASKS", "").split(";")):
    _name, _, _target = _entry.partition("=")
    TASKS[_name.strip()] = (_target.strip(), "registered through TWOTRACK_TASKS")


class UnknownTask(KeyError):
    def __str__(self) -> str:
        return f"unknown task {self.args[0]!r}; valid tasks: {', '.join(available())}"


def register(name: str, target: str, description: str = "") -> None:
    TASKS[name] = (target, description)


def available() -> list[str]:
    """Names of tasks whose module can be found (a track may not be installed yet)."""
    names = []
    for name, (target, _) in TASKS.items():
        module = target.partition(":")[0]
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            names.append(name)
    return names


def describe() -> list[tuple[str, str]]:
    return [(name, TASKS[name][1]) for name in available()]


def get_task(name: str) -> Any:
    """Instantiate the task registered under ``name`` (raises UnknownTask)."""
    if name not in TASKS or name not in available():
        raise UnknownTask(name)
    module_name, _, class_name = TASKS[name][0].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls()

"""Shared fixtures: the toy task registered in-process and for subprocesses, a CLI runner."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
TOY = "toy=toy_task:ToyTask"

sys.path.insert(0, str(TESTS))
os.environ["TWOTRACK_TASKS"] = ";".join(filter(None, [os.environ.get("TWOTRACK_TASKS", ""), TOY]))

from core import registry  # noqa: E402  (after the environment names the toy task)

registry.register("toy", "toy_task:ToyTask", "test task")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; torch sees none on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: this interpreter's import path, the toy task, 1 thread."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(TESTS), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_train(*args: str, timeout: float = 300, check: bool = False, **env: str) -> subprocess.CompletedProcess:
    """``train ARGS`` in a real subprocess; returns the completed process (text output)."""
    proc = subprocess.run([sys.executable, "-m", "core.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=subprocess_env(**env), cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"train {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def toy_task():
    return registry.get_task("toy")

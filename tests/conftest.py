"""Shared fixtures: the toy task registered in-process and for subprocesses, a CLI runner,
and seeded randomness.

Every random choice in the suite is seeded. The global python/numpy/torch streams are
seeded before each test from ``TWOTRACK_TEST_SEED`` (default below); tests that draw a
choice (a kill step, ...) take the ``rng`` fixture. A failing test's report names the seed,
so ``TWOTRACK_TEST_SEED=N pytest ...`` reproduces it. Hypothesis runs derandomized (its
failures print the falsifying example themselves).
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
TOY = "toy=toy_task:ToyTask"

sys.path.insert(0, str(TESTS))
os.environ["TWOTRACK_TASKS"] = ";".join(filter(None, [os.environ.get("TWOTRACK_TASKS", ""), TOY]))

from core import registry  # noqa: E402  (after the environment names the toy task)

registry.register("toy", "toy_task:ToyTask", "test task")

TEST_SEED = int(os.environ.get("TWOTRACK_TEST_SEED", "20261205"))
settings.register_profile("twotrack", derandomize=True, deadline=None)
settings.load_profile("twotrack")


@pytest.fixture(autouse=True)
def _seed_global_streams():
    random.seed(TEST_SEED)
    np.random.seed(TEST_SEED % 2**32)
    torch.manual_seed(TEST_SEED)


@pytest.fixture
def rng() -> random.Random:
    """A seeded stream for a test's own random choices."""
    return random.Random(TEST_SEED)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        report.sections.append(("random seed", f"TWOTRACK_TEST_SEED={TEST_SEED} reproduces this run's random choices"))
    return report


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; torch sees none on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def pytest_xdist_auto_num_workers(config) -> int:
    """Workers for ``-n auto`` (the README's test command): one per CPU this process may use,
    at most 4. Most tests wait on a one-thread CLI subprocess, so a second worker keeps a
    second CPU busy (2 CPUs, the whole suite in the same hour: 641 s in one process, 435 s
    with 2 workers); beyond 4 the longest test files (80-90 s each) bound the run anyway."""
    from core.cpus import usable_cpus

    return max(1, min(4, usable_cpus()))


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

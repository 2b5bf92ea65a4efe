"""Checkpoints are data, never code: every entry point that takes one loads it with
``torch.load(weights_only=True)`` and refuses anything else in one line, exit 2."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from conftest import REPO, run_train, subprocess_env
from core import config as config_io
from core.checkpoint import FORMAT, CheckpointManager


class CreatesAFileWhenUnpickled:
    """Unpickling this calls ``open(path, "w")``: the file appearing means the code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def crafted_checkpoint(path, marker, task="toy", config=None):
    """A file that looks like ours (format marker, task, config) but carries code."""
    torch.save({"format": FORMAT, "task": task, "config": config or {}, "model": {},
                "payload": CreatesAFileWhenUnpickled(marker)}, path)
    return path


def assert_refused(proc, path, marker):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "refused" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists(), "unpickling ran the checkpoint's code"


def python_module(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=120,
                          env=subprocess_env(), cwd=REPO)


def test_predict_refuses_a_checkpoint_that_carries_code(tmp_path):
    marker = tmp_path / "ran"
    ckpt = crafted_checkpoint(tmp_path / "evil.pt", marker, task="vesuvius")
    volume = tmp_path / "v.tif"
    volume.write_bytes(b"")
    proc = python_module("tasks.vesuvius.predict", "--checkpoint", str(ckpt), "--input", str(volume),
                         "--output", str(tmp_path / "out.tif"))
    assert_refused(proc, ckpt, marker)


def test_solve_refuses_a_checkpoint_that_carries_code(tmp_path):
    marker = tmp_path / "ran"
    ckpt = crafted_checkpoint(tmp_path / "evil.pt", marker, task="arc-guide")
    tasks = tmp_path / "tasks.json"
    grid = [[1, 2], [3, 4]]
    tasks.write_text(json.dumps({"t": {"train": [{"input": grid, "output": grid}],
                                       "test": [{"input": grid, "output": grid}]}}))
    proc = python_module("tasks.arc_guide.solve", "--checkpoint", str(ckpt), "--tasks", str(tasks), "--budget", "5")
    assert_refused(proc, ckpt, marker)


def test_resume_refuses_a_last_checkpoint_that_carries_code(tmp_path, toy_task):
    run = tmp_path / "run"
    manager = CheckpointManager(run)
    manager.folder.mkdir(parents=True)
    cfg = config_io.load(toy_task, None, [])
    (run / "config.json").write_text(config_io.to_json(cfg))
    marker = tmp_path / "ran"
    crafted_checkpoint(manager.last, marker, config=cfg.model_dump(mode="json"))
    proc = run_train("toy", "--run-dir", str(run), "--resume")
    assert_refused(proc, manager.last, marker)


def test_a_foreign_file_is_not_a_checkpoint(tmp_path):
    from core.checkpoint import load
    from core.errors import UserError

    torch.save({"weights": torch.ones(2)}, tmp_path / "foreign.pt")  # plain data, but not ours
    with pytest.raises(UserError, match="is not a checkpoint of this project"):
        load(tmp_path / "foreign.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(UserError, match="cannot be read"):
        load(tmp_path / "text.pt")


def test_the_engines_own_checkpoints_load_with_weights_only(tmp_path):
    run = tmp_path / "run"
    run_train("toy", "--run-dir", str(run), "--set", "trainer.max_steps=6", "--set", "trainer.checkpoint_every_steps=3",
              check=True)
    for path in (CheckpointManager(run).last, CheckpointManager(run).best):
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert state["format"] == FORMAT and state["task"] == "toy" and state["progress"]["step"] in (3, 6)
        assert state["meta"] == {"classes": ["minus", "plus"], "features": 16}
        assert isinstance(state["rng"][0]["numpy"]["keys"], torch.Tensor)

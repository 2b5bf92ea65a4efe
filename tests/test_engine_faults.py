"""Fault injection on real subprocesses: kill -9, SIGTERM, non-finite losses, a torn save."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import torch

from conftest import REPO, run_train, subprocess_env
from core.checkpoint import CheckpointManager, load

# 3 epochs x 32 steps, shuffled data, dropout on, a checkpoint every 5 steps.
BASE = ["--set", "trainer.max_epochs=3", "--set", "trainer.checkpoint_every_steps=5",
        "--set", "model.dropout=0.3", "--set", "trainer.keep_last=3"]


def final_state(run_dir):
    return load(CheckpointManager(run_dir).last)


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs"


def test_kill9_then_resume_is_bit_identical(tmp_path, rng):
    reference = tmp_path / "reference"
    run_train("toy", "--run-dir", str(reference), *BASE, check=True)

    kill_step = rng.randint(6, 90)  # any step after the first checkpoint (seeded: see conftest)
    killed = tmp_path / "killed"
    proc = run_train("toy", "--run-dir", str(killed), *BASE, "--set", f"fault.kill_at={kill_step}")
    assert proc.returncode == -9, proc.stderr
    saved_step = final_state(killed)["progress"]["step"]
    assert saved_step == (kill_step - 1) // 5 * 5 or saved_step % 32 == 0

    run_train("toy", "--run-dir", str(killed), "--resume", "--set", "fault.kill_at=0", check=True)
    ref, res = final_state(reference), final_state(killed)
    assert res["progress"]["step"] == ref["progress"]["step"] == 96
    assert_same_weights(ref["model"], res["model"])
    assert ref["optimizer"]["state"][0]["exp_avg"].equal(res["optimizer"]["state"][0]["exp_avg"])
    # metrics.jsonl has each step once: the records the killed run wrote past its checkpoint were dropped
    steps = [r["step"] for r in map(json.loads, (killed / "metrics.jsonl").read_text().splitlines())
             if r["kind"] == "train"]
    assert steps == sorted(set(steps))


def test_sigterm_saves_that_step_and_resume_finishes(tmp_path):
    run = tmp_path / "run"
    proc = run_train("toy", "--run-dir", str(run), *BASE, "--set", "fault.sigterm_at=17")
    assert proc.returncode == 0, proc.stderr
    assert "--resume" in proc.stdout and "SIGTERM" in proc.stdout
    state = final_state(run)
    assert state["progress"]["step"] == 17
    assert json.loads((run / "summary.json").read_text())["stopped_by"] == "SIGTERM"

    proc = run_train("toy", "--run-dir", str(run), "--resume", "--set", "fault.sigterm_at=0", check=True)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 96 and summary["stopped_by"] == "completed"


def test_nonfinite_steps_are_skipped_without_touching_state(tmp_path):
    run = tmp_path / "run"
    bad = [3, 10, 11]
    proc = run_train("toy", "--run-dir", str(run), "--set", "trainer.max_epochs=1",
                     "--set", f"fault.nonfinite_at={bad}", check=True)
    assert all(f"step {k}: non-finite loss" in proc.stdout for k in bad)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["skipped_nonfinite"] == 3 and summary["steps"] == 32
    state = final_state(run)
    # the LR schedule and AdamW counted only real updates
    assert state["scheduler"]["last_epoch"] == 32 - 3
    assert int(state["optimizer"]["state"][0]["step"]) == 32 - 3
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(r["loss"] == r["loss"] for r in records if r["kind"] == "train")  # NaN kept out of averages


def test_skipped_step_leaves_weights_unchanged(toy_task, tmp_path):
    """In-process: snapshot the weights the task sees at every training loss call."""
    from core.config import load as load_config
    from core.trainer import fit

    snapshots = []
    original = toy_task.loss

    def recording_loss(cfg, model, batch):
        if model.training:
            snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return original(cfg, model, batch)

    toy_task.loss = recording_loss
    cfg = load_config(toy_task, None, ["trainer.max_steps=8", "fault.nonfinite_at=[2, 5, 6]"])
    summary = fit(toy_task, cfg, tmp_path / "run")
    assert summary["skipped_nonfinite"] == 3
    for skipped in (2, 5, 6):  # call k's update was skipped: call k+1 sees the same weights
        assert_same_weights(snapshots[skipped - 1], snapshots[skipped])
    for applied in (1, 3, 4, 7):
        assert not torch.equal(snapshots[applied - 1]["0.weight"], snapshots[applied]["0.weight"])


def test_too_many_consecutive_nonfinite_stops_with_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    proc = run_train("toy", "--run-dir", str(run), "--set", "trainer.max_epochs=2",
                     "--set", "trainer.checkpoint_every_steps=4", "--set", "trainer.max_consecutive_nonfinite=5",
                     "--set", f"fault.nonfinite_at={list(range(10, 40))}")
    assert proc.returncode == 1
    assert "5 non-finite step(s) in a row" in proc.stderr and "Traceback" not in proc.stderr
    state = final_state(run)
    # the last scheduled checkpoint (step 12) holds the weights of the last real update (step 9)
    assert state["progress"]["step"] == 12 and state["scheduler"]["last_epoch"] == 9
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_policy_raise_stops_at_first_nonfinite(tmp_path):
    proc = run_train("toy", "--run-dir", str(tmp_path / "run"), "--set", "trainer.nonfinite_policy=\"raise\"",
                     "--set", "fault.nonfinite_at=[4]")
    assert proc.returncode == 1 and "step 4: 1 non-finite step(s) in a row" in proc.stderr


def test_save_killed_mid_write_keeps_previous_last(tmp_path):
    """A child writes a checkpoint whose pickling kills the process halfway through the file."""
    manager = CheckpointManager(tmp_path, keep_last=2)
    manager.save({"weights": torch.ones(4), "step": 1}, step=1)
    child = textwrap.dedent(f"""
        import os, signal, torch
        from core.checkpoint import CheckpointManager

        class DieWhilePickled:
            def __reduce__(self):
                os.kill(os.getpid(), signal.SIGKILL)

        state = {{"weights": torch.zeros(4_000_000), "step": 2, "tail": DieWhilePickled()}}
        CheckpointManager({str(tmp_path)!r}, keep_last=2).save(state, step=2)
    """)
    proc = subprocess.run([sys.executable, "-c", child], env=subprocess_env(), cwd=REPO, capture_output=True)
    assert proc.returncode == -9
    leftovers = list(manager.folder.glob(".*.tmp"))
    assert leftovers, "the child should have died with a partial temp file"
    state = load(manager.last)
    assert state["step"] == 1 and torch.equal(state["weights"], torch.ones(4))
    assert [p.name for p in manager.step_files()] == ["step-00000001.pt"]

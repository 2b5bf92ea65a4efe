"""Two processes on CPU (gloo over loopback) through torchrun, as users launch them."""
from __future__ import annotations

import json
import subprocess
import sys

import torch

from conftest import REPO, run_train, subprocess_env
from core.checkpoint import CheckpointManager, load


def torchrun(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "core.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=subprocess_env(), cwd=REPO)


def losses(run_dir):
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if r["kind"] == "train"]


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    common = ["--set", "trainer.max_epochs=1", "--set", "model.dropout=0.0", "--set", "trainer.log_every_steps=2"]
    one = tmp_path / "one"
    run_train("toy", "--run-dir", str(one), "--set", "trainer.batch_size=8", *common, check=True)
    two = tmp_path / "two"
    proc = torchrun("toy", "--run-dir", str(two), "--set", "trainer.batch_size=4", *common)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((two / "summary.json").read_text())["world_size"] == 2
    a, b = losses(one), losses(two)
    assert [s for s, _ in a] == [s for s, _ in b] and len(a) == 16
    for (_, x), (_, y) in zip(a, b):
        assert abs(x - y) <= 1e-5 * max(1.0, abs(x))


def test_nonfinite_on_one_rank_is_skipped_on_both(tmp_path):
    run = tmp_path / "run"
    proc = torchrun("toy", "--run-dir", str(run), "--set", "trainer.batch_size=4", "--set", "trainer.max_epochs=1",
                    "--set", "fault.nonfinite_at=[5]", "--set", "fault.nonfinite_rank=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["skipped_nonfinite"] == 1 and summary["steps"] == 32
    # both ranks printed the skip of step 5
    assert proc.stdout.count("step 5: non-finite") + proc.stderr.count("step 5: non-finite") >= 1


def test_two_process_kill9_then_resume_is_bit_identical(tmp_path):
    """The whole machine vanishing (every rank SIGKILLed at the same step) and a torchrun
    --resume give the weights of an uninterrupted two-process run: dropout on, and the
    ranks' random streams apart (so each rank must get its own back)."""
    common = ["--set", "trainer.max_epochs=2", "--set", "trainer.batch_size=4", "--set", "model.dropout=0.3",
              "--set", "trainer.checkpoint_every_steps=5", "--set", "fault.uneven_rng=true"]
    reference = tmp_path / "reference"
    proc = torchrun("toy", "--run-dir", str(reference), *common)
    assert proc.returncode == 0, proc.stderr[-3000:]
    killed = tmp_path / "killed"
    proc = torchrun("toy", "--run-dir", str(killed), *common, "--set", "fault.kill_at=13")
    assert proc.returncode != 0
    assert load(CheckpointManager(killed).last)["progress"]["step"] == 10
    proc = torchrun("toy", "--run-dir", str(killed), "--resume", "--set", "fault.kill_at=0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref, res = load(CheckpointManager(reference).last), load(CheckpointManager(killed).last)
    assert ref["progress"]["step"] == res["progress"]["step"] == 64
    for name, tensor in ref["model"].items():
        assert torch.equal(tensor, res["model"][name]), f"{name} differs"
    assert ref["optimizer"]["state"][0]["exp_avg"].equal(res["optimizer"]["state"][0]["exp_avg"])


def test_out_of_memory_on_one_rank_stops_with_the_resume_command(tmp_path):
    """One rank cannot shrink its batch alone: the run stops (no hang, no traceback from the
    failing rank) and the command it prints resumes it with a smaller batch."""
    run = tmp_path / "run"
    common = ["--set", "trainer.max_epochs=1", "--set", "trainer.checkpoint_every_steps=4"]
    proc = torchrun("toy", "--run-dir", str(run), "--set", "trainer.batch_size=4", *common,
                    "--set", "fault.oom_at=[7]", "--set", "fault.oom_rank=1")
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "error: step 7: out of memory on rank 1 at batch_size 4 per process" in output
    assert f"--run-dir {run} --resume --set trainer.batch_size=3" in output
    assert "[rank1]: Traceback" not in output  # the failing rank says it in one line
    assert load(CheckpointManager(run).last)["progress"]["step"] == 4
    proc = torchrun("toy", "--run-dir", str(run), "--resume", "--set", "trainer.batch_size=3", "--set", "fault.oom_at=[]")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped_by"] == "completed" and summary["batch_size"] == 3

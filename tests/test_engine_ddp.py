"""Two processes on CPU (gloo over loopback) through torchrun, as users launch them."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO, run_train, subprocess_env


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

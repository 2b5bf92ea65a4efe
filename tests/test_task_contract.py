"""The registry contract test (timm's ``test_models``): every registered task, on its
seconds-long ``smoke_config``, must

- train a few steps with a finite loss, checkpoints that ``torch.load(weights_only=True)``
  reads, and the task's ``checkpoint_meta`` inside them;
- survive kill -9 mid-run: ``--resume`` ends with weights and optimizer state bit-identical
  to an uninterrupted run;
- load through core's inference loader, and its ``evaluate`` on that model returns the
  monitored metric, equal to the value the run recorded for best.pt;
- run its inference command (``python -m <inference_module> --checkpoint ...``) to exit 0.

A third task registered in core/registry.py gets all of this without a line here (the tests'
toy task is left out: tests/test_engine_faults.py covers its runs).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import REPO, run_train, subprocess_env
from core import config as config_io
from core import registry
from core.checkpoint import CheckpointManager
from core.inference import load_for_inference

# every registered task but the tests' toy: its kill -9, resume and checkpoint checks are
# tests/test_engine_faults.py's (the same engine paths, at random steps), and each case here
# costs a dozen seconds of subprocess start-up
TASKS = sorted(name for name in registry.available() if name != "toy")

# Runs train in a child process whose train_step SIGKILLs the process when step N begins:
# the kernel's kill -9, at an exact step, for any task.
KILL_AT_STEP = textwrap.dedent("""
    import os, signal, sys
    import core.trainer
    kill_at, calls = int(sys.argv[1]), [0]
    original = core.trainer.train_step

    def train_step(*args, **kwargs):
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    core.trainer.train_step = train_step
    from core.cli import main
    sys.exit(main(sys.argv[2:]))
""")


def smoke_args(task) -> list[str]:
    return ["--config", str(REPO / task.smoke_config)] if task.smoke_config else []


def plain_load(path):
    """What any user's torch does with our files: the safe loader, nothing else."""
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("contract-cache"))


@pytest.mark.parametrize("name", TASKS)
def test_task_meets_the_engine_contract(name, tmp_path, cache):
    task = registry.get_task(name)
    env = {"TWOTRACK_CACHE": cache}
    args = [name, *smoke_args(task)]

    # 1. an uninterrupted run
    reference = tmp_path / "reference"
    proc = run_train(*args, "--run-dir", str(reference), check=True, **env)
    summary = json.loads((reference / "summary.json").read_text())
    steps = summary["steps"]
    assert steps >= 4, f"{name}'s smoke config should run at least 4 steps, ran {steps}"
    records = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    train_losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert train_losses and all(isinstance(x, float) and math.isfinite(x) for x in train_losses), train_losses
    final = plain_load(CheckpointManager(reference).last)
    assert final["task"] == name and final["progress"]["step"] == steps
    cfg = config_io.from_dict(task, final["config"], "checkpoint")
    assert final["meta"] == task.checkpoint_meta(cfg)

    # 2. kill -9 in the middle, resume: bit-identical to the uninterrupted run
    killed = tmp_path / "killed"
    kill_at = steps // 2 + 1
    proc = subprocess.run([sys.executable, "-c", KILL_AT_STEP, str(kill_at), *args, "--run-dir", str(killed)],
                          capture_output=True, text=True, timeout=300, env=subprocess_env(**env), cwd=REPO)
    assert proc.returncode == -9, proc.stderr[-3000:]
    saved = plain_load(CheckpointManager(killed).last)["progress"]["step"]
    assert 0 < saved < kill_at, f"kill at step {kill_at}: expected an earlier checkpoint, found step {saved}"
    run_train(name, "--run-dir", str(killed), "--resume", check=True, **env)
    resumed = plain_load(CheckpointManager(killed).last)
    assert resumed["progress"]["step"] == steps
    for key, tensor in final["model"].items():
        assert torch.equal(tensor, resumed["model"][key]), f"{name}: {key} differs after kill -9 and resume"
    for slot, state in final["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg"], resumed["optimizer"]["state"][slot]["exp_avg"])

    # 3. the inference loader: evaluate reproduces the value recorded for best.pt
    best_path = CheckpointManager(reference).best
    loaded_task, loaded_cfg, model, meta = load_for_inference(best_path, "cpu", expected_task=name)
    saved = task.checkpoint_meta(loaded_cfg)
    assert {k: meta.get(k) for k in saved} == saved and not model.training
    # after_training may add to best.pt's meta (vesuvius: the tuned post-processing), nothing else
    assert set(meta) - set(saved) == set(summary.get("after_training", {})) & set(meta)
    metric, _ = loaded_task.monitored(loaded_cfg)
    assert summary["best_metric"]["name"] == metric
    _, val = loaded_task.build_datasets(loaded_cfg)
    loader = torch.utils.data.DataLoader(val, batch_size=loaded_task.val_batch_size(loaded_cfg, 2),
                                         collate_fn=loaded_task.collate_fn(loaded_cfg))
    with torch.no_grad():
        results = loaded_task.evaluate(loaded_cfg, model, loader)
    assert metric in results and math.isfinite(results[metric])
    assert results[metric] == pytest.approx(summary["best_metric"]["value"], rel=1e-5, abs=1e-6)

    # 4. the task's inference command on its own example input
    folder = tmp_path / "inference"
    folder.mkdir()
    extra = loaded_task.inference_example(loaded_cfg, folder)
    inputs = set(folder.iterdir())
    proc = subprocess.run([sys.executable, "-m", task.inference_module, "--checkpoint", str(best_path), *extra],
                          capture_output=True, text=True, timeout=300, env=subprocess_env(**env), cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outputs = [p for p in set(folder.iterdir()) - inputs if p.stat().st_size > 0]
    assert outputs, f"python -m {task.inference_module} {' '.join(extra)} wrote nothing into {folder}"


def test_every_task_declares_what_the_contract_test_needs():
    for name in TASKS:
        task = registry.get_task(name)
        assert task.inference_module, f"task {name} has no inference_module"
        cfg = config_io.load(task, REPO / task.smoke_config if task.smoke_config else None)
        assert task.monitored(cfg)[1] in ("max", "min")
        if task.smoke_config:
            assert (REPO / task.smoke_config).is_file(), f"{name}: {task.smoke_config} is missing"

"""Engine decisions that used to be wrong: GradScaler overflows, empty validation sets,
config values that must follow --resume --set, probes that must not move the run's RNG,
and one batch size for all ranks."""
from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO, run_train, subprocess_env
from core import config as config_io
from core.errors import UserError
from core.precision import Precision
from core.runtime import preserved_rng
from core.trainer import TrainingDiverged, fit


@pytest.fixture
def cpu_grad_scaler(monkeypatch):
    """The run's precision gets a real GradScaler (torch's CPU one) as fp16 on a T4 would.
    fp16 autocast itself is a CUDA matter (tests/test_engine_cuda.py); the scaler's skip and
    back-off logic is the same object on CPU."""
    scalers = []

    def create(cls, requested, device):
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
        scalers.append(scaler)
        return cls("fp32", device, scaler)

    monkeypatch.setattr(Precision, "create", classmethod(create))
    return scalers


def test_gradscaler_overflows_are_skipped_without_counting_as_divergence(toy_task, tmp_path, cpu_grad_scaler):
    overflows = [2, 3, 7]
    # policy "raise" stops at the first non-finite step: overflows must not be one
    cfg = config_io.load(toy_task, None, ["trainer.max_steps=10", "trainer.nonfinite_policy=\"raise\"",
                                          f"fault.grad_overflow_at={overflows}"])
    summary = fit(toy_task, cfg, tmp_path / "run")
    assert summary["steps"] == 10 and summary["stopped_by"] == "completed"
    assert summary["scaler_skipped_steps"] == 3 and summary["skipped_nonfinite"] == 0
    scaler = cpu_grad_scaler[-1]
    assert scaler.get_scale() == 2.0**16 / 2**3  # the scaler halved its scale once per overflow
    from core.checkpoint import CheckpointManager, load

    state = load(CheckpointManager(tmp_path / "run").last)
    assert int(state["optimizer"]["state"][0]["step"]) == 10 - 3  # AdamW saw only the real updates
    assert state["scheduler"]["last_epoch"] == 10 - 3
    assert state["scaler"]["scale"] == 2.0**13


def test_a_nonfinite_loss_under_a_gradscaler_is_still_divergence(toy_task, tmp_path, cpu_grad_scaler):
    cfg = config_io.load(toy_task, None, ["trainer.max_steps=10", "trainer.nonfinite_policy=\"raise\"",
                                          "fault.nonfinite_at=[4]"])
    with pytest.raises(TrainingDiverged, match="step 4: 1 non-finite step"):
        fit(toy_task, cfg, tmp_path / "run")


def test_an_empty_validation_set_is_an_error_unless_evaluation_is_off(tmp_path):
    proc = run_train("toy", "--run-dir", str(tmp_path / "a"), "--set", "data.val_samples=0")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "validation set of toy is empty" in proc.stderr and "trainer.evaluate=false" in proc.stderr
    assert not (tmp_path / "a" / "checkpoints").exists()
    run_train("toy", "--run-dir", str(tmp_path / "b"), "--set", "data.val_samples=0", "--set", "trainer.evaluate=false",
              "--set", "trainer.max_steps=5", check=True)
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["steps"] == 5 and summary["best_metric"]["value"] is None and summary["final_metrics"] == {}
    assert (tmp_path / "b" / "checkpoints" / "last.pt").is_file()
    assert not (tmp_path / "b" / "checkpoints" / "best.pt").exists()


def test_vesuvius_with_no_validation_volume_stops_before_training(tmp_path, monkeypatch):
    from tasks.vesuvius.task import VesuviusTask

    monkeypatch.setenv("TWOTRACK_CACHE", str(tmp_path / "cache"))
    task = VesuviusTask()
    cfg = config_io.load(task, None, ["data.root=", "data.synthetic.volumes=2", "data.synthetic.size=24",
                                      "data.val_fraction=0", "data.patch_size=16", "model.depth=3",
                                      "trainer.batch_size=1"])
    with pytest.raises(UserError, match="validation set of vesuvius is empty"):
        fit(task, cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_resume_with_a_new_pos_weight_trains_with_it(tmp_path, monkeypatch):
    """Two resumes of one checkpoint that differ only in loss.pos_weight: the first logged
    loss after it differs as BCE with heavier positives must (larger), and the run's
    config says which weight it used."""
    from tasks.arc_guide.task import ArcGuideTask

    monkeypatch.setenv("TWOTRACK_CACHE", str(tmp_path / "cache"))
    task = ArcGuideTask()
    smoke = REPO / task.smoke_config
    base = config_io.load(task, smoke, ["trainer.max_steps=4", "trainer.log_every_steps=1"])
    first = tmp_path / "first"
    fit(task, base, first)
    losses = {}
    for weight in (1.0, 3.0):
        run = tmp_path / f"pw{weight}"
        run.mkdir()
        for item in first.iterdir():
            if item.is_dir():
                (run / item.name).mkdir()
                for f in item.iterdir():
                    (run / item.name / f.name).write_bytes(f.read_bytes())
            else:
                (run / item.name).write_bytes(item.read_bytes())
        saved = json.loads((run / "config.json").read_text())
        cfg = config_io.validate_with_overrides(task, saved, "config.json",
                                                ["trainer.max_steps=6", f"loss.pos_weight={weight}"])
        fit(task, cfg, run, resume=True)
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        losses[weight] = next(r["loss"] for r in records if r["kind"] == "train" and r["step"] == 5)
        assert json.loads((run / "config.json").read_text())["loss"]["pos_weight"] == weight
    assert losses[3.0] > losses[1.0] + 0.01, losses  # same weights, same batch: only the weight differs


def test_probes_do_not_move_any_random_stream():
    def draws():
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    expected = draws()
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    with preserved_rng():
        draws(), draws(), torch.randn(100)
    assert draws() == expected


def test_a_run_with_auto_batch_replays_from_its_config_json(tmp_path):
    auto = tmp_path / "auto"
    run_train("toy", "--run-dir", str(auto), "--set", "trainer.batch_size=\"auto\"", "--set", "trainer.max_steps=12",
              check=True)
    chosen = json.loads((auto / "config.json").read_text())["trainer"]["batch_size"]
    assert isinstance(chosen, int)
    replay = tmp_path / "replay"
    run_train("toy", "--run-dir", str(replay), "--set", f"trainer.batch_size={chosen}", "--set", "trainer.max_steps=12",
              check=True)
    from core.checkpoint import CheckpointManager, load

    a, b = load(CheckpointManager(auto).last)["model"], load(CheckpointManager(replay).last)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_ranks_with_auto_batch_size_share_rank_0s_choice(tmp_path):
    log = tmp_path / "batches.txt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "core.cli",
           "toy", "--run-dir", str(tmp_path / "run"), "--set", "trainer.batch_size=\"auto\"",
           "--set", "trainer.max_epochs=1", "--set", f"fault.record_batches_to=\"{log}\""]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=subprocess_env(), cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (proc.stdout + proc.stderr).count("batch size: ") == 1  # measured once, on rank 0
    rows = [tuple(map(int, line.split())) for line in log.read_text().splitlines()]
    by_rank = {r: [n for rank, n in rows if rank == r] for r in (0, 1)}
    chosen = json.loads((tmp_path / "run" / "config.json").read_text())["trainer"]["batch_size"]
    assert by_rank[0] == by_rank[1] and by_rank[0] and set(by_rank[0]) == {chosen}

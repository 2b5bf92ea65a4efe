"""CUDA paths: fp16 + GradScaler, bf16 autocast, pinned memory, OOM back-off probes.

Marked ``cuda``: skipped with a reason on machines where torch sees no GPU (CI)."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import run_train
from core.batch_size import measure
from core.checkpoint import CheckpointManager, load
from core.precision import Precision, resolve

pytestmark = pytest.mark.cuda


def test_auto_precision_matches_the_gpu():
    device = torch.device("cuda")
    expected = "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    assert resolve("auto", device) == expected
    assert (Precision.create("fp16", device).scaler is not None) and Precision.create("bf16", device).scaler is None


def test_fp16_run_skips_nonfinite_and_saves_the_scaler(tmp_path):
    run = tmp_path / "run"
    run_train("toy", "--run-dir", str(run), "--device", "cuda", "--set", 'trainer.precision="fp16"',
              "--set", "trainer.max_epochs=1", "--set", "fault.nonfinite_at=[5]", check=True)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["precision"] == "fp16" and summary["device"].startswith("cuda")
    assert summary["skipped_nonfinite"] >= 1
    scaler = load(CheckpointManager(run).last)["scaler"]
    assert scaler["scale"] < 2.0**16  # the injected NaN step halved the scale


def test_bf16_run_trains(tmp_path):
    if not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("this GPU has no bf16 tensor cores")
    run = tmp_path / "run"
    run_train("toy", "--run-dir", str(run), "--device", "cuda", "--set", 'trainer.precision="bf16"', check=True)
    assert json.loads((run / "summary.json").read_text())["best_metric"]["value"] > 0.8


def test_cuda_memory_model_predicts_max_allocated(toy_task):
    from core import config as config_io

    cfg = config_io.load(toy_task, None, ["data.features=1024", "model.hidden=1024"])
    model = measure(toy_task, cfg, torch.device("cuda"), sizes=[256, 512, 1024])
    check = measure(toy_task, cfg, torch.device("cuda"), sizes=[4096]).probes[0]
    assert abs(model.predict_peak(4096) - check.peak_bytes) <= 0.10 * check.peak_bytes


def test_fp16_gradient_overflows_are_the_scalers_business(tmp_path):
    """A finite loss whose fp16 gradients overflow: the GradScaler skips and lowers its
    scale; policy "raise" (which stops at the first non-finite step) does not fire."""
    run = tmp_path / "run"
    run_train("toy", "--run-dir", str(run), "--device", "cuda", "--set", 'trainer.precision="fp16"',
              "--set", "trainer.max_steps=10", "--set", 'trainer.nonfinite_policy="raise"',
              "--set", "fault.grad_overflow_at=[2, 3]", check=True)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["scaler_skipped_steps"] == 2 and summary["skipped_nonfinite"] == 0 and summary["steps"] == 10
    assert load(CheckpointManager(run).last)["scaler"]["scale"] == 2.0**14

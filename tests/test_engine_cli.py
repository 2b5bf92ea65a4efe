"""The `train` command line: help, unknown tasks, config errors (exit 2, one line), outputs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from conftest import run_train
from core import config as config_io
from core.errors import UserError


def one_error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.fixture
def cli_error_line(capsys):
    """``train ARGS`` through core.cli.main in this process, for mistakes the CLI must refuse
    before training starts, checked as one_error_line checks a process (an exception escaping
    main fails the test as a traceback would). A process start-up costs about 3 s (torch);
    the subprocess tests above and in test_engine_faults cover the real process's exit path.
    The environment defaults main sets for its process are undone afterwards."""
    from core import cli

    saved = dict(os.environ)

    def run(*args: str) -> str:
        capsys.readouterr()
        code = cli.main(list(args))
        return one_error_line(subprocess.CompletedProcess(["train", *args], code, "", capsys.readouterr().err))

    yield run
    os.environ.clear()
    os.environ.update(saved)


def test_help_lists_registered_tasks():
    proc = run_train("--help", check=True)
    assert "\n  toy " in proc.stdout and "tasks:" in proc.stdout


def test_unknown_task_lists_valid_choices():
    line = one_error_line(run_train("segment-everything"))
    assert "unknown task 'segment-everything'" in line and "toy" in line


@pytest.mark.parametrize("args, expected", [
    (["--set", "trainer.lrr=0.1"], "unknown key 'trainer.lrr'"),
    (["--set", "trainer.max_epochs=many"], "key 'trainer.max_epochs'"),
    (["--set", "trainer.max_epochs"], "expected key.path=value"),
    (["--set", "=3"], "expected key.path=value"),
    (["--config", "/no/such/file.toml"], "/no/such/file.toml does not exist"),
    (["--set", "trainer.batch_size=0"], "key 'trainer.batch_size'"),
])
def test_config_errors_exit_2_with_one_line(tmp_path, args, expected, cli_error_line):
    line = cli_error_line("toy", "--run-dir", str(tmp_path / "run"), *args)
    assert expected in line
    assert not (tmp_path / "run").exists()  # refused before the run directory was made


def test_a_device_this_machine_lacks_is_one_line_before_training(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: --device cuda is valid here")
    line = one_error_line(run_train("toy", "--run-dir", str(tmp_path / "run"), "--device", "cuda"))
    assert "--device cuda was requested but torch sees no CUDA GPU" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_config_file_errors_name_the_file_and_key(tmp_path, cli_error_line):
    bad = tmp_path / "bad.toml"
    bad.write_text("[trainer]\nlr = 'fast'\n")
    line = cli_error_line("toy", "--config", str(bad), "--run-dir", str(tmp_path / "r"))
    assert str(bad) in line and "trainer.lr" in line
    broken = tmp_path / "broken.toml"
    broken.write_text("[trainer\n")
    assert str(broken) in cli_error_line("toy", "--config", str(broken), "--run-dir", str(tmp_path / "r2"))


def test_resume_without_a_run_is_a_usage_error(tmp_path, cli_error_line):
    line = cli_error_line("toy", "--run-dir", str(tmp_path / "empty"), "--resume")
    assert "nothing to resume" in line


def test_partial_section_keeps_task_defaults(toy_task, tmp_path):
    """A file naming one trainer key keeps the task's other trainer defaults."""
    path = tmp_path / "c.toml"
    path.write_text("[trainer]\nlr = 0.5\n")
    cfg = config_io.load(toy_task, path, ["data.samples=64"])
    defaults = toy_task.Config()
    assert cfg.trainer.lr == 0.5 and cfg.data.samples == 64
    assert cfg.trainer.batch_size == defaults.trainer.batch_size == 8  # the toy task's own default


def test_override_values_are_typed(toy_task):
    cfg = config_io.load(toy_task, None, ["trainer.max_epochs=3", "fault.nonfinite_at=[1, 2]",
                                          "trainer.precision=bf16"])
    assert cfg.trainer.max_epochs == 3 and cfg.fault.nonfinite_at == [1, 2] and cfg.trainer.precision == "bf16"
    with pytest.raises(UserError, match="trainer.max_epochs"):
        config_io.load(toy_task, None, ["trainer.max_epochs=-1"])


def test_run_directory_files(tmp_path):
    run = tmp_path / "run"
    run_train("toy", "--run-dir", str(run), "--set", "trainer.max_epochs=2", check=True)
    config = json.loads((run / "config.json").read_text())
    assert config["trainer"]["max_epochs"] == 2
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    fields = {"kind", "epoch", "step", "loss", "lr", "samples_per_s", "data_wait_frac",
              "skipped_nonfinite", "peak_mem_bytes"}
    assert train and fields <= train[0].keys()
    assert all(0 <= r["data_wait_frac"] <= 1 for r in train)
    assert [r["step"] for r in evals] == [32, 64] and "accuracy" in evals[0]
    summary = json.loads((run / "summary.json").read_text())
    for key in ("task", "steps", "epochs", "wall_s", "skipped_nonfinite", "batch_size",
                "batch_size_reason", "best_metric", "final_metrics"):
        assert key in summary
    assert summary["best_metric"]["value"] == max(r["accuracy"] for r in evals)
    assert (run / "checkpoints" / "best.pt").is_file() and (run / "checkpoints" / "last.pt").is_file()
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(shutil.which("c++") is None, reason="torch.compile's CPU backend needs a C++ compiler")
def test_compiled_model_saves_plain_weights_that_a_plain_model_loads(toy_task, tmp_path):
    """trainer.compile: torch.compile (inductor, here on CPU) trains, and the checkpoint holds
    the module's own keys (no ``_orig_mod.``), so predict/solve load it without compiling."""
    from core.checkpoint import CheckpointManager, load

    run = tmp_path / "run"
    run_train("toy", "--run-dir", str(run), "--set", "trainer.compile=true", "--set", "trainer.max_epochs=1",
              timeout=600, check=True)
    state = load(CheckpointManager(run).last)
    cfg = config_io.load(toy_task, None, [])
    plain = toy_task.build_model(cfg)
    plain.load_state_dict(state["model"])  # strict: raises on any missing or unexpected key
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 32 and summary["best_metric"]["value"] > 0.75

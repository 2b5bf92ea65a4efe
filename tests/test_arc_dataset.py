"""The ARC guide loader: round trips, malformed records, skip mode, cache, filter, split."""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import tasks.arc_guide.dataset as ds
from tasks.arc_guide import json_stream
from core.errors import DataError
from tasks.arc_guide.dsl import PRIMITIVES
from tasks.arc_guide.generate import make_record

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return [make_record(21, i) for i in range(24)]


def write(path: Path, recs: list, fmt: str = "json") -> Path:
    blobs = [r if isinstance(r, bytes) else orjson.dumps(r) for r in recs]
    path.write_bytes(b"[\n" + b",\n".join(blobs) + b"\n]\n" if fmt == "json" else b"\n".join(blobs) + b"\n")
    return path


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_generated_records_round_trip_and_the_cache_is_memory_mapped(tmp_path, records, fmt, monkeypatch):
    monkeypatch.setattr(json_stream, "BLOCK_BYTES", 1000)  # records straddle many read blocks
    path = write(tmp_path / f"d.{fmt}", records, fmt)
    cold = ds.load_dataset(path, verbose=False)
    assert cold.stats["cache"] == "written" and len(cold) == len(records)
    assert [cold.record(i) for i in range(len(records))] == records
    warm = ds.load_dataset(path, verbose=False)
    assert warm.stats["cache"] == "hit"
    assert isinstance(warm.cells, np.memmap) and warm.cells.dtype == np.uint8
    assert [warm.record(i) for i in range(len(records))] == records
    assert (tmp_path / f"d.{fmt}.arc-cache").is_dir()  # next to the dataset


cell = st.integers(0, 9)
grid = st.integers(1, 6).flatmap(lambda w: st.lists(st.lists(cell, min_size=w, max_size=w), min_size=1, max_size=6))
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
record = st.builds(
    lambda pairs, prims, q, c, tid: {
        "input": pairs[0][0], "output": pairs[0][1], "primitives": prims, "quality": q, "complexity": c,
        "task_id": tid, "pairs": [{"input": i, "output": o} for i, o in pairs],
    },
    st.lists(st.tuples(grid, grid), min_size=1, max_size=3),
    st.lists(st.sampled_from(list(PRIMITIVES)), max_size=4),
    st.floats(0, 1), st.floats(0, 1),
    text | st.just('a"b\\"c[{'),  # quotes, backslashes and brackets inside strings
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(record, min_size=1, max_size=5), st.sampled_from(["json", "jsonl"]), st.sampled_from([3, 17, 4096]))
def test_any_valid_records_round_trip_exactly(tmp_path_factory, recs, fmt, block):
    path = write(tmp_path_factory.mktemp("rt") / f"d.{fmt}", recs, fmt)
    old = json_stream.BLOCK_BYTES
    json_stream.BLOCK_BYTES = block
    try:
        data = ds.load_dataset(path, verbose=False)
    finally:
        json_stream.BLOCK_BYTES = old
    assert [data.record(i) for i in range(len(recs))] == recs


def _bad(kind: str, rec: dict) -> dict | bytes:
    rec = copy.deepcopy(rec)
    first_in = rec["pairs"][0]["input"]
    if kind == "bad_json":  # brackets stay balanced: the loader can resynchronise after it
        return orjson.dumps(rec).replace(b'"quality":', b'"quality" ')
    if kind.startswith("missing_"):
        del rec[kind[len("missing_"):]]
    elif kind == "ragged":
        rec["pairs"][1]["input"][0].append(1)
    elif kind == "colour_10":
        rec["pairs"][2]["output"][0][0] = 10
    elif kind == "colour_negative":
        rec["pairs"][1]["output"][0][0] = -1
    elif kind == "colour_float":
        rec["pairs"][1]["input"][0][0] = 1.5
    elif kind == "colour_bool":
        rec["pairs"][1]["input"][0][0] = True
    elif kind == "too_many_rows":
        rec["pairs"][1]["input"] = [[1]] * 31
    elif kind == "too_wide":
        rec["pairs"][1]["input"] = [[1] * 31]
    elif kind == "empty_grid":
        rec["pairs"][1]["output"] = []
    elif kind == "primitive_not_a_name":
        rec["primitives"] = ["rot90", 7]
    elif kind == "quality_high":
        rec["quality"] = 1.5
    elif kind == "quality_negative":
        rec["quality"] = -0.1
    elif kind == "quality_text":
        rec["quality"] = "high"
    elif kind == "not_an_object":
        return b"[1, 2]"
    elif kind == "input_not_pair0":
        first_in[0][0] = (first_in[0][0] + 1) % 10
    return rec


BAD_KINDS = {
    "bad_json": "bad JSON", "missing_input": "'input'", "missing_primitives": "'primitives'",
    "missing_quality": "'quality'", "missing_task_id": "'task_id'", "ragged": "ragged",
    "colour_10": "colour 10", "colour_negative": "-1", "colour_float": "1.5", "colour_bool": "True",
    "too_many_rows": "31 rows", "too_wide": "31 columns", "empty_grid": "non-empty",
    "primitive_not_a_name": "7 is not a primitive name", "quality_high": "'quality'", "quality_negative": "'quality'",
    "quality_text": "'quality'", "not_an_object": "JSON object", "input_not_pair0": "pairs[0]",
}


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_every_kind_of_malformed_record_is_named_with_its_index(tmp_path, records, kind, fmt):
    index = 5
    recs = records[:10]
    recs = recs[:index] + [_bad(kind, recs[index])] + recs[index + 1:]
    path = write(tmp_path / f"bad.{fmt}", recs, fmt)
    with pytest.raises(DataError) as e:
        ds.load_dataset(path, verbose=False)
    message = str(e.value)
    assert f"record {index} " in message and BAD_KINDS[kind] in message, message
    assert "1 malformed record" in message and str(path) in message and "on_bad_record" in message
    assert "\n" not in message
    # skip mode keeps exactly the good ones
    data = ds.load_dataset(path, on_bad_record="skip", verbose=False)
    assert [data.task_id(i) for i in data.index] == [r["task_id"] for i, r in enumerate(recs) if i != index]
    assert data.stats["rejected"] == 1


def test_error_lists_the_first_ten_and_the_total(tmp_path, records):
    recs = [_bad("quality_high", r) if i % 2 else r for i, r in enumerate(records)]  # 12 bad
    path = write(tmp_path / "many.json", recs)
    with pytest.raises(DataError) as e:
        ds.load_dataset(path, verbose=False)
    message = str(e.value)
    assert "12 malformed records (the first 10 listed)" in message
    assert "record 19 " in message and "record 21 " not in message
    # a cache written in skip mode still reports the bad records in error mode
    assert len(ds.load_dataset(path, on_bad_record="skip", verbose=False)) == 12
    with pytest.raises(DataError):
        ds.load_dataset(path, verbose=False)


def test_bad_input_exits_2_with_one_line_through_a_real_process(tmp_path, records):
    recs = records[:6]
    recs[3] = _bad("ragged", recs[3])
    path = write(tmp_path / "bad.json", recs)
    proc = subprocess.run(
        [sys.executable, "-m", "tasks.arc_guide.dataset", str(path)], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "record 3 (line 5)" in proc.stderr and "Traceback" not in proc.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "tasks.arc_guide.dataset", str(tmp_path / "nope.json")], cwd=REPO, capture_output=True, text=True
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_truncated_file_and_missing_commas_are_bad_json(tmp_path, records):
    blob = b"[" + b",".join(orjson.dumps(r) for r in records[:4])
    with pytest.raises(DataError, match="not closed"):
        ds.load_dataset(write_raw(tmp_path / "t.json", blob[: len(blob) // 2 + 3]), verbose=False)
    no_comma = b"[" + b"\n".join(orjson.dumps(r) for r in records[:3]) + b"]"
    with pytest.raises(DataError, match=r"record 1 \(line 2\): bad JSON: missing ','"):
        ds.load_dataset(write_raw(tmp_path / "c.json", no_comma), verbose=False)


def write_raw(path: Path, blob: bytes) -> Path:
    path.write_bytes(blob)
    return path


def test_quality_filter_then_seeded_cap(tmp_path, records, capsys):
    path = write(tmp_path / "d.json", records)
    quality = np.array([r["quality"] for r in records])
    kept = ds.load_dataset(path, quality_threshold=0.85)
    assert len(kept) == int((quality >= 0.85).sum())
    out = capsys.readouterr().out
    assert "read 24 records" in out and f"kept {len(kept)} with quality >= 0.85" in out
    a = ds.load_dataset(path, 0.0, max_samples=10, seed=1, verbose=False)
    b = ds.load_dataset(path, 0.0, max_samples=10, seed=1, verbose=False)
    c = ds.load_dataset(path, 0.0, max_samples=10, seed=2, verbose=False)
    assert len(a) == 10 and np.array_equal(a.index, b.index) and not np.array_equal(a.index, c.index)
    assert np.all(np.diff(a.index) > 0)
    with pytest.raises(DataError, match="lower --quality-threshold"):
        ds.load_dataset(path, quality_threshold=1.01, verbose=False)


def test_split_is_by_task_id_whatever_the_order(tmp_path, records):
    a = ds.load_dataset(write(tmp_path / "a.json", records), verbose=False)
    b = ds.load_dataset(write(tmp_path / "b.json", records[::-1]), verbose=False)
    val_a = {a.task_id(i) for i in a.split(0.3)[1]}
    val_b = {b.task_id(i) for i in b.split(0.3)[1]}
    assert val_a == val_b and 0 < len(val_a) < len(records)
    train_a = {a.task_id(i) for i in a.split(0.3)[0]}
    assert not train_a & val_a and len(train_a | val_a) == len(records)


def test_cache_follows_the_content(tmp_path, records):
    path = write(tmp_path / "d.json", records[:5])
    assert len(ds.load_dataset(path, verbose=False)) == 5
    write(path, records[:7])
    data = ds.load_dataset(path, verbose=False)
    assert len(data) == 7 and data.stats["cache"] == "written"
    assert len([p for p in (tmp_path / "d.json.arc-cache").iterdir() if p.is_dir()]) == 1  # old version removed


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(names, min_size=1, max_size=3), min_size=1, max_size=6), st.randoms(use_true_random=False),
       st.sampled_from(["json", "jsonl"]))
def test_any_names_become_the_vocabulary_and_labels_follow_its_order(tmp_path_factory, programs, random, fmt):
    base = make_record(3, 0)
    recs = [{**base, "task_id": f"t{k}", "primitives": program} for k, program in enumerate(programs)]
    path = write(tmp_path_factory.mktemp("vocab") / f"d.{fmt}", recs, fmt)
    found = sorted({n for program in programs for n in program})
    data = ds.load_dataset(path, verbose=False)
    assert data.vocabulary == found  # the file's own names, sorted
    chosen = found + ["never_used"]
    random.shuffle(chosen)  # a configured order: labels follow it
    ordered = ds.load_dataset(path, verbose=False, vocabulary=chosen)
    for r, program in enumerate(programs):
        assert ordered.program(r) == program
        assert {chosen[k] for k in ordered.labels(r)} == set(program)
    # a vocabulary without one of the names: its records are bad (skip drops exactly them)
    dropped = found[0]
    kept = [k for k, program in enumerate(programs) if dropped not in program]
    if not kept:
        with pytest.raises(DataError):
            ds.load_dataset(path, verbose=False, vocabulary=found[1:], on_bad_record="skip")
        return
    partial = ds.load_dataset(path, verbose=False, vocabulary=found[1:], on_bad_record="skip")
    assert partial.index.tolist() == kept and partial.stats["rejected"] == len(programs) - len(kept)
    with pytest.raises(DataError, match=f"first record {min(set(range(len(programs))) - set(kept))} "):
        ds.load_dataset(path, verbose=False, vocabulary=found[1:])


def test_each_pairs_relations_are_packed_with_it_and_memory_mapped(tmp_path, records):
    from tasks.arc_guide.task import ArcPairsDataset, pair_relations

    path = write(tmp_path / "d.json", records)
    cold = ds.load_dataset(path, verbose=False)
    warm = ds.load_dataset(path, verbose=False)
    assert warm.stats["cache"] == "hit" and isinstance(warm.relations, np.memmap)
    for data in (cold, warm):
        items = ArcPairsDataset(data, data.index, max_pairs=2)
        for i, r in enumerate(data.index):
            pairs, _, _, facts = items[i]
            assert len(pairs) == min(2, len(records[r]["pairs"])) and facts.dtype == np.float32
            # what training has always seen: the relations rounded to float16
            assert np.array_equal(facts, pair_relations(pairs).astype(np.float16).astype(np.float32))


def test_worker_processes_pack_the_same_relations_as_one_process(tmp_path, records, monkeypatch):
    from tasks.arc_guide import packed_relations

    data = ds.load_dataset(write(tmp_path / "d.json", records), verbose=False)
    grids = (np.asarray(data.cells), np.asarray(data.grid_offset), np.asarray(data.grid_shape))
    one = packed_relations.pack_relations(*grids, workers=1)
    monkeypatch.setattr(packed_relations, "PARALLEL_PAIRS", 1)  # workers even for these few pairs
    monkeypatch.setattr(packed_relations, "CHUNKS_PER_WORKER", 3)  # several chunks a worker, a short last one
    several = packed_relations.pack_relations(*grids, workers=2)
    assert one.shape == (len(data.grid_shape) // 2, packed_relations.N_RELATIONS) and one.any()
    assert np.array_equal(one, several) and np.array_equal(one, data.relations)

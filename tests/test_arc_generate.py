"""The ARC guide generator: determinism, canonical labels, quality and complexity."""
from __future__ import annotations

import numpy as np
import orjson
import pytest

from tasks.arc_guide import generate as gen
from tasks.arc_guide.dataset import explain
from tasks.arc_guide.dsl import PRIMITIVES, run_program


def _diverse(seed: int, n: int = 3, side: int = 6) -> list[np.ndarray]:
    """Asymmetric inputs with 4 colours and no symmetry, so no dihedral step is a no-op."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        g = rng.integers(0, 4, (side, side + 1)).astype(np.uint8)
        g[0, 0], g[0, 1], g[1, 0] = 1, 2, 3
        out.append(g)
    return out


def _pairs(program, inputs):
    return [(g, run_program(program, g)) for g in inputs]


def test_generation_is_identical_whatever_the_worker_count(tmp_path):
    one = gen.write_dataset(tmp_path / "one.json", 24, seed=7, workers=1)
    two = gen.write_dataset(tmp_path / "two.json", 24, seed=7, workers=2)
    assert one.read_bytes() == two.read_bytes()
    other = gen.write_dataset(tmp_path / "other.json", 24, seed=8, workers=1)
    assert other.read_bytes() != one.read_bytes()


def test_records_are_valid_and_their_labels_reproduce_every_pair():
    for i in range(30):
        rec = gen.make_record(3, i)
        assert explain(rec) == ""
        assert set(rec) == {"input", "output", "primitives", "quality", "complexity", "task_id", "pairs"}
        assert rec["input"] == rec["pairs"][0]["input"] and rec["output"] == rec["pairs"][0]["output"]
        assert len(rec["pairs"]) == 3 and 0 <= rec["quality"] <= 1 and 0 <= rec["complexity"] <= 1
        for pair in rec["pairs"]:
            out = run_program(rec["primitives"], np.array(pair["input"], dtype=np.uint8))
            assert out.tolist() == pair["output"]


def test_redundant_programs_get_the_canonical_shortest_label_and_lower_quality():
    inputs = _diverse(0)
    pairs = _pairs(["rot90", "rot90"], inputs)
    label = gen.canonical_program(["rot90", "rot90"], pairs)
    assert label == ("rot180",)  # the shortest program; first in PRIMITIVES order
    assert gen.quality_score(["rot90", "rot90"], label, pairs) == pytest.approx(0.5)
    # flip_h then flip_v is rot180 too
    assert gen.canonical_program(["flip_h", "flip_v"], _pairs(["flip_h", "flip_v"], inputs)) == ("rot180",)
    # a program with no shorter equivalent keeps its label and full quality
    pairs = _pairs(["flip_h"], inputs)
    assert gen.canonical_program(["flip_h"], pairs) == ("flip_h",)
    assert gen.quality_score(["flip_h"], ("flip_h",), pairs) == 1.0


def test_a_three_step_equivalent_that_no_deletion_reaches_is_found():
    """anti_transpose then transpose is rot180: a 4-step program whose shortest equivalent
    is 3 steps of other primitives; only the depth-3 search finds it."""
    program = ["anti_transpose", "transpose", "gravity_left", "gravity_down"]
    pairs = _pairs(program, _diverse(0))
    assert gen.canonical_program(program, pairs) == ("rot180", "gravity_left", "gravity_down")
    assert gen.quality_score(program, ("rot180", "gravity_left", "gravity_down"), pairs) == pytest.approx(0.75)
    assert gen.shortest_program(pairs, 2) is None  # nothing of 2 steps or fewer reproduces it


def test_quality_is_zero_for_identity_outputs_and_no_op_steps():
    inputs = _diverse(1)
    assert gen.quality_score(["rot90", "rot270"], (), _pairs(["rot90", "rot270"], inputs)) == 0.0
    # remove_noise does nothing on grids without isolated cells: a no-op step on every pair
    solid = [np.pad(np.full((3, 3), c, np.uint8), 1) for c in (1, 2, 3)]
    program = ["remove_noise", "flip_v"]
    pairs = _pairs(program, solid)
    assert gen.has_noop_step(program, pairs)
    assert gen.quality_score(program, gen.canonical_program(program, pairs), pairs) == 0.0


def test_degenerate_inputs_lower_quality():
    diverse = _pairs(["flip_h"], _diverse(2))
    one_colour = _pairs(["upscale_2"], [np.full((3, 4), c, np.uint8) for c in (1, 2, 3)])
    tiny = _pairs(["flip_h"], [np.array([[1, 2]], np.uint8), np.array([[3, 4]], np.uint8), np.array([[5, 6]], np.uint8)])
    q = gen.quality_score(["flip_h"], ("flip_h",), diverse)
    assert q == 1.0
    assert gen.quality_score(["upscale_2"], ("upscale_2",), one_colour) < 0.3
    assert gen.quality_score(["flip_h"], ("flip_h",), tiny) < q


def test_complexity_grows_with_length_and_size():
    small = _pairs(["flip_h"], _diverse(3, side=4))
    large = _pairs(["flip_h"], _diverse(3, side=20))
    assert 0 <= gen.complexity_score(["flip_h"], small) < gen.complexity_score(["flip_h"], large) <= 1
    assert gen.complexity_score(["flip_h", "gravity_down"], small) > gen.complexity_score(["flip_h"], small)


def test_quality_spreads_over_the_range():
    q = np.array([gen.make_record(11, i)["quality"] for i in range(60)])
    assert (q >= 0.85).mean() > 0.3  # most records are usable ...
    assert (q < 0.85).mean() > 0.05  # ... and the threshold has something to filter


def test_cli_writes_jsonl_and_rejects_bad_arguments(tmp_path, capsys):
    out = tmp_path / "d.jsonl"
    gen.main(["--samples", "3", "--out", str(out), "--seed", "1", "--pairs", "2", "--max-length", "2"])
    lines = out.read_bytes().splitlines()
    assert len(lines) == 3 and all(len(orjson.loads(line)["pairs"]) == 2 for line in lines)
    assert all(len(orjson.loads(line)["primitives"]) <= 2 for line in lines)
    with pytest.raises(SystemExit) as e:
        gen.main(["--samples", "0", "--out", str(out), "--seed", "1"])
    assert e.value.code == 2
    assert len(PRIMITIVES) >= 17

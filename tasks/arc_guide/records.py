"""Validation of one record of an ARC guide dataset (the format in ../shared/DESIGN.md).

A record is ``{"input": grid, "output": grid, "primitives": [names], "quality": 0..1,
"complexity": 0..1, "task_id": str}`` with optional ``"pairs": [{"input", "output"}, ...]``
(then ``input``/``output`` repeat ``pairs[0]``). A grid is 1..30 rows of 1..30 integer
colours 0..9, all rows the same length. Primitive names are any non-empty strings here:
which names are valid is the vocabulary's business (tasks.arc_guide.vocabulary).

:func:`explain` is the full, slow check, used to say why a record the packer's fast path
refused is malformed.
"""
from __future__ import annotations

from typing import Any

from tasks.arc_guide.dsl import MAX_SIDE, N_COLOURS

REQUIRED_FIELDS = ("input", "output", "primitives", "quality", "complexity", "task_id")
MAX_PROGRAM_STEPS = 255
MAX_NAME_CHARS = 200


class BadRecord(Exception):
    """One malformed record: ``field`` and ``problem`` go into the user's message."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"field {field!r}: {problem}")


def check_grid(field: str, grid: Any) -> tuple[int, int]:
    """(rows, cols) of a valid grid; BadRecord naming the first problem otherwise."""
    if not isinstance(grid, list) or not grid:
        raise BadRecord(field, "expected a non-empty list of rows")
    if not 1 <= len(grid) <= MAX_SIDE:
        raise BadRecord(field, f"{len(grid)} rows, expected 1..{MAX_SIDE}")
    width = None
    for r, row in enumerate(grid):
        if not isinstance(row, list):
            raise BadRecord(field, f"row {r} is not a list")
        if width is None:
            width = len(row)
            if not 1 <= width <= MAX_SIDE:
                raise BadRecord(field, f"{width} columns, expected 1..{MAX_SIDE}")
        elif len(row) != width:
            raise BadRecord(field, f"ragged rows: row {r} has {len(row)} cells, row 0 has {width}")
        for c, v in enumerate(row):
            if type(v) is not int or not 0 <= v < N_COLOURS:
                raise BadRecord(field, f"cell [{r}][{c}] is {v!r}, expected an integer colour 0..9")
    return len(grid), width  # type: ignore[return-value]


def _check_unit(field: str, value: Any) -> float:
    if type(value) not in (int, float) or not 0.0 <= value <= 1.0:
        raise BadRecord(field, f"{value!r} is not a number in [0, 1]")
    return float(value)


def grid_fields(rec: dict[str, Any]) -> list[tuple[str, Any]]:
    """The grids a record stores, in pair order: (field name, grid)."""
    pairs = rec.get("pairs")
    if pairs is None:
        return [("input", rec["input"]), ("output", rec["output"])]
    if not isinstance(pairs, list) or not pairs:
        raise BadRecord("pairs", "expected a non-empty list of {input, output} objects")
    grids = []
    for j, pair in enumerate(pairs):
        if not isinstance(pair, dict) or "input" not in pair or "output" not in pair:
            raise BadRecord(f"pairs[{j}]", "expected an object with input and output")
        grids += [(f"pairs[{j}].input", pair["input"]), (f"pairs[{j}].output", pair["output"])]
    if rec["input"] != pairs[0]["input"] or rec["output"] != pairs[0]["output"]:
        raise BadRecord("input", "input/output must repeat pairs[0] (see the dataset format)")
    return grids


def check_fields(rec: Any) -> None:
    """Everything but the grids' cells: fields present, program a list of names, quality,
    complexity and task_id well typed."""
    if not isinstance(rec, dict):
        raise BadRecord("(record)", f"expected a JSON object, got {type(rec).__name__}")
    for name in REQUIRED_FIELDS:
        if name not in rec:
            raise BadRecord(name, "missing")
    program = rec["primitives"]
    if not isinstance(program, list):
        raise BadRecord("primitives", "expected a list of primitive names")
    for name in program:
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
            raise BadRecord("primitives", f"{name!r} is not a primitive name (a string of 1..{MAX_NAME_CHARS} characters)")
    if len(program) > MAX_PROGRAM_STEPS:
        raise BadRecord("primitives", f"{len(program)} steps, at most {MAX_PROGRAM_STEPS}")
    _check_unit("quality", rec["quality"])
    _check_unit("complexity", rec["complexity"])
    if not isinstance(rec["task_id"], str):
        raise BadRecord("task_id", f"expected a string, got {rec['task_id']!r}")


def explain(rec: Any) -> str:
    """Why a record is malformed (the full, slow check); "" if it is fine."""
    try:
        check_fields(rec)
        for field, grid in grid_fields(rec):
            check_grid(field, grid)
    except BadRecord as e:
        return str(e)
    return ""


def field_name(k: int) -> str:
    """Name of the k-th stored grid of a record (pairs[j].input / .output)."""
    return f"pairs[{k // 2}].{'output' if k % 2 else 'input'}"

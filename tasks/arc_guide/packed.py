"""The packed layout of an ARC guide dataset: every grid of every record in one
nibble-packed ``uint8`` buffer (two cells a byte, colours 0..9) with offsets and shapes
beside it, never Python lists, so forked DataLoader workers share it page for page.

:class:`RecordPacker` turns validated records (one block of the file at a time) into these
arrays; :func:`concat` joins the blocks; :class:`ArcData` is what a load returns.

Programs are stored as ids into the file's own names (``names``: the sorted primitive names
of its valid records); :class:`ArcData` maps them onto the model's ``vocabulary`` (the
output order) through ``label_of``.
"""
from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from tasks.arc_guide.dsl import MAX_SIDE, N_COLOURS
from tasks.arc_guide.records import BadRecord, check_fields, field_name, grid_fields

ARRAY_NAMES = (
    "cells", "grid_offset", "grid_shape", "pair_offset", "program_ids", "program_offset",
    "quality", "complexity", "task_id_bytes", "task_id_offset", "split_key", "source_record", "source_line",
    "relations",
)
MAX_NAMES = 65535  # program ids are uint16


@dataclass
class ArcData:
    """Packed records. Record ``r`` (0 <= r < n_records) has pairs
    ``pair_offset[r] .. pair_offset[r+1]``; pair ``p`` has grids ``2p`` (input) and ``2p+1``
    (output); grid ``g`` has shape ``grid_shape[g]`` and its cells nibble-packed in
    ``cells[grid_offset[g]:grid_offset[g+1]]`` (high nibble first, padded to whole bytes).
    Its program is ``program_ids[program_offset[r]:program_offset[r+1]]``, ids into ``names``.
    ``index`` lists the records kept (known names, quality filter, cap), in file order.
    """

    cells: np.ndarray  # (n_bytes,) uint8, two cells a byte
    grid_offset: np.ndarray  # (n_grids + 1,) int64, byte offsets into cells
    grid_shape: np.ndarray  # (n_grids, 2) uint8, (rows, cols)
    pair_offset: np.ndarray  # (n_records + 1,) int64
    program_ids: np.ndarray  # (n_steps,) uint16, indices into names
    program_offset: np.ndarray  # (n_records + 1,) int64
    quality: np.ndarray  # (n_records,) float64
    complexity: np.ndarray  # (n_records,) float64
    task_id_bytes: np.ndarray  # (n_chars,) uint8, utf-8
    task_id_offset: np.ndarray  # (n_records + 1,) int64
    split_key: np.ndarray  # (n_records,) uint64, hash of task_id: the train/val split
    source_record: np.ndarray  # (n_records,) int64, the record's number in the file
    source_line: np.ndarray  # (n_records,) int64, the line it starts on
    relations: np.ndarray  # (n_pairs, N_RELATIONS) float16: tasks.arc_guide.relations of each pair
    index: np.ndarray  # (n_kept,) int64, the records this load keeps
    stats: dict[str, Any]
    names: list[str]  # the file's primitive names, sorted: what program_ids index
    vocabulary: list[str]  # the model's outputs, in order
    label_of: np.ndarray  # (len(names),) int64: position of each name in vocabulary, -1 if absent

    @property
    def n_records(self) -> int:
        return len(self.quality)

    def __len__(self) -> int:
        return len(self.index)

    def grid(self, g: int) -> np.ndarray:
        """Grid ``g`` as a (rows, cols) uint8 array."""
        return unpack_grid(self.cells, self.grid_offset, self.grid_shape, g)

    def pairs(self, r: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """The (input, output) grids of record ``r`` (an index into all records)."""
        return [(self.grid(2 * p), self.grid(2 * p + 1)) for p in range(self.pair_offset[r], self.pair_offset[r + 1])]

    def program(self, r: int) -> list[str]:
        return [self.names[k] for k in self.program_ids[self.program_offset[r] : self.program_offset[r + 1]]]

    def labels(self, r: int) -> np.ndarray:
        """(steps,) int64 positions in ``vocabulary`` of record r's primitives (-1: not in it)."""
        return self.label_of[self.program_ids[self.program_offset[r] : self.program_offset[r + 1]]]

    def label_counts(self, records: np.ndarray) -> np.ndarray:
        """(len(vocabulary),) how many of ``records`` use each primitive (once per record)."""
        lengths = np.diff(np.asarray(self.program_offset))
        record_of_step = np.repeat(np.arange(len(lengths)), lengths)
        label = self.label_of[np.asarray(self.program_ids)]
        keep = np.isin(record_of_step, records) & (label >= 0)
        uses = np.unique(record_of_step[keep] * len(self.vocabulary) + label[keep])
        return np.bincount(uses % len(self.vocabulary), minlength=len(self.vocabulary))

    def task_id(self, r: int) -> str:
        return bytes(self.task_id_bytes[self.task_id_offset[r] : self.task_id_offset[r + 1]]).decode("utf-8")

    def record(self, r: int) -> dict[str, Any]:
        """Record ``r`` back as a JSON-style dict (with ``pairs``)."""
        pairs = self.pairs(r)
        return {
            "input": pairs[0][0].tolist(),
            "output": pairs[0][1].tolist(),
            "primitives": self.program(r),
            "quality": float(self.quality[r]),
            "complexity": float(self.complexity[r]),
            "task_id": self.task_id(r),
            "pairs": [{"input": i.tolist(), "output": o.tolist()} for i, o in pairs],
        }

    def split(self, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """(train, val) record indices from ``index``; a record is in val iff the hash of
        its task_id falls in the first ``val_fraction`` of the hash range, so the split does
        not depend on the order, the filter or the cap."""
        in_val = (self.split_key[self.index] % np.uint64(1_000_000)) < np.uint64(round(val_fraction * 1_000_000))
        return self.index[~in_val], self.index[in_val]

    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in ARRAY_NAMES) + self.index.nbytes


def unpack_grid(cells: np.ndarray, grid_offset: np.ndarray, grid_shape: np.ndarray, g: int) -> np.ndarray:
    """Grid ``g`` of packed ``cells`` (ArcData's layout) as a (rows, cols) uint8 array."""
    h, w = int(grid_shape[g, 0]), int(grid_shape[g, 1])
    packed = cells[grid_offset[g] : grid_offset[g + 1]]
    flat = np.empty(2 * len(packed), dtype=np.uint8)
    flat[0::2] = packed >> 4
    flat[1::2] = packed & 0x0F
    return flat[: h * w].reshape(h, w)


def split_key(task_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(task_id.encode("utf-8"), digest_size=8).digest(), "little")


class RecordPacker:
    """Accumulates validated records of one block; Python-side buffers, turned into numpy
    arrays by :meth:`arrays` (then the block's cells are range-checked and nibble-packed).

    ``names`` maps primitive names to ids in order of first appearance; it is shared by the
    packers of all blocks of a file (the loader renumbers them in sorted order at the end)."""

    def __init__(self, names: dict[str, int]) -> None:
        self.names = names
        self.cells = bytearray()  # one byte a cell, each grid padded to an even count
        self.grid_cells = []  # padded cell count of each grid
        self.shapes = bytearray()  # rows, cols of each grid
        self.pair_counts = []
        self.program: list[int] = []
        self.program_counts = []
        self.quality = []
        self.complexity = []
        self.task_ids = []
        self.sources = []  # (record number, line) of each record, for late errors

    def __len__(self) -> int:
        return len(self.sources)

    def add(self, rec: Any, source: tuple[int, int]) -> None:
        """Pack one record; raises BadRecord (or TypeError/ValueError/KeyError, explained by
        the caller with records.explain) without changing any buffer."""
        check_fields(rec)
        grids = grid_fields(rec)
        cells = bytearray()
        counts, shapes = [], bytearray()
        for field, grid in grids:
            if type(grid) is not list:
                raise BadRecord(field, "expected a list of rows")
            h = len(grid)
            w = len(grid[0]) if h else 0
            if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE) or any(len(row) != w for row in grid):
                raise ValueError(field)
            # bytearray.extend rejects non-ints and values outside 0..255 in C;
            # values 10..255 are caught per block in arrays()
            cells.extend(itertools.chain.from_iterable(grid))
            n = h * w
            if n & 1:
                cells.append(0)
            counts.append(n + (n & 1))
            shapes += bytes((h, w))
        program = rec["primitives"]
        if len(self.names) + len(program) > MAX_NAMES and any(name not in self.names for name in program):
            raise BadRecord("primitives", f"the file holds more than {MAX_NAMES} distinct primitive names")
        self.cells += cells
        self.grid_cells += counts
        self.shapes += shapes
        self.pair_counts.append(len(grids) // 2)
        self.program += [self.names.setdefault(name, len(self.names)) for name in program]
        self.program_counts.append(len(program))
        self.quality.append(float(rec["quality"]))
        self.complexity.append(float(rec["complexity"]))
        self.task_ids.append(rec["task_id"])
        self.sources.append(source)

    def arrays(self) -> tuple[dict[str, np.ndarray], list[tuple[int, int, str]]]:
        """The block as arrays (cells still one a byte), minus records with colours > 9,
        which are returned as (record, line, message)."""
        cells = np.frombuffer(bytes(self.cells), dtype=np.uint8)
        grid_cells = np.asarray(self.grid_cells, dtype=np.int64)
        pair_counts = np.asarray(self.pair_counts, dtype=np.int64)
        shapes = np.frombuffer(bytes(self.shapes), dtype=np.uint8).reshape(-1, 2)
        keep = np.ones(len(pair_counts), dtype=bool)
        bad = []
        if cells.size and cells.max() >= N_COLOURS:
            grid_start = np.concatenate([[0], np.cumsum(grid_cells)])
            bad_grids = np.unique(np.searchsorted(grid_start, np.flatnonzero(cells >= N_COLOURS), side="right") - 1)
            grid_record = np.repeat(np.arange(len(pair_counts)), 2 * pair_counts)
            for r in np.unique(grid_record[bad_grids]):
                g = int(bad_grids[grid_record[bad_grids] == r][0])
                first_grid = int(np.searchsorted(grid_record, r))
                value = int(cells[grid_start[g] : grid_start[g + 1]].max())
                bad.append((*self.sources[r], f"field {field_name(g - first_grid)!r}: colour {value} outside 0..9"))
                keep[r] = False
            keep_grid = keep[grid_record]
            cells = cells[np.repeat(keep_grid, grid_cells)]
            grid_cells = grid_cells[keep_grid]
            shapes = shapes[keep_grid]
        program_counts = np.asarray(self.program_counts, dtype=np.int64)
        program = np.asarray(self.program, dtype=np.uint16)[np.repeat(keep, program_counts)]
        ids = [t for t, k in zip(self.task_ids, keep) if k]
        encoded = [t.encode("utf-8") for t in ids]
        sources = np.asarray(self.sources, dtype=np.int64).reshape(-1, 2)[keep]
        out = {
            "cells": (cells[0::2] << 4) | cells[1::2],  # nibble-pack: every grid has an even count
            "grid_bytes": grid_cells // 2,
            "grid_shape": shapes,
            "pair_counts": pair_counts[keep],
            "program_ids": program,
            "program_counts": program_counts[keep],
            "quality": np.asarray(self.quality, dtype=np.float64)[keep],
            "complexity": np.asarray(self.complexity, dtype=np.float64)[keep],
            "task_id_bytes": np.frombuffer(b"".join(encoded), dtype=np.uint8),
            "task_id_counts": np.asarray([len(e) for e in encoded], dtype=np.int64),
            "split_key": np.asarray([split_key(t) for t in ids], dtype=np.uint64),
            "source_record": sources[:, 0],
            "source_line": sources[:, 1],
        }
        return out, bad


def _offsets(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def concat(blocks: list[dict[str, np.ndarray]], names: dict[str, int]) -> tuple[dict[str, np.ndarray], list[str]]:
    """(the file's arrays (ARRAY_NAMES but ``relations``, which the loader adds), its
    primitive names sorted) from its blocks.
    ``names`` numbered the names in order of first appearance; the result's program ids
    index the sorted names that valid records use (a name seen only in a dropped record
    is not one of them)."""
    first_ids = np.concatenate([b["program_ids"] for b in blocks]).astype(np.int64) if blocks else np.zeros(0, np.int64)
    by_id = list(names)  # first-appearance id -> name
    used = np.unique(first_ids).tolist()
    sorted_names = sorted(by_id[i] for i in used)
    position = {name: k for k, name in enumerate(sorted_names)}
    renumber = np.full(len(by_id), -1, dtype=np.int64)
    renumber[used] = [position[by_id[i]] for i in used]

    def cat(name: str, dtype: Any, shape: tuple = (0,)) -> np.ndarray:
        parts = [b[name] for b in blocks]
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(shape, dtype)

    arrays = {
        "cells": cat("cells", np.uint8),
        "grid_offset": _offsets(cat("grid_bytes", np.int64)),
        "grid_shape": cat("grid_shape", np.uint8, (0, 2)),
        "pair_offset": _offsets(cat("pair_counts", np.int64)),
        "program_ids": renumber[first_ids].astype(np.uint16),
        "program_offset": _offsets(cat("program_counts", np.int64)),
        "quality": cat("quality", np.float64),
        "complexity": cat("complexity", np.float64),
        "task_id_bytes": cat("task_id_bytes", np.uint8),
        "task_id_offset": _offsets(cat("task_id_counts", np.int64)),
        "split_key": cat("split_key", np.uint64),
        "source_record": cat("source_record", np.int64),
        "source_line": cat("source_line", np.int64),
    }
    return arrays, sorted_names

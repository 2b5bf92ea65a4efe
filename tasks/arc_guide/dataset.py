"""Load an ARC guide dataset (JSON array or JSON Lines) into packed numpy arrays.

``load_dataset(path, quality_threshold=0.0, max_samples=None, seed=0)`` returns an
:class:`ArcData`: every grid of every record lives in one nibble-packed ``uint8`` buffer
(two cells a byte, colours 0..9) with offsets and shapes beside it, never in Python lists,
so forked DataLoader workers share it page for page.

Cold load: the file is read in blocks; a vectorised scanner finds where each record of a
JSON array starts and ends (depth-1 objects, strings and escapes respected), each record is
parsed with orjson and validated, and its grids are appended to a block buffer. Peak memory
stays near one block plus the packed result, whatever the file size.

Cache: the packed arrays are written (atomically: temp folder, then rename) to
``<dataset>.arc-cache/<content key>/`` next to the dataset (or under core.paths.cache_dir
when that folder is read-only) and memory-mapped on later loads. The content key is the
BLAKE2b hash of the file's bytes plus the loader version and the primitive names; a small
index maps (size, mtime, inode) to the key, so a warm load does not re-read the file.

Malformed records (bad JSON, a missing field, ragged rows, colours outside 0..9, sides
outside 1..30, an unknown primitive, quality or complexity outside [0, 1]) stop the load
with a DataError naming each record (index and line), field and problem, up to the first
10; ``on_bad_record="skip"`` drops them instead and reports the count.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import orjson

from core import atomic
from core.atomic import atomic_write
from core.errors import DataError, exit_on_user_error
from core.paths import cache_dir
from tasks.arc_guide.dsl import MAX_SIDE, N_COLOURS, PRIMITIVE_INDEX, PRIMITIVES

LOADER_VERSION = 2  # bump when the packed layout or the parsing changes: invalidates caches
BLOCK_BYTES = 8 << 20  # read size of the cold load; bounds its peak memory
MAX_REPORTED = 10  # malformed records listed in the error message
REQUIRED_FIELDS = ("input", "output", "primitives", "quality", "complexity", "task_id")
ARRAY_NAMES = (
    "cells", "grid_offset", "grid_shape", "pair_offset", "program_ids", "program_offset",
    "quality", "complexity", "task_id_bytes", "task_id_offset", "split_key",
)


# --------------------------------------------------------------------------- packed data


@dataclass
class ArcData:
    """Packed records. Record ``r`` (0 <= r < n_records) has pairs
    ``pair_offset[r] .. pair_offset[r+1]``; pair ``p`` has grids ``2p`` (input) and ``2p+1``
    (output); grid ``g`` has shape ``grid_shape[g]`` and its cells nibble-packed in
    ``cells[grid_offset[g]:grid_offset[g+1]]`` (high nibble first, padded to whole bytes).
    ``index`` lists the records kept by the quality filter and the cap, in file order.
    """

    cells: np.ndarray  # (n_bytes,) uint8, two cells a byte
    grid_offset: np.ndarray  # (n_grids + 1,) int64, byte offsets into cells
    grid_shape: np.ndarray  # (n_grids, 2) uint8, (rows, cols)
    pair_offset: np.ndarray  # (n_records + 1,) int64
    program_ids: np.ndarray  # (n_steps,) uint8, indices into PRIMITIVES
    program_offset: np.ndarray  # (n_records + 1,) int64
    quality: np.ndarray  # (n_records,) float64
    complexity: np.ndarray  # (n_records,) float64
    task_id_bytes: np.ndarray  # (n_chars,) uint8, utf-8
    task_id_offset: np.ndarray  # (n_records + 1,) int64
    split_key: np.ndarray  # (n_records,) uint64, hash of task_id: the train/val split
    index: np.ndarray  # (n_kept,) int64, the records this load keeps
    stats: dict[str, Any]

    @property
    def n_records(self) -> int:
        return len(self.quality)

    def __len__(self) -> int:
        return len(self.index)

    def grid(self, g: int) -> np.ndarray:
        """Grid ``g`` as a (rows, cols) uint8 array."""
        h, w = int(self.grid_shape[g, 0]), int(self.grid_shape[g, 1])
        packed = self.cells[self.grid_offset[g] : self.grid_offset[g + 1]]
        flat = np.empty(2 * len(packed), dtype=np.uint8)
        flat[0::2] = packed >> 4
        flat[1::2] = packed & 0x0F
        return flat[: h * w].reshape(h, w)

    def pairs(self, r: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """The (input, output) grids of record ``r`` (an index into all records)."""
        return [(self.grid(2 * p), self.grid(2 * p + 1)) for p in range(self.pair_offset[r], self.pair_offset[r + 1])]

    def program(self, r: int) -> list[str]:
        names = list(PRIMITIVES)
        return [names[k] for k in self.program_ids[self.program_offset[r] : self.program_offset[r + 1]]]

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


def split_key(task_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(task_id.encode("utf-8"), digest_size=8).digest(), "little")


# --------------------------------------------------------------------------- validation


class BadRecord(Exception):
    """One malformed record: ``field`` and ``problem`` go into the user's message."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"field {field!r}: {problem}")


def _check_grid(field: str, grid: Any) -> tuple[int, int]:
    """Full check of one grid (the slow path: used to explain a record the fast path refused)."""
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


def _grid_fields(rec: dict[str, Any]) -> list[tuple[str, Any]]:
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


def _check_fields(rec: Any) -> None:
    if not isinstance(rec, dict):
        raise BadRecord("(record)", f"expected a JSON object, got {type(rec).__name__}")
    for name in REQUIRED_FIELDS:
        if name not in rec:
            raise BadRecord(name, "missing")
    programs = rec["primitives"]
    if not isinstance(programs, list):
        raise BadRecord("primitives", "expected a list of primitive names")
    for name in programs:
        if not isinstance(name, str) or name not in PRIMITIVE_INDEX:
            raise BadRecord("primitives", f"unknown primitive {name!r} (known: {', '.join(PRIMITIVES)})")
    if len(programs) > 255:
        raise BadRecord("primitives", f"{len(programs)} steps, at most 255")
    _check_unit("quality", rec["quality"])
    _check_unit("complexity", rec["complexity"])
    if not isinstance(rec["task_id"], str):
        raise BadRecord("task_id", f"expected a string, got {rec['task_id']!r}")


def explain(rec: Any) -> str:
    """Why a record is malformed (the full, slow check); "" if it is fine."""
    try:
        _check_fields(rec)
        for field, grid in _grid_fields(rec):
            _check_grid(field, grid)
    except BadRecord as e:
        return str(e)
    return ""


# --------------------------------------------------------------------------- record packing


class _Packer:
    """Accumulates validated records of one block; Python-side buffers, turned into numpy
    arrays by :meth:`arrays` (then the block's cells are range-checked and nibble-packed)."""

    def __init__(self) -> None:
        self.cells = bytearray()  # one byte a cell, each grid padded to an even count
        self.grid_cells = []  # padded cell count of each grid
        self.shapes = bytearray()  # rows, cols of each grid
        self.pair_counts = []
        self.program = bytearray()
        self.program_counts = []
        self.quality = []
        self.complexity = []
        self.task_ids = []
        self.sources = []  # (record number, line) of each record, for late errors

    def add(self, rec: Any, source: tuple[int, int]) -> None:
        """Pack one record; raises BadRecord (or TypeError/ValueError/KeyError, explained by
        the caller with :func:`explain`) without changing any buffer."""
        _check_fields(rec)
        grids = _grid_fields(rec)
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
        self.cells += cells
        self.grid_cells += counts
        self.shapes += shapes
        self.pair_counts.append(len(grids) // 2)
        self.program += bytes(PRIMITIVE_INDEX[name] for name in rec["primitives"])
        self.program_counts.append(len(rec["primitives"]))
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
        bad = []
        if cells.size and cells.max() >= N_COLOURS:
            grid_start = np.concatenate([[0], np.cumsum(grid_cells)])
            bad_grids = np.unique(np.searchsorted(grid_start, np.flatnonzero(cells >= N_COLOURS), side="right") - 1)
            grid_record = np.repeat(np.arange(len(pair_counts)), 2 * pair_counts)
            for r in np.unique(grid_record[bad_grids]):
                g = int(bad_grids[grid_record[bad_grids] == r][0])
                first_grid = int(np.searchsorted(grid_record, r))
                field = _field_name(g - first_grid, int(pair_counts[r]))
                value = int(cells[grid_start[g] : grid_start[g + 1]].max())
                bad.append((*self.sources[r], f"field {field!r}: colour {value} outside 0..9"))
            keep = np.ones(len(pair_counts), dtype=bool)
            keep[[b for b in np.unique(grid_record[bad_grids])]] = False
            keep_grid = keep[grid_record]
            cells = cells[np.repeat(keep_grid, grid_cells)]
            grid_cells = grid_cells[keep_grid]
            shapes = np.frombuffer(bytes(self.shapes), dtype=np.uint8).reshape(-1, 2)[keep_grid]
        else:
            keep = np.ones(len(pair_counts), dtype=bool)
            shapes = np.frombuffer(bytes(self.shapes), dtype=np.uint8).reshape(-1, 2)
        program_counts = np.asarray(self.program_counts, dtype=np.int64)
        program = np.frombuffer(bytes(self.program), dtype=np.uint8)[np.repeat(keep, program_counts)]
        ids = [t for t, k in zip(self.task_ids, keep) if k]
        encoded = [t.encode("utf-8") for t in ids]
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
        }
        return out, bad


def _field_name(k: int, n_pairs: int) -> str:
    """Name of the k-th stored grid of a record (pairs[j].input / .output)."""
    return f"pairs[{k // 2}].{'output' if k % 2 else 'input'}"


# --------------------------------------------------------------------------- scanning

# byte class table for the scanner: 1 quote, 2 open, 3 close, 4 backslash
_CLASS = np.zeros(256, dtype=np.int8)
_CLASS[ord('"')] = 1
_CLASS[ord("{")] = _CLASS[ord("[")] = 2
_CLASS[ord("}")] = _CLASS[ord("]")] = 3
_CLASS[ord("\\")] = 4


class _ArrayScanner:
    """Finds the byte spans of the top-level elements of a JSON array read in blocks.

    State carried across blocks: bracket depth, whether we are inside a string, and the
    number of backslashes ending the previous block (an escaped quote may straddle blocks).
    """

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self.trailing_backslashes = 0
        self.element_start = -1  # absolute offset of the open element, -1 if none
        self.array_open = -1  # absolute offset just after the opening '['
        self.array_close = -1  # absolute offset of the closing ']'

    def feed(self, block: bytes, base: int) -> list[tuple[int, int]]:
        """Spans (start, end exclusive, absolute offsets) of depth-1 objects closed in block."""
        arr = np.frombuffer(block, dtype=np.uint8)
        cls = _CLASS[arr]
        pos = np.flatnonzero(cls)
        kinds = cls[pos]
        # quotes escaped by an odd run of backslashes are not string delimiters
        quote_pos = pos[kinds == 1]
        real = np.ones(len(quote_pos), dtype=bool)
        suspect = np.flatnonzero((quote_pos > 0) & (arr[np.maximum(quote_pos - 1, 0)] == 92))
        if len(quote_pos) and quote_pos[0] == 0 and self.trailing_backslashes % 2:
            real[0] = False
        for k in suspect:
            p, run = int(quote_pos[k]) - 1, 0
            while p >= 0 and arr[p] == 92:
                run, p = run + 1, p - 1
            if p < 0:
                run += self.trailing_backslashes
            real[k] = run % 2 == 0
        tail = len(block) - len(block.rstrip(b"\\"))
        self.trailing_backslashes = self.trailing_backslashes + tail if tail == len(block) else tail
        # inside-string flag at each event: parity of real quotes strictly before it
        is_quote = np.zeros(len(pos), dtype=np.int64)
        is_quote[np.flatnonzero(kinds == 1)[real]] = 1
        before = np.cumsum(is_quote) - is_quote + int(self.in_string)
        outside = (before % 2 == 0) & ((kinds == 2) | (kinds == 3))
        if len(is_quote):
            self.in_string = bool((int(self.in_string) + int(is_quote.sum())) % 2)
        bpos = pos[outside]
        step = np.where(kinds[outside] == 2, 1, -1)
        depth_after = self.depth + np.cumsum(step)
        spans = []
        # depth 0->1 opens the array, 1->2 opens an element, 2->1 closes it, 1->0 closes the array
        for p, s, d in zip(bpos[(depth_after <= 2)].tolist(), step[depth_after <= 2].tolist(), depth_after[depth_after <= 2].tolist()):
            if s == 1 and d == 1:
                if self.array_open >= 0:
                    raise BadRecord("(file)", "a second top-level value after the JSON array")
                self.array_open = base + p + 1
            elif s == 1 and d == 2:
                self.element_start = base + p
            elif s == -1 and d == 1:
                spans.append((self.element_start, base + p + 1))
                self.element_start = -1
            elif s == -1 and d == 0:
                self.array_close = base + p
        if len(depth_after):
            if int(depth_after.min()) < 0:
                raise BadRecord("(file)", "more closing than opening brackets")
            self.depth = int(depth_after[-1])
        return spans


# --------------------------------------------------------------------------- cold load

# (record number, line, raw JSON bytes, problem found while delimiting it or "")
RawRecord = tuple[int, int, bytes, str]


def _iter_raw(path: Path, hasher: Any) -> Iterator[RawRecord]:
    """The records of a JSON array or JSON Lines file, hashing every byte read."""
    with path.open("rb") as f:
        head = f.read(BLOCK_BYTES)
        first = head.lstrip()[:1]
        if first == b"[":
            yield from _iter_array(f, head, hasher)
        elif first == b"{" or not first:
            yield from _iter_lines(f, head, hasher)
        else:
            raise DataError(f"{path}: not a JSON array or JSON Lines file (it starts with {first!r})")


def _iter_lines(f: Any, block: bytes, hasher: Any) -> Iterator[RawRecord]:
    block_bytes = len(block) or 1
    pending, line_no, record = b"", 0, 0
    while block:
        hasher.update(block)
        lines = (pending + block).split(b"\n")
        pending = lines.pop()  # the last line may continue in the next block
        for raw in lines:
            line_no += 1
            if raw.strip():
                yield record, line_no, raw, ""
                record += 1
        block = f.read(block_bytes)
    if pending.strip():
        yield record, line_no + 1, pending, ""


def _iter_array(f: Any, block: bytes, hasher: Any) -> Iterator[RawRecord]:
    block_bytes = len(block)
    scanner = _ArrayScanner()
    data, base = b"", 0  # data holds the file's bytes from absolute offset base on
    block_base = 0
    cursor, cursor_line = 0, 1  # an absolute offset and the line it is on
    record, last_end = 0, -1
    try:
        while block:
            hasher.update(block)
            data += block
            for start, end in scanner.feed(block, block_base):
                cursor_line += data.count(b"\n", cursor - base, start - base)
                cursor = start
                gap_from = last_end if last_end >= 0 else scanner.array_open
                gap = data[gap_from - base : start - base].strip()
                expected = b"," if last_end >= 0 else b""
                problem = (
                    "" if gap == expected
                    else "bad JSON: missing ',' before the record" if not gap
                    else f"bad JSON before the record: {gap[:30].decode('utf-8', 'replace')!r}"
                )
                yield record, cursor_line, data[start - base : end - base], problem
                record, last_end = record + 1, end
            # keep what later checks still read: the gap after the last record (or after the
            # opening '[') and the record still open at the end of this block
            needed = [o for o in (last_end if last_end >= 0 else scanner.array_open, scanner.element_start) if o >= 0]
            keep_from = max(base, min(needed)) if needed else base
            cursor_line += data.count(b"\n", cursor - base, keep_from - base)
            cursor = keep_from
            data, base = data[keep_from - base :], keep_from
            block_base += len(block)
            block = f.read(block_bytes)
    except BadRecord as e:
        yield record, cursor_line, b"", f"bad JSON: {str(e).split(': ', 1)[1]}"
        return
    if scanner.array_close < 0:
        yield record, cursor_line, b"", "bad JSON: the array is not closed (truncated file or unbalanced brackets)"
    elif data[max(last_end, scanner.array_open) - base : scanner.array_close - base].strip():
        yield record, cursor_line, b"", "bad JSON: a value that is not a record object, or a trailing comma"


@dataclass
class _Parsed:
    arrays: dict[str, np.ndarray]
    bad: list[tuple[int, int, str]]  # (record, line, problem), sorted
    n_bad: int
    n_read: int
    key: str


def _new_hasher() -> Any:
    hasher = hashlib.blake2b(digest_size=16)
    hasher.update(f"arc-guide loader v{LOADER_VERSION}: {','.join(PRIMITIVES)}\n".encode())
    return hasher


def _parse_file(path: Path) -> _Parsed:
    """Cold load: read, validate and pack every record (bounded memory)."""
    hasher = _new_hasher()
    blocks, bad, n_bad, n_read = [], [], 0, 0
    packer = _Packer()

    def flush() -> None:
        nonlocal packer, n_bad
        if packer.quality or packer.sources:
            arrays, late_bad = packer.arrays()
            blocks.append(arrays)
            n_bad += len(late_bad)
            bad.extend(late_bad)
        packer = _Packer()

    for record, line, raw, problem in _iter_raw(path, hasher):
        n_read += 1
        if not problem:
            try:
                rec = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                problem = f"bad JSON: {e.msg} (character {e.pos} of the record)"
        if not problem:
            # JSON true/false would pass as 1/0 in the fast path: check those records fully
            problem = explain(rec) if (b"true" in raw or b"false" in raw) else ""
        if not problem:
            try:
                packer.add(rec, (record, line))
            except (BadRecord, TypeError, ValueError, KeyError, IndexError, AttributeError):
                problem = explain(rec) or "malformed record"
        if problem:
            n_bad += 1
            if len(bad) < 4 * MAX_REPORTED:
                bad.append((record, line, problem))
        if len(packer.quality) >= 8192:
            flush()
    flush()
    if n_read == 0:
        raise DataError(f"{path}: the dataset holds no records")
    return _Parsed(_concat(blocks), sorted(bad)[:MAX_REPORTED], n_bad, n_read, hasher.hexdigest())


def _offsets(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _concat(blocks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    def cat(name: str, dtype: Any, shape: tuple = (0,)) -> np.ndarray:
        parts = [b[name] for b in blocks]
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(shape, dtype)

    return {
        "cells": cat("cells", np.uint8),
        "grid_offset": _offsets(cat("grid_bytes", np.int64)),
        "grid_shape": cat("grid_shape", np.uint8, (0, 2)),
        "pair_offset": _offsets(cat("pair_counts", np.int64)),
        "program_ids": cat("program_ids", np.uint8),
        "program_offset": _offsets(cat("program_counts", np.int64)),
        "quality": cat("quality", np.float64),
        "complexity": cat("complexity", np.float64),
        "task_id_bytes": cat("task_id_bytes", np.uint8),
        "task_id_offset": _offsets(cat("task_id_counts", np.int64)),
        "split_key": cat("split_key", np.uint64),
    }


# --------------------------------------------------------------------------- cache


def _cache_root(path: Path) -> Path:
    """<dataset>.arc-cache next to the dataset, or a per-path folder in the user cache."""
    beside = path.parent / f"{path.name}.arc-cache"
    try:
        beside.mkdir(exist_ok=True)
        if os.access(beside, os.W_OK):
            return beside
    except OSError:
        pass
    tag = hashlib.blake2b(str(path.resolve()).encode(), digest_size=8).hexdigest()
    return cache_dir("arc_guide", "packed", f"{path.name}-{tag}")


def _stat_tag(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def _read_index(root: Path) -> dict[str, str]:
    try:
        return json.loads((root / "index.json").read_text())
    except (OSError, ValueError):
        return {}


def _open_cached(folder: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """Memory-map a complete cache folder; None if it is missing or incomplete."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in ARRAY_NAMES}
    except (OSError, ValueError):
        return None
    if meta.get("version") != LOADER_VERSION or meta.get("primitives") != list(PRIMITIVES):
        return None
    return arrays, meta


def _write_cache(root: Path, key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any], stat_tag: str) -> None:
    """Write folder root/key atomically (temp folder + rename), point the index at it and
    remove older versions of this file's cache."""
    final = root / key
    if not final.exists():
        tmp = root / f".tmp-{key}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name in ARRAY_NAMES:
            with atomic_write(tmp / f"{name}.npy", "wb") as f:
                np.save(f, np.ascontiguousarray(arrays[name]))
        atomic.write_json(tmp / "meta.json", meta, indent=None)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first: its copy is identical
            shutil.rmtree(tmp, ignore_errors=True)
    atomic.write_json(root / "index.json", {stat_tag: key}, indent=None)
    for old in root.iterdir():
        if old.is_dir() and old.name != key and not old.name.startswith(".tmp-"):
            shutil.rmtree(old, ignore_errors=True)


def load_packed(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """All valid records of a dataset file as packed arrays (memory-mapped from the cache
    when there is one) and the load's metadata (counts, malformed records, cache state)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"dataset {path} does not exist (pass an existing JSON/JSONL file to --dataset, "
            "or leave data.path empty to use the built-in dataset)"
        )
    root = _cache_root(path)
    tag = _stat_tag(path)
    key = _read_index(root).get(tag)
    cached = _open_cached(root / key) if key else None
    if cached is not None:
        arrays, meta = cached
        return arrays, {**meta, "cache": "hit", "cache_dir": str(root / key)}
    parsed = _parse_file(path)
    meta = {
        "version": LOADER_VERSION, "primitives": list(PRIMITIVES), "source": str(path),
        "n_read": parsed.n_read, "n_bad": parsed.n_bad, "bad": parsed.bad,
    }
    try:
        _write_cache(root, parsed.key, parsed.arrays, meta, tag)
    except OSError as e:
        print(f"arc-guide data: could not write the cache in {root} ({e}); the next load parses again", file=sys.stderr)
        return parsed.arrays, {**meta, "cache": "none"}
    folder = root / parsed.key
    del parsed  # free the in-memory copy: the memory map is what stays resident
    reopened = _open_cached(folder)
    if reopened is None:
        raise OSError(f"the cache just written in {folder} cannot be read back")
    return reopened[0], {**meta, "cache": "written", "cache_dir": str(folder)}


# --------------------------------------------------------------------------- public entry


def bad_records_message(path: str | Path, meta: dict[str, Any]) -> str:
    n_bad = meta["n_bad"]
    shown = meta["bad"][:MAX_REPORTED]
    items = "; ".join(f"record {r}" + (f" (line {line})" if line else "") + f": {msg}" for r, line, msg in shown)
    head = f"{path}: {n_bad} malformed record{'s' if n_bad != 1 else ''}"
    if n_bad > len(shown):
        head += f" (the first {len(shown)} listed)"
    return f"{head}: {items}. Fix them, or set data.on_bad_record = \"skip\" to train without them"


def load_dataset(
    path: str | Path,
    quality_threshold: float = 0.0,
    max_samples: int | None = None,
    seed: int = 0,
    on_bad_record: str = "error",
    verbose: bool = True,
) -> ArcData:
    """Load (and cache) a dataset, keep records with quality >= quality_threshold, then a
    seeded random subset of at most max_samples of them (kept in file order).

    Malformed records raise DataError (exit 2) unless on_bad_record == "skip". Prints how
    many records were read, rejected, kept by quality and kept by the cap.
    """
    if on_bad_record not in ("error", "skip"):
        raise DataError(f"data.on_bad_record must be 'error' or 'skip', got {on_bad_record!r}")
    arrays, meta = load_packed(path)
    if meta["n_bad"] and on_bad_record == "error":
        raise DataError(bad_records_message(path, meta))
    quality = arrays["quality"]
    kept_quality = np.flatnonzero(quality >= quality_threshold)
    index = kept_quality
    if max_samples and max_samples < len(index):  # None or 0: no cap
        rng = np.random.default_rng(seed)
        index = np.sort(rng.choice(index, size=max_samples, replace=False))
    stats = {
        "read": meta["n_read"], "rejected": meta["n_bad"], "valid": len(quality),
        "kept_by_quality": len(kept_quality), "kept_by_cap": len(index), "cache": meta["cache"],
    }
    if verbose:
        cap = f"{len(index)} kept by max_samples={max_samples} (seed {seed})" if max_samples else "no max_samples cap"
        print(
            f"arc-guide data: {path}: read {meta['n_read']} records ({meta['cache'].replace('hit', 'from cache')}), "
            f"rejected {meta['n_bad']} malformed, kept {len(kept_quality)} with quality >= {quality_threshold}, {cap}",
            flush=True,
        )
    if len(index) == 0:
        raise DataError(
            f"{path}: no record has quality >= {quality_threshold} (of {len(quality)} valid records); "
            "lower --quality-threshold"
        )
    return ArcData(**{name: arrays[name] for name in ARRAY_NAMES}, index=index.astype(np.int64), stats=stats)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    """``python -m tasks.arc_guide.dataset FILE``: check and pack a dataset, print its counts."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tasks.arc_guide.dataset", description=main.__doc__)
    parser.add_argument("path", help="dataset file (JSON array or JSON Lines)")
    parser.add_argument("--quality-threshold", type=float, default=0.0)
    parser.add_argument("--max-samples", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--on-bad-record", choices=("error", "skip"), default="error")
    args = parser.parse_args(argv)
    data = load_dataset(args.path, args.quality_threshold, args.max_samples, args.seed, args.on_bad_record)
    print(json.dumps({**data.stats, "packed_bytes": data.nbytes()}))


if __name__ == "__main__":
    main()

"""Load an ARC guide dataset (JSON array or JSON Lines) into packed numpy arrays.

``load_dataset(path, quality_threshold=0.0, max_samples=None, seed=0, vocabulary=None)``
returns a :class:`tasks.arc_guide.packed.ArcData`. A cold load reads the file in blocks
(tasks.arc_guide.json_stream), parses each record with orjson, validates it
(tasks.arc_guide.records) and packs it (tasks.arc_guide.packed); peak memory stays near one
block plus the packed result, whatever the file size. The packed arrays are cached next to
the dataset and memory-mapped on later loads (tasks.arc_guide.pack_cache).

The vocabulary (the model's outputs, in order) is ``vocabulary`` when given, else the
file's own primitive names, sorted. A record naming a primitive outside a given vocabulary
is a bad record; those are reported once per unknown name (its record count and first
record), with the valid names listed once.

Malformed records (bad JSON, a missing field, ragged rows, colours outside 0..9, sides
outside 1..30, a primitive that is not a name, quality or complexity outside [0, 1]) stop
the load with a DataError naming each record (index and line), field and problem, up to
the first 10; ``on_bad_record="skip"`` drops them instead and reports the count.
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import orjson

from core.errors import DataError, exit_on_user_error
from tasks.arc_guide import json_stream
from tasks.arc_guide.pack_cache import LOADER_VERSION, cache_root, cached_key, open_cached, stat_tag, write_cache
from tasks.arc_guide.packed import ARRAY_NAMES, ArcData, RecordPacker, concat
from tasks.arc_guide.packed_relations import pack_relations
from tasks.arc_guide.records import BadRecord, explain

MAX_REPORTED = 10  # malformed records listed in the error message
RECORDS_PER_BLOCK = 8192  # records packed into numpy arrays at a time


@dataclass
class _Parsed:
    arrays: dict[str, np.ndarray]
    names: list[str]  # the file's primitive names, sorted
    bad: list[tuple[int, int, str]]  # (record, line, problem), sorted
    n_bad: int
    n_read: int
    key: str


def _parse_file(path: Path) -> _Parsed:
    """Cold load: read, validate and pack every record (bounded memory)."""
    hasher = hashlib.blake2b(digest_size=16)
    hasher.update(f"arc-guide loader v{LOADER_VERSION}\n".encode())
    blocks, bad, n_bad, n_read = [], [], 0, 0
    names: dict[str, int] = {}
    packer = RecordPacker(names)

    def flush() -> None:
        nonlocal packer, n_bad
        if len(packer):
            arrays, late_bad = packer.arrays()
            blocks.append(arrays)
            n_bad += len(late_bad)
            bad.extend(late_bad)
        packer = RecordPacker(names)

    for record, line, raw, problem in json_stream.iter_raw(path, hasher):
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
            except (BadRecord, TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
                problem = explain(rec) or (str(e) if isinstance(e, BadRecord) else "malformed record")
        if problem:
            n_bad += 1
            if len(bad) < 4 * MAX_REPORTED:
                bad.append((record, line, problem))
        if len(packer) >= RECORDS_PER_BLOCK:
            flush()
    flush()
    if n_read == 0:
        raise DataError(f"{path}: the dataset holds no records")
    arrays, file_names = concat(blocks, names)
    arrays["relations"] = pack_relations(arrays["cells"], arrays["grid_offset"], arrays["grid_shape"])
    hasher.update("\n".join(file_names).encode("utf-8"))  # the names the program ids index
    return _Parsed(arrays, file_names, sorted(bad)[:MAX_REPORTED], n_bad, n_read, hasher.hexdigest())


def load_packed(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """All valid records of a dataset file as packed arrays (memory-mapped from the cache
    when there is one) and the load's metadata: ``names`` (the file's primitive names,
    sorted), counts, malformed records, cache state."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"dataset {path} does not exist (pass an existing JSON/JSONL file to --dataset, "
            "or leave data.path empty to use the built-in dataset)"
        )
    root = cache_root(path)
    tag = stat_tag(path)
    key = cached_key(root, tag)
    cached = open_cached(root / key) if key else None
    if cached is not None:
        arrays, meta = cached
        return arrays, {**meta, "cache": "hit", "cache_dir": str(root / key)}
    parsed = _parse_file(path)
    meta = {
        "version": LOADER_VERSION, "names": parsed.names, "source": str(path),
        "n_read": parsed.n_read, "n_bad": parsed.n_bad, "bad": parsed.bad,
    }
    try:
        write_cache(root, parsed.key, parsed.arrays, meta, tag)
    except OSError as e:
        print(f"arc-guide data: could not write the cache in {root} ({e}); the next load parses again", file=sys.stderr)
        return parsed.arrays, {**meta, "cache": "none"}
    folder = root / parsed.key
    del parsed  # free the in-memory copy: the memory map is what stays resident
    reopened = open_cached(folder)
    if reopened is None:
        raise OSError(f"the cache just written in {folder} cannot be read back")
    return reopened[0], {**meta, "cache": "written", "cache_dir": str(folder)}


def file_vocabulary(path: str | Path) -> list[str]:
    """The primitive names a dataset file's valid records use, sorted (packs it if needed)."""
    return list(load_packed(path)[1]["names"])


# --------------------------------------------------------------------------- messages


def bad_records_message(path: str | Path, meta: dict[str, Any]) -> str:
    n_bad = meta["n_bad"]
    shown = meta["bad"][:MAX_REPORTED]
    items = "; ".join(f"record {r}" + (f" (line {line})" if line else "") + f": {msg}" for r, line, msg in shown)
    head = f"{path}: {n_bad} malformed record{'s' if n_bad != 1 else ''}"
    if n_bad > len(shown):
        head += f" (the first {len(shown)} listed)"
    return f"{head}: {items}. Fix them, or set data.on_bad_record = \"skip\" to train without them"


@dataclass
class UnknownNames:
    """Records whose programs use names outside the vocabulary, grouped by name."""

    records: np.ndarray  # (n_records,) bool
    by_name: list[tuple[str, int, int, int]]  # (name, records using it, first record, its line)

    def message(self, path: str | Path, vocabulary: Sequence[str]) -> str:
        n = int(self.records.sum())
        lines = [f"{path}: {len(self.by_name)} primitive name{'s' if len(self.by_name) != 1 else ''} not in "
                 f"data.primitives (the model's vocabulary), in {n} record{'s' if n != 1 else ''}:"]
        lines += [f"  {name!r}: {count} record{'s' if count != 1 else ''}, first record {first} (line {line})"
                  for name, count, first, line in self.by_name]
        lines.append(f"  valid names ({len(vocabulary)}): {', '.join(vocabulary)}")
        lines.append("Add the names to data.primitives (or leave it unset to take the dataset's names), fix the "
                     "records, or set data.on_bad_record = \"skip\" to train without them")
        return "\n".join(lines)


def _unknown_names(arrays: dict[str, np.ndarray], names: list[str], label_of: np.ndarray) -> UnknownNames:
    n_records = len(arrays["quality"])
    unknown_ids = np.flatnonzero(label_of < 0)
    if len(unknown_ids) == 0:
        return UnknownNames(np.zeros(n_records, dtype=bool), [])
    ids = np.asarray(arrays["program_ids"])
    record_of_step = np.repeat(np.arange(n_records), np.diff(np.asarray(arrays["program_offset"])))
    by_name = []
    records = np.zeros(n_records, dtype=bool)
    for k in unknown_ids:
        using = np.unique(record_of_step[ids == k])
        records[using] = True
        first = int(using[0])
        by_name.append((names[k], len(using), int(arrays["source_record"][first]), int(arrays["source_line"][first])))
    by_name.sort(key=lambda item: item[2])  # in the order they first occur in the file
    return UnknownNames(records, by_name)


# --------------------------------------------------------------------------- public entry


def load_dataset(
    path: str | Path,
    quality_threshold: float = 0.0,
    max_samples: int | None = None,
    seed: int = 0,
    on_bad_record: str = "error",
    verbose: bool = True,
    vocabulary: Sequence[str] | None = None,
) -> ArcData:
    """Load (and cache) a dataset, keep records with quality >= quality_threshold, then a
    seeded random subset of at most max_samples of them (kept in file order).

    ``vocabulary``: the model's outputs in order (``data.primitives``); None = the file's
    own names, sorted. Malformed records and records with names outside the vocabulary raise
    DataError (exit 2) unless on_bad_record == "skip". Prints how many records were read,
    rejected, kept by quality and kept by the cap.
    """
    if on_bad_record not in ("error", "skip"):
        raise DataError(f"data.on_bad_record must be 'error' or 'skip', got {on_bad_record!r}")
    arrays, meta = load_packed(path)
    names = list(meta["names"])
    vocab = list(vocabulary) if vocabulary is not None else names
    position = {name: k for k, name in enumerate(vocab)}
    label_of = np.asarray([position.get(name, -1) for name in names], dtype=np.int64)
    unknown = _unknown_names(arrays, names, label_of)
    if on_bad_record == "error" and (meta["n_bad"] or unknown.by_name):
        parts = ([bad_records_message(path, meta)] if meta["n_bad"] else []) + \
            ([unknown.message(path, vocab)] if unknown.by_name else [])
        raise DataError("\n".join(parts))
    quality = arrays["quality"]
    kept_quality = np.flatnonzero((quality >= quality_threshold) & ~unknown.records)
    index = kept_quality
    if max_samples and max_samples < len(index):  # None or 0: no cap
        rng = np.random.default_rng(seed)
        index = np.sort(rng.choice(index, size=max_samples, replace=False))
    rejected = meta["n_bad"] + int(unknown.records.sum())
    stats = {
        "read": meta["n_read"], "rejected": rejected, "valid": len(quality) - int(unknown.records.sum()),
        "kept_by_quality": len(kept_quality), "kept_by_cap": len(index), "cache": meta["cache"],
    }
    if verbose:
        cap = f"{len(index)} kept by max_samples={max_samples} (seed {seed})" if max_samples else "no max_samples cap"
        print(
            f"arc-guide data: {path}: read {meta['n_read']} records ({meta['cache'].replace('hit', 'from cache')}), "
            f"rejected {rejected} malformed, kept {len(kept_quality)} with quality >= {quality_threshold}, {cap}; "
            f"{len(vocab)} primitives",
            flush=True,
        )
    if len(index) == 0:
        raise DataError(
            f"{path}: no record has quality >= {quality_threshold} (of {stats['valid']} valid records); "
            "lower --quality-threshold"
        )
    return ArcData(**{name: arrays[name] for name in ARRAY_NAMES}, index=index.astype(np.int64), stats=stats,
                   names=names, vocabulary=vocab, label_of=label_of)


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
    print(json.dumps({**data.stats, "packed_bytes": data.nbytes(), "primitives": data.vocabulary}))


if __name__ == "__main__":
    main()

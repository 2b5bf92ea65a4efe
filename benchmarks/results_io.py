"""One place that builds a benchmark's record: the figures plus the command, commit and machine.

Every benchmark prints its table; it writes files only when asked with ``--out`` (see
:func:`add_out_argument`): ``<stem>.json`` (``{"provenance": {...}, **figures}``) and
``<stem>.md``, which starts with the title, a line ``Command: `...` `` and a line naming the
commit and the machine, then the table. ``provenance`` holds:

- ``command``: the command line as a user types it from the repo root,
  ``python -m benchmarks.<name> <args...>`` with every argument given (``--set``
  overrides included), paths rewritten relative to the repo (:func:`relative`);
- ``arguments``: every option's value after defaults, paths rewritten the same way;
- ``commit``: ``git rev-parse --short HEAD``, plus ``-dirty`` when ``git status`` lists
  changes (untracked files included) outside ``benchmarks/results/`` (records written
  earlier in the same batch of runs do not change the code that ran); ``unknown`` outside
  a git checkout of this repo;
- ``machine``: platform, Python and torch versions, physical cores
  (``core.cpus.physical_cores``), logical CPUs, total RAM, CPU model, CUDA device or None;
- ``date``: UTC, ISO 8601, when the run started; ``load_1min``: the load average then (the
  machine may be shared: compare figures within one record).

No absolute path outside the repo ever lands in a record: such paths become ``<tmp>/NAME``,
``~/...`` or ``<elsewhere>/NAME``, or a description the caller gives.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from core import atomic, procfs

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"  # where committed records live (written only via --out)


# --------------------------------------------------------------------------- paths


def _absolute(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    return Path(os.path.realpath(p if p.is_absolute() else Path.cwd() / p))


def relative(path: str | os.PathLike, outside: str | None = None) -> str:
    """``path`` as it may appear in a record: relative to the repo root (POSIX separators)
    when inside it; otherwise ``outside`` when given, else ``~/...`` under the home folder,
    ``<tmp>/NAME`` under the temporary folder, ``<elsewhere>/NAME`` anywhere else."""
    p = _absolute(path)
    try:
        return p.relative_to(REPO).as_posix() or "."
    except ValueError:
        pass
    if outside is not None:
        return outside
    tmp = Path(os.path.realpath(tempfile.gettempdir()))
    if p == tmp:
        return "<tmp>"
    if tmp in p.parents:
        return f"<tmp>/{p.name}"
    home = Path(os.path.realpath(Path.home()))
    if home != Path("/") and home in p.parents:
        return "~/" + p.relative_to(home).as_posix()
    return f"<elsewhere>/{p.name}"


def _looks_like_path(value: str) -> bool:
    """Absolute or ``~`` paths always; a relative one only when typed from another folder than
    the repo root and it names something there (or a file to be made in an existing folder)."""
    if os.path.isabs(value) or value.startswith("~"):
        return True
    if not value or value.startswith("-") or _absolute(Path.cwd()) == REPO:
        return False
    candidate = Path.cwd() / value
    return candidate.exists() or ("/" in value and ":" not in value and candidate.parent.is_dir())


def _rewrite(value: str) -> str:
    folder = value.endswith("/") and len(value) > 1  # a trailing slash means "a folder" to --out
    return relative(value) + ("/" if folder else "")


def _token(token: str) -> str:
    """One command-line word with a path in it (``PATH``, ``--opt=PATH``, ``key=PATH``) rewritten."""
    if _looks_like_path(token):
        return _rewrite(token)
    head, eq, value = token.partition("=")
    if eq and _looks_like_path(value):
        return f"{head}={_rewrite(value)}"
    return token


def command(name: str, argv: Sequence[str]) -> str:
    """``python -m benchmarks.<name> <argv>`` as typed from the repo root (paths relative)."""
    return shlex.join(["python", "-m", f"benchmarks.{name}", *(_token(str(a)) for a in argv)])


def _plain(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return relative(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, str) and _looks_like_path(value):
        return _rewrite(value)
    return value


# --------------------------------------------------------------------------- provenance


def commit() -> str:
    """Short HEAD hash of this repo, ``-dirty`` with uncommitted changes, ``unknown`` without git."""
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30)
        if out.returncode:
            raise OSError(out.stderr)
        return out.stdout.strip()

    try:
        if _absolute(git("rev-parse", "--show-toplevel")) != REPO:  # an installed copy inside another repo
            return "unknown"
        head = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--", ".", ":(exclude)benchmarks/results")
        return head + ("-dirty" if changed else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> dict[str, Any]:
    import torch

    from core.cpus import physical_cores

    ram = procfs.kib_field_bytes("/proc/meminfo", "MemTotal") or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "physical_cores": physical_cores(),
        "logical_cpus": os.cpu_count(),
        "ram_bytes": ram,
        "cpu": procfs.field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def given_argv(argv: Sequence[str] | None) -> list[str]:
    """The arguments a benchmark's ``main(argv)`` got: ``argv``, or the command line's."""
    return list(sys.argv[1:] if argv is None else argv)


def provenance(name: str, argv: Sequence[str], args: argparse.Namespace | None = None) -> dict[str, Any]:
    """Call at the start of a run (the commit and the date are the code and time that ran)."""
    record: dict[str, Any] = {"command": command(name, argv)}
    if args is not None:
        record["arguments"] = {k: _plain(v) for k, v in vars(args).items() if not k.startswith("_")}
    record.update({
        "commit": commit(),
        "machine": machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    })
    return record


def machine_line(prov: dict[str, Any]) -> str:
    m = prov["machine"]
    return (f"Commit {prov['commit']}, {prov['date']}; {m['cpu']}, {m['physical_cores']} physical cores "
            f"({m['logical_cpus']} logical), {m['ram_bytes'] / 2**30:.1f} GiB RAM, {m['platform']}, "
            f"Python {m['python']}, torch {m['torch']}, CUDA: {m['cuda'] or 'none'}; "
            f"1-min load at start {prov['load_1min']:.1f}.")


# --------------------------------------------------------------------------- output


OUT_HELP = ("write <OUT>/<stem>.json and .md when OUT is a folder (an existing one, or a path ending in /), "
            "else OUT.json and OUT.md; without --out nothing is written")


def add_out_argument(parser: argparse.ArgumentParser, stem: str) -> None:
    parser.add_argument("--out", metavar="OUT", help=OUT_HELP.replace("<stem>", stem))


def out_paths(out: str | os.PathLike, stem: str) -> tuple[Path, Path]:
    """(json, md) for ``--out OUT``: a folder (existing, or spelt with a trailing slash) gets
    ``<stem>.json``/``.md``; anything else is a file stem (a ``.json``/``.md`` suffix is dropped)."""
    text = os.fspath(out)
    base = Path(text)
    if base.is_dir() or text.endswith(("/", os.sep)):
        base = base / stem
    elif base.suffix in (".json", ".md"):
        base = base.with_suffix("")
    return base.parent / f"{base.name}.json", base.parent / f"{base.name}.md"


def report(prov: dict[str, Any], result: dict[str, Any], title: str, body: str | list[str],
           out: str | os.PathLike | None, stem: str) -> dict[str, Any]:
    """Print ``body`` (the table); with ``out``, write the record (see :func:`out_paths`).
    Returns the record: ``{"provenance": prov, **result}``."""
    body = "\n".join(body) if isinstance(body, list) else body
    print(body.rstrip("\n"))
    record = {"provenance": prov, **result}
    if out is not None:
        json_path, md_path = out_paths(out, stem)
        md = f"# {title}\n\nCommand: `{prov['command']}`\n{machine_line(prov)}\n\n{body.rstrip()}\n"
        atomic.write_json(json_path, record)
        atomic.write_text(md_path, md)
        print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return record

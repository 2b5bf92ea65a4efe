"""Checkpoints: full training state written atomically, keep-last-k plus best, and SIGTERM.

Layout under ``<run_dir>/checkpoints/``:
    step-00000120.pt   one file per save; the newest ``keep_last`` are kept
    last.pt            hard link to the newest step file (a copy where links are unsupported)
    best.pt            hard link to the step file with the best monitored metric

A write goes to a temporary file in the same folder, is fsynced, then ``os.replace``d into
place, and the folder is fsynced; ``last.pt``/``best.pt`` are swapped the same way. Old
files are deleted only after the new ones are in place, so a process killed at any moment
(kill -9, a reclaimed spot instance, a full disk) leaves the previous ``last.pt`` loadable.
"""
from __future__ import annotations

import os
import re
import signal
import tempfile
from pathlib import Path
from typing import Any

import torch

from core.errors import UserError

STEP_FILE = re.compile(r"^step-(\d{8})\.pt$")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` so that readers see either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _atomic_link(source: Path, alias: Path) -> None:
    """Point ``alias`` at ``source``'s content atomically (hard link, or copy as fallback)."""
    tmp = alias.with_name(f".{alias.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:  # filesystems without hard links: copy through a temp file
        with open(source, "rb") as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 24):
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
    os.replace(tmp, alias)
    _fsync_dir(alias.parent)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :class:`CheckpointManager`; a damaged file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        # weights_only=False: the state holds numpy RNG states and plain metadata we wrote ourselves.
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise UserError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e}); "
                        "use another checkpoint from the same folder") from None


class CheckpointManager:
    """Saves and finds the checkpoints of one run directory (only rank 0 writes)."""

    def __init__(self, run_dir: str | Path, keep_last: int = 2):
        self.folder = Path(run_dir) / "checkpoints"
        self.keep_last = keep_last

    @property
    def last(self) -> Path:
        return self.folder / "last.pt"

    @property
    def best(self) -> Path:
        return self.folder / "best.pt"

    def step_files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if STEP_FILE.match(p.name))

    def save(self, state: dict[str, Any], step: int, is_best: bool = False) -> Path:
        path = self.folder / f"step-{step:08d}.pt"
        atomic_save(state, path)
        _atomic_link(path, self.last)
        if is_best:
            _atomic_link(path, self.best)
        self._prune()
        return path

    def _prune(self) -> None:
        """Delete step files beyond keep_last; best.pt and last.pt keep their own links."""
        for old in self.step_files()[: -self.keep_last]:
            old.unlink(missing_ok=True)
        for stray in self.folder.glob(".*.tmp"):  # temp files of a killed earlier save
            stray.unlink(missing_ok=True)


class StopRequest:
    """SIGTERM/SIGINT set a flag; the loop finishes its step, saves and exits cleanly.

    Cloud providers send SIGTERM before reclaiming a spot instance (with ~30 s to 2 min of
    grace); a second signal while the flag is set falls back to the default behaviour.
    """

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequest":
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. called from a notebook worker)
                pass
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal_name is not None:  # second signal: stop now
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            os.kill(os.getpid(), signum)
            return
        self.signal_name = signal.Signals(signum).name

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

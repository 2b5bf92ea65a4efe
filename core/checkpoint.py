"""Checkpoints: full training state written atomically, keep-last-k plus best, and SIGTERM.

Layout under ``<run_dir>/checkpoints/``:
    step-00000120.pt   one file per save; the newest ``keep_last`` are kept
    last.pt            hard link to the newest step file (a copy where links are unsupported)
    best.pt            hard link to the step file with the best monitored metric

A write goes through core.atomic (temp file in the same folder, fsync, ``os.replace``,
folder fsync); ``last.pt``/``best.pt`` are swapped the same way. Old files are deleted only
after the new ones are in place, so a process killed at any moment (kill -9, a reclaimed
spot instance, a full disk) leaves the previous ``last.pt`` loadable.

A checkpoint holds tensors and plain Python types only (RNG states included, see
core.runtime.rng_state), so every load uses ``torch.load(weights_only=True)``: a file that
would need to unpickle code (a downloaded "checkpoint" that runs something when loaded) is
refused before anything in it runs. ``format`` marks the files this project writes.
"""
from __future__ import annotations

import os
import pickle
import re
import shutil
import signal
from pathlib import Path
from typing import Any

import torch

from core.atomic import atomic_write, fsync_dir
from core.errors import UserError

STEP_FILE = re.compile(r"^step-(\d{8})\.pt$")


FORMAT = "twotrack-checkpoint"  # the ``format`` key of every checkpoint this project writes


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` so that readers see either the old file or the whole new one."""
    with atomic_write(path, "wb") as f:
        torch.save(obj, f)


def _atomic_link(source: Path, alias: Path) -> None:
    """Point ``alias`` at ``source``'s content atomically (hard link, or copy as fallback)."""
    tmp = alias.with_name(f".{alias.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:  # filesystems without hard links: copy through a temp file
        with open(source, "rb") as src, atomic_write(alias, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 24)
        return
    os.replace(tmp, alias)
    fsync_dir(alias.parent)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :class:`CheckpointManager` with ``weights_only=True``.

    A missing, damaged or foreign file, or one that needs code to unpickle, is a UserError
    of one line naming the file; nothing in the file runs."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():
            raise UserError(f"checkpoint {path} cannot be read ({_first_line(e)}); "
                            "use another checkpoint from the same folder") from None
        # torch's message is a page long; its "Unsupported global: GLOBAL io.open" part names the code
        unsupported = [line.split("error:")[-1].split(" was not")[0].strip()
                       for line in str(e).splitlines() if "Unsupported" in line]
        raise UserError(f"checkpoint {path} is refused: loading it would run code it names "
                        f"({(unsupported or ['not plain tensors and types'])[0][:160]}); nothing in it was run. Use a "
                        "checkpoint written by `train` (runs/<task>/<run>/checkpoints/best.pt)") from None
    except Exception as e:  # torch raises several types for truncated or non-torch files
        raise UserError(f"checkpoint {path} cannot be read ({_first_line(e)}); "
                        "use another checkpoint from the same folder") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a checkpoint of this project (no format marker {FORMAT!r}); "
                        "use a checkpoint written by `train` (runs/<task>/<run>/checkpoints/best.pt)")
    return state


def update_meta(path: str | Path, extra: dict[str, Any]) -> None:
    """Merge ``extra`` (plain types) into the checkpoint's ``meta`` and write it back
    atomically. A best.pt hard link becomes a file of its own; the step file it pointed
    at keeps the old meta."""
    path = Path(path)
    state = load(path)
    state["meta"] = {**dict(state.get("meta") or {}), **extra}
    atomic_save(state, path)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:200]}" if text else type(error).__name__


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
        atomic_save({"format": FORMAT, **state}, path)
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

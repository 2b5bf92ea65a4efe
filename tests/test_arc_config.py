"""ARC guide configs: the built-in defaults equal configs/arc_guide/default.toml."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ConfigError, load
from core.registry import get_task

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "arc_guide"


def test_default_toml_equals_the_built_in_defaults():
    assert load("arc-guide", CONFIGS / "default.toml").model_dump() == load("arc-guide").model_dump()


def test_demo_config_loads_and_is_small():
    demo = load("arc-guide", CONFIGS / "demo.toml")
    full = load("arc-guide")
    assert demo.model.channels < full.model.channels and demo.data.default_samples < full.data.default_samples


def test_cli_flags_map_to_data_keys_and_typos_are_errors():
    task = get_task("arc-guide")
    assert {key for key, _, _ in task.cli_options.values()} == {"data.max_samples", "data.quality_threshold", "data.path"}
    cfg = load(task, None, ["data.max_samples=20000", "data.quality_threshold=0.85", "data.path=x.json"])
    assert (cfg.data.max_samples, cfg.data.quality_threshold, cfg.data.path) == (20000, 0.85, "x.json")
    with pytest.raises(ConfigError, match="quality_treshold"):
        load(task, None, ["data.quality_treshold=0.5"])
    with pytest.raises(ConfigError):
        load(task, None, ["data.quality_threshold=1.5"])
    with pytest.raises(ConfigError):
        load(task, None, ["data.on_bad_record=ignore"])

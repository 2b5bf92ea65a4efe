"""Configs: the built-in defaults equal configs/vesuvius/default.toml; the demo config is valid."""
from __future__ import annotations

from pathlib import Path

import pytest

import core.config
from core.config import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_builtin_defaults_equal_default_toml():
    from_file = core.config.load("vesuvius", REPO / "configs/vesuvius/default.toml")
    builtin = core.config.load("vesuvius")
    assert from_file.model_dump() == builtin.model_dump()


def test_demo_config_uses_synthetic_data_and_holds_out_a_scroll():
    cfg = core.config.load("vesuvius", REPO / "configs/vesuvius/demo.toml")
    assert cfg.data.root == "" and cfg.data.val_scrolls == ["90003"]
    assert cfg.data.patch_size % 2 ** (cfg.model.depth - 1) == 0


def test_unknown_feature_channel_and_key_are_config_errors():
    with pytest.raises(ConfigError, match="features.channels"):
        core.config.load("vesuvius", overrides=["features.channels=['intensity', 'hessian9']"])
    with pytest.raises(ConfigError, match="unknown key 'data.patchsize'"):
        core.config.load("vesuvius", overrides=["data.patchsize=64"])


def test_patch_size_must_fit_the_unet_depth():
    with pytest.raises(ConfigError, match="divisible by 2"):
        core.config.load("vesuvius", REPO / "configs/vesuvius/demo.toml", ["data.patch_size=30"])

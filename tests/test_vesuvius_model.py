"""UNet3D: shapes, options, the default's size."""
from __future__ import annotations

import pytest
import torch

import core.config
from tasks.vesuvius.model import UNet3D, count_parameters
from tasks.vesuvius.task import VesuviusTask


def test_default_model_is_about_27m_parameters():
    cfg = core.config.load("vesuvius")
    model = VesuviusTask().build_model(cfg)
    assert 26e6 <= count_parameters(model) <= 28.5e6


@pytest.mark.parametrize("norm,residual", [("instance", True), ("group", False), ("group", True)])
def test_forward_shape_and_options(norm, residual):
    model = UNet3D(6, 2, width=4, depth=3, max_width=16, norm=norm, residual=residual)
    out = model(torch.rand(2, 6, 16, 16, 16))
    assert out.shape == (2, 2, 16, 16, 16)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_input_not_divisible_is_refused():
    with pytest.raises(ValueError, match="divisible by 4"):
        UNet3D(1, 2, width=4, depth=3)(torch.rand(1, 1, 10, 16, 16))

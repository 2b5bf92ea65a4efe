"""3D U-Net for scroll-surface segmentation: configurable width, depth, normalisation, residual blocks.

Encoder stage s has ``min(width * 2**s, max_width)`` channels and two 3x3x3 conv-norm-LeakyReLU
layers (the first strided by 2 from stage 1 on); with ``residual`` each stage is a residual
block (1x1x1 projection on the shortcut when the shape changes). The decoder upsamples with
transposed convs, concatenates the skip and applies one block. Input (B, C_in, D, H, W) with
D, H, W divisible by 2**(depth-1); output (B, 2, D, H, W) logits (background, surface).
"""
from __future__ import annotations

import torch
from torch import nn


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    raise ValueError(f"unknown norm {kind!r} (instance|group)")


class ConvBlock(nn.Module):
    """Two conv-norm-act layers; the first may stride. Optional residual shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str, residual: bool):
        super().__init__()
        self.conv1 = nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _norm(norm, c_out)
        self.conv2 = nn.Conv3d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = _norm(norm, c_out)
        self.act = nn.LeakyReLU(0.01, inplace=True)
        self.shortcut: nn.Module | None = None
        if residual:
            self.shortcut = (
                nn.Identity()
                if stride == 1 and c_in == c_out
                else nn.Sequential(nn.Conv3d(c_in, c_out, 1, stride=stride, bias=False), _norm(norm, c_out))
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return self.act(y)


class UNet3D(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int = 2,
        width: int = 32,
        depth: int = 5,
        max_width: int = 320,
        norm: str = "instance",
        residual: bool = True,
    ):
        super().__init__()
        widths = [min(width * 2**s, max_width) for s in range(depth)]
        self.divisor = 2 ** (depth - 1)
        self.encoder = nn.ModuleList(
            ConvBlock(in_channels if s == 0 else widths[s - 1], widths[s], 1 if s == 0 else 2, norm, residual)
            for s in range(depth)
        )
        self.up = nn.ModuleList(nn.ConvTranspose3d(widths[s + 1], widths[s], 2, stride=2) for s in range(depth - 1))
        self.decoder = nn.ModuleList(ConvBlock(2 * widths[s], widths[s], 1, norm, residual) for s in range(depth - 1))
        self.head = nn.Conv3d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(s % self.divisor for s in x.shape[2:]):
            raise ValueError(f"UNet3D input {tuple(x.shape[2:])} must be divisible by {self.divisor}")
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for s in reversed(range(len(self.decoder))):
            x = self.decoder[s](torch.cat([self.up[s](x), skips[s]], dim=1))
        return self.head(x)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

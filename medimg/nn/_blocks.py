"""Building blocks shared by the reference models: conv (+ norm) + ReLU on medimg's Conv2d."""

from __future__ import annotations

from torch import nn

from medimg.nn.conv import Conv2d

NORMS = (None, "batch", "group", "instance")


def check_norm(norm: str | None) -> str | None:
    if norm not in NORMS:
        raise ValueError(f"norm: expected one of {NORMS}, got {norm!r}")
    return norm


def norm_layer(norm: str | None, channels: int) -> nn.Module:
    """BatchNorm2d, GroupNorm (8 groups where they divide the channels, else 1) or InstanceNorm2d."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(8 if channels % 8 == 0 else 1, channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


def conv_norm_relu(in_channels: int, out_channels: int, kernel_size: int, norm: str | None, backend: str,
                   stride: int = 1) -> nn.Sequential:
    """Conv -> norm -> ReLU. Without a norm the ReLU is fused into the convolution's epilogue
    (and the convolution keeps its bias, which a norm would cancel)."""
    conv = Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                  bias=norm is None, activation="relu" if norm is None else None, backend=backend)
    if norm is None:
        return nn.Sequential(conv)
    return nn.Sequential(conv, norm_layer(norm, out_channels), nn.ReLU(inplace=True))

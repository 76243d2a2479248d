"""Checks and normalises ``conv2d``'s arguments the way ``F.conv2d`` reads them, into the one
form every backend takes: top/left padding (possibly asymmetric "same") plus the output size."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from medimg.ops._boundary import check_same_device, check_tensor

ACTIVATIONS = (None, "relu")


@dataclass(frozen=True)
class ConvGeometry:
    """stride, top/left padding (negative = crop), dilation, groups and output (OH, OW)."""

    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    out_size: tuple[int, int]


def _pair(name: str, value: object, minimum: int) -> tuple[int, int]:
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in items):
        raise TypeError(f"{name}: expected an int or a pair of ints, got {value!r}")
    if any(v < minimum for v in items):
        raise ValueError(f"{name}: expected values >= {minimum}, got {value!r}")
    return items[0], items[1]


def check_conv_args(input: Tensor, weight: Tensor, bias: Tensor | None, stride: object, padding: object,
                    dilation: object, groups: object, activation: str | None) -> ConvGeometry:
    """Validate like F.conv2d (errors name the argument) and resolve the geometry.

    input (N, C, H, W), weight (OC, C / groups, KH, KW), bias (OC,) or None, one floating
    dtype and one device.
    """
    check_tensor("input", input)
    check_tensor("weight", weight)
    if input.dim() != 4:
        raise ValueError(f"input: expected (N, C, H, W) or (C, H, W), got shape {tuple(input.shape)}")
    if weight.dim() != 4:
        raise ValueError(f"weight: expected (out_channels, in_channels / groups, kH, kW), got {tuple(weight.shape)}")
    if not input.is_floating_point():
        raise TypeError(f"input: expected a floating dtype, got {input.dtype}")
    if weight.dtype != input.dtype:
        raise TypeError(f"weight: dtype {weight.dtype} differs from input's {input.dtype}")
    tensors = {"input": input, "weight": weight}
    if bias is not None:
        check_tensor("bias", bias)
        if tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(f"bias: expected shape ({weight.shape[0]},), got {tuple(bias.shape)}")
        if bias.dtype != input.dtype:
            raise TypeError(f"bias: dtype {bias.dtype} differs from input's {input.dtype}")
        tensors["bias"] = bias
    check_same_device(**tensors)
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups: expected a positive int, got {groups!r}")
    channels, out_channels = input.shape[1], weight.shape[0]
    if weight.shape[1] * groups != channels:
        raise ValueError(f"weight: {weight.shape[1]} input channels per group x groups={groups} does not match "
                         f"input's {channels} channels")
    if out_channels % groups != 0 or out_channels == 0:
        raise ValueError(f"weight: {out_channels} output channels are not a positive multiple of groups={groups}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {activation!r}")

    stride_hw = _pair("stride", stride, 1)
    dilation_hw = _pair("dilation", dilation, 1)
    kernel = (weight.shape[2], weight.shape[3])
    span = tuple(d * (k - 1) for d, k in zip(dilation_hw, kernel, strict=True))
    if isinstance(padding, str):
        if padding == "valid":
            before = after = (0, 0)
        elif padding == "same":
            if stride_hw != (1, 1):
                raise ValueError("padding: 'same' needs stride 1 (as F.conv2d)")
            before = tuple(s // 2 for s in span)  # F.conv2d puts the odd extra row/column after
            after = tuple(s - b for s, b in zip(span, before, strict=True))
        else:
            raise ValueError(f"padding: expected an int, a pair, 'same' or 'valid', got {padding!r}")
    else:
        before = after = _pair("padding", padding, 0)
    size = (input.shape[2], input.shape[3])
    padded = tuple(s + b + a for s, b, a in zip(size, before, after, strict=True))
    if any(p < s + 1 for p, s in zip(padded, span, strict=True)):
        raise ValueError(f"weight: kernel {kernel} (dilation {dilation_hw}) is larger than the padded input "
                         f"{padded}")
    out_size = tuple((p - s - 1) // st + 1 for p, s, st in zip(padded, span, stride_hw, strict=True))
    return ConvGeometry(stride_hw, before, dilation_hw, groups, out_size)


def is_float_kernel_dtype(dtype: torch.dtype, device: torch.device) -> bool:
    """Dtypes medimg's conv2d kernels take on `device` (others go to F.conv2d under backend="auto")."""
    if device.type == "cpu":
        return dtype in (torch.float32, torch.float64)
    return dtype in (torch.float16, torch.bfloat16, torch.float32)

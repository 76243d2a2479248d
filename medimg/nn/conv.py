"""``medimg.nn.Conv2d``: ``torch.nn.Conv2d`` running on ``medimg.ops.conv2d``, and ``convert``,
which swaps it into an existing model."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from medimg.ops._boundary import check_backend
from medimg.ops._conv_args import ACTIVATIONS
from medimg.ops.conv2d import conv2d


class Conv2d(nn.Conv2d):
    """``torch.nn.Conv2d`` with the same constructor, parameters and state_dict (checkpoints load
    both ways), whose forward runs medimg's conv2d kernels.

    Args:
        *args, **kwargs: exactly ``torch.nn.Conv2d``'s (in_channels, out_channels, kernel_size,
            stride, padding, dilation, groups, bias, padding_mode, device, dtype).
        backend: "auto" (medimg's kernel where built and the dtype is supported, else
            F.conv2d), "medimg" or "torch"; an attribute, so it can be changed later.
        activation: None or "relu": fused into the kernel's epilogue (saves a pass over the
            output when no normalisation sits between the convolution and the ReLU).

    Shape:
        input (N, C_in, H, W) or (C_in, H, W) -> (N, C_out, H_out, W_out), as torch.nn.Conv2d.

    Example:
        >>> conv = Conv2d(1, 32, 3, padding=1)
        >>> conv(torch.randn(8, 1, 64, 64)).shape
        torch.Size([8, 32, 64, 64])
    """

    def __init__(self, *args, backend: str = "auto", activation: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.backend = check_backend(backend)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {activation!r}")
        self.activation = activation

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        padding = self.padding
        if self.padding_mode != "zeros":  # reflect/replicate/circular: pad first, as torch.nn.Conv2d
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        return conv2d(input, weight, bias, self.stride, padding, self.dilation, self.groups,
                      activation=self.activation, backend=self.backend)

    def extra_repr(self) -> str:
        fused = f", activation={self.activation!r}" if self.activation else ""
        return f"{super().extra_repr()}{fused}, backend={self.backend!r}"

    @classmethod
    def from_torch(cls, conv: nn.Conv2d, backend: str = "auto") -> Conv2d:
        """A medimg Conv2d that shares `conv`'s parameters, buffers and hooks (no copy): an
        optimizer built on the original keeps training the swapped module."""
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"conv: expected a torch.nn.Conv2d, got {type(conv).__name__}")
        swapped = cls.__new__(cls)
        swapped.__dict__.update(conv.__dict__)
        swapped.backend = check_backend(backend)
        swapped.activation = None
        return swapped


def convert(model: nn.Module, backend: str = "auto") -> nn.Module:
    """Swap every ``torch.nn.Conv2d`` in `model` (in place, recursively) for ``medimg.nn.Conv2d``
    sharing its parameters; returns the model (or the swapped module if `model` is a Conv2d).

    Subclasses of nn.Conv2d other than medimg's own are left alone (they may override forward);
    medimg Conv2d modules get `backend`.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU())
        >>> type(convert(net)[0]).__name__
        'Conv2d'
    """
    check_backend(backend)
    if isinstance(model, Conv2d):
        model.backend = backend
        return model
    if type(model) is nn.Conv2d:
        return Conv2d.from_torch(model, backend)
    for name, child in model.named_children():
        swapped = convert(child, backend)
        if swapped is not child:
            setattr(model, name, swapped)
    return model


class ConvTranspose2d(nn.ConvTranspose2d):
    """``torch.nn.ConvTranspose2d`` (same constructor and state_dict) that runs the U-Net
    up-sampling case, kernel_size == stride with no padding, on medimg's conv2d.

    With kernel == stride the output windows do not overlap: the layer is a 1x1 convolution
    to OC * kH * kW channels followed by a pixel shuffle, exactly. Other configurations call
    ``F.conv_transpose2d``.

    Example:
        >>> up = ConvTranspose2d(64, 32, kernel_size=2, stride=2)
        >>> up(torch.randn(1, 64, 16, 16)).shape
        torch.Size([1, 32, 32, 32])
    """

    def __init__(self, *args, backend: str = "auto", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.backend = check_backend(backend)

    def _as_pixel_shuffle(self) -> bool:
        return (self.kernel_size == self.stride and self.kernel_size[0] == self.kernel_size[1]
                and self.padding == (0, 0) and self.output_padding == (0, 0) and self.dilation == (1, 1)
                and self.groups == 1 and self.padding_mode == "zeros")

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:
        if self.backend == "torch" or output_size is not None or not self._as_pixel_shuffle():
            return super().forward(input, output_size)
        r = self.kernel_size[0]
        # weight (IC, OC, r, r) -> (OC * r * r, IC, 1, 1), channel (oc, a, b) = pixel_shuffle's order
        weight = self.weight.permute(1, 2, 3, 0).reshape(-1, self.in_channels, 1, 1)
        bias = self.bias.repeat_interleave(r * r) if self.bias is not None else None
        unbatched = input.dim() == 3
        out = conv2d(input.unsqueeze(0) if unbatched else input, weight, bias, backend=self.backend)
        out = F.pixel_shuffle(out, r)
        return out.squeeze(0) if unbatched else out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, backend={self.backend!r}"

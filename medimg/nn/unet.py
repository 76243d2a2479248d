"""Ronneberger's U-Net for segmentation on medimg's convolutions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medimg.nn._blocks import check_norm, conv_norm_relu
from medimg.nn.conv import Conv2d, ConvTranspose2d
from medimg.ops._boundary import check_backend

UPSAMPLING = ("transpose", "bilinear")


class DoubleConv(nn.Sequential):
    """Two 3x3 "same" convolutions, each followed by (norm and) ReLU; optional dropout after."""

    def __init__(self, in_channels: int, out_channels: int, norm: str | None, dropout: float, backend: str) -> None:
        layers = [*conv_norm_relu(in_channels, out_channels, 3, norm, backend),
                  *conv_norm_relu(out_channels, out_channels, 3, norm, backend)]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class Up(nn.Module):
    """Double the resolution and halve the channels: a 2x2 stride-2 transposed convolution, or
    bilinear up-sampling followed by a 1x1 convolution."""

    def __init__(self, in_channels: int, out_channels: int, mode: str, backend: str) -> None:
        super().__init__()
        if mode == "transpose":
            self.layers = ConvTranspose2d(in_channels, out_channels, 2, stride=2, backend=backend)
        else:
            self.layers = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                        Conv2d(in_channels, out_channels, 1, backend=backend))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class UNet(nn.Module):
    """U-Net (Ronneberger et al., 2015): an encoder of `depth` down-sampling steps, a decoder that
    up-samples and concatenates the encoder's feature maps at each scale, and a 1x1 head.

    Args:
        in_channels, out_channels: image channels in; classes (logits) out.
        base: channels of the first level; level i has base * 2^i.
        depth: down-sampling steps (the bottleneck is at 1 / 2^depth of the input size).
        norm: "batch", "group", "instance" or None after each convolution.
        up: "transpose" (2x2 stride-2 transposed convolution) or "bilinear" (+ 1x1 convolution).
        dropout: Dropout2d probability after each level's convolutions (0 disables).
        deep_supervision: in training mode also return logits from the coarser decoder levels,
            up-sampled to the input size (losses on them speed up training of deep nets).
        backend: passed to every convolution ("auto", "medimg", "torch").

    Shape:
        input (N, in_channels, H, W), H and W divisible by 2^depth -> logits (N, out_channels, H, W)
        ("same" padding everywhere). With deep supervision in training: a list, full-resolution
        logits first, then one per coarser decoder level.

    Example:
        >>> net = UNet(in_channels=1, out_channels=2, base=8, depth=3)
        >>> net(torch.randn(2, 1, 64, 64)).shape
        torch.Size([2, 2, 64, 64])
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 2, base: int = 32, depth: int = 4,
                 norm: str | None = "batch", up: str = "transpose", dropout: float = 0.0,
                 deep_supervision: bool = False, backend: str = "auto") -> None:
        super().__init__()
        check_backend(backend)
        check_norm(norm)
        if up not in UPSAMPLING:
            raise ValueError(f"up: expected one of {UPSAMPLING}, got {up!r}")
        if depth < 1 or base < 1:
            raise ValueError(f"depth and base: expected >= 1, got depth={depth}, base={base}")
        self.in_channels, self.depth, self.deep_supervision = in_channels, depth, deep_supervision
        widths = [base * 2**i for i in range(depth + 1)]
        self.encoder = nn.ModuleList([DoubleConv(in_channels, widths[0], norm, dropout, backend)])
        self.encoder.extend(DoubleConv(widths[i - 1], widths[i], norm, dropout, backend) for i in range(1, depth + 1))
        self.up = nn.ModuleList(Up(widths[i + 1], widths[i], up, backend) for i in reversed(range(depth)))
        self.decoder = nn.ModuleList(DoubleConv(2 * widths[i], widths[i], norm, dropout, backend)
                                     for i in reversed(range(depth)))
        self.head = Conv2d(widths[0], out_channels, 1, backend=backend)
        self.aux_heads = nn.ModuleList(Conv2d(widths[i], out_channels, 1, backend=backend)
                                       for i in reversed(range(1, depth))) if deep_supervision else None

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"input: expected (N, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        step = 2**self.depth
        if x.shape[2] % step or x.shape[3] % step:
            raise ValueError(f"input: spatial size {tuple(x.shape[2:])} is not divisible by 2^depth = {step} "
                             f"(depth={self.depth}); pad or crop the input, or lower depth")

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        self._check_input(x)
        skips = []
        for level, block in enumerate(self.encoder):
            x = block(x if level == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        decoded = []
        for up, block in zip(self.up, self.decoder, strict=True):
            x = block(torch.cat([skips.pop(), up(x)], dim=1))
            decoded.append(x)
        logits = self.head(x)
        if not (self.deep_supervision and self.training):
            return logits
        size = logits.shape[2:]
        aux = [F.interpolate(head(level), size=size, mode="bilinear", align_corners=False)
               for head, level in zip(self.aux_heads, decoded[:-1], strict=True)]
        return [logits, *aux]

"""A GAN for image enhancement (denoising, x2 super-resolution, contrast restoration): a residual
U-Net generator and a PatchGAN discriminator, trained pix2pix-style with
medimg.losses.AdversarialLoss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medimg.nn._blocks import check_norm, norm_layer
from medimg.nn.conv import Conv2d
from medimg.nn.unet import UNet
from medimg.ops._boundary import check_backend

_EPS = 1e-4


class Generator(nn.Module):
    """Predicts the clean image from a degraded one as a residual in logit space:
    ``out = sigmoid(logit(x) + UNet(x))``, so the output is in (0, 1), every pixel has a
    gradient, and the network starts as the identity (its last layer is zero-initialised) and
    only learns the correction.

    Args:
        channels: image channels (in and out).
        base, depth, norm: of the U-Net (see medimg.nn.UNet); input sizes (after up-scaling)
            must be divisible by 2^depth.
        scale: 1 (denoising, contrast) or 2 (super-resolution: the input is first up-sampled
            bilinearly, then refined).
        backend: passed to every convolution.

    Shape:
        input (N, channels, H, W) in [0, 1] -> (N, channels, scale * H, scale * W) in (0, 1).

    Example:
        >>> g = Generator(channels=1, base=8, depth=2, scale=2)
        >>> g(torch.rand(2, 1, 32, 32)).shape
        torch.Size([2, 1, 64, 64])
    """

    def __init__(self, channels: int = 1, base: int = 32, depth: int = 3, norm: str | None = "batch",
                 scale: int = 1, backend: str = "auto") -> None:
        super().__init__()
        if scale not in (1, 2):
            raise ValueError(f"scale: expected 1 or 2, got {scale}")
        self.channels, self.scale = channels, scale
        self.unet = UNet(channels, channels, base=base, depth=depth, norm=norm, backend=backend)
        nn.init.zeros_(self.unet.head.weight)
        nn.init.zeros_(self.unet.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"input: expected (N, {self.channels}, H, W), got shape {tuple(x.shape)}")
        if self.scale > 1:
            x = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return torch.sigmoid(torch.logit(x.clamp(_EPS, 1 - _EPS)) + self.unet(x))


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al., 2017): a fully convolutional net whose output map scores every
    overlapping patch (70x70 pixels with the default 3 layers) as real or fake.

    Args:
        in_channels: channels of what it judges; for conditional (pix2pix) training pass the
            degraded and the candidate image concatenated, i.e. 2 * image channels.
        base: channels of the first layer, doubled per layer up to 8 * base.
        layers: stride-2 4x4 convolutions after the first.
        norm: "batch", "instance", "group" or None between convolution and LeakyReLU.
        spectral_norm: wrap every convolution in spectral normalisation (stabilises training;
            then no norm layer is needed).
        backend: passed to every convolution.

    Shape:
        input (N, in_channels, H, W) -> logits (N, 1, H', W'), one per patch (H' ~ H / 2^layers - 2).

    Example:
        >>> d = PatchDiscriminator(in_channels=2, base=8)
        >>> d(torch.rand(2, 2, 64, 64)).shape
        torch.Size([2, 1, 6, 6])
    """

    def __init__(self, in_channels: int = 2, base: int = 64, layers: int = 3, norm: str | None = "batch",
                 spectral_norm: bool = False, backend: str = "auto") -> None:
        super().__init__()
        check_backend(backend)
        check_norm(norm)
        if layers < 1:
            raise ValueError(f"layers: expected >= 1, got {layers}")
        self.in_channels = in_channels

        def conv(cin: int, cout: int, stride: int, bias: bool) -> nn.Module:
            layer = Conv2d(cin, cout, 4, stride=stride, padding=1, bias=bias, backend=backend)
            return nn.utils.parametrizations.spectral_norm(layer) if spectral_norm else layer

        blocks: list[nn.Module] = [conv(in_channels, base, 2, True), nn.LeakyReLU(0.2, inplace=True)]
        width = base
        for i in range(1, layers + 1):
            out = base * min(2**i, 8)
            stride = 2 if i < layers else 1
            blocks += [conv(width, out, stride, norm is None), norm_layer(norm, out), nn.LeakyReLU(0.2, inplace=True)]
            width = out
        blocks.append(conv(width, 1, 1, True))
        self.layers = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"input: expected (N, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        return self.layers(x)

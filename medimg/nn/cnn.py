"""The study's CNN classifier: conv + pool blocks with ReLU, dropout and a linear head."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medimg.nn._blocks import check_norm, conv_norm_relu
from medimg.ops._boundary import check_backend


class CNNClassifier(nn.Module):
    """Stacks of Conv -> (norm) -> ReLU -> MaxPool, global average pooling, dropout, linear head.

    The defaults are the study's model: three conv + pool blocks (32, 64, 128 channels), ReLU,
    dropout 0.5, logits for a categorical cross-entropy.

    Args:
        in_channels: image channels (1 for MRI/CT/X-ray, 3 for fundus/histology).
        num_classes: logits per image.
        widths: output channels of each conv + pool block.
        dropout: before the head.
        norm: None (the study's), "batch", "group" or "instance" after each convolution.
        kernel_size: odd, "same" padding.
        backend: passed to every medimg.nn.Conv2d ("auto", "medimg", "torch").

    Shape:
        input (N, in_channels, H, W) float -> logits (N, num_classes); with
        ``return_features=True`` also the last block's feature maps F = CNN(X; θ),
        (N, widths[-1], H / 2^len(widths), W / 2^len(widths)), e.g. for class-activation maps.

    Example:
        >>> model = CNNClassifier(in_channels=1, num_classes=2)
        >>> model(torch.randn(4, 1, 64, 64)).shape
        torch.Size([4, 2])
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, widths: tuple[int, ...] = (32, 64, 128),
                 dropout: float = 0.5, norm: str | None = None, kernel_size: int = 3, backend: str = "auto") -> None:
        super().__init__()
        check_backend(backend)
        check_norm(norm)
        if not widths or any(w < 1 for w in widths):
            raise ValueError(f"widths: expected positive channel counts, got {widths!r}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: expected an odd size, got {kernel_size}")
        self.in_channels = in_channels
        blocks, previous = [], in_channels
        for width in widths:
            blocks += [*conv_norm_relu(previous, width, kernel_size, norm, backend), nn.MaxPool2d(2)]
            previous = width
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(previous, num_classes)
        self.num_features = previous
        self.num_blocks = len(widths)

    def feature_maps(self, x: Tensor) -> Tensor:
        """F = CNN(X; θ): (N, widths[-1], H / 2^blocks, W / 2^blocks)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"input: expected (N, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        if min(x.shape[2:]) < 2**self.num_blocks:
            raise ValueError(f"input: {tuple(x.shape[2:])} is smaller than {2**self.num_blocks} pixels, the least "
                             f"that {self.num_blocks} pooling blocks can halve")
        return self.features(x)

    def embed(self, x: Tensor) -> Tensor:
        """Globally pooled features (N, widths[-1]): what a sequence model consumes per frame."""
        return torch.flatten(self.pool(self.feature_maps(x)), 1)

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        features = self.feature_maps(x)
        logits = self.head(self.dropout(torch.flatten(self.pool(features), 1)))
        return (logits, features) if return_features else logits

"""Batched, device-side augmentation of images and masks (2D and 3D).

Every transform is called as ``image, mask = t(image, mask=None, generator=None)`` on a
batch ``(N, C, H, W)`` or ``(N, C, D, H, W)``; random parameters are drawn per sample on the
batch's device from ``generator`` (reproducible), and the whole batch is one kernel call.
"""

from medimg.transforms.affine import RandomAffine
from medimg.transforms.compose import Compose
from medimg.transforms.intensity import (
    Normalize01,
    RandomBrightness,
    RandomContrast,
    RandomGamma,
    RandomGaussianNoise,
)

__all__ = [
    "Compose",
    "Normalize01",
    "RandomAffine",
    "RandomBrightness",
    "RandomContrast",
    "RandomGamma",
    "RandomGaussianNoise",
]

"""Intensity augmentation and normalisation, per sample, on the batch's device.

Each is called as ``image, mask = t(image, mask=None, generator=None)``; the mask passes
through unchanged. Random transforms apply to each sample with probability ``p``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from medimg.transforms._sampling import (
    as_range,
    bernoulli,
    check_generator,
    check_image,
    check_probability,
    per_sample,
    uniform,
)


def _check_float(image: Tensor) -> Tensor:
    image = check_image(image)
    if not image.is_floating_point():
        raise TypeError(f"image: intensity transforms need a floating image, got {image.dtype}")
    return image


def _sample_extent(image: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample minimum and maximum, (N, 1, ..., 1)."""
    flat = image.flatten(1)
    shape = (-1, *([1] * (image.dim() - 1)))
    return flat.amin(1).view(shape), flat.amax(1).view(shape)


class Normalize01:
    """Min-max scaling of each sample to [0, 1] (the normalisation of the reference study).

    Args:
        percentiles: None (true min and max), or (low, high) percentiles in [0, 100] whose
            values map to 0 and 1, with everything outside clipped (robust to hot pixels).
        eps: a constant sample (max == min) maps to 0 instead of dividing by ~0.
    """

    def __init__(self, percentiles: tuple[float, float] | None = None, eps: float = 1e-8) -> None:
        if percentiles is not None:
            lo, hi = as_range("percentiles", percentiles, symmetric=False)
            if not 0.0 <= lo < hi <= 100.0:
                raise ValueError(f"percentiles: expected 0 <= low < high <= 100, got {percentiles!r}")
            percentiles = (lo, hi)
        self.percentiles, self.eps = percentiles, float(eps)

    def __call__(self, image: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None
                 ) -> tuple[Tensor, Tensor | None]:
        image = _check_float(image)
        if self.percentiles is None:
            lo, hi = _sample_extent(image)
        else:
            q = torch.tensor([p / 100.0 for p in self.percentiles], dtype=torch.float32, device=image.device)
            bounds = torch.quantile(image.flatten(1).float(), q, dim=1).to(image.dtype)  # (2, N)
            lo, hi = (b.view(-1, *([1] * (image.dim() - 1))) for b in bounds)
        scaled = (image - lo) / (hi - lo).clamp_min(self.eps)
        if self.percentiles is not None:
            scaled = scaled.clamp(0.0, 1.0)
        return scaled, mask

    def __repr__(self) -> str:
        return f"Normalize01(percentiles={self.percentiles})"


class _RandomIntensity:
    """Shared parameter drawing: one value per sample from `bounds`, identity where not applied."""

    identity: float = 0.0

    def __init__(self, bounds: tuple[float, float], p: float) -> None:
        self.bounds, self.p = bounds, check_probability("p", p)

    def draw(self, image: Tensor, generator: torch.Generator | None) -> Tensor:
        check_generator(generator, image.device)
        n = image.shape[0]
        values = uniform(n, self.bounds, image.device, generator)
        apply = bernoulli(n, self.p, image.device, generator)
        return per_sample(torch.where(apply, values, torch.full_like(values, self.identity)), image)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.bounds}, p={self.p})"


class RandomGamma(_RandomIntensity):
    """Gamma curve on each sample's own intensity range: ((x - min) / range) ** gamma * range + min.

    Args:
        gamma: range of gamma (> 0); below 1 brightens mid-tones, above 1 darkens them.
        p: probability per sample.
    """

    identity = 1.0

    def __init__(self, gamma: tuple[float, float] = (0.7, 1.5), p: float = 0.5) -> None:
        bounds = as_range("gamma", gamma, symmetric=False)
        if bounds[0] <= 0:
            raise ValueError(f"gamma: values must be > 0, got {gamma!r}")
        super().__init__(bounds, p)

    def __call__(self, image: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None
                 ) -> tuple[Tensor, Tensor | None]:
        image = _check_float(image)
        gamma = self.draw(image, generator)
        lo, hi = _sample_extent(image)
        extent = (hi - lo).clamp_min(1e-8)
        return ((image - lo) / extent).clamp(0.0, 1.0).pow(gamma) * extent + lo, mask


class RandomContrast(_RandomIntensity):
    """Contrast about each sample's mean: (x - mean) * factor + mean."""

    identity = 1.0

    def __init__(self, factor: tuple[float, float] = (0.75, 1.25), p: float = 0.5) -> None:
        super().__init__(as_range("factor", factor, symmetric=False, low=0.0), p)

    def __call__(self, image: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None
                 ) -> tuple[Tensor, Tensor | None]:
        image = _check_float(image)
        factor = self.draw(image, generator)
        mean = image.flatten(1).mean(1).view(-1, *([1] * (image.dim() - 1)))
        return (image - mean) * factor + mean, mask


class RandomBrightness(_RandomIntensity):
    """Additive brightness shift: x + delta (a number d means delta in (-d, d))."""

    identity = 0.0

    def __init__(self, delta: float | tuple[float, float] = 0.1, p: float = 0.5) -> None:
        super().__init__(as_range("delta", delta, symmetric=True), p)

    def __call__(self, image: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None
                 ) -> tuple[Tensor, Tensor | None]:
        image = _check_float(image)
        return image + self.draw(image, generator), mask


class RandomGaussianNoise(_RandomIntensity):
    """Additive Gaussian noise with a per-sample standard deviation drawn from `std`."""

    identity = 0.0

    def __init__(self, std: float | tuple[float, float] = (0.0, 0.05), p: float = 0.5) -> None:
        bounds = (0.0, float(std)) if isinstance(std, (int, float)) else as_range("std", std, symmetric=False)
        if min(bounds) < 0:
            raise ValueError(f"std: must be >= 0, got {std!r}")
        super().__init__(bounds, p)

    def __call__(self, image: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None
                 ) -> tuple[Tensor, Tensor | None]:
        image = _check_float(image)
        sigma = self.draw(image, generator)
        noise = torch.randn(image.shape, device=image.device, generator=generator, dtype=image.dtype)
        return image + sigma * noise, mask

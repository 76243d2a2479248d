"""Procedural building blocks shared by the synthetic datasets, all batched torch ops.

Conventions: images are drawn on the square ``[-1, 1]^2`` in *normalised* coordinates
(x to the right, y downwards, pixel centres at ``(k + 0.5) / size * 2 - 1``), so that a
sample looks the same at every resolution; one pixel is ``2 / size`` long. Per-sample
parameters are ``(N,)`` tensors that broadcast against ``(N, H, W)`` maps. Random numbers
come from one ``torch.Generator`` per sample, seeded from ``(dataset seed, index)``, so a
sample never depends on which other samples share its batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

_MASK64 = (1 << 64) - 1


def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def sample_seed(seed: int, index: int) -> int:
    """A 63-bit generator seed for sample `index` of a dataset with `seed` (splitmix64 mix).

    Neighbouring indices and neighbouring seeds give unrelated streams, unlike ``seed + index``.
    """
    return _splitmix64(_splitmix64(int(seed) & _MASK64) ^ (int(index) & _MASK64)) >> 1


def generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per sample seed."""
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def rand(gens: Sequence[torch.Generator], *shape: int) -> Tensor:
    """Uniform draws in [0, 1) of `shape` from every sample's generator: (N, *shape), float32."""
    out = torch.empty(len(gens), *shape)
    for g, o in zip(gens, out, strict=True):
        torch.rand(shape, generator=g, out=o)
    return out


def randn(gens: Sequence[torch.Generator], *shape: int) -> Tensor:
    """Standard-normal draws of `shape` from every sample's generator: (N, *shape), float32."""
    out = torch.empty(len(gens), *shape)
    for g, o in zip(gens, out, strict=True):
        torch.randn(shape, generator=g, out=o)
    return out


def lerp(u: Tensor, low: float, high: float) -> Tensor:
    """Map uniform draws in [0, 1) to [low, high)."""
    return low + (high - low) * u


def log_lerp(u: Tensor, low: float, high: float) -> Tensor:
    """Map uniform draws in [0, 1) to a log-uniform value in [low, high) (small values as often as large)."""
    return low * (high / low) ** u


def grid(size: int) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates in [-1, 1]: y as (1, H, 1) and x as (1, 1, W), float32."""
    c = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
    return c.view(1, size, 1), c.view(1, 1, size)


def col(p: Tensor) -> Tensor:
    """Per-sample values (N,) as (N, 1, 1), to broadcast against (N, H, W) maps."""
    return p.view(-1, 1, 1)


def smooth(noise: Tensor, size: int) -> Tensor:
    """A smooth random field at ``size x size`` from low-resolution noise (N, C, h, w).

    Bicubic up to at most 64 pixels (smooth, no bilinear creases), then bilinear to `size`
    (cheap at large sizes). Unit-variance white noise in gives roughly unit-variance fields out.
    """
    mid = min(size, 64)
    out = F.interpolate(noise, size=(mid, mid), mode="bicubic", align_corners=False)
    if mid != size:
        out = F.interpolate(out, size=(size, size), mode="bilinear", align_corners=False)
    return out * (1.15 if noise.shape[-1] < mid else 1.0)  # bicubic upsampling keeps ~87% of the std


def ellipse_sdf(y: Tensor, x: Tensor, cy: Tensor, cx: Tensor, ry: Tensor, rx: Tensor, angle: Tensor) -> Tensor:
    """Approximate signed distance to a rotated ellipse (negative inside): (N, H, W).

    ``(|R(-angle) (p - c) / (rx, ry)| - 1) * min(rx, ry)``: exact for circles and along the
    minor axis, an underestimate elsewhere. Evaluated as a quadratic form in the separable
    offsets ``x - cx`` (N, 1, W) and ``y - cy`` (N, H, 1), so it costs a few full-size passes.
    """
    u, v = x - col(cx), y - col(cy)
    c, s = torch.cos(angle), torch.sin(angle)
    r2 = torch.minimum(rx, ry) ** 2
    a = r2 * (c * c / rx**2 + s * s / ry**2)
    b = r2 * 2.0 * c * s * (1.0 / rx**2 - 1.0 / ry**2)
    d = r2 * (s * s / rx**2 + c * c / ry**2)
    q = (col(b) * u) * v
    q += col(a) * u * u
    q += col(d) * v * v
    return q.clamp_min_(0.0).sqrt_().sub_(col(torch.minimum(rx, ry)))


def inside(sdf: Tensor, width: float, shift: Tensor | None = None) -> Tensor:
    """Anti-aliased indicator of ``sdf + shift < 0``: a linear ramp `width` wide across the edge, in [0, 1].

    `shift` (N,) moves the boundary outwards (negative) or inwards (positive) per sample.
    """
    offset = 0.5 if shift is None else col(0.5 - shift / width)
    return torch.add(torch.as_tensor(offset), sdf, alpha=-1.0 / width).clamp_(0.0, 1.0)


def blob(y: Tensor, x: Tensor, cy: Tensor, cx: Tensor, sigma: Tensor) -> Tensor:
    """Isotropic Gaussian bump of height 1 and width `sigma` (N,), separable: (N, H, W)."""
    inv = col(-0.5 / sigma**2)
    return torch.exp((x - col(cx)) ** 2 * inv) * torch.exp((y - col(cy)) ** 2 * inv)


def bias_field(y: Tensor, x: Tensor, coeffs: Tensor, strength: Tensor) -> Tensor:
    """Smooth multiplicative intensity inhomogeneity ``exp(strength * poly(x, y))``: (N, H, W).

    `coeffs` (N, 5) weights x, y, x^2, y^2, x*y; `strength` (N,) scales the log field.
    """
    k = coeffs / coeffs.norm(dim=1, keepdim=True).clamp_min(1e-6)
    k = k * col(strength).view(-1, 1)
    sep_x = col(k[:, 0]) * x + col(k[:, 2]) * x * x  # (N, 1, W)
    sep_y = col(k[:, 1]) * y + col(k[:, 3]) * y * y  # (N, H, 1)
    return torch.exp(sep_x + sep_y + col(k[:, 4]) * x * y)


def gaussian_kernel(sigma: float) -> Tensor:
    """Normalised 1-D Gaussian taps, radius ``ceil(3 sigma)``, float32."""
    radius = max(1, math.ceil(3.0 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(image: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur (sigma in pixels, reflect padding) of (N, C, H, W), same shape.

    The kernel radius is clipped below the image size so reflect padding stays valid.
    """
    if sigma <= 0:
        return image
    n, c, h, w = image.shape
    k = gaussian_kernel(sigma).to(image)
    r = min(k.numel() // 2, h - 1, w - 1)
    k = k[k.numel() // 2 - r: k.numel() // 2 + r + 1]
    k = k / k.sum()
    x = image.reshape(n * c, 1, h, w)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))
    return x.view(n, c, h, w)


def gaussian_noise(image: Tensor, sigma: Tensor, noise: Tensor) -> Tensor:
    """``image + sigma * noise`` with per-sample `sigma` (N,) and standard-normal `noise` like `image`."""
    return image + sigma.view(-1, *([1] * (image.dim() - 1))) * noise


def rician_noise(image: Tensor, sigma: Tensor, noise_re: Tensor, noise_im: Tensor) -> Tensor:
    """Magnitude of the image plus complex Gaussian noise: ``|image + sigma (n1 + i n2)|``.

    The noise of magnitude MR images: Gaussian-like where the signal is strong, a positive
    Rayleigh floor (mean ~1.25 sigma) where it is zero.
    """
    s = sigma.view(-1, *([1] * (image.dim() - 1)))
    return torch.hypot(image + s * noise_re, s * noise_im)


def shifted(noise: Tensor) -> Tensor:
    """White noise (…, H, W) rolled by half its size: at every pixel an independent second draw.

    Used as the imaginary part of Rician noise, which then costs one random field, not two.
    """
    h, w = noise.shape[-2:]
    return torch.roll(noise, shifts=(h // 2, w // 2), dims=(-2, -1))

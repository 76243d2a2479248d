"""Pure-PyTorch references of every medimg op: the test oracle and the fallback used when
a compiled backend is missing (or when a caller passes ``backend="torch"``).

They favour clarity over speed, but they are real implementations: same validation, same
errors and results as the kernels (when several labels are invalid, a backend may name a
different one of them: the reference names the first invalid target, a multi-threaded kernel
the first it meets).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from medimg.ops._boundary import invalid_label_error


def checked_labels(op: str, pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """Flattened int64 labels (N, P) and the mask of counted pixels; raises on a label outside [0, K)."""
    n = pred.shape[0]
    p = pred.reshape(n, -1).long()
    t = target.reshape(n, -1).long()
    keep = torch.ones_like(t, dtype=torch.bool) if ignore_index is None else t != ignore_index
    for name, labels in (("target", t), ("pred", p)):
        bad = keep & ((labels < 0) | (labels >= num_classes))
        if bad.any():
            sample, flat = (int(i) for i in bad.nonzero()[0])
            spatial = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), pred.shape[1:]))
            raise invalid_label_error(op, name, int(labels[sample, flat]), (sample, *spatial), num_classes,
                                      ignore_index)
    return p, t, keep


def segmentation_stats(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = None) -> Tensor:
    """[tp, fp, fn] per (sample, class) as int64 (N, K, 3), from a joint bincount."""
    n, k = pred.shape[0], num_classes
    p, t, keep = checked_labels("segmentation_stats", pred, target, k, ignore_index)
    batch = torch.arange(n, device=p.device).unsqueeze(1)
    joint = ((batch * k + t.clamp(0, k - 1)) * k + p.clamp(0, k - 1))[keep]
    confusion = torch.bincount(joint, minlength=n * k * k).view(n, k, k)  # [sample, target, pred]
    tp = confusion.diagonal(dim1=1, dim2=2)
    fp = confusion.sum(1) - tp
    fn = confusion.sum(2) - tp
    return torch.stack([tp, fp, fn], dim=-1)


def soft_dice_stats(probs: Tensor, target: Tensor) -> Tensor:
    """[sum p*t, sum p, sum t] per (sample, class), float32 (float64 for float64 probs)."""
    acc = torch.float64 if probs.dtype == torch.float64 else torch.float32
    classes = probs.shape[1]
    if target.dim() == probs.dim() - 1:
        if target.numel() and (target.min() < 0 or target.max() >= classes):
            raise ValueError(f"soft_dice_stats: target holds labels outside [0, {classes})")
        one_hot = F.one_hot(target.long(), classes).movedim(-1, 1).to(acc)
    else:
        one_hot = target.to(acc)
    p = probs.to(acc)
    dims = tuple(range(2, probs.dim()))
    return torch.stack([(p * one_hot).sum(dims), p.sum(dims), one_hot.sum(dims)], dim=-1)


def affine_grid_sample(input: Tensor, theta: Tensor, mode: str = "bilinear", padding_mode: str = "zeros",
                       align_corners: bool = False) -> Tensor:
    """F.affine_grid + F.grid_sample; integer label maps go through float64 (exact) in nearest mode."""
    work = input if input.is_floating_point() else input.to(torch.float64)
    grid = F.affine_grid(theta.to(work.dtype), list(input.shape), align_corners=align_corners)
    out = F.grid_sample(work, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    return out if input.is_floating_point() else out.to(input.dtype)


def affine_sample(input: Tensor, coeffs: Tensor, mode: str, padding_mode: str, align_corners: bool) -> Tensor:
    """medimg::affine_sample by F.grid_sample: ``input`` (N, C, *spatial) float sampled at the
    pixel coordinates coeffs · (w, h[, d], 1), coeffs (N, k, k + 1). Differentiable to any order
    in both. Zeros and border padding bound coordinates in pixels whatever align_corners, so
    the align_corners=False normalisation carries every pixel coordinate through, even along
    an axis of size 1; reflection's bounds depend on align_corners, so it keeps its own (along
    a size-1 axis with align_corners=True every coordinate reflects to pixel 0, as the kernel's)."""
    spatial = input.shape[2:]
    axes = torch.meshgrid(*(torch.arange(s, dtype=coeffs.dtype, device=input.device) for s in spatial),
                          indexing="ij")
    homogeneous = torch.stack([*reversed(axes), torch.ones_like(axes[0])], dim=-1)  # (*spatial, k + 1): w, h[, d], 1
    pixel = torch.einsum("...j,nij->n...i", homogeneous, coeffs)  # (N, *spatial, k): x, y[, z]
    sizes = torch.tensor(spatial[::-1], dtype=coeffs.dtype, device=input.device)
    align_corners = align_corners and padding_mode == "reflection"
    if align_corners:
        grid = torch.where(sizes > 1, 2 * pixel / (sizes - 1).clamp(min=1) - 1, 0.0)
    else:
        grid = (2 * pixel + 1) / sizes - 1
    return F.grid_sample(input, grid.to(input.dtype), mode=mode, padding_mode=padding_mode,
                         align_corners=align_corners)


def order_statistics(values: Tensor, ks: list[int]) -> Tensor:
    """Positions (N, K) of each row's ks-th smallest values: a stable sort (NaN last)."""
    return values.sort(dim=1, stable=True).indices[:, ks]


_MASK32 = 0xFFFFFFFF
_PHILOX_MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
_PHILOX_KEY_BUMPS = (0x9E3779B9, 0xBB67AE85)


def _multiply_words(a: Tensor, b: int) -> tuple[Tensor, Tensor]:
    """High and low 32-bit words of a * b, for int64 tensors holding 32-bit words and a 32-bit
    constant: by 16-bit halves, so that no product overflows int64."""
    a_high, a_low, b_high, b_low = a >> 16, a & 0xFFFF, b >> 16, b & 0xFFFF
    low, middle = a_low * b_low, a_high * b_low + a_low * b_high
    high = a_high * b_high + (middle >> 16) + (((low >> 16) + (middle & 0xFFFF)) >> 16)
    return high, (low + ((middle & 0xFFFF) << 16)) & _MASK32


def philox4x32_10(counter: list[Tensor], key: tuple[int, int]) -> list[Tensor]:
    """Philox4x32-10 of four int64 tensors of 32-bit counter words under a two-word key."""
    c0, c1, c2, c3 = counter
    key0, key1 = key
    for _ in range(10):
        high0, low0 = _multiply_words(c0, _PHILOX_MULTIPLIERS[0])
        high1, low1 = _multiply_words(c2, _PHILOX_MULTIPLIERS[1])
        c0, c1, c2, c3 = high1 ^ c1 ^ key0, low1, high0 ^ c3 ^ key1, low0
        key0, key1 = (key0 + _PHILOX_KEY_BUMPS[0]) & _MASK32, (key1 + _PHILOX_KEY_BUMPS[1]) & _MASK32
    return [c0, c1, c2, c3]


def gaussian_noise(image: Tensor, sigma: Tensor, seed: Tensor) -> Tensor:
    """image + sigma[n] * z as medimg.ops.noise draws z: Philox4x32-10 under the seed's two words,
    counter (block, sample, 0, 0), each block's words (a, b, c, d) giving the four normals of
    elements 4 block .. 4 block + 3 by Box-Muller on (a, b) and (c, d), in float64 (uniforms of
    24 bits for float32 images, 32 bits for float64, as the kernel)."""
    n, length = image.shape[0], math.prod(image.shape[1:])
    flat = image.reshape(n, length)
    blocks = torch.arange((length + 3) // 4, dtype=torch.int64, device=image.device)
    samples = torch.arange(n, dtype=torch.int64, device=image.device)[:, None]
    counter = [(blocks & _MASK32).expand(n, -1), (blocks >> 32).expand(n, -1), samples.expand(n, blocks.numel()),
               torch.zeros(n, blocks.numel(), dtype=torch.int64, device=image.device)]
    key = int(seed) & (2**64 - 1)
    words = philox4x32_10(counter, (key & _MASK32, key >> 32))
    if image.dtype == torch.float32:
        uniform = [((w >> 8) + first).double() * 2.0**-24 for w, first in zip(words, (1, 0, 1, 0), strict=True)]
    else:
        uniform = [(w + first).double() * 2.0**-32 for w, first in zip(words, (1, 0, 1, 0), strict=True)]
    normals = []
    for u1, u2 in ((uniform[0], uniform[1]), (uniform[2], uniform[3])):
        radius, angle = torch.sqrt(-2 * torch.log(u1)), 2 * torch.pi * u2
        normals += [radius * torch.cos(angle), radius * torch.sin(angle)]
    z = torch.stack(normals, dim=-1).reshape(n, 4 * blocks.numel())[:, :length]
    return (flat.double() + sigma.double()[:, None] * z).to(image.dtype).reshape(image.shape)


def noise_sigma(seed: Tensor, n: int, low: float, high: float, p: float, dtype: torch.dtype,
                device: torch.device) -> Tensor:
    """(n,) per-sample sigmas as the noise kernels draw them from the seed (common/noise_sigma.h):
    Philox4x32-10, counter (sample, sample >> 32, 0, 1); word 0's uniform below p applies the
    noise, word 1's uniform u gives low + (high - low) * u (float64, then dtype); else 0."""
    samples = torch.arange(n, dtype=torch.int64, device=device)
    counter = [samples & _MASK32, samples >> 32, torch.zeros_like(samples), torch.ones_like(samples)]
    key = int(seed) & (2**64 - 1)
    words = philox4x32_10(counter, (key & _MASK32, key >> 32))
    applied = words[0].double() * 2.0**-32 < p
    value = (words[1].double() * 2.0**-32).mul_(high - low).add_(low)
    return torch.where(applied, value, 0.0).to(dtype)


def gamma_curve(image: Tensor, gamma: Tensor, low: Tensor, extent: Tensor) -> Tensor:
    """clamp((image - low) / extent, 0, 1) ** gamma * extent + low, with (N,) gamma, low and extent
    per sample. Where autograd records it, pow reads 1 at a base of 0 and the result takes 0
    there: x ** g has an infinite slope at 0 for g < 1, which the chain would multiply by 0 (NaN)
    at each sample's minimum. Otherwise in place in one fresh buffer: a second image-sized
    temporary cost more than pow itself where the allocator hands memory back to the system in
    between (32 x 1x256^2 here: 9.5 ms, in place 3.0)."""
    shape = (-1,) + (1,) * (image.dim() - 1)
    gamma, low, extent = gamma.view(shape), low.view(shape), extent.view(shape)
    base = (image - low).div_(extent).clamp_(0.0, 1.0)
    if torch.is_grad_enabled() and (base.requires_grad or gamma.requires_grad):
        inside = base != 0
        curve = torch.where(inside, torch.where(inside, base, 1.0).pow(gamma), 0.0)
        return curve.mul(extent).add_(low)  # autograd keeps pow's result: a new tensor
    return base.pow_(gamma).mul_(extent).add_(low)

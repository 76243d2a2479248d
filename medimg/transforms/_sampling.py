"""Per-sample random draws on the batch's device, and the checks every transform shares."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import Tensor

from medimg.ops._boundary import check_batch, check_tensor


def check_image(image: Tensor) -> Tensor:
    check_tensor("image", image)
    if image.dim() not in (4, 5):
        raise ValueError(f"image: expected a batch (N, C, H, W) or (N, C, D, H, W), got shape {tuple(image.shape)}")
    check_batch("image", image, 4)
    return image


def check_generator(generator: torch.Generator | None, device: torch.device) -> None:
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")
    if generator.device.type != device.type:
        raise ValueError(f"generator: on {generator.device}, but the batch is on {device}; "
                         f"create it with torch.Generator(device={str(device)!r})")


def is_number(value: object) -> bool:
    """A real number: int, float, a NumPy scalar or a one-element real tensor; not a bool."""
    if isinstance(value, Tensor):
        return value.numel() == 1 and not value.is_complex() and value.dtype != torch.bool
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def as_range(name: str, value: float | tuple[float, float], *, symmetric: bool, low: float | None = None
             ) -> tuple[float, float]:
    """A (low, high) range from a number (symmetric: (-v, v); else (v, v)) or a pair."""
    if is_number(value):
        lo, hi = (-float(value), float(value)) if symmetric else (float(value), float(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(map(is_number, value)):
        lo, hi = float(value[0]), float(value[1])
    else:
        raise ValueError(f"{name}: expected a number or a (low, high) pair of numbers, got {value!r}")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name}: expected finite numbers, got {value!r}")
    if lo > hi:
        raise ValueError(f"{name}: low {lo} is above high {hi}")
    if low is not None and lo < low:
        raise ValueError(f"{name}: values must be >= {low}, got {value!r}")
    return lo, hi


def check_probability(name: str, p: float) -> float:
    if not is_number(p) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {p!r}")
    return float(p)


def per_sample(values: Tensor, like: Tensor) -> Tensor:
    """Shape (N,) values as (N, 1, ..., 1) to broadcast against a batch."""
    return values.view(-1, *([1] * (like.dim() - 1))).to(like.dtype)

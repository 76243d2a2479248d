"""Arithmetic on small per-sample matrices that gives the same bits in NumPy and in torch, so
that the CPU can take NumPy (a fraction of torch's cost per call on arrays this small) where
other devices, tracing and autograd take torch."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from medimg.ops._boundary import watched

Array = np.ndarray | Tensor


def numpy_allowed(device: torch.device) -> bool:
    """Whether host arithmetic for `device` may leave torch for NumPy: on the CPU, when nothing
    but eager execution watches (fake, symbolic, recorded or batched tensors must stay in torch)."""
    return device.type == "cpu" and not watched()


def ordered_matmul(a: Array, b: Array) -> Array:
    """``a @ b`` (broadcast batches) as products summed in index order, one elementwise op at a
    time: BLAS (NumPy's matmul) sums in an order of its own, and on a last-bit difference a
    pixel at a nearest-neighbour tie can change. The same bits as torch.matmul on the CPU for the
    sizes used here (k + 1 <= 4 terms)."""
    out = a[..., :, 0:1] * b[..., 0:1, :]
    for j in range(1, a.shape[-1]):
        out = out + a[..., :, j : j + 1] * b[..., j : j + 1, :]
    return out

"""Pure-PyTorch references of every medimg op: the test oracle and the fallback used when
a compiled backend is missing (or when a caller passes ``backend="torch"``).

They favour clarity over speed, but they are real implementations: same validation, same
errors and results as the kernels (when several labels are invalid, a backend may name a
different one of them: the reference names the first invalid target, a multi-threaded kernel
the first it meets).
"""

from __future__ import annotations

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

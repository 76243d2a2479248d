"""Bounding boxes of masks: the tumour boxes of the reference study, recomputed after any warp."""

from __future__ import annotations

import torch
from torch import Tensor


def masks_to_boxes(mask: Tensor) -> Tensor:
    """Boxes ``[x0, y0, x1, y1]`` (pixels, inclusive-exclusive) of the nonzero pixels of each mask.

    Args:
        mask: (N, H, W), any dtype; nonzero marks the object.

    Returns:
        float32 (N, 4) on mask's device: ``mask[n, y0:y1, x0:x1]`` holds every nonzero pixel of
        ``mask[n]``; ``[0, 0, 0, 0]`` for an empty mask. No host synchronisation.
    """
    if mask.dim() != 3:
        raise ValueError(f"mask: expected (N, H, W), got shape {tuple(mask.shape)}")
    h, w = mask.shape[1:]
    hit = mask != 0
    rows, cols = hit.any(dim=2), hit.any(dim=1)  # (N, H), (N, W)

    def bounds(along: Tensor, length: int) -> tuple[Tensor, Tensor]:
        index = torch.arange(length, device=along.device)
        first = torch.where(along, index, length).amin(dim=1)
        last = torch.where(along, index, -1).amax(dim=1) + 1
        return first, last

    y0, y1 = bounds(rows, h)
    x0, x1 = bounds(cols, w)
    box = torch.stack([x0, y0, x1, y1], dim=1).float()
    return torch.where(rows.any(dim=1, keepdim=True), box, torch.zeros_like(box))

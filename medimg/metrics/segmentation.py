"""Dice, IoU and the confusion matrix for segmentation, with MONAI-like reductions and an
explicit policy for classes absent from both prediction and target."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from medimg.metrics._labels import to_label_maps
from medimg.ops import _reference
from medimg.ops._boundary import check_label_pair, check_num_classes
from medimg.ops.seg_stats import segmentation_stats

REDUCTIONS = ("none", "mean", "sum", "mean_batch", "mean_class")


def dice(pred: Tensor, target: Tensor, num_classes: int, include_background: bool = False,
         reduction: str = "mean", empty: str | float = "nan", ignore_index: int | None = None,
         *, backend: str = "auto") -> Tensor:
    """Dice coefficient 2·tp / (2·tp + fp + fn) per sample and class, then reduced.

    Args:
        pred: label map (N, *spatial), logits/probabilities (N, C, *spatial) (argmax taken),
            or one-hot (N, C, *spatial); see ``medimg.metrics._labels.to_label_maps``.
        target: label map (N, *spatial) or one-hot (N, C, *spatial).
        num_classes: K, background (class 0) included.
        include_background: keep class 0 in the result.
        reduction: "none" -> (N, C); "mean" -> scalar mean of all non-NaN entries; "sum" ->
            scalar sum of non-NaN entries; "mean_batch" -> (C,) NaN-skipping mean over samples;
            "mean_class" -> (N,) NaN-skipping mean over classes.
        empty: score of a (sample, class) absent from both pred and target: "nan" (skipped by
            every mean, like MONAI's ignore_empty), or a number such as 1.0 or 0.0.
        ignore_index: pixels whose target equals it are left out of every count.
        backend: "auto" | "medimg" | "torch" for the statistics kernel.

    Returns:
        float32 tensor shaped by ``reduction``; no host synchronisation.

    Example:
        >>> target = torch.tensor([[[0, 1], [2, 2]]]); pred = torch.tensor([[[0, 1], [2, 1]]])
        >>> dice(pred, target, 3, reduction="none")
        tensor([[0.6667, 0.6667]])
    """
    return _overlap_score("dice", pred, target, num_classes, include_background, reduction, empty, ignore_index,
                          backend)


def iou(pred: Tensor, target: Tensor, num_classes: int, include_background: bool = False,
        reduction: str = "mean", empty: str | float = "nan", ignore_index: int | None = None,
        *, backend: str = "auto") -> Tensor:
    """Intersection over union (Jaccard) tp / (tp + fp + fn); arguments as :func:`dice`."""
    return _overlap_score("iou", pred, target, num_classes, include_background, reduction, empty, ignore_index,
                          backend)


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = None,
                     normalize: str | None = None) -> Tensor:
    """Confusion matrix over the whole batch: rows are target classes, columns predicted ones.

    Args:
        pred, target: as :func:`dice`.
        normalize: None (int64 counts), "true" (rows sum to 1), "pred" (columns sum to 1) or
            "all" (entries sum to 1); an empty row/column gives 0, not NaN.

    Returns:
        (K, K) int64 counts, or float32 when normalised.
    """
    num_classes = check_num_classes(num_classes)
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError(f"normalize: expected None, 'true', 'pred' or 'all', got {normalize!r}")
    p, t = check_label_pair(*to_label_maps(pred, target, num_classes))
    p, t, keep = _reference.checked_labels("confusion_matrix", p, t, num_classes, ignore_index)
    joint = (t.clamp(0, num_classes - 1) * num_classes + p.clamp(0, num_classes - 1))[keep]
    counts = torch.bincount(joint, minlength=num_classes * num_classes).view(num_classes, num_classes)
    if normalize is None:
        return counts
    counts = counts.float()
    total = {"true": counts.sum(1, keepdim=True), "pred": counts.sum(0, keepdim=True), "all": counts.sum()}[normalize]
    return torch.where(total > 0, counts / total.clamp_min(1), torch.zeros_like(counts))


def _check_options(reduction: str, empty: str | float) -> float:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")
    if empty == "nan":
        return math.nan
    if isinstance(empty, bool) or not isinstance(empty, (int, float)):
        raise ValueError(f"empty: expected 'nan' or a number such as 1.0 or 0.0, got {empty!r}")
    return float(empty)


def _overlap_score(kind: str, pred: Tensor, target: Tensor, num_classes: int, include_background: bool,
                   reduction: str, empty: str | float, ignore_index: int | None, backend: str) -> Tensor:
    num_classes = check_num_classes(num_classes)
    empty_value = _check_options(reduction, empty)
    if not include_background and num_classes == 1:
        raise ValueError("include_background=False leaves no class to score when num_classes=1")
    p, t = to_label_maps(pred, target, num_classes)
    tp, fp, fn = segmentation_stats(p, t, num_classes, ignore_index, backend=backend).double().unbind(-1)
    numerator, denominator = (2 * tp, 2 * tp + fp + fn) if kind == "dice" else (tp, tp + fp + fn)
    score = torch.where(denominator > 0, numerator / denominator.clamp_min(1), torch.full_like(tp, empty_value))
    if not include_background:
        score = score[:, 1:]
    return _reduce(score, reduction).float()


def _reduce(score: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return score
    if reduction == "mean":
        return score.nanmean()
    if reduction == "sum":
        return score.nansum()
    return score.nanmean(0 if reduction == "mean_batch" else 1)

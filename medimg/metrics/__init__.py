"""Segmentation and classification metrics on medimg's one-pass statistics kernels."""

from medimg.metrics.segmentation import confusion_matrix, dice, iou

__all__ = ["confusion_matrix", "dice", "iou"]

"""Segmentation losses on medimg's soft Dice statistics kernel."""

from medimg.losses.dice import DiceCELoss, DiceLoss

__all__ = ["DiceCELoss", "DiceLoss"]

"""Losses: Dice and Dice + cross-entropy on medimg's soft Dice kernel; adversarial + L1 for the GAN."""

from medimg.losses.adversarial import AdversarialLoss
from medimg.losses.dice import DiceCELoss, DiceLoss

__all__ = ["AdversarialLoss", "DiceCELoss", "DiceLoss"]

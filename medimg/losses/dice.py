"""Soft Dice loss and Dice + cross-entropy, built on ``medimg.ops.soft_dice_stats`` (one pass
over the probabilities for all classes, with a kernel for the backward too)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medimg.ops._boundary import check_backend, check_tensor
from medimg.ops.seg_stats import soft_dice_stats

LOSS_REDUCTIONS = ("mean", "sum", "none")


class DiceLoss(nn.Module):
    """1 - (2·Σp·t + smooth_nr) / (Σp + Σt + smooth_dr) per sample and class, then reduced.

    Args:
        softmax: apply softmax over classes to the input (multi-class, labels exclusive).
        sigmoid: apply a sigmoid per channel instead (multi-label or binary with C = 1).
            With neither, the input must already be probabilities.
        include_background: keep channel 0 in the loss.
        smooth_nr, smooth_dr: added to numerator and denominator (an empty class then
            scores a loss near 0, not NaN).
        weight: optional per-class weights (C,), multiplied into the per-class losses.
        batch: sum the statistics over the batch before the ratio (one Dice per class).
        reduction: "mean" | "sum" | "none" ("none" gives (N, C), or (1, C) with batch=True).
        backend: "auto" | "medimg" | "torch" for the statistics kernel.

    Shape:
        input: (N, C, *spatial) logits (or probabilities), any float dtype.
        target: labels (N, *spatial) of any integer dtype, or one-hot/soft (N, C, *spatial).
        With ``sigmoid`` and C = 1, a label map (N, *spatial) of {0, 1} is the foreground mask.

    Example:
        >>> loss = DiceLoss()(torch.randn(2, 3, 16, 16, requires_grad=True), torch.randint(0, 3, (2, 16, 16)))
        >>> loss.backward()
    """

    def __init__(self, *, softmax: bool = True, sigmoid: bool = False, include_background: bool = True,
                 smooth_nr: float = 1e-5, smooth_dr: float = 1e-5, weight: Tensor | None = None, batch: bool = False,
                 reduction: str = "mean", backend: str = "auto") -> None:
        super().__init__()
        if softmax and sigmoid:
            raise ValueError("softmax and sigmoid are exclusive: pick one (or neither for probabilities)")
        if reduction not in LOSS_REDUCTIONS:
            raise ValueError(f"reduction: expected one of {LOSS_REDUCTIONS}, got {reduction!r}")
        self.softmax, self.sigmoid = softmax, sigmoid
        self.include_background = include_background
        self.smooth_nr, self.smooth_dr = float(smooth_nr), float(smooth_dr)
        self.batch, self.reduction = batch, reduction
        self.backend = check_backend(backend)
        # float64 keeps weights such as 0.2 exact for float64 losses; cast to the loss dtype in use.
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float64))

    def probabilities(self, input: Tensor) -> Tensor:
        if self.softmax:
            return input.softmax(1)
        return input.sigmoid() if self.sigmoid else input

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        input, target = _check_input_target(input, target, self.sigmoid)
        stats = soft_dice_stats(self.probabilities(input), target, backend=self.backend)
        return self.reduce_stats(stats)

    def reduce_stats(self, stats: Tensor) -> Tensor:
        """The loss from soft Dice statistics (N, C, 3)."""
        if not self.include_background:
            if stats.shape[1] == 1:
                raise ValueError("include_background=False leaves no channel when the input has C=1")
            stats = stats[:, 1:]
        if self.batch:
            stats = stats.sum(0, keepdim=True)
        inter, psum, tsum = stats.unbind(-1)
        loss = 1.0 - (2.0 * inter + self.smooth_nr) / (psum + tsum + self.smooth_dr)
        if self.weight is not None:
            weight = self.weight if self.include_background else self.weight[1:]
            if weight.numel() != loss.shape[1]:
                raise ValueError(f"weight: expected {loss.shape[1] + (not self.include_background)} class weights, "
                                 f"got {self.weight.numel()}")
            loss = loss * weight.to(loss)
        if self.reduction == "mean":
            return loss.mean()
        return loss.sum() if self.reduction == "sum" else loss


class DiceCELoss(nn.Module):
    """``lambda_dice * DiceLoss + lambda_ce * cross-entropy`` (BCE-with-logits with ``sigmoid``).

    Args:
        lambda_dice, lambda_ce: weights of the two terms (>= 0).
        ce_weight: per-class weights for the cross-entropy term (C,).
        label_smoothing: passed to ``F.cross_entropy`` (softmax mode).
        **dice_kwargs: the :class:`DiceLoss` arguments; the input must be logits
            (``softmax`` or ``sigmoid``), as cross-entropy needs them.

    Shape:
        as :class:`DiceLoss`; a scalar out (``reduction`` "mean" or "sum").
    """

    def __init__(self, *, lambda_dice: float = 1.0, lambda_ce: float = 1.0, ce_weight: Tensor | None = None,
                 label_smoothing: float = 0.0, **dice_kwargs) -> None:
        super().__init__()
        if lambda_dice < 0 or lambda_ce < 0:
            raise ValueError(f"lambda_dice and lambda_ce must be >= 0, got {lambda_dice} and {lambda_ce}")
        self.dice = DiceLoss(**dice_kwargs)
        if not (self.dice.softmax or self.dice.sigmoid):
            raise ValueError("DiceCELoss needs logits: pass softmax=True or sigmoid=True")
        if self.dice.reduction == "none":
            raise ValueError("DiceCELoss reduces to a scalar: reduction must be 'mean' or 'sum'")
        self.lambda_dice, self.lambda_ce = float(lambda_dice), float(lambda_ce)
        self.label_smoothing = float(label_smoothing)
        ce_weight = None if ce_weight is None else torch.as_tensor(ce_weight, dtype=torch.float64)
        self.register_buffer("ce_weight", ce_weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        input, target = _check_input_target(input, target, self.dice.sigmoid)
        dice = self.dice(input, target)
        return self.lambda_dice * dice + self.lambda_ce * self.cross_entropy(input, target)

    def cross_entropy(self, input: Tensor, target: Tensor) -> Tensor:
        weight = None if self.ce_weight is None else self.ce_weight.to(input.dtype)
        reduction = self.dice.reduction
        if self.dice.sigmoid:
            dense = target.to(input.dtype) if target.dim() == input.dim() else _one_hot(target, input)
            pos = None if weight is None else weight.view(1, -1, *([1] * (input.dim() - 2)))
            return F.binary_cross_entropy_with_logits(input, dense, weight=pos, reduction=reduction)
        # A one-hot or soft target gives cross-entropy with probabilities.
        target = target.to(input.dtype) if target.dim() == input.dim() else target.long()
        return F.cross_entropy(input, target, weight=weight, reduction=reduction,
                               label_smoothing=self.label_smoothing)


def _one_hot(labels: Tensor, like: Tensor) -> Tensor:
    return F.one_hot(labels.long(), like.shape[1]).movedim(-1, 1).to(like.dtype)


def _check_input_target(input: Tensor, target: Tensor, sigmoid: bool) -> tuple[Tensor, Tensor]:
    check_tensor("input", input)
    check_tensor("target", target)
    if not input.is_floating_point():
        raise TypeError(f"input: expected float logits or probabilities (N, C, *spatial), got {input.dtype}")
    if input.dim() < 3:
        raise ValueError(f"input: expected (N, C, *spatial), got shape {tuple(input.shape)}")
    if sigmoid and input.shape[1] == 1 and target.dim() == input.dim() - 1:  # binary foreground mask
        if not target.is_floating_point() and bool(((target != 0) & (target != 1)).any()):
            raise ValueError("target: a binary mask for sigmoid with one channel must hold only 0 and 1")
        target = target.unsqueeze(1).to(input.dtype)
    return input, target

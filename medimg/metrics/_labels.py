"""Reading predictions and targets as label maps: the input conventions of medimg.metrics."""

from __future__ import annotations

from torch import Tensor

from medimg.ops._boundary import check_tensor


def _has_class_dim(t: Tensor, other: Tensor) -> bool:
    if t.is_floating_point():
        return True
    if other.is_floating_point():
        return t.dim() == other.dim()
    return t.dim() == other.dim() + 1


def to_label_maps(pred: Tensor, target: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Label maps (N, *spatial) from label maps, logits/probabilities or one-hot tensors.

    A tensor carries a class dimension (dim 1, of size ``num_classes``, reduced by argmax)
    when it is floating point, or when it has one dimension more than an integer partner,
    or the same number of dimensions as a floating partner. Two integer tensors of equal
    rank are label maps.
    """
    check_tensor("pred", pred)
    check_tensor("target", target)
    maps = []
    for name, t, other in (("pred", pred, target), ("target", target, pred)):
        if _has_class_dim(t, other):
            if t.dim() < 3 or t.shape[1] != num_classes:
                raise ValueError(f"{name}: a class-channel tensor must be (N, num_classes={num_classes}, *spatial), "
                                 f"got shape {tuple(t.shape)}")
            t = t.argmax(1)
        maps.append(t)
    return maps[0], maps[1]

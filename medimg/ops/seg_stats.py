"""Segmentation statistics for Dice and IoU: hard counts from label maps, soft sums from
probabilities. One pass over the inputs on CPU (C++/OpenMP/SIMD) and CUDA."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from medimg import _extension
from medimg.ops import _reference
from medimg.ops._boundary import (
    FLOAT_DTYPES,
    check_batch,
    check_label_pair,
    check_labels,
    check_num_classes,
    check_same_device,
    check_tensor,
    cuda_stream,
    flatten_spatial,
    invalid_label_error,
    num_threads,
    use_compiled,
    view,
)


def segmentation_stats(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = None,
                       *, backend: str = "auto") -> Tensor:
    """True positives, false positives and false negatives per sample and class, in one pass.

    Args:
        pred: predicted labels (N, *spatial), any integer dtype or bool.
        target: reference labels, same shape and device as ``pred``.
        num_classes: K; every label must lie in [0, K).
        ignore_index: pixels whose *target* equals it are left out of every count, whatever
            ``pred`` holds there (their ``pred`` values are not inspected).
        backend: "auto" (compiled kernel where built), "medimg" (insist), "torch" (reference).

    Returns:
        int64 (N, K, 3): ``[..., 0]`` tp, ``[..., 1]`` fp, ``[..., 2]`` fn.

    Raises:
        ValueError: a label outside [0, K) (naming the value and its index), shapes that
            differ, an empty batch, ``num_classes < 1``.
        TypeError: non-integer labels.

    Example:
        >>> pred = torch.tensor([[0, 1, 1, 2]]); target = torch.tensor([[0, 1, 2, 2]])
        >>> segmentation_stats(pred, target, 3)[0].tolist()
        [[1, 0, 0], [1, 1, 0], [1, 0, 1]]

    Mixed label dtypes are promoted to a common one first (a copy); layouts whose spatial
    dims cannot be read as rows (e.g. strided in three dims) are copied to contiguous memory.
    """
    pred, target = check_label_pair(pred, target)
    num_classes = check_num_classes(num_classes)
    _check_ignore_index(ignore_index)
    if use_compiled(backend, pred.device):
        return torch.ops.medimg.segmentation_stats(pred, target, num_classes, ignore_index)
    return _reference.segmentation_stats(pred, target, num_classes, ignore_index)


def soft_dice_stats(probs: Tensor, target: Tensor, *, backend: str = "auto") -> Tensor:
    """Soft Dice sums per sample and class: ``[sum p*t, sum p, sum t]``, differentiable in probs
    and in a soft target (a consistency loss between two predictions), to any order.

    Args:
        probs: probabilities (N, C, *spatial), float16/bfloat16/float32/float64.
        target: labels (N, *spatial) of any integer dtype, or a one-hot/soft target
            (N, C, *spatial) of the same shape as ``probs`` (cast to its dtype).
        backend: "auto", "medimg" or "torch" (see :func:`segmentation_stats`).

    Returns:
        (N, C, 3), float32 (float64 for float64 probs), accumulated in float per chunk and
        in double across chunks.

    Example:
        >>> probs = torch.softmax(torch.randn(2, 3, 8, 8), 1); labels = torch.randint(0, 3, (2, 8, 8))
        >>> soft_dice_stats(probs, labels).shape
        torch.Size([2, 3, 3])
    """
    probs, target = _check_soft_pair(probs, target)
    if use_compiled(backend, probs.device):
        return torch.ops.medimg.soft_dice_stats(probs, target)
    return _reference.soft_dice_stats(probs, target)


# ----------------------------------------------------------------------------- validation

def _check_ignore_index(ignore_index: object) -> None:
    if ignore_index is None:
        return
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index: expected an int or None, got {type(ignore_index).__name__}")
    if not -(2**63) <= ignore_index < 2**63:
        raise ValueError(f"ignore_index: {ignore_index} does not fit in int64")


def _check_soft_pair(probs: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    check_tensor("probs", probs)
    check_tensor("target", target)
    if probs.dtype not in FLOAT_DTYPES:
        raise TypeError(f"probs: expected a floating dtype, got {probs.dtype}")
    check_batch("probs", probs, 3)
    check_same_device(probs=probs, target=target)
    if target.dim() == probs.dim() - 1:
        target = check_labels("target", target)
        expected = (probs.shape[0], *probs.shape[2:])
    elif target.dim() == probs.dim():
        if target.dtype != probs.dtype:
            target = target.to(probs.dtype)
        expected = tuple(probs.shape)
    else:
        raise ValueError(f"target: expected labels (N, *spatial) or a target shaped like probs "
                         f"{tuple(probs.shape)}, got shape {tuple(target.shape)}")
    if tuple(target.shape) != tuple(expected):
        raise ValueError(f"target: expected shape {tuple(expected)}, got {tuple(target.shape)}")
    return probs, target


# ----------------------------------------------------------------------------- custom ops

@torch.library.custom_op("medimg::segmentation_stats", mutates_args=())
def _segmentation_stats_op(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None) -> Tensor:
    raise NotImplementedError(f"medimg::segmentation_stats has no kernel for device {pred.device.type}")


@_segmentation_stats_op.register_fake
def _(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None) -> Tensor:
    return pred.new_empty((pred.shape[0], num_classes, 3), dtype=torch.int64)


def _effective_ignore(dtype: torch.dtype, ignore_index: int | None) -> int | None:
    """ignore_index as the kernel sees it: None when no value of `dtype` can equal it."""
    if ignore_index is None:
        return None
    info = torch.iinfo(dtype)
    return ignore_index if info.min <= ignore_index <= info.max else None


def _run_seg_stats(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None, launch) -> Tensor:
    """Shared host side of the CPU and CUDA kernels: row views, output, error report."""
    pred, target = check_label_pair(pred, target)
    (p, t), unravel = flatten_spatial([pred, target], [1, 1], groups=2)
    out = torch.zeros((pred.shape[0], num_classes, 3), dtype=torch.int64, device=pred.device)
    which, sample, row, col, value = launch(p, t, out, _effective_ignore(pred.dtype, ignore_index))
    if which >= 0:
        name = "pred" if which == 0 else "target"
        raise invalid_label_error("segmentation_stats", name, value, (sample, *unravel(row, col)), num_classes,
                                  ignore_index)
    return out


@_segmentation_stats_op.register_kernel("cpu")
def _(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None) -> Tensor:
    module = _extension.require(_extension.cpu, _extension.cpu_error, "segmentation_stats on the CPU")

    def launch(p: Tensor, t: Tensor, out: Tensor, ignore: int | None) -> Sequence[int]:
        return module.seg_stats(view(p), view(t), view(out), num_classes, ignore, num_threads())

    return _run_seg_stats(pred, target, num_classes, ignore_index, launch)


@_segmentation_stats_op.register_kernel("cuda")
def _(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None) -> Tensor:
    module = _extension.require(_extension.cuda, _extension.cuda_error, "segmentation_stats on CUDA")

    def launch(p: Tensor, t: Tensor, out: Tensor, ignore: int | None) -> Sequence[int]:
        error = torch.full((5,), -1, dtype=torch.int64, device=p.device)
        module.seg_stats(view(p), view(t), view(out), num_classes, ignore, view(error), cuda_stream(p.device))
        return error.tolist()  # the one host sync: labels must be valid before counts are used

    return _run_seg_stats(pred, target, num_classes, ignore_index, launch)


@torch.library.custom_op("medimg::soft_dice_stats", mutates_args=())
def _soft_dice_stats_op(probs: Tensor, target: Tensor) -> Tensor:
    raise NotImplementedError(f"medimg::soft_dice_stats has no kernel for device {probs.device.type}")


def _stats_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@_soft_dice_stats_op.register_fake
def _(probs: Tensor, target: Tensor) -> Tensor:
    return probs.new_empty((probs.shape[0], probs.shape[1], 3), dtype=_stats_dtype(probs.dtype))


def _soft_views(probs_like: Tensor, target: Tensor) -> tuple[Tensor, Tensor, bool]:
    labels = target.dim() == probs_like.dim() - 1
    (p, t), _ = flatten_spatial([probs_like, target], [2, 1 if labels else 2], groups=1)
    return p, t, labels


@_soft_dice_stats_op.register_kernel("cpu")
def _(probs: Tensor, target: Tensor) -> Tensor:
    module = _extension.require(_extension.cpu, _extension.cpu_error, "soft_dice_stats on the CPU")
    probs, target = _check_soft_pair(probs, target)
    p, t, labels = _soft_views(probs, target)
    out = torch.empty((probs.shape[0], probs.shape[1], 3), dtype=_stats_dtype(probs.dtype))
    if module.soft_dice_stats(view(p), view(t), labels, view(out), num_threads()):
        raise ValueError(f"soft_dice_stats: target holds labels outside [0, {probs.shape[1]})")
    return out


@_soft_dice_stats_op.register_kernel("cuda")
def _(probs: Tensor, target: Tensor) -> Tensor:
    module = _extension.require(_extension.cuda, _extension.cuda_error, "soft_dice_stats on CUDA")
    probs, target = _check_soft_pair(probs, target)
    p, t, labels = _soft_views(probs, target)
    # Chunks are summed in float64 (as on the CPU), then cast.
    out = torch.zeros((probs.shape[0], probs.shape[1], 3), dtype=torch.float64, device=probs.device)
    invalid = torch.zeros((1,), dtype=torch.int64, device=probs.device)
    module.soft_dice_stats(view(p), view(t), labels, view(out), view(invalid), cuda_stream(probs.device))
    if labels and int(invalid) != 0:
        raise ValueError(f"soft_dice_stats: target holds labels outside [0, {probs.shape[1]})")
    return out.to(_stats_dtype(probs.dtype))


@torch.library.custom_op("medimg::soft_dice_stats_backward", mutates_args=())
def _soft_dice_backward_op(grad_stats: Tensor, target: Tensor, probs_shape: Sequence[int],
                           probs_dtype: torch.dtype) -> Tensor:
    raise NotImplementedError(f"medimg::soft_dice_stats_backward has no kernel for device {target.device.type}")


@_soft_dice_backward_op.register_fake
def _(grad_stats: Tensor, target: Tensor, probs_shape: Sequence[int], probs_dtype: torch.dtype) -> Tensor:
    return grad_stats.new_empty(tuple(probs_shape), dtype=probs_dtype)


def _run_backward(grad_stats: Tensor, target: Tensor, probs_shape: Sequence[int], probs_dtype: torch.dtype,
                  launch) -> Tensor:
    grad = torch.empty(tuple(probs_shape), dtype=probs_dtype, device=target.device)
    if grad.numel() == 0:
        return grad
    g, t, labels = _soft_views(grad, target)
    launch(grad_stats.to(_stats_dtype(probs_dtype)).contiguous(), t, labels, g)
    return grad


@_soft_dice_backward_op.register_kernel("cpu")
def _(grad_stats: Tensor, target: Tensor, probs_shape: Sequence[int], probs_dtype: torch.dtype) -> Tensor:
    module = _extension.require(_extension.cpu, _extension.cpu_error, "soft_dice_stats backward on the CPU")

    def launch(g: Tensor, t: Tensor, labels: bool, out: Tensor) -> None:
        module.soft_dice_backward(view(g), view(t), labels, view(out), num_threads())

    return _run_backward(grad_stats, target, probs_shape, probs_dtype, launch)


@_soft_dice_backward_op.register_kernel("cuda")
def _(grad_stats: Tensor, target: Tensor, probs_shape: Sequence[int], probs_dtype: torch.dtype) -> Tensor:
    module = _extension.require(_extension.cuda, _extension.cuda_error, "soft_dice_stats backward on CUDA")

    def launch(g: Tensor, t: Tensor, labels: bool, out: Tensor) -> None:
        module.soft_dice_backward(view(g), view(t), labels, view(out), cuda_stream(out.device))

    return _run_backward(grad_stats, target, probs_shape, probs_dtype, launch)


def _setup_context(ctx, inputs, output) -> None:
    probs, target = inputs
    ctx.save_for_backward(target, probs if ctx.needs_input_grad[1] else None)
    ctx.shapes = (tuple(probs.shape), tuple(target.shape))
    ctx.dtypes = (probs.dtype, target.dtype)


def _backward(ctx, grad_stats: Tensor):
    """d[Σpt, Σp, Σt]/dp = g0·t + g1, and for a soft target that needs a gradient (a consistency
    loss between two predictions) d/dt = g0·p + g2: the same kernel, p and t swapped."""
    target, probs = ctx.saved_tensors
    # As the forward read it (labels by shape, as _check_soft_pair): bool labels as uint8; a
    # soft or one-hot target, of any dtype, in probs' dtype (a cast that autograd records, so
    # second derivatives reach the target through it).
    labels = target.dim() == len(ctx.shapes[0]) - 1
    target = check_labels("target", target) if labels else target.to(ctx.dtypes[0])
    grad_probs = grad_target = None
    if ctx.needs_input_grad[0]:
        grad_probs = torch.ops.medimg.soft_dice_stats_backward(grad_stats, target, ctx.shapes[0], ctx.dtypes[0])
    if ctx.needs_input_grad[1]:
        grad_target = torch.ops.medimg.soft_dice_stats_backward(grad_stats[..., [0, 2, 1]], probs, ctx.shapes[0],
                                                                ctx.dtypes[0]).to(ctx.dtypes[1])
    return grad_probs, grad_target


_soft_dice_stats_op.register_autograd(_backward, setup_context=_setup_context)


def _setup_backward_context(ctx, inputs, output) -> None:
    grad_stats, target, _probs_shape, _probs_dtype = inputs
    ctx.save_for_backward(grad_stats, target)


def _backward_backward(ctx, grad_grad: Tensor):
    """Derivatives of g0·t + g1 (linear in grad_stats g and in a soft t) along grad_grad (probs'
    shape): [Σ grad_grad·t, Σ grad_grad, 0] for g, the forward op's first two columns, and
    g0·grad_grad for a soft t. (With labels on CUDA, the forward op's label check waits for the
    stream once more.)"""
    grad_stats, target = ctx.saved_tensors
    to_grad_stats = to_target = None
    if ctx.needs_input_grad[0]:
        stats = torch.ops.medimg.soft_dice_stats(grad_grad, target)
        to_grad_stats = (stats * stats.new_tensor([1.0, 1.0, 0.0])).to(grad_stats.dtype)
    if ctx.needs_input_grad[1]:
        spread = grad_stats[..., 0].reshape(*grad_stats.shape[:2], *[1] * (grad_grad.dim() - 2))
        to_target = (spread * grad_grad).to(target.dtype)
    return to_grad_stats, to_target, None, None


_soft_dice_backward_op.register_autograd(_backward_backward, setup_context=_setup_backward_context)

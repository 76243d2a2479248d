"""Gamma curve of each sample on its own intensity range in one pass (RandomGamma's arithmetic).
On the CPU torch.pow calls libm's powf one element at a time (32 x 1x256^2 float32: 8 ms for
pow alone on the 2-core CPU here); the kernel raises to the power in vectorised arithmetic. On
CUDA the kernel makes one pass where the formula in torch ops makes five."""

from __future__ import annotations

import torch
from torch import Tensor

from medimg import _extension
from medimg.ops import _reference
from medimg.ops._boundary import (
    call_op,
    check_backend,
    check_tensor,
    cuda_stream,
    empty_output,
    num_threads,
    view,
    watched,
)


def gamma_curve(image: Tensor, gamma: Tensor, low: Tensor, extent: Tensor, *, backend: str = "auto") -> Tensor:
    """``clamp((image - low) / extent, 0, 1) ** gamma * extent + low`` per sample.

    The curve maps each sample's range [low, low + extent] onto itself: gamma below 1 brightens
    mid-tones, above 1 darkens them.

    Args:
        image: (N, ...) floating.
        gamma: (N,) finite exponents > 0; low: (N,) and extent: (N,) > 0, each sample's range.
            All three in image's dtype, on its device. Their values are checked on the CPU in
            eager mode only (on a device each check would wait for it; under vmap or tracing
            there is no value to read).
        backend: "auto" (a kernel where one is built and no gradient is recorded: on the CPU
            for float32 with a vector instruction set beyond the baseline, e.g. AVX2; on CUDA
            for every floating dtype; otherwise the formula in torch ops,
            medimg.ops._reference), "medimg" (insist on the kernel) or "torch" (the formula;
            differentiable).

    Returns:
        A new tensor, image's shape and dtype; channels-last in, channels-last out (other
        layouts give a contiguous result from the kernels). The CPU kernel computes the power
        as e^(gamma ln b) in float32 arithmetic: within about (1 + |gamma ln b|) * 2^-22 of
        torch.pow relative to the result (b: the clamped base), and a power below e^-87.5
        (about 1e-38) comes out as 0. The CUDA kernel calls CUDA's pow in float32 (float64 for
        float64) and rounds once to image's dtype. On both, a sample whose gamma is exactly 1
        gives clamp((image - low) / extent, 0, 1) * extent + low bit for bit (float32 and
        float64): the power is skipped. (torch's CUDA pow with a tensor exponent is not exact
        there in float64: pow(b, 1) != b for 3% of 2^20 uniform b on an H100.)
    """
    check_backend(backend)
    for name, t in (("image", image), ("gamma", gamma), ("low", low), ("extent", extent)):
        check_tensor(name, t)
    if image.dim() < 1 or not image.is_floating_point():
        raise ValueError(f"image: expected a floating (N, ...) tensor, got {image.dtype} {tuple(image.shape)}")
    for name, t in (("gamma", gamma), ("low", low), ("extent", extent)):
        if tuple(t.shape) != (image.shape[0],) or t.dtype != image.dtype or t.device != image.device:
            raise ValueError(f"{name}: expected {image.dtype} ({image.shape[0]},) on {image.device}, got {t.dtype} "
                             f"{tuple(t.shape)} on {t.device}")
    if image.device.type == "cpu" and not watched():  # on a GPU each check would be a device sync
        if not bool(((gamma > 0) & (gamma < torch.inf)).all()):
            raise ValueError("gamma: every exponent must be finite and > 0")
        if bool((extent <= 0).any()):  # NaN passes: a NaN sample (unchecked upstream) stays NaN
            raise ValueError("extent: every range must be > 0")
    if not _kernel_applies(backend, image, gamma, low, extent):
        return _reference.gamma_curve(image, gamma, low, extent)
    if image.device.type not in _KERNELS or (image.device.type == "cpu" and image.dtype != torch.float32):
        raise ValueError(f"image: the gamma kernels take float32 on the CPU and floating dtypes on CUDA, got "
                         f"{image.dtype} on {image.device}; pass backend='torch'")
    if torch.is_grad_enabled():
        for name, t in (("image", image), ("gamma", gamma), ("low", low), ("extent", extent)):
            if t.requires_grad:
                raise ValueError(f"{name}: requires grad, and the gamma kernel is not differentiable; "
                                 "pass backend='torch' (or 'auto')")
    if image.numel() == 0:
        return torch.empty_like(image)
    return call_op(torch.ops.medimg.gamma_curve, _KERNELS, image, gamma, low, extent)


def _kernel_applies(backend: str, image: Tensor, *params: Tensor) -> bool:
    """Whether `backend` runs the kernel: "medimg" always (the caller then checks that it can);
    "auto" outside torch.func transforms and while no gradient is recorded, for CUDA tensors
    where the CUDA module is built, and for float32 CPU tensors where the CPU module is, unless
    it runs its baseline build (four lanes without FMA: 14 ms for 32 x 1x256^2 here, slower
    than the formula's 10)."""
    if backend != "auto":
        return backend == "medimg"
    recording = torch.is_grad_enabled() and any(t.requires_grad for t in (image, *params))
    if recording or torch._C._are_functorch_transforms_active():
        return False
    if image.device.type == "cuda":
        return _extension.cuda is not None
    return (image.device.type == "cpu" and image.dtype == torch.float32 and _extension.cpu is not None
            and _extension.cpu.cpu_isa() != "baseline")


@torch.library.custom_op("medimg::gamma_curve", mutates_args=())
def _gamma_curve_op(image: Tensor, gamma: Tensor, low: Tensor, extent: Tensor) -> Tensor:
    raise NotImplementedError(f"medimg::gamma_curve has no kernel for device {image.device.type}")


def _memory_order(image: Tensor) -> tuple[int, ...]:
    """The dimension order in which the kernel walks `image`: channels last for a channels-last
    (N, C, H, W) or (N, C, D, H, W) image, in which it is contiguous (the curve is elementwise
    within a sample, so the output keeps that layout), the logical order for any other."""
    logical = tuple(range(image.dim()))
    if image.is_contiguous():
        return logical
    if image.dim() == 4 and image.is_contiguous(memory_format=torch.channels_last):
        return (0, 2, 3, 1)
    if image.dim() == 5 and image.is_contiguous(memory_format=torch.channels_last_3d):
        return (0, 2, 3, 4, 1)
    return logical


def _inverse(order: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(order.index(d) for d in range(len(order)))


@_gamma_curve_op.register_fake
def _(image: Tensor, gamma: Tensor, low: Tensor, extent: Tensor) -> Tensor:
    order = _memory_order(image)
    return torch.empty_like(image.permute(order), memory_format=torch.contiguous_format).permute(_inverse(order))


def _curve_in_memory_order(module, image: Tensor, gamma: Tensor, low: Tensor, extent: Tensor, last: int) -> Tensor:
    """The compiled curve of `module` (the device's) over image in its memory order, the output
    laid out alike; `last`: the kernel's final argument (CPU threads, or the CUDA stream)."""
    order = _memory_order(image)
    image_in_order = image.permute(order).contiguous()
    out_in_order = empty_output(image_in_order.shape, image.dtype, image.device)
    module.gamma_curve(view(image_in_order), view(gamma.contiguous()), view(low.contiguous()),
                       view(extent.contiguous()), view(out_in_order), last)
    return out_in_order.permute(_inverse(order))


@_gamma_curve_op.register_kernel("cpu")
def _gamma_curve_cpu(image: Tensor, gamma: Tensor, low: Tensor, extent: Tensor) -> Tensor:
    module = _extension.require(_extension.cpu, _extension.cpu_error, "gamma_curve on the CPU")
    return _curve_in_memory_order(module, image, gamma, low, extent, num_threads())


@_gamma_curve_op.register_kernel("cuda")
def _gamma_curve_cuda(image: Tensor, gamma: Tensor, low: Tensor, extent: Tensor) -> Tensor:
    module = _extension.require(_extension.cuda, _extension.cuda_error, "gamma_curve on CUDA")
    return _curve_in_memory_order(module, image, gamma, low, extent, cuda_stream(image.device))


_KERNELS = {"cpu": _gamma_curve_cpu, "cuda": _gamma_curve_cuda}

"""The custom ops under affine_grid_sample: the warp at per-sample pixel coefficients
(input pixel coordinate = M · output pixel, M (N, k, k + 1) float64), its backward, and the
backward's own derivative, with their CPU and CUDA kernels."""

from __future__ import annotations

import torch
from torch import Tensor

from medimg import _extension
from medimg.ops import _reference
from medimg.ops._boundary import (
    FLOAT_DTYPES,
    INTEGER_DTYPES,
    alert_not_deterministic,
    cuda_stream,
    empty_output,
    num_threads,
    view,
)

MODES = {"bilinear": 0, "nearest": 1}
PADDING_MODES = {"zeros": 0, "border": 1, "reflection": 2}
_MAX_PLANE_OFFSET = 2**31 - 1
# What the compiled forward kernels take per device (bool masks travel as uint8); with
# backend="auto", other dtypes (float16/bfloat16 on the CPU) take the torch reference.
KERNEL_DTYPES = {"cpu": (torch.float32, torch.float64, *INTEGER_DTYPES),
                  "cuda": (*FLOAT_DTYPES, *INTEGER_DTYPES)}


def kernel_reads_dtype(t: Tensor) -> bool:
    """Whether the compiled warp kernel of t's device takes t's dtype (bool as uint8)."""
    return t.dtype in KERNEL_DTYPES.get(t.device.type, ()) or t.dtype == torch.bool


@torch.library.custom_op("medimg::affine_sample", mutates_args=())
def _affine_sample_op(input: Tensor, coeffs: Tensor, mode: str, padding_mode: str, align_corners: bool) -> Tensor:
    raise NotImplementedError(f"medimg::affine_sample has no kernel for device {input.device.type}")


def _check_coeffs(input: Tensor, coeffs: Tensor) -> None:
    k = input.dim() - 2
    if input.dim() not in (4, 5) or tuple(coeffs.shape) != (input.shape[0], k, k + 1):
        raise ValueError(f"coeffs: expected shape ({input.shape[0]}, {k}, {k + 1}) for input {tuple(input.shape)}, "
                         f"got {tuple(coeffs.shape)}")


@_affine_sample_op.register_fake
def _(input: Tensor, coeffs: Tensor, mode: str, padding_mode: str, align_corners: bool) -> Tensor:
    _check_coeffs(input, coeffs)
    return input.new_empty(input.shape)


def plane_offsets_fit(input: Tensor) -> bool:
    """Whether the kernels can address every element of a channel plane of `input` (N, C,
    *spatial) with an int32 offset."""
    offset = 0
    for size, stride in zip(input.shape[2:], input.stride()[2:], strict=True):
        offset += (size - 1) * stride
    return offset <= _MAX_PLANE_OFFSET


def _plane_addressable(input: Tensor) -> Tensor:
    """Input whose channel planes the kernels can address with int32 offsets."""
    if not plane_offsets_fit(input):
        input = input.contiguous()
        if not plane_offsets_fit(input):
            raise ValueError(f"input: one channel plane of {tuple(input.shape[2:])} exceeds 2^31 elements")
    return input


def _check_kernel_dtype(input: Tensor, supported: tuple[torch.dtype, ...], where: str) -> None:
    if input.dtype not in supported:
        raise TypeError(f"input: {input.dtype} is not supported by medimg's {where} kernel "
                        f"(supported: {', '.join(map(str, supported))}); pass backend='torch'")


def _forward(module, input: Tensor, coeffs: Tensor, mode: str, padding_mode: str, align_corners: bool,
             where: str, last: int) -> Tensor:
    """The compiled warp of `module` (the device's), `where` naming it in errors; `last`: its
    final argument (CPU threads, or the CUDA stream)."""
    _check_kernel_dtype(input, KERNEL_DTYPES[input.device.type], where)
    _check_coeffs(input, coeffs)
    input = _plane_addressable(input)
    out = empty_output(input.shape, input.dtype, input.device)
    module.affine_warp(view(input), view(coeffs.to(torch.float64).contiguous()), view(out), MODES[mode],
                       PADDING_MODES[padding_mode], align_corners, last)
    return out


@_affine_sample_op.register_kernel("cpu")
def _affine_sample_cpu(input: Tensor, coeffs: Tensor, mode: str, padding_mode: str, align_corners: bool) -> Tensor:
    module = _extension.require(_extension.cpu, _extension.cpu_error, "affine_grid_sample on the CPU")
    return _forward(module, input, coeffs, mode, padding_mode, align_corners, "CPU", num_threads())


@_affine_sample_op.register_kernel("cuda")
def _affine_sample_cuda(input: Tensor, coeffs: Tensor, mode: str, padding_mode: str, align_corners: bool) -> Tensor:
    module = _extension.require(_extension.cuda, _extension.cuda_error, "affine_grid_sample on CUDA")
    return _forward(module, input, coeffs, mode, padding_mode, align_corners, "CUDA", cuda_stream(input.device))


FORWARD_KERNELS = {"cpu": _affine_sample_cpu, "cuda": _affine_sample_cuda}


@torch.library.custom_op("medimg::affine_sample_backward", mutates_args=())
def _affine_sample_backward_op(grad_out: Tensor, input: Tensor, coeffs: Tensor, mode: str, padding_mode: str,
                               align_corners: bool, need_input: bool, need_coeffs: bool) -> tuple[Tensor, Tensor]:
    raise NotImplementedError(f"medimg::affine_sample_backward has no kernel for device {input.device.type}")


@_affine_sample_backward_op.register_fake
def _(grad_out: Tensor, input: Tensor, coeffs: Tensor, mode: str, padding_mode: str, align_corners: bool,
      need_input: bool, need_coeffs: bool) -> tuple[Tensor, Tensor]:
    grad_input = input.new_empty(input.shape if need_input else (0,))
    grad_coeffs = coeffs.new_empty(coeffs.shape if need_coeffs else (0,), dtype=torch.float64)
    return grad_input, grad_coeffs


def _backward_buffers(input: Tensor, coeffs: Tensor, need_input: bool, need_coeffs: bool, grad_dtype: torch.dtype
                      ) -> tuple[Tensor, Tensor]:
    n, c, k = input.shape[0], input.shape[1], coeffs.shape[1]
    grad_input = torch.zeros(input.shape if need_input else (0,), dtype=grad_dtype, device=input.device)
    grad_coeffs = torch.zeros((n, c, k, k + 1) if need_coeffs else (0,), dtype=torch.float64, device=input.device)
    return grad_input, grad_coeffs


@_affine_sample_backward_op.register_kernel("cpu")
def _(grad_out: Tensor, input: Tensor, coeffs: Tensor, mode: str, padding_mode: str, align_corners: bool,
      need_input: bool, need_coeffs: bool) -> tuple[Tensor, Tensor]:
    module = _extension.require(_extension.cpu, _extension.cpu_error, "affine_grid_sample backward on the CPU")
    _check_kernel_dtype(input, (torch.float32, torch.float64), "CPU backward")
    input = _plane_addressable(input)
    grad_input, grad_coeffs = _backward_buffers(input, coeffs, need_input, need_coeffs, input.dtype)
    module.affine_warp_backward(view(grad_out.to(input.dtype).contiguous()), view(input),
                                view(coeffs.to(torch.float64).contiguous()), view(grad_input), view(grad_coeffs),
                                need_input, need_coeffs, MODES[mode], PADDING_MODES[padding_mode], align_corners,
                                num_threads())
    return grad_input, grad_coeffs.sum(1) if need_coeffs else grad_coeffs


@_affine_sample_backward_op.register_kernel("cuda")
def _(grad_out: Tensor, input: Tensor, coeffs: Tensor, mode: str, padding_mode: str, align_corners: bool,
      need_input: bool, need_coeffs: bool) -> tuple[Tensor, Tensor]:
    module = _extension.require(_extension.cuda, _extension.cuda_error, "affine_grid_sample backward on CUDA")
    alert_not_deterministic("affine_grid_sample's CUDA backward")
    input = _plane_addressable(input)
    # Atomic scatter into 16-bit floats loses too much: accumulate in float32, cast after.
    accumulate = torch.float64 if input.dtype == torch.float64 else torch.float32
    grad_input, grad_coeffs = _backward_buffers(input, coeffs, need_input, need_coeffs, accumulate)
    module.affine_warp_backward(view(grad_out.to(input.dtype).contiguous()), view(input),
                                view(coeffs.to(torch.float64).contiguous()), view(grad_input), view(grad_coeffs),
                                need_input, need_coeffs, MODES[mode], PADDING_MODES[padding_mode], align_corners,
                                cuda_stream(input.device))
    return grad_input.to(input.dtype), grad_coeffs.sum(1) if need_coeffs else grad_coeffs


def _setup_context(ctx, inputs, output) -> None:
    input, coeffs, mode, padding_mode, align_corners = inputs
    ctx.save_for_backward(input, coeffs)
    ctx.options = (mode, padding_mode, align_corners)


def _backward(ctx, grad_out: Tensor):
    input, coeffs = ctx.saved_tensors
    need_input, need_coeffs = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    grad_input, grad_coeffs = torch.ops.medimg.affine_sample_backward(grad_out, input, coeffs, *ctx.options,
                                                                      need_input, need_coeffs)
    return (grad_input if need_input else None, grad_coeffs.to(coeffs.dtype) if need_coeffs else None,
            None, None, None)


_affine_sample_op.register_autograd(_backward, setup_context=_setup_context)


def _setup_backward_context(ctx, inputs, output) -> None:
    grad_out, input, coeffs, mode, padding_mode, align_corners, need_input, need_coeffs = inputs
    ctx.save_for_backward(grad_out, input, coeffs)
    ctx.options = (mode, padding_mode, align_corners)
    ctx.computed = (need_input, need_coeffs)
    ctx.set_materialize_grads(False)  # None, not zeros, for an output the loss does not use


def _backward_backward(ctx, grad_grad_input: Tensor | None, grad_grad_coeffs: Tensor | None):
    """The backward's derivative (gradient penalties, R1 regularisation). grad_input =
    A(coeffs)^T grad_out, the forward's adjoint, so its part is two kernel calls: the forward
    warp of grad_grad_input (to grad_out) and the coefficient gradient with grad_grad_input as
    the image (to coeffs). grad_coeffs' part, rarer (a loss on theta's gradient), goes through
    the reference; it is zero in nearest mode."""
    grad_out, input, coeffs = ctx.saved_tensors
    mode = ctx.options[0]
    wants = ctx.needs_input_grad[:3]
    to_grad_out = to_input = to_coeffs = None
    if grad_grad_input is not None and ctx.computed[0]:
        if wants[0]:
            to_grad_out = torch.ops.medimg.affine_sample(grad_grad_input, coeffs, *ctx.options).to(grad_out.dtype)
        if wants[2]:
            to_coeffs = torch.ops.medimg.affine_sample_backward(grad_out, grad_grad_input, coeffs, *ctx.options,
                                                                False, True)[1].to(coeffs.dtype)
    if grad_grad_coeffs is not None and ctx.computed[1] and mode == "bilinear" and any(wants):
        extra = _coefficient_gradient_terms(grad_out, input, coeffs, grad_grad_coeffs, ctx.options, wants)
        to_grad_out, to_input, to_coeffs = (
            b if a is None else a if b is None else a + b
            for a, b in zip((to_grad_out, to_input, to_coeffs), extra, strict=True))
    return to_grad_out, to_input, to_coeffs, None, None, None, None, None


def _coefficient_gradient_terms(grad_out: Tensor, input: Tensor, coeffs: Tensor, grad_grad_coeffs: Tensor,
                                options: tuple[str, str, bool], wants: tuple[bool, ...]) -> list[Tensor | None]:
    """d<grad_grad_coeffs, grad_coeffs> / d(grad_out, input, coeffs) through
    _reference.affine_sample (None where not wanted). torch.func takes the partial derivatives,
    so what the arguments themselves depend on stays out of them, and the results keep a graph
    to those arguments where one is being recorded (third derivatives)."""
    def weighted_coefficient_gradient(grad_out: Tensor, input: Tensor, coeffs: Tensor) -> Tensor:
        _, pullback = torch.func.vjp(lambda c: _reference.affine_sample(input, c, *options), coeffs)
        (grad_coeffs,) = pullback(grad_out.to(input.dtype))
        return (grad_coeffs * grad_grad_coeffs).sum()

    argnums = tuple(i for i, want in enumerate(wants) if want)
    found = iter(torch.func.grad(weighted_coefficient_gradient, argnums=argnums)(grad_out, input, coeffs))
    return [next(found) if want else None for want in wants]


_affine_sample_backward_op.register_autograd(_backward_backward, setup_context=_setup_backward_context)

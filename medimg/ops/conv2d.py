"""2D convolution on medimg's own kernels, with ``F.conv2d``'s semantics: C++ implicit GEMM on
the CPU (csrc/cpu/conv2d.cpp), Triton implicit GEMM on CUDA (medimg/kernels/triton/conv2d.py)."""

from __future__ import annotations

import importlib.util
import math
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor

from medimg import _extension
from medimg.ops._boundary import check_backend, empty_output, num_threads, view
from medimg.ops._conv_args import check_conv_args, is_float_kernel_dtype

_HAS_TRITON = importlib.util.find_spec("triton") is not None  # the CUDA kernels are Triton's


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int | tuple[int, int] = 1,
           padding: int | tuple[int, int] | str = 0, dilation: int | tuple[int, int] = 1, groups: int = 1, *,
           activation: str | None = None, backend: str = "auto") -> Tensor:
    """``F.conv2d(input, weight, bias, stride, padding, dilation, groups)``, optionally followed by a
    fused ReLU, on medimg's kernels.

    Args:
        input: (N, C, H, W) or unbatched (C, H, W), any strides. float32/float64 on the CPU,
            float16/bfloat16/float32 on CUDA (accumulated in float32).
        weight: (OC, C / groups, KH, KW), input's dtype and device.
        bias: (OC,) or None.
        stride, dilation: int or (h, w) pair, >= 1.
        padding: int or (h, w) pair >= 0 (zeros), "valid" or "same" (stride 1; an odd extra
            row/column goes after, as F.conv2d).
        groups: input and output channels split into this many independent groups
            (groups == C is a depthwise convolution).
        activation: None or "relu" (applied in the kernel's epilogue, no extra pass).
        backend: "auto" (medimg's kernel where it is built and takes the dtype, else F.conv2d),
            "medimg" (insist) or "torch" (F.conv2d).

    Returns:
        (N, OC, OH, OW) contiguous, input's dtype; differentiable in input, weight and bias, to
        any order (gradient penalties: the backward's derivatives run on the same kernels).

    Example:
        >>> x, w = torch.randn(2, 1, 32, 32), torch.randn(8, 1, 3, 3)
        >>> torch.allclose(conv2d(x, w, padding=1), F.conv2d(x, w, padding=1), atol=1e-5)
        True
    """
    check_backend(backend)
    if isinstance(input, Tensor) and input.dim() == 3:
        return conv2d(input.unsqueeze(0), weight, bias, stride, padding, dilation, groups, activation=activation,
                      backend=backend).squeeze(0)
    geometry = check_conv_args(input, weight, bias, stride, padding, dilation, groups, activation)
    if _use_kernel(backend, input):
        return torch.ops.medimg.conv2d(input, weight, bias, list(geometry.stride), list(geometry.padding),
                                       list(geometry.dilation), geometry.groups, list(geometry.out_size),
                                       activation == "relu")
    out = F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    return F.relu(out) if activation == "relu" else out


def _use_kernel(backend: str, input: Tensor) -> bool:
    if backend == "torch":
        return False
    device, dtype = input.device, input.dtype
    available = {"cpu": _extension.cpu is not None, "cuda": _HAS_TRITON}.get(device.type, False)
    if backend == "auto":
        return available and is_float_kernel_dtype(dtype, device)
    if device.type == "cpu":
        _extension.require(_extension.cpu, _extension.cpu_error, "conv2d on the CPU")
    elif device.type == "cuda" and not available:
        raise RuntimeError("conv2d on CUDA needs triton (pip install 'medimg[triton]'), or pass backend='torch'")
    elif not available:
        raise RuntimeError(f"conv2d: medimg has no kernel for device {device.type!r}; pass backend='torch'")
    if not is_float_kernel_dtype(dtype, device):
        raise TypeError(f"input: {dtype} is not supported by medimg's {device.type} conv2d kernel; "
                        "pass backend='torch'")
    return True


def _triton() -> ModuleType:
    from medimg.kernels.triton import conv2d as kernels

    return kernels


# ----------------------------------------------------------------------------- forward

@torch.library.custom_op("medimg::conv2d", mutates_args=())
def _conv2d_op(input: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int], padding: list[int],
               dilation: list[int], groups: int, out_size: list[int], relu: bool) -> Tensor:
    raise NotImplementedError(f"medimg::conv2d has no kernel for device {input.device.type}")


@_conv2d_op.register_fake
def _(input, weight, bias, stride, padding, dilation, groups, out_size, relu):
    return input.new_empty((input.shape[0], weight.shape[0], *out_size))


@_conv2d_op.register_kernel("cpu")
def _(input, weight, bias, stride, padding, dilation, groups, out_size, relu):
    out = empty_output((input.shape[0], weight.shape[0], *out_size), input.dtype)
    _cpu_forward(input, weight, bias, out, stride, padding, dilation, groups, relu)
    return out


def _cpu_forward(input: Tensor, weight: Tensor, bias: Tensor | None, out: Tensor, stride: list[int],
                 padding: list[int], dilation: list[int], groups: int, relu: bool) -> None:
    """Fill the contiguous `out` (N, OC, OH, OW) with the convolution (the C++ kernel's contract)."""
    module = _extension.require(_extension.cpu, _extension.cpu_error, "conv2d on the CPU")
    module.conv2d_forward(view(input), view(weight), None if bias is None else view(bias), view(out), stride,
                          padding, dilation, groups, relu, num_threads())


@_conv2d_op.register_kernel("cuda")
def _(input, weight, bias, stride, padding, dilation, groups, out_size, relu):
    return _triton().conv2d_forward(input, weight, bias, tuple(stride), tuple(padding), tuple(dilation), groups,
                                    tuple(out_size), "relu" if relu else None)


# ----------------------------------------------------------------------------- input gradient

@torch.library.custom_op("medimg::conv2d_grad_input", mutates_args=())
def _conv2d_grad_input_op(grad_out: Tensor, weight: Tensor, input_size: list[int], stride: list[int],
                          padding: list[int], dilation: list[int], groups: int) -> Tensor:
    raise NotImplementedError(f"medimg::conv2d_grad_input has no kernel for device {grad_out.device.type}")


@_conv2d_grad_input_op.register_fake
def _(grad_out, weight, input_size, stride, padding, dilation, groups):
    return grad_out.new_empty((grad_out.shape[0], weight.shape[1] * groups, *input_size))


@_conv2d_grad_input_op.register_kernel("cpu")
def _(grad_out, weight, input_size, stride, padding, dilation, groups):
    """The transposed convolution as forward convolutions, one per stride phase.

    Input row i = s*q + r receives dY[q + e] * W[kh] for every tap kh with r + p - kh*d = s*e:
    for a fixed phase r those taps, in descending order, form a stride-1 convolution of dY
    with dilation d / gcd(s, d) and top padding -e(first tap). Columns likewise.
    """
    n, out_channels = grad_out.shape[0], weight.shape[0]
    icg, kh, kw = weight.shape[1:]
    # W^T per group: (groups * ICg, OC / groups, KH, KW)
    transposed = weight.reshape(groups, out_channels // groups, icg, kh, kw).transpose(1, 2).reshape(
        groups * icg, out_channels // groups, kh, kw)
    grad_in = empty_output((n, groups * icg, *input_size), grad_out.dtype)
    phases_h = [_phase(r, padding[0], dilation[0], stride[0], kh, input_size[0]) for r in range(stride[0])]
    phases_w = [_phase(r, padding[1], dilation[1], stride[1], kw, input_size[1]) for r in range(stride[1])]
    for r_h, (taps_h, pad_h, dil_h, rows) in enumerate(phases_h):
        for r_w, (taps_w, pad_w, dil_w, cols) in enumerate(phases_w):
            target = grad_in[:, :, r_h::stride[0], r_w::stride[1]]
            if rows == 0 or cols == 0:
                continue
            if not taps_h or not taps_w:
                target.zero_()
                continue
            sub = transposed[:, :, taps_h][:, :, :, taps_w]
            if target.is_contiguous():
                _cpu_forward(grad_out, sub, None, target, [1, 1], [pad_h, pad_w], [dil_h, dil_w], groups, False)
            else:
                phase = empty_output((n, groups * icg, rows, cols), grad_out.dtype)
                _cpu_forward(grad_out, sub, None, phase, [1, 1], [pad_h, pad_w], [dil_h, dil_w], groups, False)
                target.copy_(phase)
    return grad_in


def _phase(r: int, pad: int, dil: int, stride: int, kernel: int, size: int) -> tuple[list[int], int, int, int]:
    """(taps in descending order, top padding, dilation, output length) of stride phase `r`."""
    taps = [k for k in reversed(range(kernel)) if (r + pad - k * dil) % stride == 0]
    length = max(0, math.ceil((size - r) / stride))
    if not taps:
        return taps, 0, 1, length
    first_offset = (r + pad - taps[0] * dil) // stride
    return taps, -first_offset, dil // math.gcd(stride, dil), length


@_conv2d_grad_input_op.register_kernel("cuda")
def _(grad_out, weight, input_size, stride, padding, dilation, groups):
    return _triton().conv2d_grad_input(grad_out, weight, tuple(input_size), tuple(stride), tuple(padding),
                                       tuple(dilation), groups)


# ----------------------------------------------------------------------------- weight gradient

@torch.library.custom_op("medimg::conv2d_grad_weight", mutates_args=())
def _conv2d_grad_weight_op(grad_out: Tensor, input: Tensor, weight_shape: list[int], stride: list[int],
                           padding: list[int], dilation: list[int], groups: int) -> Tensor:
    raise NotImplementedError(f"medimg::conv2d_grad_weight has no kernel for device {input.device.type}")


@_conv2d_grad_weight_op.register_fake
def _(grad_out, input, weight_shape, stride, padding, dilation, groups):
    return input.new_empty(weight_shape)


@_conv2d_grad_weight_op.register_kernel("cpu")
def _(grad_out, input, weight_shape, stride, padding, dilation, groups):
    module = _extension.require(_extension.cpu, _extension.cpu_error, "conv2d backward on the CPU")
    grad_weight = torch.empty(weight_shape, dtype=input.dtype)
    module.conv2d_grad_weight(view(grad_out), view(input), view(grad_weight), stride, padding, dilation, groups,
                              num_threads())
    return grad_weight


@_conv2d_grad_weight_op.register_kernel("cuda")
def _(grad_out, input, weight_shape, stride, padding, dilation, groups):
    return _triton().conv2d_grad_weight(grad_out, input, tuple(weight_shape), tuple(stride), tuple(padding),
                                        tuple(dilation), groups)


# ----------------------------------------------------------------------------- autograd

def _setup_context(ctx, inputs, output) -> None:
    input, weight, bias, stride, padding, dilation, groups, _out_size, relu = inputs
    ctx.save_for_backward(input, weight, output if relu else None)
    ctx.geometry = (stride, padding, dilation, groups)
    ctx.has_bias = bias is not None


def _backward(ctx, grad_out: Tensor):
    input, weight, output = ctx.saved_tensors
    if output is not None:  # fused ReLU: no gradient where it clipped
        grad_out = grad_out * (output > 0)
    need_input, need_weight, need_bias = ctx.needs_input_grad[:3]
    grad_input = grad_weight = grad_bias = None
    if need_input:
        grad_input = torch.ops.medimg.conv2d_grad_input(grad_out, weight, list(input.shape[2:]), *ctx.geometry)
    if need_weight:
        grad_weight = torch.ops.medimg.conv2d_grad_weight(grad_out, input, list(weight.shape), *ctx.geometry)
    if need_bias and ctx.has_bias:
        grad_bias = grad_out.sum((0, 2, 3))
    return grad_input, grad_weight, grad_bias, None, None, None, None, None, None


_conv2d_op.register_autograd(_backward, setup_context=_setup_context)


# The two gradients are bilinear, and each one's derivatives are the other ops: with
# <v, grad_input(g, w)> = <conv(v, w), g> and <u, grad_weight(g, x)> = <conv(x, u), g>, every
# derivative of the backward (gradient penalties, WGAN-GP, R1) runs on the same kernels, to any
# order.

def _setup_grad_input_context(ctx, inputs, output) -> None:
    grad_out, weight, _input_size, *geometry = inputs
    ctx.save_for_backward(grad_out, weight)
    ctx.geometry = geometry


def _grad_input_backward(ctx, grad_grad_input: Tensor):
    """Derivatives of grad_input = conv_transpose(grad_out, weight) along grad_grad_input (input's
    shape): conv(grad_grad_input, weight) for grad_out, grad_weight(grad_out, grad_grad_input)
    for weight."""
    grad_out, weight = ctx.saved_tensors
    to_grad_out = to_weight = None
    if ctx.needs_input_grad[0]:
        to_grad_out = torch.ops.medimg.conv2d(grad_grad_input, weight, None, *ctx.geometry,
                                              list(grad_out.shape[2:]), False)
    if ctx.needs_input_grad[1]:
        to_weight = torch.ops.medimg.conv2d_grad_weight(grad_out, grad_grad_input, list(weight.shape), *ctx.geometry)
    return to_grad_out, to_weight, None, None, None, None, None


def _setup_grad_weight_context(ctx, inputs, output) -> None:
    grad_out, input, _weight_shape, *geometry = inputs
    ctx.save_for_backward(grad_out, input)
    ctx.geometry = geometry


def _grad_weight_backward(ctx, grad_grad_weight: Tensor):
    """Derivatives of grad_weight(grad_out, input) along grad_grad_weight (weight's shape):
    conv(input, grad_grad_weight) for grad_out, grad_input(grad_out, grad_grad_weight) for input."""
    grad_out, input = ctx.saved_tensors
    to_grad_out = to_input = None
    if ctx.needs_input_grad[0]:
        to_grad_out = torch.ops.medimg.conv2d(input, grad_grad_weight, None, *ctx.geometry,
                                              list(grad_out.shape[2:]), False)
    if ctx.needs_input_grad[1]:
        to_input = torch.ops.medimg.conv2d_grad_input(grad_out, grad_grad_weight, list(input.shape[2:]),
                                                      *ctx.geometry)
    return to_grad_out, to_input, None, None, None, None, None


_conv2d_grad_input_op.register_autograd(_grad_input_backward, setup_context=_setup_grad_input_context)
_conv2d_grad_weight_op.register_autograd(_grad_weight_backward, setup_context=_setup_grad_weight_context)

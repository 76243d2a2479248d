"""2D convolution as implicit GEMM on tensor cores (``tl.dot``): forward, input gradient, weight gradient.

Layout convention: NCHW tensors with any strides (the kernels take strides, never copy), weight
(OC, C / groups, KH, KW). ``padding`` is the top/left padding only (negative crops) and the
output size is explicit, so reads past the bottom/right edge are simply zeros; this expresses
asymmetric "same" padding. fp16/bf16/fp32 in, fp32 accumulation, result in the input's dtype.

GEMM views (one program = one BLOCK_M x BLOCK_N tile of one group):

* forward: M = N*OH*OW output pixels, N = OC/groups, K = (C/groups)*KH*KW; bias and ReLU fused.
* input gradient: one launch per stride phase (ih % sh, iw % sw). Within a phase the taps that
  reach it form a stride-1 convolution of grad_out with negative dilation, so it runs on the
  forward kernel with no divisibility masks and no wasted multiply-adds.
* weight gradient: M = OC/groups, N = (C/groups)*KH*KW, K = N*OH*OW pixels, split-K over the
  pixels into a float32 (split, OC, ...) buffer summed afterwards (deterministic, no atomics).

Under ``TRITON_INTERPRET=1`` (decided at import) the kernels run on CPU tensors with one large
tile config, since the interpreter cannot autotune and pays about 1 ms per program instance.
The kernels call only triton.language builtins, not its @triton.jit helpers (tl.zeros, tl.cdiv):
those are decided interpreted-or-not when triton itself is imported, so this way the kernels
also run interpreted in a process that imported triton before setting TRITON_INTERPRET=1.
"""

# Kernel arguments follow Triton's convention: upper case for sizes and compile-time constants.
# ruff: noqa: N803

from __future__ import annotations

import functools
import math
import os
from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_MAX_INDEX = 2**31 - 1  # pixel and channel indices are int32 in the kernels (offsets are int64)
_MAX_GRID_YZ = 65535  # CUDA limit on grid axes 1 and 2

# (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages)
_CONV_TILES = [
    (128, 128, 64, 8, 3),
    (128, 64, 64, 4, 3),
    (128, 128, 32, 8, 3),
    (256, 64, 32, 8, 3),
    (128, 64, 32, 4, 4),
    (64, 128, 32, 4, 4),
    (64, 64, 32, 4, 4),
    (128, 32, 32, 4, 4),
    (64, 32, 64, 4, 4),
    (128, 16, 32, 4, 4),
]
_GRAD_WEIGHT_TILES = [
    (128, 128, 64, 8, 3),
    (128, 128, 32, 8, 3),
    (64, 128, 32, 4, 4),
    (128, 64, 32, 4, 4),
    (64, 64, 64, 4, 3),
    (32, 64, 64, 4, 4),
    (32, 32, 128, 4, 3),
    (16, 64, 128, 4, 3),
    (16, 32, 128, 4, 3),
]
# The interpreter: one config with large tiles (fewer program instances, cheap numpy ops).
_CONV_TILE_INTERPRET = (128, 32, 64)
_GRAD_WEIGHT_TILE_INTERPRET = (32, 64, 128)


def _configs(tiles: list[tuple[int, int, int, int, int]], interpret_tile: tuple[int, int, int]) -> list[triton.Config]:
    """Autotune configs: the GPU list, or the single interpreter tile under TRITON_INTERPRET=1."""
    if INTERPRET:
        bm, bn, bk = interpret_tile
        return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk})]
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s)
            for bm, bn, bk, w, s in tiles]


def _prune_tiles(configs: list[triton.Config], named_args: dict[str, Any], **kwargs: Any) -> list[triton.Config]:
    """Drop tiles far larger than the GEMM's M or N (e.g. BLOCK_N=128 for 8 output channels)."""
    m_cap = max(16, triton.next_power_of_2(named_args["M"]))
    n_cap = max(16, triton.next_power_of_2(named_args["N"]))
    kept = [c for c in configs if c.kwargs["BLOCK_M"] <= m_cap and c.kwargs["BLOCK_N"] <= n_cap]
    return kept or [min(configs, key=lambda c: c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"])]


_PRUNE = {"early_config_prune": _prune_tiles}


# ----------------------------------------------------------------------------- kernels

@triton.autotune(configs=_configs(_CONV_TILES, _CONV_TILE_INTERPRET), key=["M", "N", "K", "PRECISION"],
                 prune_configs_by=_PRUNE)
@triton.jit
def _conv_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    M, N, K,  # GEMM: output pixels, output channels per group, C_RED * KH * KW
    H, W, OH, OW, C_RED, TAPS, KW,  # spatial sizes, reduction channels per group, KH * KW, KW
    sxn, sxc, sxh, sxw,  # input strides
    swg, swo, swi, swh, sww,  # weight strides: per group, output channel, reduction channel, tap row, tap column
    sb,  # bias stride
    syn, syc, syh, syw,  # output strides
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    HAS_BIAS: tl.constexpr, RELU: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """y[n, g*N + j, oh, ow] = act(b + sum_{c, kh, kw} w[g, j, c, kh, kw] * x[n, g*C_RED + c, oh*s - p + kh*d, ...]).

    Input reads outside [0, H) x [0, W) are zero. The offset of x[n, c, ih, iw] splits into a row
    part (pixel) plus a column part (reduction index), so each K step adds one [BLOCK_M, BLOCK_K] tile.
    """
    g = tl.program_id(2)
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    m_ok = offs_m < M
    n_ok = offs_n < N
    ow = offs_m % OW
    oh = (offs_m // OW) % OH
    nb = offs_m // (OW * OH)
    ih0 = oh * stride_h - pad_h
    iw0 = ow * stride_w - pad_w
    x_row = (nb.to(tl.int64) * sxn + ih0.to(tl.int64) * sxh + iw0.to(tl.int64) * sxw
             + (g * C_RED).to(tl.int64) * sxc)
    w_col = g.to(tl.int64) * swg + offs_n.to(tl.int64) * swo

    acc = tl.full((BLOCK_M, BLOCK_N), 0.0, tl.float32)  # builtins only (no tl.zeros/tl.cdiv): see module doc
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        k_ok = offs_k < K
        c = offs_k // TAPS
        kh = (offs_k % TAPS) // KW
        kw = offs_k % KW
        dh = kh * dil_h
        dw = kw * dil_w
        ih = ih0[:, None] + dh[None, :]
        iw = iw0[:, None] + dw[None, :]
        a_ok = m_ok[:, None] & k_ok[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        x_col = c.to(tl.int64) * sxc + dh.to(tl.int64) * sxh + dw.to(tl.int64) * sxw
        a = tl.load(x_ptr + (x_row[:, None] + x_col[None, :]), mask=a_ok, other=0.0)
        w_row = c.to(tl.int64) * swi + kh.to(tl.int64) * swh + kw.to(tl.int64) * sww
        b = tl.load(w_ptr + (w_row[:, None] + w_col[None, :]), mask=k_ok[:, None] & n_ok[None, :], other=0.0)
        acc = tl.dot(a, b, acc, input_precision=PRECISION)

    channel = g * N + offs_n
    if HAS_BIAS:
        acc += tl.load(b_ptr + channel.to(tl.int64) * sb, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    if RELU:
        acc = tl.maximum(acc, 0.0)
    y_row = nb.to(tl.int64) * syn + oh.to(tl.int64) * syh + ow.to(tl.int64) * syw
    y_off = y_row[:, None] + channel.to(tl.int64)[None, :] * syc
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=m_ok[:, None] & n_ok[None, :])


@triton.autotune(configs=_configs(_GRAD_WEIGHT_TILES, _GRAD_WEIGHT_TILE_INTERPRET),
                 key=["M", "N", "K", "SPLIT_K", "PRECISION"], prune_configs_by=_PRUNE)
@triton.jit
def _conv_grad_weight_kernel(
    dy_ptr, x_ptr, part_ptr,
    M, N, K,  # GEMM: output channels per group, ICG * KH * KW, pixels NB * OH * OW
    H, W, OH, OW, ICG, TAPS, KW,
    sdn, sdc, sdh, sdw,  # grad_out strides
    sxn, sxc, sxh, sxw,  # input strides
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    SPLIT_K,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """part[split, g*M + o, (c, kh, kw)] = sum over the split's pixels of dy[n, g*M + o, oh, ow] * x[n, g*ICG + c, ...].

    part is a contiguous float32 (SPLIT_K, groups * M, N) buffer; the splits are summed on the host.
    """
    n_tiles = (N + BLOCK_N - 1) // BLOCK_N
    pid_m = tl.program_id(0) // n_tiles
    pid_n = tl.program_id(0) % n_tiles
    split = tl.program_id(1)
    g = tl.program_id(2)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_ok = offs_m < M
    n_ok = offs_n < N
    c = offs_n // TAPS
    dh = ((offs_n % TAPS) // KW) * dil_h
    dw = (offs_n % KW) * dil_w
    x_col = (g * ICG + c).to(tl.int64) * sxc + dh.to(tl.int64) * sxh + dw.to(tl.int64) * sxw
    dy_row = (g * M + offs_m).to(tl.int64) * sdc

    k_chunk = ((K + SPLIT_K - 1) // SPLIT_K + BLOCK_K - 1) // BLOCK_K * BLOCK_K
    k_lo = split * k_chunk
    k_hi = tl.minimum(K, k_lo + k_chunk)
    acc = tl.full((BLOCK_M, BLOCK_N), 0.0, tl.float32)
    for k0 in range(k_lo, k_hi, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        k_ok = offs_k < k_hi
        ow = offs_k % OW
        oh = (offs_k // OW) % OH
        nb = offs_k // (OW * OH)
        dy_col = nb.to(tl.int64) * sdn + oh.to(tl.int64) * sdh + ow.to(tl.int64) * sdw
        a = tl.load(dy_ptr + (dy_row[:, None] + dy_col[None, :]), mask=m_ok[:, None] & k_ok[None, :], other=0.0)
        ih0 = oh * stride_h - pad_h
        iw0 = ow * stride_w - pad_w
        ih = ih0[:, None] + dh[None, :]
        iw = iw0[:, None] + dw[None, :]
        b_ok = k_ok[:, None] & n_ok[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        x_row = nb.to(tl.int64) * sxn + ih0.to(tl.int64) * sxh + iw0.to(tl.int64) * sxw
        b = tl.load(x_ptr + (x_row[:, None] + x_col[None, :]), mask=b_ok, other=0.0)
        acc = tl.dot(a, b, acc, input_precision=PRECISION)

    rows = (split * tl.num_programs(2) + g).to(tl.int64) * M + offs_m
    tl.store(part_ptr + (rows[:, None] * N + offs_n[None, :]), acc, mask=m_ok[:, None] & n_ok[None, :])


# ----------------------------------------------------------------------------- host helpers

def _check_tensors(**tensors: Tensor) -> torch.dtype:
    """One supported float dtype on one device (CUDA, or the CPU under the interpreter); returns the dtype."""
    dtype = next(iter(tensors.values())).dtype
    for name, t in tensors.items():
        if t.dtype not in SUPPORTED_DTYPES:
            raise TypeError(f"{name}: Triton conv2d takes float16, bfloat16 or float32, got {t.dtype}")
        if t.dtype != dtype:
            raise TypeError(f"{name}: dtype {t.dtype} differs from {next(iter(tensors))}'s {dtype}")
        if t.device.type != "cuda" and not (INTERPRET and t.device.type == "cpu"):
            raise ValueError(f"{name}: Triton conv2d needs a CUDA tensor (or a CPU one with TRITON_INTERPRET=1), "
                             f"got device {t.device}")
    return dtype


def _check_index_range(**sizes: int) -> None:
    """The kernels index pixels and channels in int32; refuse sizes that would overflow it."""
    for name, size in sizes.items():
        if size > _MAX_INDEX:
            raise ValueError(f"{name}: {size} exceeds the Triton conv2d kernels' int32 index range")


def _precision(dtype: torch.dtype) -> str:
    """tl.dot input precision: "tf32" for float32 only where torch allows tf32 for CUDA matmuls, else "ieee"."""
    return "tf32" if dtype == torch.float32 and _matmul_allows_tf32() else "ieee"


def _matmul_allows_tf32() -> bool:
    """torch's CUDA matmul tf32 setting, read through the new fp32_precision API where it is set (reading the
    legacy allow_tf32 flag raises once a program has used the new API)."""
    matmul = torch.backends.cuda.matmul
    precision = getattr(matmul, "fp32_precision", "none")
    if precision in ("tf32", "ieee"):
        return precision == "tf32"
    try:
        return bool(matmul.allow_tf32)
    except RuntimeError:
        return False


@functools.cache
def _num_sms(device: torch.device) -> int:
    """Streaming multiprocessors on `device` (1 under the interpreter)."""
    if device.type != "cuda":
        return 1
    return torch.cuda.get_device_properties(device).multi_processor_count


def _launch_conv(x: Tensor, w: Tensor, w_strides: tuple[int, int, int, int, int], bias: Tensor | None, y: Tensor,
                 red_channels: int, groups: int, stride: tuple[int, int], padding: tuple[int, int],
                 dilation: tuple[int, int], relu: bool) -> None:
    """Run _conv_kernel writing the strided (NB, groups * N, OH, OW) view `y`.

    `w` supplies the base pointer and tap shape (KH, KW = w.shape[2:]); `w_strides` are
    (group, output channel, reduction channel, tap row, tap column) strides into it.
    """
    nb, out_channels, oh, ow = y.shape
    n = out_channels // groups
    k = red_channels * w.shape[2] * w.shape[3]
    m = nb * oh * ow
    _check_index_range(output_pixels=m, reduction_size=k, input_elements_per_channel=x.shape[2] * x.shape[3])
    if groups > _MAX_GRID_YZ:
        raise ValueError(f"groups: at most {_MAX_GRID_YZ} in the Triton conv2d kernels, got {groups}")
    if m == 0 or n == 0:
        return

    def grid(meta: dict[str, Any]) -> tuple[int, int, int]:
        return triton.cdiv(m, meta["BLOCK_M"]), triton.cdiv(n, meta["BLOCK_N"]), groups

    _conv_kernel[grid](
        x, w, bias, y, m, n, k,
        x.shape[2], x.shape[3], oh, ow, red_channels, w.shape[2] * w.shape[3], w.shape[3],
        *x.stride(), *w_strides, 0 if bias is None else bias.stride(0), *y.stride(),
        *stride, *padding, *dilation,
        HAS_BIAS=bias is not None, RELU=relu, PRECISION=_precision(x.dtype),
    )


# ----------------------------------------------------------------------------- public entry points

def conv2d_forward(input: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, int],
                   padding: tuple[int, int], dilation: tuple[int, int], groups: int, out_size: tuple[int, int],
                   activation: str | None) -> Tensor:
    """Convolution of (N, C, H, W) `input` with (OC, C / groups, KH, KW) `weight`, plus (OC,) `bias`, then
    `activation` (None or "relu"), into a new contiguous (N, OC, *out_size) tensor of input's dtype.

    `padding` is the top/left padding (negative crops); reads past any edge are zero.
    """
    tensors = {"input": input, "weight": weight} | ({} if bias is None else {"bias": bias})
    _check_tensors(**tensors)
    if activation not in (None, "relu"):
        raise ValueError(f"activation: expected None or 'relu', got {activation!r}")
    out = torch.empty((input.shape[0], weight.shape[0], *out_size), dtype=input.dtype, device=input.device)
    s0, s1, s2, s3 = weight.stride()
    ocg = weight.shape[0] // groups
    _launch_conv(input, weight, (ocg * s0, s0, s1, s2, s3), bias, out, weight.shape[1], groups, stride, padding,
                 dilation, activation == "relu")
    return out


def _phase_taps(phase: int, pad: int, dil: int, stride: int, taps: int) -> tuple[int, int, int, int, int]:
    """Taps of one axis reaching input rows i = phase + stride*q, as a stride-1 convolution of grad_out.

    Tap k reaches row i from output row o = (i + pad - k*dil) / stride when that is integral. Those k form
    first + step*j (j < count), and o = q + shift - j*jump. Returns (first, count, step, shift, jump).
    """
    step = stride // math.gcd(stride, dil)
    first = next((k for k in range(min(step, taps)) if (phase + pad - k * dil) % stride == 0), None)
    if first is None:
        return 0, 0, step, 0, 0
    count = len(range(first, taps, step))
    return first, count, step, (phase + pad - first * dil) // stride, step * dil // stride


def conv2d_grad_input(grad_out: Tensor, weight: Tensor, input_size: tuple[int, int], stride: tuple[int, int],
                      padding: tuple[int, int], dilation: tuple[int, int], groups: int) -> Tensor:
    """Gradient of conv2d_forward (without bias and activation) w.r.t. its input: (N, C, *input_size)
    contiguous, grad_out's dtype, from (N, OC, OH, OW) `grad_out` and (OC, C / groups, KH, KW) `weight`.

    Runs one forward launch per stride phase (ih % sh, iw % sw) on a strided view of the result.
    """
    _check_tensors(grad_out=grad_out, weight=weight)
    ocg, icg = weight.shape[0] // groups, weight.shape[1]
    h, w = input_size
    grad_in = torch.empty((grad_out.shape[0], icg * groups, h, w), dtype=grad_out.dtype, device=grad_out.device)
    s0, s1 = weight.stride(0), weight.stride(1)
    for rh in range(min(stride[0], h)):
        fh, nh, steph, shifth, jumph = _phase_taps(rh, padding[0], dilation[0], stride[0], weight.shape[2])
        for rw in range(min(stride[1], w)):
            fw, nw, stepw, shiftw, jumpw = _phase_taps(rw, padding[1], dilation[1], stride[1], weight.shape[3])
            dst = grad_in[:, :, rh::stride[0], rw::stride[1]]
            if nh == 0 or nw == 0 or ocg == 0:
                dst.zero_()
                continue
            taps = weight[:, :, fh::steph, fw::stepw]
            _launch_conv(grad_out, taps, (ocg * s0, s1, s0, taps.stride(2), taps.stride(3)), None, dst, ocg, groups,
                         (1, 1), (-shifth, -shiftw), (-jumph, -jumpw), False)
    return grad_in


def _split_k(tiles: int, pixels: int, weight_numel: int, device: torch.device) -> int:
    """How many pixel chunks the weight-gradient reduction is split over: enough programs to fill the GPU,
    at least 512 pixels per chunk, and a partial buffer of at most 2**26 floats."""
    split = min(triton.cdiv(2 * _num_sms(device), tiles), triton.cdiv(pixels, 512), 2**26 // max(weight_numel, 1))
    return max(1, min(split, _MAX_GRID_YZ))


def conv2d_grad_weight(grad_out: Tensor, input: Tensor, weight_shape: tuple[int, int, int, int],
                       stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int], groups: int,
                       *, split_k: int | None = None) -> Tensor:
    """Gradient of conv2d_forward w.r.t. its weight: (OC, C / groups, KH, KW) in input's dtype, accumulated
    in float32, from (N, OC, OH, OW) `grad_out` and (N, C, H, W) `input`.

    `split_k` overrides how many pixel chunks the reduction is split over (default: a heuristic).
    """
    _check_tensors(grad_out=grad_out, input=input)
    oc, icg, kh, kw = weight_shape
    nb, _, oh, ow = grad_out.shape
    m, n, k = oc // groups, icg * kh * kw, nb * oh * ow
    _check_index_range(pixels=k, input_elements_per_channel=input.shape[2] * input.shape[3])
    if groups > _MAX_GRID_YZ:
        raise ValueError(f"groups: at most {_MAX_GRID_YZ} in the Triton conv2d kernels, got {groups}")
    if m * n == 0 or k == 0:
        return torch.zeros(weight_shape, dtype=input.dtype, device=input.device)
    split = split_k or _split_k(triton.cdiv(m, 64) * triton.cdiv(n, 64) * groups, k, oc * n, input.device)
    part = torch.empty((split, oc, n), dtype=torch.float32, device=input.device)

    def grid(meta: dict[str, Any]) -> tuple[int, int, int]:
        return triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]), split, groups

    _conv_grad_weight_kernel[grid](
        grad_out, input, part, m, n, k,
        input.shape[2], input.shape[3], oh, ow, icg, kh * kw, kw,
        *grad_out.stride(), *input.stride(),
        *stride, *padding, *dilation, split,
        PRECISION=_precision(input.dtype),
    )
    total = part[0] if split == 1 else part.sum(0)
    return total.view(weight_shape).to(input.dtype)

"""The CUDA affine warp kernels, run without a GPU: csrc/cuda/affine_warp_forward.cuh and
affine_warp_backward.cuh compiled as host C++ (tests/cuda_host/) and launched block by block,
thread by thread. Machines without a GPU thus check the kernels' own index arithmetic (which
pixels a thread takes, rows past the last full block, wide rows across 512-pixel segments, the
grid's strides over rows and slices, chunks of samples, strided inputs): every output pixel is
written, nothing outside the output is, and the values and gradients are the CPU kernels'. The
tap arithmetic itself is shared with the CPU (common/affine_sample.h) and tested there."""

from __future__ import annotations

import ctypes

import pytest
import torch
from helpers import build_cuda_host_emulators, needs_cpu_kernels, relayout
from test_affine_grid_sample import assert_float_warp_close, random_input, random_theta, reference
from torch import Tensor

from medimg.ops import affine
from medimg.ops._boundary import _DTYPE_CODES
from medimg.ops.affine import MODES, PADDING_MODES, pixel_coefficients

GUARD = 64  # elements either side of the output that must stay untouched

pytestmark = [needs_cpu_kernels,
              pytest.mark.filterwarnings("ignore:Since version 1.3.0, affine_grid behavior:UserWarning")]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    """The forward and backward emulators, built once."""
    lib = build_cuda_host_emulators(["forward_emulator.cpp", "backward_emulator.cpp"],
                                    tmp_path_factory.mktemp("cuda_host"))
    lib.emulate_affine_forward.restype = ctypes.c_int
    lib.emulate_affine_backward.restype = ctypes.c_int
    return lib


def emulate(lib: ctypes.CDLL, input: Tensor, coeffs: Tensor, mode: str, padding_mode: str, align_corners: bool,
            max_grid_yz: int) -> tuple[Tensor, Tensor]:
    """The emulated kernel's output, and the guard elements around it (which must keep their sentinel)."""
    sentinel = float("nan") if input.is_floating_point() else -7
    buffer = torch.full((input.numel() + 2 * GUARD,), sentinel, dtype=input.dtype)
    out = buffer[GUARD:GUARD + input.numel()].view(input.shape)
    sizes = (ctypes.c_int64 * input.dim())(*input.shape)
    strides = (ctypes.c_int64 * input.dim())(*input.stride())
    coeffs = coeffs.contiguous()
    status = lib.emulate_affine_forward(
        ctypes.c_void_p(input.data_ptr()), _DTYPE_CODES[input.dtype], input.dim(), sizes, strides,
        ctypes.c_void_p(coeffs.data_ptr()), ctypes.c_void_p(out.data_ptr()), MODES[mode],
        PADDING_MODES[padding_mode], int(align_corners), max_grid_yz)
    assert status == 0
    return out, torch.cat([buffer[:GUARD], buffer[-GUARD:]])


def warp_cases(shape: tuple[int, ...], gen: torch.Generator, theta_dtype: torch.dtype):
    """Every mode and padding, with a random align_corners and mild theta each: yields (mode,
    padding_mode, align_corners, theta, pixel coefficients, a description for messages)."""
    for mode in MODES:
        for padding_mode in PADDING_MODES:
            align_corners = bool(torch.randint(2, (1,), generator=gen))
            theta = random_theta(shape[0], len(shape) - 2, "mild", gen, theta_dtype)
            coeffs = pixel_coefficients(theta, tuple(shape[2:]), align_corners)
            what = f"{mode}, {padding_mode}, align_corners={align_corners}"
            yield mode, padding_mode, align_corners, theta, coeffs, what


SHAPES = [(1, 1, 1, 1), (2, 3, 5, 7), (1, 2, 9, 31), (2, 1, 3, 33), (1, 1, 17, 129), (1, 2, 3, 513),
          (1, 1, 2, 1100), (1, 2, 2, 3, 65), (2, 1, 3, 4, 129), (1, 1, 2, 2, 700)]


@pytest.mark.parametrize("max_grid_yz", [65535, 2], ids=["full grid", "grid of 2 (strides)"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_emulated_cuda_forward_equals_cpu(emulator, shape, layout, max_grid_yz):
    gen = torch.Generator().manual_seed(sum(shape) + len(layout) + max_grid_yz)
    x = relayout(random_input(shape, torch.float32, gen), layout)
    labels = relayout(torch.randint(0, 200, shape, generator=gen), layout)
    for mode, padding_mode, align_corners, theta, coeffs, what in warp_cases(shape, gen, torch.float32):
        inputs = [x] + ([labels, labels.to(torch.uint8)] if mode == "nearest" else [])
        for input in inputs:
            got, guards = emulate(emulator, input, coeffs, mode, padding_mode, align_corners, max_grid_yz)
            assert guards.isnan().all() if input.is_floating_point() else (guards == -7).all(), \
                f"{what}, {input.dtype}: written outside the output"
            unwritten = got.isnan() if input.is_floating_point() else got == -7
            assert not unwritten.any(), f"{what}, {input.dtype}: {int(unwritten.sum())} pixels never written"
            # The tolerance of test_cuda_matches_cpu: the CPU's AVX2 interior kernels skip the
            # padding arithmetic that is the identity inside the image, which the CUDA kernel
            # (as torch) still does, e.g. (x + 0.5) - 0.5 for reflection: an ulp of a coordinate
            # of 500 pixels, up to 1e-4 of the values' scale.
            expected = torch.ops.medimg.affine_sample(input, coeffs, mode, padding_mode, align_corners)
            assert_float_warp_close(got.double(), expected.double(), theta, mode, align_corners, 1e-4,
                                    float(x.abs().max()), f"{what}, {input.dtype}")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", [(2, 3, 17, 23), (1, 1, 3, 600), (1, 2, 7, 9, 11)], ids=str)
def test_emulated_cuda_forward_half(emulator, shape, dtype):
    """16-bit inputs (CUDA only: the CPU kernels take float32/float64): coordinates and weights in
    float32, one rounding of the result to `dtype`, as test_cuda_half_matches_float32_warp."""
    gen = torch.Generator().manual_seed(sum(shape))
    x = random_input(shape, torch.float32, gen).to(dtype)
    for mode, padding_mode, align_corners, theta, coeffs, what in warp_cases(shape, gen, torch.float32):
        got, guards = emulate(emulator, x, coeffs, mode, padding_mode, align_corners, 65535)
        assert guards.isnan().all() and not got.isnan().any(), what
        expected = reference(x.float(), theta, mode, padding_mode, align_corners).to(dtype)
        assert_float_warp_close(got.double(), expected.double(), theta, mode, align_corners,
                                2 * torch.finfo(dtype).eps, float(x.abs().max()), what)


def emulate_backward(lib: ctypes.CDLL, grad_out: Tensor, input: Tensor, coeffs: Tensor, mode: str,
                     padding_mode: str, align_corners: bool, chunk: int) -> tuple[Tensor, Tensor]:
    """The emulated backward's gradients of input (float32, float64 for float64) and of the
    coefficients (summed over channels, as the op does)."""
    n, c, k = input.shape[0], input.shape[1], input.dim() - 2
    grad_input = torch.zeros(input.shape, dtype=torch.float64 if input.dtype == torch.float64 else torch.float32)
    grad_coeffs = torch.zeros(n, c, k, k + 1, dtype=torch.float64)
    grad_out, coeffs = grad_out.contiguous(), coeffs.contiguous()
    sizes = (ctypes.c_int64 * input.dim())(*input.shape)
    contiguous = (ctypes.c_int64 * input.dim())(*grad_out.stride())
    strides = (ctypes.c_int64 * input.dim())(*input.stride())
    status = lib.emulate_affine_backward(
        ctypes.c_void_p(grad_out.data_ptr()), ctypes.c_void_p(input.data_ptr()), _DTYPE_CODES[input.dtype],
        input.dim(), sizes, contiguous, strides, ctypes.c_void_p(coeffs.data_ptr()),
        ctypes.c_void_p(grad_input.data_ptr()), ctypes.c_void_p(grad_coeffs.data_ptr()), MODES[mode],
        PADDING_MODES[padding_mode], int(align_corners), ctypes.c_int64(chunk))
    assert status == 0
    return grad_input, grad_coeffs.sum(1)


BACKWARD_SHAPES = [(1, 1, 1, 1), (2, 3, 5, 7), (3, 1, 9, 31), (1, 2, 3, 513), (1, 1, 2, 1100), (2, 2, 3, 4, 129),
                   (1, 1, 2, 2, 700)]


@pytest.mark.parametrize("chunk", [65535, 1], ids=["one launch", "a launch per sample"])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("shape", BACKWARD_SHAPES, ids=str)
def test_emulated_cuda_backward_equals_cpu(emulator, shape, dtype, layout, chunk):
    """Gradients of input and coefficients as the CPU backward's, up to the order of float
    sums (atomics and block reductions against the CPU's per-thread partitions)."""
    gen = torch.Generator().manual_seed(sum(shape) + len(layout) + chunk)
    x = relayout(random_input(shape, dtype, gen), layout)
    grad_out = torch.randn(shape, generator=gen, dtype=dtype)
    rtol = 1e-9 if dtype == torch.float64 else 2e-4
    for mode, padding_mode, align_corners, _, coeffs, what in warp_cases(shape, gen, torch.float64):
        got_input, got_coeffs = emulate_backward(emulator, grad_out, x, coeffs, mode, padding_mode, align_corners,
                                                 chunk)
        want_input, want_coeffs = torch.ops.medimg.affine_sample_backward(
            grad_out, x, coeffs, mode, padding_mode, align_corners, True, True)
        scale = float(grad_out.abs().max())
        torch.testing.assert_close(got_input.to(dtype), want_input, rtol=rtol, atol=rtol * scale, msg=what)
        coeff_scale = float(want_coeffs.abs().max()) + 1.0
        torch.testing.assert_close(got_coeffs, want_coeffs, rtol=rtol, atol=rtol * coeff_scale, msg=what)


@pytest.fixture(scope="module")
def fold_emulator(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    """The theta-folding kernel's emulator, built once without FMA (the kernel rounds each step)."""
    lib = build_cuda_host_emulators(["fold_emulator.cpp"], tmp_path_factory.mktemp("cuda_host_fold"), fuse=False)
    lib.emulate_fold_theta.restype = ctypes.c_int
    return lib


@pytest.mark.parametrize("layout", ["contiguous", "transposed", "broadcast"])
@pytest.mark.parametrize("theta_dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize(("n", "k", "align_corners"), [(1, 2, False), (5, 3, True), (128, 2, True), (300, 3, False),
                                                       (129, 2, False)], ids=str)
def test_emulated_cuda_fold_equals_pixel_coefficients(fold_emulator, n, k, align_corners, theta_dtype, layout):
    """The fixed-theta CUDA call's coefficients: pixel_coefficients' bits for every sample of
    every block (the last one partial), any theta stride, and nothing written past them."""
    gen = torch.Generator().manual_seed(n + k + len(layout))
    theta = random_theta(n, k, "zoom_out", gen, theta_dtype)
    if layout == "transposed":
        theta = theta.transpose(1, 2).contiguous().transpose(1, 2)
    elif layout == "broadcast":
        theta = theta[:1].expand(n, k, k + 1)
    spatial = (7, 12, 5)[:k]
    constants = affine._cached_constants(spatial, align_corners, torch.device("cpu"))
    buffer = torch.full((n * k * (k + 1) + GUARD,), float("nan"), dtype=torch.float64)
    strides = (ctypes.c_int64 * 3)(*theta.stride())
    status = fold_emulator.emulate_fold_theta(ctypes.c_void_p(theta.data_ptr()), _DTYPE_CODES[theta_dtype], n, k,
                                              strides, ctypes.c_void_p(constants.data_ptr()),
                                              ctypes.c_void_p(buffer.data_ptr()))
    assert status == 0
    want = pixel_coefficients(theta, spatial, align_corners)
    assert torch.equal(buffer[:want.numel()].view(want.shape), want)
    assert buffer[want.numel():].isnan().all()

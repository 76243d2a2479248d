"""The CUDA forward affine warp, run without a GPU: csrc/cuda/affine_warp_forward.cuh compiled
as host C++ (tests/cuda_host/forward_emulator.cpp) and launched block by block, thread by thread.
Machines without a GPU thus check the kernel's own index arithmetic (which pixels a thread
takes, rows past the last full block, wide rows across 512-pixel segments, the grid's strides
over rows and slices, strided inputs): every output pixel is written, nothing outside the
output is, and the values are the CPU kernel's. The tap arithmetic itself is shared with the
CPU (common/affine_sample.h) and tested there."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from helpers import needs_cpu_kernels, relayout
from test_affine_grid_sample import assert_float_warp_close, random_input, random_theta, reference
from torch import Tensor

from medimg import _extension
from medimg.ops._boundary import _DTYPE_CODES
from medimg.ops.affine import MODES, PADDING_MODES, pixel_coefficients

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tests" / "cuda_host" / "forward_emulator.cpp"
GUARD = 64  # elements either side of the output that must stay untouched

pytestmark = [needs_cpu_kernels,
              pytest.mark.filterwarnings("ignore:Since version 1.3.0, affine_grid behavior:UserWarning")]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    """The emulator, built once with the C++ compiler that built medimg (CXX, else g++/c++).
    With FMA where the CPU kernels run their AVX2 path: nvcc fuses base + step * i, so do they."""
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None or not (ROOT / "csrc").is_dir():
        pytest.skip("needs a C++ compiler and the csrc/ sources")
    fma = ["-mfma", "-ffp-contract=fast"] if _extension.cpu.cpu_isa() == "avx2" else []
    library = tmp_path_factory.mktemp("cuda_host") / "forward_emulator.so"
    subprocess.run([compiler, "-O2", "-std=gnu++17", "-shared", "-fPIC", "-fno-trapping-math", *fma,
                    f"-I{ROOT / 'csrc'}", str(SOURCE), "-o", str(library)], check=True, timeout=600)
    lib = ctypes.CDLL(str(library))
    lib.emulate_affine_forward.restype = ctypes.c_int
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


SHAPES = [(1, 1, 1, 1), (2, 3, 5, 7), (1, 2, 9, 31), (2, 1, 3, 33), (1, 1, 17, 129), (1, 2, 3, 513),
          (1, 1, 2, 1100), (1, 2, 2, 3, 65), (2, 1, 3, 4, 129), (1, 1, 2, 2, 700)]


@pytest.mark.parametrize("max_grid_yz", [65535, 2], ids=["full grid", "grid of 2 (strides)"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_emulated_cuda_forward_equals_cpu(emulator, shape, layout, max_grid_yz):
    gen = torch.Generator().manual_seed(sum(shape) + len(layout) + max_grid_yz)
    k = len(shape) - 2
    x = relayout(random_input(shape, torch.float32, gen), layout)
    labels = relayout(torch.randint(0, 200, shape, generator=gen), layout)
    for mode in MODES:
        for padding_mode in PADDING_MODES:
            align_corners = bool(torch.randint(2, (1,), generator=gen))
            theta = random_theta(shape[0], k, "mild", gen, torch.float32)
            coeffs = pixel_coefficients(theta, tuple(shape[2:]), align_corners)
            what = f"{mode}, {padding_mode}, align_corners={align_corners}"
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
    for mode in MODES:
        for padding_mode in PADDING_MODES:
            align_corners = bool(torch.randint(2, (1,), generator=gen))
            theta = random_theta(shape[0], len(shape) - 2, "mild", gen, torch.float32)
            coeffs = pixel_coefficients(theta, tuple(shape[2:]), align_corners)
            got, guards = emulate(emulator, x, coeffs, mode, padding_mode, align_corners, 65535)
            what = f"{mode}, {padding_mode}, align_corners={align_corners}"
            assert guards.isnan().all() and not got.isnan().any(), what
            expected = reference(x.float(), theta, mode, padding_mode, align_corners).to(dtype)
            assert_float_warp_close(got.double(), expected.double(), theta, mode, align_corners,
                                    2 * torch.finfo(dtype).eps, float(x.abs().max()), what)

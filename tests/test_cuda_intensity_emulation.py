"""The CUDA intensity kernels (csrc/cuda/intensity_kernels.cuh: Gaussian noise and the gamma
curve), run without a GPU: compiled as host C++ (tests/cuda_host/intensity_emulator.cpp) and
launched block by block, thread by thread, over full and capped grids (the caps exercise the
kernels' strides over elements and samples). Every element is written, nothing outside the
output is, and the values are the CPU's: the noise is the CPU kernel's Philox stream (the same
seed gives the same noise on both devices, and the same per-sample sigmas where the kernel
draws them), the curve the torch formula within pow's error."""

from __future__ import annotations

import ctypes

import pytest
import torch
from helpers import build_cuda_host_emulators, needs_cpu_kernels
from test_gamma_curve import assert_within_power_error, batch
from torch import Tensor

from medimg.ops import _reference, gamma_curve, gaussian_noise, random_gaussian_noise
from medimg.ops._boundary import _DTYPE_CODES

pytestmark = needs_cpu_kernels

GUARD = 64  # elements either side of the output that must stay untouched
GRIDS = {"full grid": (2**32 - 1, 2**32 - 1), "one block": (1, 1), "grid of 2 x 2": (2, 2)}
SHAPES = [(1, 1), (3, 5), (2, 1, 7, 9), (3, 1030), (2, 2, 33, 31)]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    lib = build_cuda_host_emulators(["intensity_emulator.cpp"], tmp_path_factory.mktemp("cuda_intensity"), fuse=False)
    pointer, size, grid = ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint32
    lib.emulate_gaussian_noise.argtypes = [pointer, ctypes.c_int32, size, size, pointer, pointer, pointer, grid, grid]
    lib.emulate_gamma_curve.argtypes = [pointer, ctypes.c_int32, size, size, pointer, pointer, pointer, pointer, grid,
                                        grid]
    lib.emulate_random_gaussian_noise.argtypes = [pointer, ctypes.c_int32, size, size, pointer, ctypes.c_double,
                                                  ctypes.c_double, ctypes.c_double, pointer, grid, grid]
    lib.emulate_gaussian_noise.restype = lib.emulate_gamma_curve.restype = ctypes.c_int
    lib.emulate_random_gaussian_noise.restype = ctypes.c_int
    return lib


def guarded_output(like: Tensor) -> tuple[Tensor, Tensor]:
    """An output of like's shape and dtype inside a NaN-filled buffer with GUARD elements either side."""
    buffer = torch.full((like.numel() + 2 * GUARD,), float("nan"), dtype=like.dtype)
    return buffer[GUARD:GUARD + like.numel()].view(like.shape), buffer


def assert_written_exactly(out: Tensor, buffer: Tensor, image: Tensor, what: str) -> None:
    """Guards untouched; every element written (NaN only where the image has NaN)."""
    guards = torch.cat([buffer[:GUARD], buffer[-GUARD:]])
    assert guards.isnan().all(), f"{what}: written outside the output"
    unwritten = out.isnan() & ~image.isnan()
    assert not unwritten.any(), f"{what}: {int(unwritten.sum())} elements never written"


def emulate_noise(lib: ctypes.CDLL, image: Tensor, sigma: Tensor, seed: Tensor, grid: tuple[int, int]) -> Tensor:
    out, buffer = guarded_output(image)
    n = image.shape[0]
    status = lib.emulate_gaussian_noise(image.data_ptr(), _DTYPE_CODES[image.dtype], n, image.numel() // n,
                                        sigma.data_ptr(), seed.data_ptr(), out.data_ptr(), *grid)
    assert status == 0
    assert_written_exactly(out, buffer, image, f"noise {tuple(image.shape)} {image.dtype}")
    return out


def emulate_gamma(lib: ctypes.CDLL, image: Tensor, gamma: Tensor, low: Tensor, extent: Tensor,
                  grid: tuple[int, int]) -> Tensor:
    out, buffer = guarded_output(image)
    n = image.shape[0]
    status = lib.emulate_gamma_curve(image.data_ptr(), _DTYPE_CODES[image.dtype], n, image.numel() // n,
                                     gamma.data_ptr(), low.data_ptr(), extent.data_ptr(), out.data_ptr(), *grid)
    assert status == 0
    assert_written_exactly(out, buffer, image, f"gamma {tuple(image.shape)} {image.dtype}")
    return out


@pytest.mark.parametrize("grid", GRIDS.values(), ids=GRIDS.keys())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_emulated_cuda_noise_is_the_cpu_stream(emulator, shape, dtype, grid):
    """The CPU kernel's noise for the same seed, up to the float arithmetic of log, cos and sin
    (CUDA's against the CPU's own series); a row's last partial Philox block included."""
    gen = torch.Generator().manual_seed(sum(shape))
    image = torch.randn(shape, generator=gen, dtype=dtype)
    sigma = torch.linspace(0.5, 2.0, shape[0], dtype=dtype)
    seed = torch.tensor(-123456789012345 + sum(shape), dtype=torch.int64)
    got = emulate_noise(emulator, image, sigma, seed, grid)
    expected = gaussian_noise(image, sigma, seed, backend="medimg")
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-5 if dtype == torch.float32 else 1e-9)


@pytest.mark.parametrize("grid", GRIDS.values(), ids=GRIDS.keys())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_emulated_cuda_random_noise_draws_the_cpu_sigmas(emulator, dtype, grid):
    """Without a sigma array the kernel draws each sample's sigma and p decision from the seed,
    as the CPU op does: the same samples noised, the same noise up to log, cos and sin."""
    image = torch.randn(9, 1, 7, 9, generator=torch.Generator().manual_seed(5), dtype=dtype)
    seed = torch.tensor(-55555, dtype=torch.int64)
    out, buffer = guarded_output(image)
    status = emulator.emulate_random_gaussian_noise(image.data_ptr(), _DTYPE_CODES[dtype], 9, image[0].numel(),
                                                    seed.data_ptr(), 0.1, 0.6, 0.5, out.data_ptr(), *grid)
    assert status == 0
    assert_written_exactly(out, buffer, image, f"random noise {dtype}")
    expected = random_gaussian_noise(image, seed, (0.1, 0.6), 0.5)
    assert torch.equal((out == image).flatten(1).all(1), (expected == image).flatten(1).all(1))
    torch.testing.assert_close(out, expected, rtol=0, atol=2e-5 if dtype == torch.float32 else 1e-9)


@pytest.mark.parametrize("grid", GRIDS.values(), ids=GRIDS.keys())
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_emulated_cuda_gamma_is_the_formula(emulator, shape, grid):
    """float32 and float64 within pow's error of the formula in torch ops, the samples whose
    gamma is 1 bit for bit (products and sums rounded one at a time, as torch's ops)."""
    for dtype in (torch.float32, torch.float64):
        image, gamma, low, extent = (t.to(dtype) for t in batch(shape, sum(shape)))
        got = emulate_gamma(emulator, image, gamma, low, extent, grid)
        expected = _reference.gamma_curve(image, gamma, low, extent)
        assert_within_power_error(got.float(), expected.float(), extent.float())
        ones = gamma == 1
        assert torch.equal(got[ones], expected[ones]), dtype


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_emulated_cuda_gamma_of_16_bit_floats(emulator, dtype):
    """Computed in float32 and rounded once: within one rounding of the float32 formula."""
    image, gamma, low, extent = batch((3, 1, 9, 40), 11)
    half = [t.to(dtype) for t in (image, gamma, low, extent)]
    got = emulate_gamma(emulator, *half, GRIDS["grid of 2 x 2"])
    expected = _reference.gamma_curve(*(t.float() for t in half))
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(got.float(), expected, rtol=eps, atol=eps * float(extent.max()))


def test_emulated_cuda_gamma_nan_infinity_and_an_infinite_exponent(emulator):
    """As the CPU kernel: the ends of the range clamp (infinities included), NaN stays NaN, a
    base of 1 gives 1 whatever gamma."""
    image = torch.tensor([[-1.0, 3.0, 5.0, float("inf"), -float("inf"), float("nan"), 1.0]])
    got = emulate_gamma(emulator, image, torch.tensor([0.5]), torch.tensor([-1.0]), torch.tensor([4.0]), (1, 1))
    expected = gamma_curve(image, torch.tensor([0.5]), torch.tensor([-1.0]), torch.tensor([4.0]), backend="torch")
    torch.testing.assert_close(got, expected, rtol=2.0**-21, atol=0, equal_nan=True)
    image = torch.tensor([[0.0, 0.5, 1.0]])
    got = emulate_gamma(emulator, image, torch.tensor([float("inf")]), torch.zeros(1), torch.ones(1), (1, 1))
    assert got.tolist() == [[0.0, 0.0, 1.0]]

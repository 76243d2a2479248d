"""medimg.ops.gaussian_noise: image + sigma[n] * N(0, 1) from Philox4x32-10. The generator is
checked against the published known answers; the noise for its distribution (moments and a
Kolmogorov-Smirnov distance), its independence across elements and samples, and its
reproducibility (by seed, whatever the thread count, the batch or the instruction set)."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from helpers import needs_cpu_kernels
from torch import Tensor

from medimg import _extension
from medimg.ops.noise import gaussian_noise

pytestmark = needs_cpu_kernels
ROOT = Path(__file__).resolve().parents[1]


def seed(value: int) -> Tensor:
    return torch.tensor(value, dtype=torch.int64)


def standard_noise(shape: tuple[int, ...], value: int, dtype: torch.dtype = torch.float32) -> Tensor:
    return gaussian_noise(torch.zeros(shape, dtype=dtype), torch.ones(shape[0], dtype=dtype), seed(value))


def test_philox_known_answers(tmp_path):
    """The three Philox4x32-10 known answers of Random123 (kat_vectors)."""
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None or not (ROOT / "csrc").is_dir():
        pytest.skip("needs a C++ compiler and the csrc/ sources")
    program = tmp_path / "kat.cpp"
    program.write_text("""
#include <cstdio>
#include "common/philox.h"
int main() {
  const medimg::Philox4 counters[3] = {{{0u, 0u, 0u, 0u}}, {{~0u, ~0u, ~0u, ~0u}},
                                       {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}};
  const unsigned keys[3][2] = {{0u, 0u}, {~0u, ~0u}, {0xa4093822u, 0x299f31d0u}};
  for (int i = 0; i < 3; ++i) {
    const medimg::Philox4 r = medimg::philox4x32_10(counters[i], keys[i][0], keys[i][1]);
    std::printf("%08x %08x %08x %08x\\n", r.v[0], r.v[1], r.v[2], r.v[3]);
  }
}
""")
    subprocess.run([compiler, "-std=gnu++17", f"-I{ROOT / 'csrc'}", str(program), "-o", str(tmp_path / "kat")],
                   check=True, timeout=300)
    lines = subprocess.run([str(tmp_path / "kat")], check=True, capture_output=True, text=True).stdout.split("\n")
    assert lines[:3] == ["6627e8d5 e169c58d bc57ac4c 9b00dbd8", "408f276d 41c83b0e a20bc7c6 6d5451fd",
                         "d16cfe09 94fdcceb 5001e420 24126ea1"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_distribution_is_standard_normal(dtype):
    z = standard_noise((4, 1, 500, 500), 1, dtype).flatten().double()
    n = z.numel()
    assert abs(z.mean().item()) < 5 / math.sqrt(n)  # 5 standard errors
    assert abs(z.std().item() - 1) < 5 / math.sqrt(2 * n)
    assert abs((z**4).mean().item() - 3) < 0.03  # kurtosis of the normal: 3 (its standard error here ~0.005)
    ordered = z.sort().values
    cdf = 0.5 * (1 + torch.erf(ordered / math.sqrt(2)))
    rank = torch.arange(1, n + 1, dtype=torch.float64)
    distance = torch.maximum(rank / n - cdf, cdf - (rank - 1) / n).max().item()
    assert distance < 1.63 / math.sqrt(n)  # Kolmogorov-Smirnov at the 1% level
    assert 4.5 < z.abs().max().item() < 6.0  # the tail reaches past 4.5 sigma in a million draws


def test_elements_and_samples_are_uncorrelated():
    z = standard_noise((2, 1, 300, 300), 2).flatten(1)
    bound = 5 / math.sqrt(z.shape[1])
    for lag in (1, 2, 3, 4, 5, 8):  # neighbours within and across the four normals of a block
        assert abs(torch.corrcoef(torch.stack([z[0, :-lag], z[0, lag:]]))[0, 1].item()) < bound
    assert abs(torch.corrcoef(z)[0, 1].item()) < bound


def test_reproducible_by_seed_threads_and_batch():
    z = standard_noise((3, 2, 37, 41), 3)  # rows not a multiple of 4: partial blocks
    assert torch.equal(z, standard_noise((3, 2, 37, 41), 3))
    assert not torch.equal(z, standard_noise((3, 2, 37, 41), 4))
    assert not torch.equal(z[0], z[1])
    assert torch.equal(standard_noise((2, 2, 37, 41), 3), z[:2])  # sample n's noise: (seed, n, position)
    previous = torch.get_num_threads()
    try:
        for threads in (1, 3):
            torch.set_num_threads(threads)
            assert torch.equal(standard_noise((3, 2, 37, 41), 3), z)
    finally:
        torch.set_num_threads(previous)


def test_instruction_sets_agree():
    """Bits may differ by FMA contraction only."""
    z = standard_noise((2, 1, 64, 65), 5)
    try:
        for isa in _extension.cpu.supported_isas():
            _extension.cpu.select_isa(isa)
            torch.testing.assert_close(standard_noise((2, 1, 64, 65), 5), z, rtol=1e-5, atol=1e-5)
    finally:
        _extension.cpu.select_isa("auto")


@pytest.mark.parametrize("length", [1, 3, 4, 5, 1023, 1025, 4099])
def test_sigma_scales_each_sample(length):
    image = torch.randn(3, length, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    sigma = torch.tensor([0.0, 0.5, 2.0], dtype=torch.float64)
    out = gaussian_noise(image, sigma, seed(7))
    z = standard_noise((3, length), 7, torch.float64)
    torch.testing.assert_close(out, image + sigma[:, None] * z, rtol=1e-14, atol=1e-14)
    assert torch.equal(out[0], image[0])


def test_non_contiguous_image_and_gradient():
    image = torch.randn(3, 8, 10, dtype=torch.float64).transpose(1, 2).requires_grad_()
    sigma = torch.full((3,), 0.1, dtype=torch.float64)
    out = gaussian_noise(image, sigma, seed(8))
    assert out.is_contiguous() and out.shape == image.shape
    torch.testing.assert_close(out.detach(), gaussian_noise(image.detach().contiguous(), sigma, seed(8)))
    (grad,) = torch.autograd.grad((out * 3).sum(), image)
    assert torch.equal(grad, torch.full_like(grad, 3))


@pytest.mark.parametrize("shape", [(0, 1, 4, 4), (2, 0, 4), (3, 1, 0, 5)], ids=str)
def test_empty_batches(shape):
    image = torch.zeros(shape, requires_grad=True)
    for backend in ("auto", "medimg", "torch"):
        out = gaussian_noise(image, torch.ones(shape[0]), seed(1), backend=backend)
        assert out.shape == image.shape and out.requires_grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(3, 1), (2, 5), (2, 1, 33, 31)], ids=str)
def test_kernel_equals_the_reference(shape, dtype):
    """The same generator in torch ops (medimg.ops._reference): equal up to the kernel's float
    arithmetic (float32 for float32 images; for float64 the series truncation, below 1e-10)."""
    image = torch.randn(shape, generator=torch.Generator().manual_seed(10), dtype=dtype)
    sigma = torch.linspace(0.5, 2.0, shape[0], dtype=dtype)
    got = gaussian_noise(image, sigma, seed(-123456789012345))
    expected = gaussian_noise(image, sigma, seed(-123456789012345), backend="torch")
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5 if dtype == torch.float32 else 1e-9)


def test_off_the_cpu_takes_the_reference_or_says_so():
    image, sigma = torch.zeros(2, 3, device="meta"), torch.ones(2, device="meta")
    with pytest.raises(ValueError, match=r"^image: the noise kernel runs on the CPU and CUDA, got a tensor on meta"):
        gaussian_noise(image, sigma, seed(1), backend="medimg")
    with pytest.raises(ValueError, match=r"^sigma: .*on cpu"):
        gaussian_noise(torch.zeros(2, 3), sigma, seed(1))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_cuda_noise_is_the_cpu_stream(dtype):
    """The CUDA kernel draws the CPU kernel's Philox stream: the same seed (on either device)
    gives the same noise up to the float arithmetic of log, cos and sin; opcheck on CUDA."""
    image = torch.randn(3, 2, 33, 31, generator=torch.Generator().manual_seed(12), dtype=dtype)
    sigma = torch.tensor([0.0, 0.5, 2.0], dtype=dtype)
    expected = gaussian_noise(image, sigma, seed(77), backend="medimg")
    cuda_image, cuda_sigma = image.cuda(), sigma.cuda()
    for seed_tensor in (seed(77), seed(77).cuda()):
        got = gaussian_noise(cuda_image, cuda_sigma, seed_tensor, backend="medimg")
        assert got.device == cuda_image.device and got.dtype == dtype
        torch.testing.assert_close(got.cpu(), expected, rtol=0, atol=2e-5 if dtype == torch.float32 else 1e-9)
    torch.library.opcheck(torch.ops.medimg.gaussian_noise.default, (cuda_image, cuda_sigma, seed(5).cuda()))


def test_opcheck():
    image, sigma = torch.randn(2, 3, 5), torch.tensor([0.1, 0.2])
    torch.library.opcheck(torch.ops.medimg.gaussian_noise.default, (image, sigma, seed(9)))


@pytest.mark.parametrize(("args", "match"), [
    ((torch.zeros(2, 3, dtype=torch.float16), torch.ones(2, dtype=torch.float16), seed(1)), "^image: .*float16"),
    ((torch.zeros(2, 3), torch.ones(3), seed(1)), r"^sigma: .*\(2,\)"),
    ((torch.zeros(2, 3), torch.ones(2, dtype=torch.float64), seed(1)), "^sigma: "),
    ((torch.zeros(2, 3), torch.ones(2, requires_grad=True), seed(1)), "^sigma: .*not differentiable"),
    ((torch.zeros(2, 3), torch.ones(2), torch.tensor([1])), "^seed: "),
    ((torch.zeros(2, 3), torch.ones(2), torch.tensor(1.0)), "^seed: "),
    ((torch.zeros(2, 3), torch.ones(2), torch.tensor(1, device="meta")), "^seed: .*on the CPU, got .* on meta"),
])
def test_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        gaussian_noise(*args)

"""medimg.ops.random_gaussian_noise: gaussian_noise whose per-sample sigma and p decision come
from the seed too (RandomGaussianNoise in one kernel). The draw is checked bit for bit against
its torch-ops reference, for its distribution (the fraction noised, sigma's range and mean), and
for depending on (seed, sample) alone; the noise itself is gaussian_noise's (tests/test_noise.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import needs_cpu_kernels
from torch import Tensor

from medimg.ops import _reference
from medimg.ops.noise import gaussian_noise, random_gaussian_noise

pytestmark = needs_cpu_kernels
CASES = [((0.1, 0.5), 0.5), ((0.0, 0.05), 1.0), ((0.2, 0.2), 1.0), ((0.0, 1.0), 0.0), ((0.0, 0.0), 0.7)]


def seed(value: int) -> Tensor:
    return torch.tensor(value, dtype=torch.int64)


@pytest.mark.parametrize(("std", "p"), CASES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_kernel_draws_the_reference_sigmas(dtype, std, p):
    """The kernel's output is gaussian_noise's with the reference's sigmas, bit for bit: the C++
    draw (common/noise_sigma.h) and medimg.ops._reference.noise_sigma give the same values."""
    image = torch.randn(64, 1, 9, 7, generator=torch.Generator().manual_seed(3), dtype=dtype)
    sigma = _reference.noise_sigma(seed(-987654321), 64, *std, p, dtype, image.device)
    got = random_gaussian_noise(image, seed(-987654321), std, p)
    assert got.dtype == dtype and got.shape == image.shape
    assert torch.equal(got, gaussian_noise(image, sigma, seed(-987654321)))
    torch.testing.assert_close(got, random_gaussian_noise(image, seed(-987654321), std, p, backend="torch"),
                               rtol=0, atol=1e-5 if dtype == torch.float32 else 1e-9)
    untouched = (got == image).flatten(1).all(1)
    assert torch.equal(untouched, sigma == 0)


@pytest.mark.parametrize(("low", "high", "p"), [(0.0, 1.0, 0.3), (0.25, 0.75, 0.9), (2.0, 3.0, 1.0)])
def test_draw_distribution(low, high, p):
    """Over 20,000 samples: the fraction noised is p and sigma is uniform on [low, high), each
    within 5 standard errors."""
    n = 20_000
    sigma = _reference.noise_sigma(seed(2024), n, low, high, p, torch.float64, torch.device("cpu"))
    applied = sigma != 0
    assert abs(float(applied.double().mean()) - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-12
    values = sigma[applied]
    assert float(values.min()) >= low and float(values.max()) < high
    spread = (high - low) / math.sqrt(12)
    assert abs(float(values.mean()) - (low + high) / 2) <= 5 * spread / math.sqrt(values.numel())


def test_a_sample_depends_on_seed_and_position_alone():
    """Sample n's sigma and noise are the same in any batch holding it at position n; another
    seed draws others."""
    image = torch.randn(40, 2, 5, 5, generator=torch.Generator().manual_seed(4))
    full = random_gaussian_noise(image, seed(11), (0.1, 0.9), 0.5)
    assert torch.equal(random_gaussian_noise(image[:17], seed(11), (0.1, 0.9), 0.5), full[:17])
    assert not torch.equal(random_gaussian_noise(image, seed(12), (0.1, 0.9), 0.5), full)


def test_numpy_numbers_are_accepted():
    image = torch.randn(4, 5)
    got = random_gaussian_noise(image, seed(3), (np.float64(0.1), np.float32(0.25)), p=np.float32(0.5))
    assert torch.equal(got, random_gaussian_noise(image, seed(3), (0.1, 0.25), p=0.5))


def test_gradient_is_the_identity_and_opcheck():
    image = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    random_gaussian_noise(image, seed(8), (0.1, 0.2), 0.5).sum().backward()
    assert torch.equal(image.grad, torch.ones_like(image))
    torch.library.opcheck(torch.ops.medimg.random_gaussian_noise.default, (image.detach(), seed(8), 0.1, 0.2, 0.5))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_cuda_draws_what_the_cpu_draws(dtype):
    """The same seed (on either device) gives the CPU's sigmas and noise, up to the float
    arithmetic of log, cos and sin; opcheck on CUDA."""
    image = torch.randn(33, 2, 17, 19, generator=torch.Generator().manual_seed(12), dtype=dtype)
    expected = random_gaussian_noise(image, seed(77), (0.1, 0.5), 0.6)
    for seed_tensor in (seed(77), seed(77).cuda()):
        got = random_gaussian_noise(image.cuda(), seed_tensor, (0.1, 0.5), 0.6)
        assert got.is_cuda and got.dtype == dtype
        torch.testing.assert_close(got.cpu(), expected, rtol=0, atol=2e-5 if dtype == torch.float32 else 1e-9)
    torch.library.opcheck(torch.ops.medimg.random_gaussian_noise.default, (image.cuda(), seed(5).cuda(), 0.1, 0.5, 0.6))


@pytest.mark.parametrize(("args", "kwargs", "match"), [
    ((torch.zeros(2, 3, dtype=torch.float16), seed(1), (0.0, 1.0)), {}, "^image: .*float16"),
    ((torch.zeros(2, 3), seed(1), (0.5, 0.1)), {}, "^std: "),
    ((torch.zeros(2, 3), seed(1), (-0.1, 0.1)), {}, "^std: "),
    ((torch.zeros(2, 3), seed(1), (0.0, math.inf)), {}, "^std: "),
    ((torch.zeros(2, 3), seed(1), (0.0, 1e300)), {}, "^std: .*float32"),
    ((torch.zeros(2, 3, device="meta"), seed(1), (0.0, 0.1)), {"backend": "medimg"},
     "^image: the noise kernel runs on the CPU and CUDA, got a tensor on meta"),
    ((torch.zeros(0, 3, device="meta"), seed(1), (0.0, 0.1)), {"backend": "medimg"}, "^image: the noise kernel"),
    ((torch.zeros(2, 3), seed(1), 0.1), {}, "^std: .*pair"),
    ((torch.zeros(2, 3), seed(1), (0.0, 0.1)), {"p": 1.5}, "^p: "),
    ((torch.zeros(2, 3), seed(1), (0.0, 0.1)), {"p": math.nan}, "^p: "),
    ((torch.zeros(2, 3), torch.tensor([1]), (0.0, 0.1)), {}, "^seed: "),
    ((torch.zeros(2, 3), torch.tensor(1, device="meta"), (0.0, 0.1)), {}, "^seed: .*on the CPU, got .* on meta"),
])
def test_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        random_gaussian_noise(*args, **kwargs)

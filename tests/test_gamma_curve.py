"""medimg.ops.gamma_curve: clamp((x - low) / extent, 0, 1) ** gamma * extent + low per sample.
The CPU kernel (float32) against the formula in torch ops: within the stated bound of the
power's error, bit for bit where gamma is 1, at the ends of the range, for subnormal bases,
NaN and infinite pixels, whatever the thread count or instruction set; opcheck and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import needs_cpu_kernels
from torch import Tensor

from medimg.ops import _reference, gamma_curve

pytestmark = needs_cpu_kernels


def batch(shape: tuple[int, ...], seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Images with negative and positive values; gamma in [0.2, 4] with every third sample 1;
    each sample's own range as RandomGamma takes it."""
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn(shape, generator=gen) * 3 + 1
    gamma = torch.rand(shape[0], generator=gen) * 3.8 + 0.2
    gamma[::3] = 1.0
    low = image.flatten(1).amin(1)
    return image, gamma, low, (image.flatten(1).amax(1) - low).clamp_min(1e-8)


def assert_within_power_error(got: Tensor, expected: Tensor, extent: Tensor) -> None:
    """|got - expected| <= 2e-6 * extent + 2^-22 |expected| per sample: the two powers (the
    kernel's e^(g ln b) and torch.pow, each within about 1e-6 of b^g for the b^g that matter)
    scaled by the range, plus the rounding of the final product and sum."""
    scale = extent.view(-1, *[1] * (got.dim() - 1))
    bound = 2e-6 * scale + 2.0**-22 * expected.abs()
    excess = (got - expected).abs() - bound
    assert bool((excess <= 0).all()), f"worst excess {float(excess.max())}"


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 1, 7, 9), (4, 2, 5, 6, 7), (3, 1, 130, 131), (2, 20000)],
                         ids=str)
def test_kernel_matches_the_formula(cpu_isa, shape):
    """Odd sizes, 2D, 3D and flat samples, and samples longer than one thread's span (16384)."""
    image, gamma, low, extent = batch(shape, 1)
    got = gamma_curve(image, gamma, low, extent, backend="medimg")
    expected = _reference.gamma_curve(image, gamma, low, extent)
    assert got.dtype == torch.float32 and got.shape == image.shape and got.is_contiguous()
    assert_within_power_error(got, expected, extent)
    ones = gamma == 1
    assert torch.equal(got[ones], expected[ones])  # the gamma = 1 samples bit for bit


@pytest.mark.parametrize("gamma", [0.05, 0.3, 0.7, 1.5, 3.0, 25.0])
def test_power_over_every_binade(cpu_isa, gamma):
    """Bases from the smallest subnormal to 1, through every power of two, against float64: the
    kernel's power within (1 + |gamma ln b|) * 2^-22 relative (a power below 2^-126 may be 0)."""
    bases = torch.cat([torch.logspace(-149, 0, 20000, base=2.0, dtype=torch.float64).float(),
                       torch.rand(20000, generator=torch.Generator().manual_seed(2)),
                       torch.tensor([0.0, 1.0, 2.0**-149, 2.0**-126, 2.0**-127, 0.5])])
    one = torch.ones(1)
    got = gamma_curve(bases[None], torch.tensor([gamma]), torch.zeros(1), one, backend="medimg")[0].double()
    exact = bases.double().pow(gamma)
    bound = (1 + (gamma * bases.double().log()).abs()) * 2.0**-22 * exact
    normal = exact >= 2.0**-126
    assert bool(((got - exact).abs() <= bound)[normal].all())
    assert bool((got[~normal] <= 2.0**-126).all())
    assert got[bases == 0].eq(0).all() and got[bases == 1].eq(1).all()


def test_ends_of_the_range_nan_and_infinity(cpu_isa):
    """The minimum maps to low exactly; pixels beyond the range clamp to its ends (inf included),
    NaN pixels stay NaN, and a NaN range (an unchecked NaN sample) makes the sample NaN."""
    image = torch.tensor([[-1.0, 3.0, 5.0, math.inf, -math.inf, math.nan, 1.0],
                          [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    low, extent = torch.tensor([-1.0, math.nan]), torch.tensor([4.0, math.nan])
    got = gamma_curve(image, torch.tensor([0.5, 2.0]), low, extent, backend="medimg")
    expected = _reference.gamma_curve(image, torch.tensor([0.5, 2.0]), low, extent)
    assert got[0, 0] == -1.0 and got[0, 1] == 3.0 and got[0, 2] == 3.0
    assert got[0, 3] == 3.0 and got[0, 4] == -1.0 and math.isnan(got[0, 5])
    torch.testing.assert_close(got[0, 6], expected[0, 6], rtol=2.0**-21, atol=0)
    assert torch.isnan(got[1]).all() and torch.isnan(expected[1]).all()


def test_threads_instruction_sets_and_layout_agree():
    """The same bits whatever the thread count (the batch is large enough for several threads);
    non-contiguous input reads as its values; the baseline and AVX2 kernels within the power's
    error of each other."""
    from medimg import _extension

    image, gamma, low, extent = batch((3, 1, 200, 200), 3)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = gamma_curve(image, gamma, low, extent, backend="medimg")
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(gamma_curve(image, gamma, low, extent, backend="medimg"), one)
    strided = image.transpose(2, 3).contiguous().transpose(2, 3)
    assert torch.equal(gamma_curve(strided, gamma, low, extent, backend="medimg"), one)
    previous = _extension.cpu.cpu_isa()
    for isa in _extension.cpu.supported_isas():
        _extension.cpu.select_isa(isa)
        try:
            assert_within_power_error(gamma_curve(image, gamma, low, extent, backend="medimg"), one, extent)
        finally:
            _extension.cpu.select_isa(previous)


@pytest.mark.parametrize("shape", [(3, 2, 5, 7), (2, 3, 4, 5, 6)], ids=str)
def test_channels_last_keeps_its_layout(shape):
    """A channels-last batch is walked in memory order and comes out channels-last, with the
    values of the contiguous batch, as the formula in torch ops keeps it."""
    image, gamma, low, extent = batch(shape, 8)
    layout = torch.channels_last if image.dim() == 4 else torch.channels_last_3d
    got = gamma_curve(image.contiguous(memory_format=layout), gamma, low, extent, backend="medimg")
    assert got.is_contiguous(memory_format=layout) and not got.is_contiguous()
    assert torch.equal(got, gamma_curve(image, gamma, low, extent, backend="medimg"))
    expected = _reference.gamma_curve(image.contiguous(memory_format=layout), gamma, low, extent)
    assert got.stride() == expected.stride()


@pytest.mark.parametrize("shape", [(0, 1, 4, 4), (2, 0, 4), (3, 1, 0, 5)], ids=str)
def test_empty_batches(shape):
    image = torch.zeros(shape)
    params = torch.ones(shape[0])
    for backend in ("auto", "medimg", "torch"):
        got = gamma_curve(image, params * 2, params * 0, params, backend=backend)
        assert got.shape == image.shape and got.dtype == image.dtype


def test_an_infinite_exponent_through_the_bare_op():
    """Python rejects gamma = inf; the op called directly still gives pow's answer: 1 for a base
    of 1, 0 below it."""
    image = torch.tensor([[0.0, 0.5, 1.0]])
    got = torch.ops.medimg.gamma_curve(image, torch.tensor([math.inf]), torch.zeros(1), torch.ones(1))
    assert got.tolist() == [[0.0, 0.0, 1.0]]


def test_vmap_runs_the_formula_without_reading_values():
    image, gamma, low, extent = batch((4, 1, 6, 7), 9)

    def one_sample(x: Tensor, g: Tensor, lo: Tensor, e: Tensor) -> Tensor:
        return gamma_curve(x[None], g[None], lo[None], e[None])[0]

    got = torch.func.vmap(one_sample)(image, gamma, low, extent)
    torch.testing.assert_close(got, _reference.gamma_curve(image, gamma, low, extent), rtol=0, atol=0)


def test_auto_takes_the_formula_for_gradients_and_other_dtypes():
    image, gamma, low, extent = batch((2, 1, 5, 6), 4)
    leaf = image.clone().requires_grad_()
    out = gamma_curve(leaf, gamma, low, extent)
    (grad,) = torch.autograd.grad(out.sum(), leaf)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    f64 = [t.double() for t in (image, gamma, low, extent)]
    assert torch.equal(gamma_curve(*f64), _reference.gamma_curve(*f64))
    with pytest.raises(ValueError, match=r"^image: requires grad, and the gamma kernel is not differentiable"):
        gamma_curve(leaf, gamma, low, extent, backend="medimg")
    with pytest.raises(ValueError, match=r"^gamma: requires grad"):
        gamma_curve(image, gamma.clone().requires_grad_(), low, extent, backend="medimg")
    with pytest.raises(ValueError, match=r"^image: the gamma kernels take float32 on the CPU and floating"):
        gamma_curve(*f64, backend="medimg")


def test_auto_skips_the_baseline_build():
    """Where only the baseline kernel runs (four lanes, no FMA: slower than torch's formula),
    "auto" takes the formula; with a wider instruction set, the kernel."""
    from medimg import _extension

    image, gamma, low, extent = batch((4, 1, 30, 40), 10)
    formula = _reference.gamma_curve(image, gamma, low, extent)
    try:
        for isa in _extension.cpu.supported_isas():
            _extension.cpu.select_isa(isa)
            expected = formula if isa == "baseline" else gamma_curve(image, gamma, low, extent, backend="medimg")
            assert torch.equal(gamma_curve(image, gamma, low, extent), expected)
    finally:
        _extension.cpu.select_isa("auto")


def test_opcheck():
    image, gamma, low, extent = batch((3, 2, 6, 7), 5)
    for layout in (torch.contiguous_format, torch.channels_last):
        args = (image.contiguous(memory_format=layout), gamma, low, extent)
        torch.library.opcheck(torch.ops.medimg.gamma_curve.default, args)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16], ids=str)
def test_cuda_kernel_matches_the_formula(dtype):
    """CUDA's pow against torch's; the gamma = 1 samples bit for bit (float32/float64) against the
    curve without its power, since torch's CUDA pow(b, 1) can differ from b in the last bit in
    float64; 16-bit floats within one rounding of the float32 formula; channels-last kept; opcheck
    on CUDA."""
    image, gamma, low, extent = (t.to(dtype).cuda() for t in batch((4, 3, 17, 40), 13))
    got = gamma_curve(image, gamma, low, extent, backend="medimg")
    assert got.dtype == dtype and got.is_cuda
    if dtype in (torch.float32, torch.float64):
        expected = _reference.gamma_curve(image, gamma, low, extent)
        assert_within_power_error(got.float(), expected.float(), extent.float())
        ones, per_sample = gamma == 1, (-1, 1, 1, 1)
        identity = ((image - low.view(per_sample)) / extent.view(per_sample)).clamp(0, 1)
        assert torch.equal(got[ones], (identity * extent.view(per_sample) + low.view(per_sample))[ones])
    else:
        expected = _reference.gamma_curve(*(t.float() for t in (image, gamma, low, extent)))
        eps = torch.finfo(dtype).eps
        torch.testing.assert_close(got.float(), expected, rtol=eps, atol=eps * float(extent.float().max()))
    channels_last = gamma_curve(image.contiguous(memory_format=torch.channels_last), gamma, low, extent,
                                backend="medimg")
    assert channels_last.is_contiguous(memory_format=torch.channels_last) and torch.equal(channels_last, got)
    torch.library.opcheck(torch.ops.medimg.gamma_curve.default, (image, gamma, low, extent))


def _bad_cases():
    image, gamma, low, extent = batch((2, 1, 4, 4), 6)
    return [
        ((image.int(), gamma, low, extent), ValueError, r"^image: expected a floating"),
        ((image, gamma[:1], low, extent), ValueError, r"^gamma: expected torch.float32 \(2,\)"),
        ((image, gamma, low.double(), extent), ValueError, r"^low: expected torch.float32"),
        ((image, gamma, low, extent[None]), ValueError, r"^extent: expected"),
        ((image, -gamma, low, extent), ValueError, r"^gamma: every exponent must be finite and > 0"),
        ((image, gamma / 0, low, extent), ValueError, r"^gamma: every exponent must be finite and > 0"),
        ((image, gamma, low, extent * 0), ValueError, r"^extent: every range must be > 0"),
        ((image.numpy(), gamma, low, extent), TypeError, r"^image: expected a torch.Tensor"),
    ]


@pytest.mark.parametrize(("args", "error", "match"), _bad_cases(), ids=[m for _, _, m in _bad_cases()])
def test_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        gamma_curve(*args)


def test_unknown_backend():
    with pytest.raises(ValueError, match=r"^backend: "):
        gamma_curve(*batch((1, 3), 7), backend="fast")

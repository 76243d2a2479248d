"""Second (and third) derivatives of `affine_grid_sample`: gradient penalties and R1
regularisation differentiate the warp's backward. The oracle is torch's own
F.affine_grid + F.grid_sample on the CPU, where its backward is differentiable too (torch 2.13
has that derivative, 2.11 has none on any device: those cases skip there), and on CUDA
medimg's CPU path, which the CPU cases hold to torch."""

from __future__ import annotations

from functools import cache

import pytest
import torch
import torch.nn.functional as F
from helpers import needs_cpu_kernels
from test_affine_grid_sample import PADDINGS, case_seed, random_theta, reference
from torch import Tensor

from medimg.ops import _reference, affine_grid_sample
from medimg.ops.affine import pixel_coefficients
from medimg.transforms import RandomAffine

pytestmark = [needs_cpu_kernels,
              pytest.mark.filterwarnings("ignore:Since version 1.3.0, affine_grid behavior:UserWarning")]

SHAPES = [(2, 2, 4, 5), (1, 2, 3, 4, 5)]


@cache
def _torch_warp_has_second_derivative() -> bool:
    """Whether this torch differentiates F.grid_sample's backward (on the CPU)."""
    x = torch.rand(1, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    grid = torch.full((1, 1, 1, 2), 0.25, dtype=torch.float64)
    (grad_x,) = torch.autograd.grad((F.grid_sample(x, grid, align_corners=False) ** 2).sum(), x, create_graph=True)
    try:
        grad_x.sum().backward()
    except RuntimeError:
        return False
    return True


needs_torch_second_derivative = pytest.mark.skipif(
    not _torch_warp_has_second_derivative(),
    reason=f"torch {torch.__version__} has no derivative of F.grid_sample's backward, the oracle")


def medimg_warp(mode: str, padding_mode: str, align_corners: bool):
    return lambda x, theta: affine_grid_sample(x, theta, mode, padding_mode, align_corners, backend="medimg")


def torch_warp(mode: str, padding_mode: str, align_corners: bool):
    return lambda x, theta: reference(x, theta, mode, padding_mode, align_corners)


def penalised_gradients(warp, x: Tensor, theta: Tensor, critic: Tensor) -> tuple[Tensor, Tensor | None]:
    """(d/dx, d/dtheta) of an R1-style penalty: |d score / d x|², score = <critic, warp(x)²>."""
    x = x.detach().clone().requires_grad_()
    theta = theta.detach().clone().requires_grad_(theta.requires_grad)
    score = (critic * warp(x, theta) ** 2).sum()
    (grad_x,) = torch.autograd.grad(score, x, create_graph=True)
    grad_x.pow(2).sum().backward()
    return x.grad, theta.grad


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_gradgradcheck_bilinear(shape, padding_mode, align_corners):
    """Every second derivative, theta's gradient's included (its terms take the reference)."""
    gen = torch.Generator().manual_seed(case_seed(shape, padding_mode, align_corners, "gradgrad"))
    x = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    theta = random_theta(shape[0], len(shape) - 2, "mild", gen).requires_grad_()
    assert torch.autograd.gradgradcheck(medimg_warp("bilinear", padding_mode, align_corners), (x, theta),
                                        eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_gradgradcheck_nearest_input(shape, padding_mode):
    gen = torch.Generator().manual_seed(case_seed(shape, padding_mode, "gradgrad-nearest"))
    x = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    theta = random_theta(shape[0], len(shape) - 2, "mild", gen)
    assert torch.autograd.gradgradcheck(lambda x: medimg_warp("nearest", padding_mode, False)(x, theta), (x,),
                                        eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("shape", [(1, 1, 1, 5), (2, 1, 4, 1), (1, 1, 1, 4, 5), (1, 2, 3, 4)], ids=str)
def test_gradgradcheck_of_the_op_at_any_coefficients(shape, padding_mode, align_corners):
    """The op itself, at coefficients no theta gives (pixel_coefficients makes a size-1 axis's
    row exactly 0 with align_corners=True; here it is not): its second derivatives are still
    those of its own first derivatives."""
    gen = torch.Generator().manual_seed(case_seed(shape, padding_mode, align_corners, "op"))
    k = len(shape) - 2
    x = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    coeffs = pixel_coefficients(random_theta(shape[0], k, "mild", gen), shape[2:], align_corners)
    coeffs = (coeffs + 0.3 * torch.rand(coeffs.shape, generator=gen, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradgradcheck(
        lambda x, c: torch.ops.medimg.affine_sample(x, c, "bilinear", padding_mode, align_corners), (x, coeffs),
        eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("theta_grad", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("mode", "padding_mode", "align_corners"), [
    ("bilinear", "zeros", False), ("bilinear", "reflection", True), ("bilinear", "border", False),
    ("nearest", "zeros", True), ("nearest", "reflection", False)], ids=str)
@pytest.mark.parametrize("shape", [(2, 3, 9, 11), (1, 2, 5, 6, 7)], ids=str)
def test_penalty_gradients_equal_torch(device, shape, mode, padding_mode, align_corners, dtype, theta_grad):
    """The gradient of an input-gradient penalty reaches x and theta as it does through torch.
    On CUDA the oracle is medimg's CPU path, which the CPU cases hold to torch: torch's CUDA warp
    has no second derivative (nor its CPU warp before 2.13: 2.11 has none, seen on a GPU machine)."""
    gen = torch.Generator().manual_seed(case_seed(shape, mode, padding_mode, align_corners, "penalty"))
    x = torch.randn(shape, generator=gen, dtype=dtype)
    critic = torch.randn(shape, generator=gen, dtype=dtype)
    theta = random_theta(shape[0], len(shape) - 2, "mild", gen, dtype)
    got_x, got_theta = penalised_gradients(medimg_warp(mode, padding_mode, align_corners), x.to(device),
                                           theta.to(device).requires_grad_(theta_grad), critic.to(device))
    if device.type == "cpu" and not _torch_warp_has_second_derivative():
        pytest.skip(f"torch {torch.__version__} has no derivative of F.grid_sample's backward, the oracle")
    oracle = (torch_warp if device.type == "cpu" else medimg_warp)(mode, padding_mode, align_corners)
    want_x, want_theta = penalised_gradients(oracle, x, theta.requires_grad_(theta_grad), critic)
    got_x, got_theta = got_x.cpu(), None if got_theta is None else got_theta.cpu()
    eps = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(got_x, want_x, rtol=0, atol=eps * float(want_x.abs().max()) + eps)
    if theta_grad:
        torch.testing.assert_close(got_theta, want_theta, rtol=0, atol=100 * eps * float(want_theta.abs().max()))
    else:
        assert got_theta is None


@needs_torch_second_derivative
def test_input_penalty_takes_only_the_kernels(monkeypatch):
    """A penalty on the input gradient alone (theta learnable or not) never calls the reference:
    its second derivative is the forward warp and the coefficient gradient."""
    def refuse(*args, **kwargs):
        raise AssertionError("the reference sampler was called")

    monkeypatch.setattr(_reference, "affine_sample", refuse)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 1, 6, 7, generator=gen, dtype=torch.float64)
    theta = random_theta(2, 2, "mild", gen).requires_grad_()
    got_x, got_theta = penalised_gradients(medimg_warp("bilinear", "zeros", False), x, theta, torch.ones_like(x))
    want_x, want_theta = penalised_gradients(torch_warp("bilinear", "zeros", False), x, theta, torch.ones_like(x))
    torch.testing.assert_close(got_x, want_x, rtol=0, atol=1e-12)
    torch.testing.assert_close(got_theta, want_theta, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_third_derivatives(shape):
    """Differentiating the second derivative again: kernels and reference both keep the graph."""
    gen = torch.Generator().manual_seed(case_seed(shape, "third"))
    x = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    theta = random_theta(shape[0], len(shape) - 2, "mild", gen).requires_grad_()
    weight = torch.randn(shape, generator=gen, dtype=torch.float64)

    def first_derivatives(x: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        out = medimg_warp("bilinear", "border", False)(x, theta)
        return torch.autograd.grad((weight * out**2).sum(), (x, theta), create_graph=True)

    assert torch.autograd.gradgradcheck(first_derivatives, (x, theta), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize(("need_input", "need_coeffs"), [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize(("mode", "padding_mode", "align_corners"), [
    ("bilinear", "reflection", False), ("bilinear", "zeros", True), ("nearest", "border", False)], ids=str)
def test_opcheck_backward_with_gradients(mode, padding_mode, align_corners, need_input, need_coeffs):
    """The backward op's own autograd registration, with every tensor argument requiring grad."""
    gen = torch.Generator().manual_seed(case_seed(mode, padding_mode, align_corners, need_input, need_coeffs))
    shape = (2, 2, 5, 6)
    x = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    coeffs = pixel_coefficients(random_theta(2, 2, "mild", gen), shape[2:], align_corners).requires_grad_()
    args = (grad_out, x, coeffs, mode, padding_mode, align_corners, need_input, need_coeffs)
    torch.library.opcheck(torch.ops.medimg.affine_sample_backward.default, args)


@needs_torch_second_derivative
def test_random_affine_inside_a_gradient_penalty():
    """DiffAugment-style use: the augmentation sits between the images and a penalised critic."""
    transform = RandomAffine(degrees=20, scale=(0.8, 1.2), hflip_p=0.5)
    reference_transform = RandomAffine(degrees=20, scale=(0.8, 1.2), hflip_p=0.5, backend="torch")
    images = torch.randn(4, 1, 12, 10, generator=torch.Generator().manual_seed(3))
    grads = []
    for t in (transform, reference_transform):
        x = images.clone().requires_grad_()
        warped, _ = t(x, generator=torch.Generator().manual_seed(9))
        (grad_x,) = torch.autograd.grad((warped**2).sum(), x, create_graph=True)
        grad_x.pow(2).sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-5)

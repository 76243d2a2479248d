"""Tests of `medimg.transforms`: batched augmentation called as
``image, mask = t(image, mask=None, generator=None)``.

Known answers (flips, quarter turns, identity) are checked exactly against torch.flip /
torch.rot90; random transforms are checked for reproducibility, label safety and image/mask
alignment, and intensity transforms by recovering each sample's drawn parameter from the
output and recomputing the documented formula with it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import CountingModule, Watching, needs_cpu_kernels
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader, Dataset

from medimg import _extension
from medimg.ops import affine_grid_sample
from medimg.ops._boundary import view
from medimg.ops.affine import pixel_coefficients
from medimg.ops.random_affine import fused_warp_allowed, random_affine_matrices
from medimg.transforms import (
    Compose,
    Normalize01,
    RandomAffine,
    RandomBrightness,
    RandomContrast,
    RandomGamma,
    RandomGaussianNoise,
    intensity,
)
from medimg.transforms import affine as affine_transform

CPU = torch.device("cpu")
PADDINGS = ["zeros", "border", "reflection"]
MASK_DTYPES = [torch.uint8, torch.int64, torch.bool]


def seeded(seed: int, device: torch.device = CPU) -> torch.Generator:
    return torch.Generator(device).manual_seed(seed)


def random_mask(shape: tuple[int, ...], dtype: torch.dtype, seed: int, classes: tuple[int, ...] = (0, 3, 5, 9)
                ) -> Tensor:
    """Blocky labels (so that warps keep most of them) drawn from `classes`."""
    gen = seeded(seed)
    if dtype == torch.bool:
        classes = (0, 1)
    index = torch.randint(len(classes), shape, generator=gen)
    return torch.tensor(classes)[index].to(dtype)


def per_sample_extent(x: Tensor) -> tuple[Tensor, Tensor]:
    flat = x.flatten(1)
    return flat.amin(1), flat.amax(1)


# ----------------------------------------------------------------------------- RandomAffine

AFFINE_KWARGS = dict(degrees=30, scale=(0.8, 1.2), translate=0.1, shear=10, hflip_p=0.5, vflip_p=0.5)


@pytest.mark.parametrize("spatial", [(17, 23), (7, 9, 11)], ids=str)
def test_affine_reproducible_by_seed(spatial, device):
    t = RandomAffine(**AFFINE_KWARGS, dflip_p=0.5)
    image = torch.rand(3, 2, *spatial, generator=seeded(0)).to(device)
    mask = random_mask((3, *spatial), torch.int64, 1).to(device)
    out1, mask1 = t(image, mask, generator=seeded(42, device))
    out2, mask2 = t(image, mask, generator=seeded(42, device))
    assert out1.device == mask1.device == image.device
    assert torch.equal(out1, out2) and torch.equal(mask1, mask2)
    out3, mask3 = t(image, mask, generator=seeded(43, device))
    assert not torch.equal(out1, out3)
    assert not torch.equal(mask1, mask3)
    assert out1.shape == image.shape and out1.dtype == image.dtype
    # the input is not modified in place
    assert torch.equal(image.cpu(), torch.rand(3, 2, *spatial, generator=seeded(0)))


@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("dtype", MASK_DTYPES)
@pytest.mark.parametrize("mask_shape", ["(N,H,W)", "(N,1,H,W)", "(N,2,H,W)", "(N,D,H,W)", "(N,1,D,H,W)"])
def test_affine_masks_keep_labels_and_dtype(mask_shape, dtype, padding_mode, device):
    n = 3
    spatial = (5, 9, 11) if "D" in mask_shape else (17, 23)
    channels = {"(N,H,W)": None, "(N,D,H,W)": None, "(N,1,H,W)": 1, "(N,1,D,H,W)": 1, "(N,2,H,W)": 2}[mask_shape]
    shape = (n, *spatial) if channels is None else (n, channels, *spatial)
    mask = random_mask(shape, dtype, 2).to(device)
    image = torch.rand(n, 1, *spatial, generator=seeded(3)).to(device)
    t = RandomAffine(**AFFINE_KWARGS, padding_mode=padding_mode)
    _, out_mask = t(image, mask, generator=seeded(4, device))
    assert out_mask.dtype == dtype and out_mask.shape == mask.shape
    allowed = set(mask.unique().tolist()) | {0}
    assert set(out_mask.unique().tolist()) <= allowed
    assert not torch.equal(out_mask, mask)  # it did move


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("spatial", [(17, 23), (6, 9, 11)], ids=str)
def test_affine_image_and_mask_stay_aligned(spatial, padding_mode, align_corners, device):
    """An image equal to its own mask (float copy), warped with mode="nearest", equals the warped mask."""
    mask = random_mask((4, 1, *spatial), torch.int64, 5).to(device)
    t = RandomAffine(**AFFINE_KWARGS, dflip_p=0.5, mode="nearest", padding_mode=padding_mode,
                     align_corners=align_corners)
    image_dtypes = (torch.float32, torch.float64) + ((torch.float16, torch.bfloat16) if device.type == "cuda" else ())
    for image_dtype in image_dtypes:
        out, out_mask = t(mask.to(image_dtype), mask, generator=seeded(6, device))
        assert torch.equal(out, out_mask.to(image_dtype)), image_dtype


def _strided(x: Tensor, layout: str) -> Tensor:
    """`x` with the same values in another memory layout ("channels_last": x is (N, C, *spatial))."""
    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    if layout == "transposed":
        return x.transpose(-1, -2).contiguous().transpose(-1, -2)
    wide = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype, device=x.device)  # "sliced": every other column
    wide[..., ::2] = x
    return wide[..., ::2]


@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced"])
@pytest.mark.parametrize("spatial", [(11, 13), (5, 6, 7)], ids=str)
def test_affine_strided_batches_equal_contiguous(spatial, layout, device):
    """Strided images and masks give what their contiguous copies give, draw for draw: masks
    exactly; images within float32 rounding (a row whose pixels are not adjacent takes the
    general path, a weighted sum of taps instead of the interior kernel's chain of lerps)."""
    image = torch.rand(3, 2, *spatial, generator=seeded(80)).to(device)
    mask = random_mask((3, *spatial), torch.int64, 81).to(device)
    t = RandomAffine(**AFFINE_KWARGS)
    expected, expected_mask = t(image, mask, generator=seeded(82, device))
    # A mask (N, *spatial) has no channels to put last: it takes the transposed layout then.
    strided_image = _strided(image, layout)
    strided_mask = _strided(mask, "transposed" if layout == "channels_last" else layout)
    assert not strided_image.is_contiguous() and not strided_mask.is_contiguous()
    out, out_mask = t(strided_image, strided_mask, generator=seeded(82, device))
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert torch.equal(out_mask, expected_mask)


@pytest.mark.parametrize("spatial", [(1, 9), (9, 1), (1, 1), (1, 5, 6), (4, 1, 1)], ids=str)
def test_affine_axes_of_one_pixel_match_the_reference(spatial, device):
    """Axes of one pixel (a row, a column, a slice): the kernel's windows along them are empty or
    whole; the reference warps the same draws."""
    image = torch.rand(4, 1, *spatial, generator=seeded(83)).to(device)
    mask = random_mask((4, *spatial), torch.uint8, 84).to(device)
    for padding_mode in PADDINGS:
        t, reference = (RandomAffine(**AFFINE_KWARGS, padding_mode=padding_mode, backend=b) for b in ("auto", "torch"))
        out, out_mask = t(image, mask, generator=seeded(85, device))
        expected, expected_mask = reference(image, mask, generator=seeded(85, device))
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
        assert torch.equal(out_mask, expected_mask), padding_mode


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize(("flip", "spatial", "dim"), [
    ("hflip_p", (7, 10), -1), ("vflip_p", (7, 10), -2),
    ("hflip_p", (5, 7, 10), -1), ("vflip_p", (5, 7, 10), -2), ("dflip_p", (5, 7, 10), -3),
], ids=str)
def test_affine_flips_are_exact(flip, spatial, dim, align_corners, device):
    kwargs = {"hflip_p": 0.0, flip: 1.0}
    t = RandomAffine(degrees=0, scale=1, align_corners=align_corners, **kwargs)
    image = torch.rand(2, 3, *spatial, generator=seeded(7)).to(device)
    mask = random_mask((2, *spatial), torch.uint8, 8).to(device)
    out, out_mask = t(image, mask, generator=seeded(9, device))
    assert torch.equal(out, image.flip(dim))
    assert torch.equal(out_mask, mask.flip(dim))


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("spatial", [(7, 10), (24, 24), (5, 7, 10)], ids=str)
def test_affine_p0_is_identity_float32(spatial, align_corners, device):
    t = RandomAffine(**AFFINE_KWARGS, dflip_p=0.5, p=0.0, align_corners=align_corners)
    image = torch.rand(3, 2, *spatial, generator=seeded(10)).to(device)
    mask = random_mask((3, *spatial), torch.int64, 11).to(device)
    out, out_mask = t(image, mask, generator=seeded(12, device))
    assert torch.equal(out, image) and torch.equal(out_mask, mask)


def test_affine_p0_is_identity_float64():
    for size, align_corners in [(98, False), (99, True), (50, True)]:
        t = RandomAffine(p=0.0, align_corners=align_corners)
        theta = t.sample_theta(2, (size, size), CPU, seeded(13))
        image = torch.rand(2, 1, size, size, generator=seeded(14), dtype=torch.float64)
        out, _ = t(image, generator=seeded(15))
        assert torch.equal(theta, torch.eye(2, 3, dtype=torch.float64).expand(2, 2, 3)), (size, align_corners)
        assert torch.equal(out, image), (size, align_corners)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size", [5, 8])
def test_affine_90_degrees_is_clockwise_rot90(size, align_corners, device):
    """degrees=(90, 90) turns the content clockwise as displayed (row 0 at the top): torch.rot90 with
    k=-1 over (H, W). Close rather than exact for the image: cos(pi/2) is 6e-17 in float64, not 0."""
    t = RandomAffine(degrees=(90, 90), scale=1, hflip_p=0, align_corners=align_corners)
    image = torch.rand(2, 3, size, size, generator=seeded(16)).to(device)
    mask = random_mask((2, size, size), torch.int64, 17).to(device)
    out, out_mask = t(image, mask, generator=seeded(18, device))
    torch.testing.assert_close(out, torch.rot90(image, -1, dims=(2, 3)), rtol=0, atol=1e-6)
    assert torch.equal(out_mask, torch.rot90(mask, -1, dims=(1, 2)))
    # 3D: the third range rotates about x, i.e. in the (D, H) plane, likewise
    t3 = RandomAffine(degrees=(0, 0, (90, 90)), scale=1, hflip_p=0, align_corners=align_corners)
    volume = torch.rand(1, 2, size, size, 3, generator=seeded(19)).to(device)
    out3, _ = t3(volume, generator=seeded(20, device))
    torch.testing.assert_close(out3, torch.rot90(volume, -1, dims=(2, 3)), rtol=0, atol=1e-6)


@pytest.mark.parametrize("spatial", [(17, 23), (7, 9, 11)], ids=str)
def test_affine_sample_theta(spatial):
    k = len(spatial)
    t = RandomAffine(degrees=(10, 40), scale=(0.5, 2.0), translate=0.3, shear=(-30, 45), hflip_p=0.5, vflip_p=0.5,
                     dflip_p=0.5)
    theta = t.sample_theta(6, spatial, CPU, seeded(21))
    assert theta.shape == (6, k, k + 1) and theta.dtype == torch.float64
    assert torch.isfinite(theta).all()
    assert torch.equal(theta, t.sample_theta(6, spatial, CPU, seeded(21)))
    assert not torch.equal(theta, t.sample_theta(6, spatial, CPU, seeded(22)))
    with pytest.raises(ValueError, match=r"^spatial: "):
        t.sample_theta(6, (0, *spatial[1:]), CPU)
    # no seed: still valid, fresh draws
    unseeded = t.sample_theta(6, spatial, CPU)
    assert unseeded.shape == (6, k, k + 1) and torch.isfinite(unseeded).all()
    # |det| of the linear part is 1 / zoom^k: shear, rotation and flips keep volume, and the per-axis
    # normalisation (S^-1 A^-1 S) cancels in the determinant
    det = torch.linalg.det(theta[..., :k]).abs()
    assert ((det >= 1 / 2.0**k - 1e-9) & (det <= 1 / 0.5**k + 1e-9)).all(), det


@pytest.mark.parametrize("spatial", [(17, 23), (7, 9, 11)], ids=str)
@pytest.mark.parametrize("extras", [{}, {"translate": 0.3, "shear": (-30, 45)}], ids=["plain", "translate+shear"])
def test_affine_theta_numpy_equals_torch(spatial, extras):
    """sample_theta composes in NumPy on the CPU and in torch on other devices (and while
    tracing): the same operations on the same uniforms give the same matrices, but for the last
    bit of sin, cos and tan, which differs between the libraries."""
    t = RandomAffine(degrees=(-40, 40), scale=(0.5, 2.0), hflip_p=0.5, vflip_p=0.5, dflip_p=0.5, p=0.8, **extras)
    uniform = torch.rand(64, 16, generator=seeded(27), dtype=torch.float64)
    layouts = {xp: affine_transform._draw_layout(t._draw_spec(len(spatial)), spatial, False, CPU, xp)
               for xp in (np, torch)}
    columns = len(layouts[np].low)
    from_numpy = affine_transform._compose_theta(uniform[:, :columns].numpy(), layouts[np], np)
    from_torch = affine_transform._compose_theta(uniform[:, :columns], layouts[torch], torch)
    assert isinstance(from_numpy, np.ndarray) and isinstance(from_torch, Tensor)
    torch.testing.assert_close(torch.from_numpy(from_numpy), from_torch, rtol=1e-14, atol=1e-15)
    assert torch.equal(t.sample_theta(64, spatial, CPU, seeded(28)), t.sample_theta(64, spatial, CPU, seeded(28)))


@needs_cpu_kernels
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("spatial", [(17, 23), (7, 9, 11)], ids=str)
@pytest.mark.parametrize("extras", [{}, {"translate": 0.3, "shear": (-30, 45)}], ids=["plain", "translate+shear"])
def test_affine_kernel_matrices_equal_the_reference(extras, spatial, align_corners, device):
    """With medimg's kernels, one call (medimg::random_affine) composes theta and the pixel
    coefficients. theta equals the Python reference's from the same draws, but for the last bit
    of sin, cos and tan; the coefficients have the bits of pixel_coefficients of that theta,
    rounded to float32 first for non-float64 images, as RandomAffine casts it."""
    kwargs = dict(degrees=(-40, 40), scale=(0.5, 2.0), hflip_p=0.5, vflip_p=0.5, dflip_p=0.5, p=0.8,
                  align_corners=align_corners, **extras)
    kernel, reference = RandomAffine(**kwargs, backend="medimg"), RandomAffine(**kwargs, backend="torch")
    for theta_dtype in (torch.float32, torch.float64):
        theta, coeffs = kernel._draw(64, spatial, device, seeded(29, device), theta_dtype)
        expected, no_coeffs = reference._draw(64, spatial, device, seeded(29, device), theta_dtype)
        assert no_coeffs is None and theta.device == coeffs.device == expected.device
        torch.testing.assert_close(theta, expected, rtol=1e-14, atol=1e-15)
        assert not torch.equal(theta[:, :, :-1], torch.eye(len(spatial), dtype=theta.dtype, device=device)
                               .expand(64, -1, -1))  # draws did land
        folded = pixel_coefficients(theta.cpu().to(theta_dtype), spatial, align_corners)
        assert torch.equal(coeffs.cpu(), folded)


@needs_cpu_kernels
def test_affine_warp_equals_affine_grid_sample_by_its_theta(device):
    t = RandomAffine(**AFFINE_KWARGS)
    image = torch.rand(4, 2, 19, 21, generator=seeded(30)).to(device)
    mask = random_mask((4, 19, 21), torch.int64, 31).to(device)
    out, out_mask = t(image, mask, generator=seeded(32, device))
    theta = t.sample_theta(4, (19, 21), device, seeded(32, device)).float()
    assert torch.equal(out, affine_grid_sample(image, theta))
    assert torch.equal(out_mask, affine_grid_sample(mask[:, None], theta, mode="nearest")[:, 0])


class _CountOps(TorchDispatchMode):
    """The torch ops dispatched while active, but views and constants (which launch nothing,
    or are cached outside tracing)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if not any(word in name for word in ("view", "unsqueeze", "slice", "select", "lift_fresh")):
            self.ops.append(name)
        return func(*args, **(kwargs or {}))


@needs_cpu_kernels
@pytest.mark.parametrize("spatial", [(17, 23), (7, 9, 11)], ids=str)
def test_affine_call_launches_five_kernels(spatial):
    """On a GPU each torch op is a kernel launch, and for batches like 32 x 1x256^2 the launches,
    not the pixels, set the time: seen by a dispatch mode (as tracing sees it), a RandomAffine
    call is the draw, the matrices, theta's cast and one warp each for the image and the mask
    (the composition in torch ops took 57). Eagerly the last four are one call (next test)."""
    t = RandomAffine(**AFFINE_KWARGS, dflip_p=0.5)
    image = torch.rand(3, 1, *spatial, generator=seeded(33))
    mask = random_mask((3, *spatial), torch.uint8, 34)
    with _CountOps() as counted:
        t(image, mask, generator=seeded(35))
    assert sorted(counted.ops) == sorted(["aten.rand.generator", "medimg.random_affine.default",
                                          "aten._to_copy.default", "medimg.affine_sample.default",
                                          "medimg.affine_sample.default"]), counted.ops


@needs_cpu_kernels
@pytest.mark.parametrize("with_mask", [False, True], ids=["image", "image+mask"])
def test_affine_eager_call_is_one_kernel_call(with_mask, monkeypatch):
    """A plain eager batch crosses into the compiled module once: matrices, image warp and mask
    warp in one call (random_affine_warp), where the ops take three."""
    counting = CountingModule(_extension.cpu)
    monkeypatch.setattr(_extension, "cpu", counting)
    image = torch.rand(3, 1, 17, 23, generator=seeded(36))
    mask = random_mask((3, 17, 23), torch.int64, 37) if with_mask else None
    RandomAffine(**AFFINE_KWARGS)(image, mask, generator=seeded(38))
    assert [c for c in counting.calls if c != "populate_pages"] == ["random_affine_warp"]


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize(("spatial", "image_dtype", "mask_dtype"), [
    ((17, 23), torch.float32, torch.int64), ((17, 23), torch.float64, torch.bool),
    ((17, 23), torch.float32, None), ((6, 7, 9), torch.float32, torch.uint8), ((6, 7, 9), torch.float64, torch.int16),
], ids=str)
def test_affine_one_call_equals_the_ops(spatial, image_dtype, mask_dtype, mode, padding_mode, align_corners,
                                        device):
    """The eager single call (random_affine_warp) and the ops one at a time (what a mode, tracing
    or autograd gets) give the same bits for every option."""
    t = RandomAffine(**AFFINE_KWARGS, dflip_p=0.5, mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    image = torch.rand(3, 2, *spatial, generator=seeded(39), dtype=image_dtype).to(device)
    mask = None if mask_dtype is None else random_mask((3, *spatial), mask_dtype, 40).to(device)
    if device.type == "cpu" and _extension.cpu is not None:
        assert fused_warp_allowed(image, None if mask is None else mask[:, None], mode,
                                                   padding_mode, align_corners, "auto")
    fused = t(image, mask, generator=seeded(41, device))
    with Watching():
        ops = t(image, mask, generator=seeded(41, device))
    for a, b in zip(fused, ops, strict=True):
        assert (a is None and b is None) or (a.dtype == b.dtype and torch.equal(a, b))


@needs_cpu_kernels
def test_affine_one_call_only_where_nothing_would_see_it():
    """random_affine_warp skips autograd and torch's dispatcher: it is taken only for plain
    tensors that need no gradient, in dtypes the kernels take, with the compiled backend."""
    allowed = fused_warp_allowed
    image, mask = torch.rand(2, 1, 8, 9), torch.zeros(2, 1, 8, 9, dtype=torch.int64)
    assert allowed(image, mask, "bilinear", "zeros", False, "auto")
    assert allowed(image, mask, "bilinear", "zeros", False, "medimg")
    assert not allowed(image, mask, "bilinear", "zeros", False, "torch")
    assert not allowed(image.requires_grad_(), mask, "bilinear", "zeros", False, "auto")
    with torch.no_grad():
        assert allowed(image, mask, "bilinear", "zeros", False, "auto")
    image = image.detach()
    assert not allowed(image.half(), mask, "bilinear", "zeros", False, "auto")  # the CPU kernel has no float16
    assert not allowed(image, mask.float().half(), "bilinear", "zeros", False, "auto")
    assert not allowed(mask, None, "bilinear", "zeros", False, "auto")  # labels need nearest: the op raises
    assert not allowed(image, mask.to("meta"), "bilinear", "zeros", False, "auto")
    with Watching():
        assert not allowed(image, mask, "bilinear", "zeros", False, "auto")
    with pytest.raises(ValueError, match="padding_mode"):
        allowed(image, mask, "bilinear", "wrap", False, "auto")


@needs_cpu_kernels
def test_affine_gradients_through_the_ops():
    """An image that needs a gradient takes the ops, whose autograd reaches it."""
    image = torch.rand(2, 1, 9, 10, generator=seeded(42), requires_grad=True)
    out, _ = RandomAffine(**AFFINE_KWARGS)(image, generator=seeded(43))
    out.sum().backward()
    theta = RandomAffine(**AFFINE_KWARGS).sample_theta(2, (9, 10), CPU, seeded(43)).float()
    leaf = image.detach().requires_grad_()
    affine_grid_sample(leaf, theta).sum().backward()
    assert image.grad is not None and torch.equal(image.grad, leaf.grad)


@needs_cpu_kernels
@pytest.mark.parametrize("spatial", [(17, 23), (7, 9, 11)], ids=str)
def test_affine_matrices_opcheck_and_bad_views(spatial):
    k = len(spatial)
    t = RandomAffine(**AFFINE_KWARGS)
    spec, columns, _, _ = affine_transform._kernel_spec(t._draw_spec(k), spatial, False, CPU)
    uniform = torch.rand(5, columns, generator=seeded(36), dtype=torch.float64)
    torch.library.opcheck(torch.ops.medimg.random_affine.default, (uniform, spec, k, True, True, True))
    with pytest.raises(ValueError, match="spec"):
        random_affine_matrices(uniform, spec[:-1], k, True, True, True)
    with pytest.raises(ValueError, match="uniform"):
        random_affine_matrices(uniform[:, :-1], spec, k, True, True, True)
    with pytest.raises(ValueError, match="k in"):
        random_affine_matrices(uniform, spec, 4, True, True, True)
    with pytest.raises(ValueError, match=r"^spec: on meta"):
        random_affine_matrices(uniform, spec.to("meta"), k, True, True, True)
    # the C++ side refuses views of another device before reading them
    theta, coeffs = (torch.empty(5, k, k + 1, dtype=torch.float64) for _ in range(2))
    on_gpu = (*view(spec)[:4], 0, spec)  # as if spec lived on cuda:0
    with pytest.raises(ValueError, match="one device"):
        _extension.cpu.random_affine(view(uniform), on_gpu, view(theta), view(coeffs), True, True, True)
    with pytest.raises(ValueError, match="CPU tensors"):
        _extension.cpu.random_affine(*((*view(t)[:4], 0, t) for t in (uniform, spec, theta, coeffs)), True, True,
                                     True)
    # a negative-bit view of the draws gives the matrices of its values
    expected = random_affine_matrices(uniform, spec, k, True, True, True)
    got = random_affine_matrices(torch._neg_view(-uniform), spec, k, True, True, True)
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


def test_affine_translate_and_shear_known_answer():
    # translation only: theta's constant column is minus twice the drawn fraction (normalised units), the rest eye
    t = RandomAffine(degrees=0, scale=1, hflip_p=0, translate=(0.1, 0.25))
    theta = t.sample_theta(64, (7, 9), CPU, seeded(23))
    torch.testing.assert_close(theta[..., :2], torch.eye(2, dtype=torch.float64).expand(64, 2, 2), rtol=0, atol=1e-12)
    assert (theta[:, 0, 2].abs() <= 0.2 + 1e-12).all() and (theta[:, 1, 2].abs() <= 0.5 + 1e-12).all()
    assert theta[:, 0, 2].abs().max() > 0.1 and theta[:, 1, 2].abs().max() > 0.25  # the range is used
    # shear only, square image: x' = x + tan(a) y forward, so theta (the inverse) holds -tan(a)
    t = RandomAffine(degrees=0, scale=1, hflip_p=0, shear=(20, 20))
    theta = t.sample_theta(2, (9, 9), CPU, seeded(24))
    expected = torch.tensor([[1.0, -math.tan(math.radians(20)), 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(theta, expected.expand(2, 2, 3), rtol=0, atol=1e-12)
    # translated and sheared images stay finite and reproducible
    t = RandomAffine(degrees=15, translate=0.2, shear=(-30, 30), padding_mode="reflection")
    image = torch.rand(4, 1, 17, 23, generator=seeded(25))
    out1, _ = t(image, generator=seeded(26))
    out2, _ = t(image, generator=seeded(26))
    assert torch.isfinite(out1).all() and torch.equal(out1, out2)


def test_affine_generator_none_and_float64():
    t = RandomAffine(**AFFINE_KWARGS)
    image = torch.rand(2, 1, 12, 13, dtype=torch.float64)
    mask = random_mask((2, 12, 13), torch.bool, 27)
    out, out_mask = t(image, mask)
    assert out.dtype == torch.float64 and out.shape == image.shape and torch.isfinite(out).all()
    assert out_mask.dtype == torch.bool and out_mask.shape == mask.shape
    out, none = t(image)
    assert none is None and out.shape == image.shape


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"scale": 0}, "scale"), ({"scale": (0.0, 1.0)}, "scale"), ({"scale": (-1.0, 2.0)}, "scale"),
    ({"scale": (1.2, 0.8)}, "scale"), ({"hflip_p": 1.5}, "hflip_p"), ({"vflip_p": -0.1}, "vflip_p"),
    ({"dflip_p": 2}, "dflip_p"), ({"p": 1.01}, "p"), ({"mode": "bicubic"}, "mode"),
    ({"padding_mode": "wrap"}, "padding_mode"), ({"shear": 90}, "shear"), ({"shear": (-95, 10)}, "shear"),
    ({"translate": 1.5}, "translate"), ({"translate": (0.1, 0.1, 0.1, 0.1)}, "translate"),
    ({"degrees": "a lot"}, "degrees"), ({"degrees": (30, 10)}, "degrees"), ({"backend": "numpy"}, "backend"),
    # non-finite or tiny ranges would make theta non-finite (RandomAffine does not check its thetas)
    ({"degrees": math.inf}, "degrees"), ({"degrees": math.nan}, "degrees"), ({"scale": math.nan}, "scale"),
    ({"scale": (1e-40, 1e-40)}, "scale"), ({"shear": math.nan}, "shear"), ({"translate": math.nan}, "translate"),
    ({"degrees": (0, 0, (0, math.inf))}, "degrees"),
    # wrong kinds of value, named rather than failing inside float() or a dict lookup
    ({"degrees": ((1, 2), (3, 4))}, "degrees"), ({"hflip_p": "a"}, "hflip_p"), ({"p": None}, "p"),
    ({"translate": True}, "translate"), ({"translate": "ab"}, "translate"), ({"mode": ["bilinear"]}, "mode"),
])
def test_affine_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}: "):
        RandomAffine(**kwargs)


def test_affine_accepts_numpy_and_tensor_numbers():
    """What float() and bool() used to take, as users pass it from configs and arrays."""
    t = RandomAffine(degrees=np.float32(10), scale=(torch.tensor(0.9), 1.1), translate=np.array([0.1, 0.2]),
                     p=torch.tensor(0.5), hflip_p=np.float64(0.25), align_corners=np.bool_(True))
    assert t.degrees == [(-10.0, 10.0)] * 3 and t.translate == [0.1, 0.2, 0.2]
    assert t.scale == (pytest.approx(0.9), 1.1) and t.p == 0.5 and t.flip_p[0] == 0.25
    assert t.align_corners is True
    assert RandomAffine(translate=torch.tensor(0.3)).translate == [pytest.approx(0.3)] * 3


def test_affine_degrees_per_axis():
    """Three entries are the z, y and x ranges of 3D rotations, each a number or a pair."""
    assert RandomAffine(degrees=(10, 20, 30)).degrees == [(-10.0, 10.0), (-20.0, 20.0), (-30.0, 30.0)]
    assert RandomAffine(degrees=[5, (0, 8), 0]).degrees == [(-5.0, 5.0), (0.0, 8.0), (0.0, 0.0)]
    assert RandomAffine(degrees=(-4, 6)).degrees == [(-4.0, 6.0)] * 3


@pytest.mark.parametrize("align_corners", ["no", 1, None])
def test_affine_align_corners_must_be_bool(align_corners):
    with pytest.raises(TypeError, match=r"^align_corners: expected True or False"):
        RandomAffine(align_corners=align_corners)


def test_affine_bad_call_arguments():
    t = RandomAffine()
    image = torch.rand(2, 1, 8, 9)
    for bad_mask in (torch.zeros(2, 8, 10, dtype=torch.uint8), torch.zeros(3, 8, 9, dtype=torch.uint8),
                     torch.zeros(2, 1, 1, 8, 9, dtype=torch.uint8), torch.zeros(8, 9, dtype=torch.uint8)):
        with pytest.raises(ValueError, match=r"^mask: "):
            t(image, bad_mask)
    with pytest.raises(ValueError, match=r"^image: "):
        t(torch.rand(8, 9))
    with pytest.raises(ValueError, match=r"^image: "):
        t(torch.rand(0, 1, 8, 9))
    with pytest.raises(ValueError, match=r"^image: every channel and spatial size"):
        t(torch.rand(2, 1, 0, 9))
    with pytest.raises(ValueError, match=r"^image: .*mode='nearest'"):  # named as the caller named it
        t(torch.zeros(2, 1, 8, 9, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"image on cpu, mask on meta"):
        t(image, torch.zeros(2, 8, 9, dtype=torch.uint8, device="meta"))
    with pytest.raises(TypeError, match=r"^mask: unsupported dtype torch.complex64"):
        t(image, torch.zeros(2, 8, 9, dtype=torch.complex64))
    with pytest.raises(TypeError, match=r"^mask: expected a dense tensor"):
        t(image, torch.zeros(2, 8, 9, dtype=torch.uint8).to_sparse())
    # a generator on another device type than the batch, or not a generator
    with pytest.raises(ValueError, match=r"^generator: "):
        t(image.to("meta"), generator=seeded(0))
    with pytest.raises(TypeError, match=r"^generator: expected a torch.Generator"):
        t(image, generator=0)


@needs_cpu_kernels
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_affine_half_precision_on_cpu_takes_the_reference(dtype):
    """The CPU kernel is float32/float64; backend="auto" warps 16-bit images with the reference."""
    image, mask = torch.rand(3, 1, 9, 10, generator=seeded(70)).to(dtype), random_mask((3, 9, 10), torch.int64, 71)
    t_auto, t_torch = RandomAffine(degrees=20), RandomAffine(degrees=20, backend="torch")
    out, out_mask = t_auto(image, mask, generator=seeded(72))
    expected, expected_mask = t_torch(image, mask, generator=seeded(72))
    assert out.dtype == dtype and torch.equal(out, expected) and torch.equal(out_mask, expected_mask)
    with pytest.raises(TypeError, match="pass backend='torch'"):
        RandomAffine(backend="medimg")(image)


def test_affine_generator_on_other_device():
    try:
        generator = torch.Generator(device="meta")
    except RuntimeError as error:
        pytest.skip(f"torch.Generator(device='meta') is not creatable here: {error}")
    with pytest.raises(ValueError, match=r"^generator: "):
        RandomAffine()(torch.rand(1, 1, 4, 4), generator=generator)


# ----------------------------------------------------------------------------- Normalize01

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normalize01_min_max(dtype):
    image = (torch.randn(4, 2, 9, 11, generator=seeded(30), dtype=torch.float64) * 50 + 7).to(dtype)
    image[2] = 3.5  # a constant sample
    mask = torch.zeros(4, 9, 11, dtype=torch.int64)
    out, out_mask = Normalize01()(image, mask)
    assert out_mask is mask and out.dtype == dtype
    assert not torch.isnan(out).any()
    lo, hi = per_sample_extent(out)
    for n in (0, 1, 3):
        assert float(lo[n]) == 0.0
        assert abs(float(hi[n]) - 1.0) < 1e-6
    assert torch.equal(out[2], torch.zeros_like(out[2]))
    expected = (image - image.flatten(1).amin(1).view(-1, 1, 1, 1)) / (
        image.flatten(1).amax(1) - image.flatten(1).amin(1)).view(-1, 1, 1, 1)
    torch.testing.assert_close(out[[0, 1, 3]], expected[[0, 1, 3]])


@pytest.mark.parametrize("percentiles", [(2.0, 98.0), (0.0, 50.0), (25.0, 100.0)])
def test_normalize01_percentiles(percentiles):
    image = torch.randn(3, 1, 16, 17, generator=seeded(31)) * 10
    image[0, 0, 3, 4] = 1e4  # a hot pixel
    out, _ = Normalize01(percentiles=percentiles)(image)
    assert out.min() >= 0.0 and out.max() <= 1.0
    q = torch.tensor([p / 100 for p in percentiles])
    lo, hi = torch.quantile(image.flatten(1), q, dim=1)
    expected = ((image - lo.view(-1, 1, 1, 1)) / (hi - lo).view(-1, 1, 1, 1)).clamp(0, 1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    assert float(out[0, 0, 3, 4]) == 1.0  # clipped (or the maximum itself)


def test_normalize01_percentiles_float64_exact():
    """float64 images get float64 percentiles: an offset of 1e6 leaves float32 ~0.06 of resolution."""
    image = (torch.linspace(0, 1, 100, dtype=torch.float64) + 1e6).view(1, 1, 10, 10)
    out, _ = Normalize01(percentiles=(10, 90))(image)
    lo, hi = torch.quantile(image.flatten(1), torch.tensor([0.1, 0.9], dtype=torch.float64), dim=1)
    torch.testing.assert_close(out, ((image - lo) / (hi - lo)).clamp(0, 1), rtol=0, atol=1e-9)


def test_normalize01_percentiles_beyond_quantile_limit():
    """torch.quantile refuses more than 2^24 elements; a 256^3 volume has exactly that many."""
    image = torch.arange(2**24 + 1, dtype=torch.float32).view(1, 1, 1, -1)
    out, _ = Normalize01(percentiles=(25, 75))(image)
    assert float(out[0, 0, 0, 2**22]) == 0.0 and float(out[0, 0, 0, 3 * 2**22]) == 1.0
    assert float(out[0, 0, 0, 2**23]) == 0.5


@pytest.mark.parametrize("percentiles", [None, (1, 99)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_normalize01_constant_sample_is_zero(dtype, percentiles):
    """The smallest range divided by is at least the dtype's smallest normal number: 1e-8 is 0 in float16."""
    out, _ = Normalize01(percentiles=percentiles)(torch.full((2, 1, 4, 4), 3.0, dtype=dtype))
    assert out.dtype == dtype and torch.equal(out, torch.zeros_like(out))


def test_normalize01_bad_input():
    with pytest.raises(TypeError, match=r"^image: "):
        Normalize01()(torch.zeros(1, 1, 4, 4, dtype=torch.uint8))
    with pytest.raises(TypeError, match=r"^image: "):
        Normalize01((1, 99))(torch.zeros(1, 1, 4, 4, dtype=torch.int64))
    for bad in [(50, 10), (-1, 50), (0, 101), (30, 30), (1, 2, 3)]:
        with pytest.raises(ValueError, match=r"^percentiles: "):
            Normalize01(percentiles=bad)
    for bad in [0, -1e-8, math.nan, math.inf, "small"]:
        with pytest.raises(ValueError, match=r"^eps: "):
            Normalize01(eps=bad)


# ----------------------------------------------------------------------------- intensity transforms

INTENSITY = {
    "gamma": lambda p: RandomGamma(gamma=(0.5, 2.0), p=p),
    "contrast": lambda p: RandomContrast(factor=(0.5, 1.5), p=p),
    "brightness": lambda p: RandomBrightness(delta=0.3, p=p),
    "noise": lambda p: RandomGaussianNoise(std=(0.05, 0.2), p=p),
}


@pytest.mark.parametrize("name", list(INTENSITY))
@pytest.mark.parametrize("spatial", [(9, 11), (4, 5, 6)], ids=str)
def test_intensity_p(name, spatial, device):
    image = (torch.rand(4, 2, *spatial, generator=seeded(40)) + 0.5).to(device)
    mask = random_mask((4, *spatial), torch.uint8, 41).to(device)
    out, out_mask = INTENSITY[name](0.0)(image, mask, generator=seeded(42, device))
    assert torch.equal(out, image) and out_mask is mask
    out, out_mask = INTENSITY[name](1.0)(image, mask, generator=seeded(42, device))
    assert out_mask is mask and out.shape == image.shape and out.dtype == image.dtype
    for n in range(4):
        assert not torch.equal(out[n], image[n]), n
    again, _ = INTENSITY[name](1.0)(image, mask, generator=seeded(42, device))
    assert torch.equal(out, again)
    other, _ = INTENSITY[name](1.0)(image, mask, generator=seeded(43, device))
    assert not torch.equal(out, other)
    # p=0.5: some samples changed, the others bit for bit the same
    base = torch.rand(64, 1, 3, 3, generator=seeded(44)).to(device)
    out, _ = INTENSITY[name](0.5)(base, generator=seeded(45, device))
    changed = (out != base).flatten(1).any(1)
    assert 10 < int(changed.sum()) < 54


def test_brightness_formula():
    image = torch.rand(16, 2, 7, 8, generator=seeded(50), dtype=torch.float64)
    out, _ = RandomBrightness(delta=(-0.2, 0.3), p=1)(image, generator=seeded(51))
    delta = (out - image).flatten(1)
    torch.testing.assert_close(delta, delta[:, :1].expand_as(delta), rtol=0, atol=1e-12)  # one shift per sample
    d = delta[:, 0]
    assert ((d >= -0.2) & (d <= 0.3)).all() and d.std() > 0.05
    torch.testing.assert_close(out, image + d.view(-1, 1, 1, 1), rtol=0, atol=1e-12)


def test_contrast_formula():
    image = torch.rand(16, 2, 7, 8, generator=seeded(52), dtype=torch.float64)
    out, _ = RandomContrast(factor=(0.5, 1.5), p=1)(image, generator=seeded(53))
    mean = image.flatten(1).mean(1).view(-1, 1, 1, 1)
    factor = ((out - mean).flatten(1) / (image - mean).flatten(1)).median(1).values  # recovered per sample
    assert ((factor >= 0.5) & (factor <= 1.5)).all() and factor.std() > 0.05
    torch.testing.assert_close(out, (image - mean) * factor.view(-1, 1, 1, 1) + mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.flatten(1).mean(1), mean.flatten(), rtol=0, atol=1e-12)  # the mean is kept


def test_gamma_formula():
    image = torch.rand(16, 1, 7, 8, generator=seeded(54), dtype=torch.float64) * 4 - 1
    out, _ = RandomGamma(gamma=(0.5, 2.0), p=1)(image, generator=seeded(55))
    lo = image.flatten(1).amin(1).view(-1, 1, 1, 1)
    extent = image.flatten(1).amax(1).view(-1, 1, 1, 1) - lo
    before, after = (image - lo) / extent, (out - lo) / extent
    inside = (before > 0.05) & (before < 0.95)
    ratios = after.log() / before.log()
    gamma = torch.stack([ratios[n][inside[n]].median() for n in range(16)])  # recovered per sample
    assert ((gamma >= 0.5) & (gamma <= 2.0)).all() and gamma.std() > 0.1
    expected = before.clamp(0, 1).pow(gamma.view(-1, 1, 1, 1)) * extent + lo
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)
    # the extent of each sample is kept
    torch.testing.assert_close(out.flatten(1).amin(1), image.flatten(1).amin(1), rtol=0, atol=1e-12)
    torch.testing.assert_close(out.flatten(1).amax(1), image.flatten(1).amax(1), rtol=0, atol=1e-12)


@needs_cpu_kernels
def test_gamma_kernel_and_formula_agree():
    """float32 on the CPU takes medimg.ops.gamma_curve's kernel: the same draws as the torch
    formula, within the power's error (test_gamma_curve.py), the untransformed samples bit for bit."""
    image = torch.rand(16, 2, 9, 10, generator=seeded(57)) * 3 - 1
    kernel, _ = RandomGamma(p=0.5, backend="medimg")(image, generator=seeded(58))
    formula, _ = RandomGamma(p=0.5, backend="torch")(image, generator=seeded(58))
    extent = (image.flatten(1).amax(1) - image.flatten(1).amin(1)).view(-1, 1, 1, 1)
    assert bool(((kernel - formula).abs() <= 2e-6 * extent + 2.0**-22 * formula.abs()).all())
    same = (kernel == formula).flatten(1).all(1)
    assert 2 <= int(same.sum()) <= 14
    with pytest.raises(ValueError, match=r"^backend: "):
        RandomGamma(backend="fast")


def test_noise_std_in_range():
    image = torch.zeros(8, 1, 64, 64)
    out, _ = RandomGaussianNoise(std=(0.1, 0.2), p=1)(image, generator=seeded(56))
    std, mean = out.flatten(1).std(1), out.flatten(1).mean(1)
    # 4096 draws per sample: the sample std is within ~3% of sigma, the mean within ~0.01
    assert ((std > 0.1 * 0.9) & (std < 0.2 * 1.1)).all(), std
    assert (mean.abs() < 0.02).all(), mean
    assert std.max() - std.min() > 0.01  # one sigma per sample, not one for the batch
    out, _ = RandomGaussianNoise(std=0.3, p=1)(torch.zeros(4, 1, 64, 64), generator=seeded(57))  # (0, 0.3)
    assert (out.flatten(1).std(1) < 0.33).all()
    out, _ = RandomGaussianNoise(std=(0.25, 0.25), p=1)(torch.ones(2, 1, 64, 64, dtype=torch.float64),
                                                        generator=seeded(58))
    assert out.dtype == torch.float64
    torch.testing.assert_close(out.flatten(1).std(1), torch.full((2,), 0.25, dtype=torch.float64), rtol=0.06, atol=0)


@pytest.mark.parametrize(("make", "name"), [
    (lambda: RandomGamma(gamma=(0.0, 1.0)), "gamma"), (lambda: RandomGamma(gamma=(-1.0, 1.0)), "gamma"),
    (lambda: RandomGamma(gamma=(2.0, 1.0)), "gamma"), (lambda: RandomGamma(p=1.5), "p"),
    (lambda: RandomContrast(factor=(-0.5, 1.0)), "factor"), (lambda: RandomContrast(factor=(1.5, 0.5)), "factor"),
    (lambda: RandomContrast(factor="x"), "factor"), (lambda: RandomContrast(p=-0.5), "p"),
    (lambda: RandomBrightness(delta=(0.3, -0.3)), "delta"), (lambda: RandomBrightness(delta=(1, 2, 3)), "delta"),
    (lambda: RandomGaussianNoise(std=(-0.1, 0.1)), "std"), (lambda: RandomGaussianNoise(std=(0.2, 0.1)), "std"),
    (lambda: RandomGaussianNoise(p=2), "p"),
])
def test_intensity_bad_ranges(make, name):
    with pytest.raises(ValueError, match=f"^{name}: "):
        make()


@pytest.mark.parametrize("std", [-0.1, math.nan, math.inf, (0.0, math.nan)])
def test_noise_bad_std(std):
    with pytest.raises(ValueError, match=r"^std: "):
        RandomGaussianNoise(std=std)


STATISTICAL = {"normalize01": Normalize01(), "normalize01 percentiles": Normalize01(percentiles=(1, 99)),
               "gamma": RandomGamma(p=1.0), "contrast": RandomContrast(p=1.0)}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name", list(STATISTICAL))
def test_statistics_refuse_non_finite_samples(name, bad):
    """A NaN or inf pixel would spread over its whole sample through the sample's statistic."""
    image = torch.rand(3, 2, 5, 6, generator=seeded(60))
    image[1, 1, 2, 3] = bad
    with pytest.raises(ValueError, match=r"^image: sample\(s\) \[1\] hold NaN or infinite pixels"):
        STATISTICAL[name](image)


@pytest.mark.parametrize("make", [lambda: Normalize01(check_finite=False),
                                  lambda: Normalize01(percentiles=(1, 99), check_finite=False),
                                  lambda: RandomGamma(p=1.0, check_finite=False),
                                  lambda: RandomContrast(p=1.0, check_finite=False)])
def test_statistics_unchecked_on_request(make):
    """check_finite=False (no device sync on CUDA): the NaN sample comes out NaN, the others finite."""
    image = torch.rand(3, 1, 5, 6, generator=seeded(64)) + 0.5
    image[1, 0, 2, 3] = math.nan
    out, _ = make()(image, generator=seeded(65))
    assert torch.isnan(out[1]).any()
    assert not torch.isnan(out[[0, 2]]).any() and out.shape == image.shape


@pytest.mark.parametrize("method", [pytest.param("select", marks=needs_cpu_kernels), "sort", "kthvalue"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_percentiles_by_every_method_equal_quantile(method, dtype):
    """Every way of finding order statistics (the CPU kernel's, CUDA's sort, torch.kthvalue), on the CPU."""
    image = torch.randn(4, 2, 7, 9, generator=seeded(66), dtype=dtype)
    fractions = (0.0, 0.013, 0.5, 0.97, 1.0)
    got = intensity._sample_percentiles(image, fractions, True, method)
    expected = torch.quantile(image.flatten(1), torch.tensor(fractions, dtype=dtype), dim=1)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g.flatten(), e, rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-12)


def test_gamma_gradient_is_finite_at_the_sample_minimum():
    """Below 1, gamma's curve is infinitely steep at 0, where each sample's minimum lands."""
    image = torch.rand(3, 1, 6, 7, generator=seeded(72), dtype=torch.float64).requires_grad_()
    t = RandomGamma(gamma=(0.3, 0.6), p=1.0)
    out, _ = t(image, generator=seeded(73))
    (grad,) = torch.autograd.grad(out.sum(), image)
    assert torch.isfinite(grad).all()
    assert torch.equal(out.detach(), t(image.detach(), generator=seeded(73))[0])
    torch.autograd.gradcheck(lambda x: t(x + 0.5, generator=seeded(73))[0], (image.detach()[:1].requires_grad_(),))


@pytest.mark.parametrize("method", [pytest.param("select", marks=needs_cpu_kernels), "sort", "kthvalue"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_percentiles_refuse_non_finite_samples_by_every_method(method, bad):
    image = torch.rand(3, 2, 5, 6, generator=seeded(74))
    image[2, 0, 4, 1] = bad
    with pytest.raises(ValueError, match=r"^image: sample\(s\) \[2\] hold NaN or infinite pixels"):
        intensity._sample_percentiles(image, (0.01, 0.99), True, method)
    intensity._sample_percentiles(image, (0.01, 0.99), False, method)  # unchecked: no error


def test_percentile_method_follows_the_backend():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    built = _extension.cpu is not None
    assert intensity._percentile_method(cpu, "auto") == ("select" if built else "kthvalue")
    assert intensity._percentile_method(cpu, "torch") == "kthvalue"
    assert intensity._percentile_method(cpu, "medimg") == "select"
    assert intensity._percentile_method(cuda, "auto") == intensity._percentile_method(cuda, "torch") == "sort"
    with pytest.raises(ValueError, match="backend"):
        Normalize01(percentiles=(1, 99), backend="numpy")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normalize01_backends_agree(dtype):
    image = torch.randn(3, 2, 13, 17, generator=seeded(67), dtype=dtype)
    expected, _ = Normalize01(percentiles=(2, 98), backend="torch")(image)
    got, _ = Normalize01(percentiles=(2, 98))(image)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-12)


def test_noise_torch_backend_is_randn():
    """backend="torch" is the formula on torch.randn, drawn after the per-sample parameters."""
    image = torch.rand(3, 1, 9, 10, generator=seeded(68))
    out, _ = RandomGaussianNoise(std=(0.1, 0.1), p=1.0, backend="torch")(image, generator=seeded(69))
    generator = seeded(69)
    torch.rand(3, 2, generator=generator)  # the draws of std and of p
    noise = torch.randn(image.shape, generator=generator)
    assert torch.equal(out, noise.mul_(torch.full((3, 1, 1, 1), 0.1)).add_(image))


@needs_cpu_kernels
def test_noise_kernel_backend_on_the_cpu():
    image = torch.rand(3, 1, 9, 10, generator=seeded(70))
    auto, _ = RandomGaussianNoise(std=0.1, p=1.0)(image, generator=seeded(71))
    medimg, _ = RandomGaussianNoise(std=0.1, p=1.0, backend="medimg")(image, generator=seeded(71))
    assert torch.equal(auto, medimg)
    with pytest.raises(ValueError, match=r"^image: expected float32 or float64"):
        RandomGaussianNoise(p=1.0, backend="medimg")(image.half(), generator=seeded(71))


@pytest.mark.parametrize("name", ["brightness", "noise"])
def test_elementwise_leave_nan_where_it_is(name):
    image = torch.rand(2, 1, 5, 6, generator=seeded(61))
    image[0, 0, 1, 2] = math.nan
    out, _ = INTENSITY[name](1.0)(image, generator=seeded(62))
    assert torch.equal(torch.isnan(out), torch.isnan(image))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gamma_keeps_constant_half_sample(dtype):
    image = torch.full((2, 1, 4, 4), 3.0, dtype=dtype)
    out, _ = RandomGamma(p=1.0)(image, generator=seeded(63))
    assert torch.equal(out, image)


@pytest.mark.parametrize("name", list(INTENSITY))
def test_intensity_bad_input(name):
    with pytest.raises(TypeError, match=r"^image: "):
        INTENSITY[name](1.0)(torch.zeros(1, 1, 4, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"^image: "):
        INTENSITY[name](1.0)(torch.zeros(4, 4))
    with pytest.raises(ValueError, match=r"^generator: "):
        INTENSITY[name](1.0)(torch.zeros(1, 1, 4, 4, device="meta"), generator=seeded(0))
    with pytest.raises(ValueError, match=r"^image: every channel and spatial size"):
        INTENSITY[name](1.0)(torch.zeros(2, 0, 4, 4))


@pytest.mark.parametrize("make", [lambda: Normalize01(), lambda: Normalize01(percentiles=(5, 95)),
                                  lambda: RandomGamma(gamma=(1.5, 2.0), p=1.0),
                                  lambda: RandomContrast(p=1.0), lambda: RandomBrightness(p=1.0),
                                  lambda: RandomGaussianNoise(std=0.1, p=1.0)],
                         ids=["Normalize01", "Normalize01 percentiles", "RandomGamma", "RandomContrast",
                              "RandomBrightness", "RandomGaussianNoise"])
def test_intensity_in_place_keeps_values_and_gradients(make):
    """The transforms work in place in one fresh buffer: the input is untouched, and gradients
    with respect to the image are those of the same formula out of place."""
    t = make()
    image = torch.rand(3, 2, 5, 6, generator=seeded(60), dtype=torch.float64) + 0.1
    kept = image.clone()
    leaf = image.clone().requires_grad_()
    out, _ = t(leaf, generator=seeded(61))
    assert torch.equal(leaf.detach(), kept)
    weights = torch.rand(out.shape, generator=seeded(62), dtype=torch.float64)
    (grad,) = torch.autograd.grad((out * weights).sum(), leaf)
    assert torch.equal(out.detach(), t(image, generator=seeded(61))[0])
    torch.autograd.gradcheck(lambda x: t(x, generator=seeded(61))[0], (leaf,), eps=1e-7, atol=1e-6)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize(("make", "most"), [
    (lambda: Normalize01(), 12), (lambda: Normalize01(percentiles=(1, 99)), 16), (lambda: RandomGamma(p=1.0), 22),
    (lambda: RandomContrast(p=1.0), 14), (lambda: RandomBrightness(p=1.0), 7), (lambda: RandomGaussianNoise(p=1.0), 2),
], ids=["Normalize01", "Normalize01 percentiles", "RandomGamma", "RandomContrast", "RandomBrightness",
        "RandomGaussianNoise"])
def test_intensity_ops_per_call(make, most):
    """Each torch op of a call is a kernel launch on a GPU, where small batches are bound by
    launches: the per-sample draw takes five ops (none for the noise, whose kernel draws it), the
    finiteness checks x - x == 0 (torch.isfinite is four ops per tensor); 17, 18, 28, 17, 8 and 10
    ops before."""
    image = torch.rand(4, 1, 8, 9, generator=seeded(63))
    with _CountOps() as counted:
        make()(image, generator=seeded(64))
    assert len(counted.ops) <= most, counted.ops


# ----------------------------------------------------------------------------- Compose

def _pipeline() -> list:
    return [RandomAffine(degrees=20, scale=(0.9, 1.1), hflip_p=0.5), Normalize01(), RandomGamma(p=0.7),
            RandomContrast(p=0.7), RandomBrightness(p=0.7), RandomGaussianNoise(p=0.7)]


@pytest.mark.parametrize("spatial", [(16, 19), (6, 7, 8)], ids=str)
def test_compose_chains_in_order(spatial, device):
    image = (torch.rand(3, 1, *spatial, generator=seeded(60)) * 100).to(device)
    mask = random_mask((3, *spatial), torch.int64, 61).to(device)
    composed = Compose(_pipeline())
    got, got_mask = composed(image, mask, generator=seeded(62, device))
    generator = seeded(62, device)
    expected, expected_mask = image, mask
    for t in _pipeline():
        expected, expected_mask = t(expected, expected_mask, generator=generator)
    assert torch.equal(got, expected) and torch.equal(got_mask, expected_mask)
    # another order gives another result (it is a sequence, not a set)
    reordered, _ = Compose(_pipeline()[::-1])(image, mask, generator=seeded(62, device))
    assert not torch.equal(reordered, got)
    # intensity transforms pass the mask through untouched
    _, passed = Compose(_pipeline()[1:])(image, mask, generator=seeded(63, device))
    assert passed is mask
    # no transforms: identity
    same, same_mask = Compose([])(image, mask)
    assert same is image and same_mask is mask


@pytest.mark.parametrize("bad", [[1], [RandomGamma(), "gamma"], [None]])
def test_compose_rejects_non_callables(bad):
    with pytest.raises(TypeError, match=rf"^transforms\[{len(bad) - 1}\]: "):
        Compose(bad)


class _AugmentedDataset(Dataset):
    def __init__(self) -> None:
        self.transform = Compose(_pipeline())

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = torch.rand(1, 1, 12, 14, generator=seeded(index))
        mask = random_mask((1, 12, 14), torch.uint8, index)
        image, mask = self.transform(image, mask, generator=seeded(100 + index))
        return image[0], mask[0]


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_dataloader_with_workers(start_method):
    """Workers forked (Linux's default) or spawned (macOS, Windows: a fresh interpreter that
    imports medimg and unpickles the transforms) compute what the main process computes."""
    loader = DataLoader(_AugmentedDataset(), batch_size=2, num_workers=2, timeout=60,
                        multiprocessing_context=start_method)
    batches = list(loader)
    assert len(batches) == 3
    for images, masks in batches:
        assert images.shape == (2, 1, 12, 14) and images.dtype == torch.float32
        assert masks.shape == (2, 12, 14) and masks.dtype == torch.uint8
        assert torch.isfinite(images).all()
    # the workers compute what the main process computes
    dataset = _AugmentedDataset()
    torch.testing.assert_close(batches[1][0][1], dataset[3][0], rtol=0, atol=0)
    assert torch.equal(batches[2][1][0], dataset[4][1])

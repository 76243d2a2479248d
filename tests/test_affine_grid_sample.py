"""Tests of `medimg.ops.affine_grid_sample`: an affine warp equal to
``F.grid_sample(input, F.affine_grid(theta, input.shape))`` without the sampling grid.

The oracle is torch itself, called here (not through `medimg.ops._reference`): the compiled
kernels (every supported CPU instruction set, via the `cpu_isa` fixture) and the reference
backend (backend="torch") are compared with it, forward and backward.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import CountingModule, Watching, needs_cpu_kernels
from torch import Tensor

from medimg import _extension
from medimg.ops import affine, affine_grid_sample
from medimg.ops._boundary import alert_not_deterministic, direct_call_allowed, finite_mask
from medimg.ops.affine import pixel_coefficients, warp_image_and_labels

pytestmark = pytest.mark.filterwarnings("ignore:Since version 1.3.0, affine_grid behavior:UserWarning")

MODES = ["bilinear", "nearest"]
PADDINGS = ["zeros", "border", "reflection"]
INT_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool]
# Odd sizes, H != W, D != H, size-1 spatial dims, batch of one, C = 1 and C = 3.
SHAPES_2D = [(2, 3, 17, 23), (1, 1, 8, 8), (3, 1, 5, 12), (2, 3, 1, 9), (1, 2, 7, 1), (1, 1, 1, 1)]
SHAPES_3D = [(1, 2, 7, 9, 11), (2, 1, 1, 5, 6), (1, 3, 4, 1, 3), (1, 1, 5, 5, 5)]
SHAPES = SHAPES_2D + SHAPES_3D
THETA_KINDS = ["mild", "far", "zoom_out", "zoom_in"]


# ----------------------------------------------------------------------------- oracle and inputs

def reference(input: Tensor, theta: Tensor, mode: str = "bilinear", padding_mode: str = "zeros",
              align_corners: bool = False) -> Tensor:
    """F.affine_grid + F.grid_sample in input's dtype (float64, then cast back, for labels)."""
    work = input if input.is_floating_point() else input.to(torch.float64)
    grid = F.affine_grid(theta.to(work.dtype), list(input.shape), align_corners=align_corners)
    out = F.grid_sample(work, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    return out if input.is_floating_point() else out.to(input.dtype)


def source_coordinates(theta: Tensor, shape: tuple[int, ...], align_corners: bool) -> Tensor:
    """Float64 input pixel coordinates (N, *spatial, k) that each output pixel samples (x, y[, z])."""
    grid = F.affine_grid(theta.to(torch.float64), list(shape), align_corners=align_corners)
    sizes = torch.tensor(list(reversed(shape[2:])), dtype=torch.float64)
    if align_corners:
        return (grid + 1) / 2 * (sizes - 1)
    return ((grid + 1) * sizes - 1) / 2


def near_tie(theta: Tensor, shape: tuple[int, ...], align_corners: bool, tol: float) -> Tensor:
    """(N, 1, *spatial) True where nearest rounding is ambiguous: a source coordinate within `tol`
    pixels of a half-integer (border clamping and reflection keep the fractional part .5)."""
    frac = source_coordinates(theta, shape, align_corners).frac().abs()
    return ((frac - 0.5).abs() < tol).any(-1).unsqueeze(1)


def random_theta(n: int, k: int, kind: str, gen: torch.Generator, dtype: torch.dtype = torch.float64) -> Tensor:
    """Rotation (any angle) @ shear @ anisotropic zoom, plus a translation, in F.affine_grid's convention.

    kind: "mild" (near the identity), "far" (translated 1.5-3 half-widths: mostly outside the
    image, so padding decides), "zoom_out" (|theta| 3-6: samples a large area around the image,
    several reflections), "zoom_in" (|theta| 0.1-0.4: magnified).
    """
    f64 = torch.float64

    def u(lo: float, hi: float, *size: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, *size, generator=gen, dtype=f64)

    if k == 2:
        angle = u(-math.pi, math.pi)
        c, s = torch.cos(angle), torch.sin(angle)
        rotation = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    else:
        rotation, _ = torch.linalg.qr(torch.randn(n, 3, 3, generator=gen, dtype=f64))
    zoom, shear, shift = {
        "mild": ((0.7, 1.4), 0.3, (-0.3, 0.3)),
        "far": ((0.7, 1.4), 0.3, (1.5, 3.0)),
        "zoom_out": ((3.0, 6.0), 1.0, (-1.0, 1.0)),
        "zoom_in": ((0.1, 0.4), 0.2, (-0.5, 0.5)),
    }[kind]
    shear_m = torch.eye(k, dtype=f64).repeat(n, 1, 1)
    shear_m[:, 0, 1] = u(-shear, shear)
    linear = rotation @ shear_m @ torch.diag_embed(u(*zoom, k))
    translation = u(*shift, k)
    if kind == "far":  # random sign per axis
        translation = translation * torch.where(torch.rand(n, k, generator=gen) < 0.5, -1.0, 1.0).to(f64)
    return torch.cat([linear, translation.unsqueeze(-1)], -1).to(dtype)


def random_input(shape: tuple[int, ...], dtype: torch.dtype, gen: torch.Generator) -> Tensor:
    if dtype.is_floating_point:
        return (3 * torch.randn(shape, generator=gen, dtype=torch.float64) + 1).to(dtype)
    if dtype == torch.bool:
        return torch.rand(shape, generator=gen) < 0.5
    info = torch.iinfo(dtype)
    # the dtype's extremes (int64 ones are not representable in float64) and a few small labels
    values = torch.tensor([info.min, info.max, info.min + 1, info.max - 1, 1, 2, 3, 7], dtype=dtype)
    return values[torch.randint(len(values), shape, generator=gen)]


def index_oracle(input: Tensor, theta: Tensor, padding_mode: str, align_corners: bool) -> Tensor:
    """Exact nearest-mode warp of any dtype: warp a float64 map of (flat pixel index + 1) with torch,
    then gather; index 0 is zeros padding."""
    n, c = input.shape[:2]
    pixels = math.prod(input.shape[2:])
    index = torch.arange(1, pixels + 1, dtype=torch.float64).view(1, 1, *input.shape[2:]).expand(n, 1, *input.shape[2:])
    source = reference(index.contiguous(), theta.to(torch.float64), "nearest", padding_mode, align_corners)
    flat = torch.cat([torch.zeros(n, c, 1, dtype=input.dtype), input.reshape(n, c, pixels)], 2)
    gathered = flat.gather(2, source.long().reshape(n, 1, pixels).expand(n, c, pixels))
    return gathered.view(input.shape)


def case_seed(*parts: object) -> int:
    return sum(ord(ch) * (i + 1) for i, ch in enumerate(repr(parts))) % (2**31)


# ----------------------------------------------------------------------------- equality with torch

@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_float64_matches_grid_sample(cpu_isa, shape, mode, padding_mode, align_corners):
    """float64: bilinear to 1e-10 of the data scale, nearest exactly (random thetas put no source
    coordinate within float64 rounding of a half-integer)."""
    gen = torch.Generator().manual_seed(case_seed(shape, mode, padding_mode, align_corners, 64))
    x = random_input(shape, torch.float64, gen)
    for kind in THETA_KINDS:
        theta = random_theta(shape[0], len(shape) - 2, kind, gen)
        got = affine_grid_sample(x, theta, mode, padding_mode, align_corners, backend="medimg")
        expected = reference(x, theta, mode, padding_mode, align_corners)
        assert got.dtype == torch.float64 and got.shape == x.shape and got.is_contiguous()
        atol = 0.0 if mode == "nearest" else 1e-10 * float(x.abs().max())
        torch.testing.assert_close(got, expected, rtol=0, atol=atol, msg=lambda m, k=kind: f"theta {k}: {m}")


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_float32_matches_grid_sample(cpu_isa, shape, mode, padding_mode, align_corners):
    """float32 against torch's float32 warp (float32 theta).

    bilinear: atol 1e-4 of the data scale. nearest: torch rounds float32 coordinates, so where a
    source coordinate lies within 1e-4 pixels of a half-integer (torch's float32 grid is off by
    up to ~3e-5 pixels for these thetas) the two may pick different neighbours: those near-tie
    pixels may differ (under 0.5% of the pixels), every other pixel must be equal exactly.
    """
    gen = torch.Generator().manual_seed(case_seed(shape, mode, padding_mode, align_corners, 32))
    x = random_input(shape, torch.float32, gen)
    scale = float(x.abs().max())
    for kind in THETA_KINDS:
        theta = random_theta(shape[0], len(shape) - 2, kind, gen, torch.float32)
        got = affine_grid_sample(x, theta, mode, padding_mode, align_corners, backend="medimg")
        expected = reference(x, theta, mode, padding_mode, align_corners)
        assert got.dtype == torch.float32 and got.shape == x.shape
        if mode == "bilinear":
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-4 * scale,
                                       msg=lambda m, k=kind: f"theta {k}: {m}")
        else:
            ambiguous = near_tie(theta, shape, align_corners, 1e-4).expand(shape)
            mismatch = got != expected
            assert mismatch.float().mean() < 0.005, kind
            assert not (mismatch & ~ambiguous).any(), f"theta {kind}: {int(mismatch.sum())} pixels differ"


# ----------------------------------------------------------------------------- degenerate thetas

@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize(("dtype", "mode"), [(torch.float32, "bilinear"), (torch.float64, "bilinear"),
                                             (torch.float32, "nearest"), (torch.uint8, "nearest"),
                                             (torch.int64, "nearest"), (torch.bool, "nearest")], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_identity_is_exact_copy(cpu_isa, shape, dtype, mode, align_corners):
    x = random_input(shape, dtype, torch.Generator().manual_seed(1))
    k = len(shape) - 2
    theta = torch.eye(k, k + 1).expand(shape[0], k, k + 1)
    for padding_mode in PADDINGS:
        got = affine_grid_sample(x, theta, mode, padding_mode, align_corners, backend="medimg")
        assert got.dtype == dtype
        assert torch.equal(got, x), padding_mode


def rotation_theta(n: int, k: int, quarter_turns: int, plane: tuple[int, int]) -> Tensor:
    """theta rotating by quarter_turns * 90 degrees in the plane (i, j) of theta's axes (x=0, y=1, z=2)."""
    angle = quarter_turns * math.pi / 2
    c, s = round(math.cos(angle)), round(math.sin(angle))
    theta = torch.eye(k, k + 1)
    i, j = plane
    theta[i, i], theta[i, j], theta[j, i], theta[j, j] = c, -s, s, c
    return theta.expand(n, k, k + 1)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("shape", "plane"), [
    ((1, 1, 1, 1), (0, 1)), ((1, 1, 2, 2), (0, 1)), ((2, 3, 5, 5), (0, 1)), ((1, 2, 8, 8), (0, 1)),
    ((1, 1, 9, 9), (0, 1)), ((2, 1, 3, 6, 6), (0, 1)), ((1, 2, 5, 5, 5), (0, 2)), ((1, 1, 4, 4, 4), (1, 2)),
], ids=str)
def test_quarter_turns_equal_rot90(cpu_isa, shape, plane, mode, align_corners):
    """theta [[cos, -sin], [sin, cos]] at 90/180/270 degrees == torch.rot90 from the second
    axis of the plane towards the first, i.e. dims (y, x) for an image: exact for square
    planes and any size, with align_corners True and False alike (unlike torch's own float32
    warp, whose grid is off by rounding for most sizes)."""
    x = random_input(shape, torch.float32, torch.Generator().manual_seed(2))
    labels = random_input(shape, torch.int16, torch.Generator().manual_seed(3))
    dim = {0: -1, 1: -2, 2: -3}  # theta axis -> tensor dim
    for turns in (1, 2, 3):
        theta = rotation_theta(shape[0], len(shape) - 2, turns, plane)
        for t in (x, labels) if mode == "nearest" else (x,):
            got = affine_grid_sample(t, theta, mode, "zeros", align_corners, backend="medimg")
            assert torch.equal(got, torch.rot90(t, turns, dims=(dim[plane[1]], dim[plane[0]]))), (turns, t.dtype)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(2, 3, 17, 23), (1, 1, 6, 1), (1, 2, 7, 9, 11), (2, 1, 4, 5, 6)], ids=str)
def test_flips_equal_torch_flip(cpu_isa, shape, mode, align_corners):
    """theta diag(+-1, ...) == torch.flip along the negated axes (x -> W, y -> H, z -> D), exactly."""
    k = len(shape) - 2
    x = random_input(shape, torch.float64, torch.Generator().manual_seed(4))
    labels = random_input(shape, torch.uint8, torch.Generator().manual_seed(5))
    for signs in range(1, 2**k):
        axes = [a for a in range(k) if signs >> a & 1]
        diag = torch.tensor([-1.0 if a in axes else 1.0 for a in range(k)])
        theta = torch.cat([torch.diag(diag), torch.zeros(k, 1)], 1).expand(shape[0], k, k + 1)
        dims = [-1 - a for a in axes]
        for t in (x, x.float(), labels) if mode == "nearest" else (x, x.float()):
            got = affine_grid_sample(t, theta, mode, "zeros", align_corners, backend="medimg")
            assert torch.equal(got, t.flip(dims)), (axes, t.dtype)


def exact_source(size: int, zoom: Fraction, shift: Fraction, align_corners: bool) -> list[Fraction]:
    """Exact unnormalised source coordinate of each output index along one axis (affine_grid's base grid)."""
    coords = []
    for i in range(size):
        if align_corners:
            g = Fraction(2 * i - (size - 1), size - 1) if size > 1 else Fraction(0)
            coords.append((zoom * g + shift + 1) / 2 * (size - 1))
        else:
            g = Fraction(2 * i + 1, size) - 1
            coords.append(((zoom * g + shift + 1) * size - 1) / 2)
    return coords


def exact_nearest_indices(size: int, zoom: Fraction, shift: Fraction, align_corners: bool, padding_mode: str
                          ) -> list[int | None]:
    """Input index each output index samples along one axis under theta diag(zoom) + shift, in exact
    rational arithmetic, following grid_sample's steps: unnormalise, reflect and/or clip, round half to
    even; None where zeros padding leaves the image."""
    indices: list[int | None] = []
    low, span = (Fraction(0), Fraction(size - 1)) if align_corners else (Fraction(-1, 2), Fraction(size))
    for x in exact_source(size, zoom, shift, align_corners):
        if padding_mode == "reflection":
            if span == 0:
                x = Fraction(0)
            else:
                d = abs(x - low)
                flips, extra = divmod(d, span)
                x = extra + low if flips % 2 == 0 else span - extra + low
        if padding_mode in ("border", "reflection"):
            x = min(max(x, Fraction(0)), Fraction(size - 1))
        index = round(x)  # Fraction rounds half to even
        indices.append(index if 0 <= index < size else None)
    return indices


def exact_nearest_warp(input: Tensor, zoom: Fraction, shift: Fraction, align_corners: bool, padding_mode: str
                       ) -> Tensor:
    """The nearest warp by a diagonal theta, separable: gather along each spatial axis in turn."""
    out = input
    for dim in range(2, input.dim()):
        indices = exact_nearest_indices(input.shape[dim], zoom, shift, align_corners, padding_mode)
        index = torch.tensor([0 if j is None else j for j in indices])
        outside = torch.tensor([j is None for j in indices])
        out = out.index_select(dim, index)
        shape = [1] * input.dim()
        shape[dim] = -1
        out = out.masked_fill(outside.view(shape), 0)
    return out


@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize(("shape", "align_corners"), [
    ((1, 2, 8, 16), False), ((2, 1, 4, 8, 2), False), ((1, 2, 9, 17), True), ((2, 1, 5, 9, 3), True),
], ids=str)
def test_nearest_exact_ties_round_half_to_even(cpu_isa, shape, align_corners, padding_mode):
    """Source coordinates exactly on .5 round half to even, as grid_sample's nearbyint does, inside the
    image, at its edges (-0.5 and size - 0.5) and after reflections.

    The oracle is exact rational arithmetic. Sizes s with s (align_corners=False) or s - 1 (True) a
    power of two and dyadic zooms and shifts keep medimg's float coordinates exact too; with other
    sizes an exact tie can be an ulp off in float (in torch's own float64 grid as well), and is then
    one of the near-ties excused above."""
    x = random_input(shape, torch.float64, torch.Generator().manual_seed(15))
    labels = torch.arange(math.prod(shape), dtype=torch.int32).view(shape)  # every pixel distinct
    k = len(shape) - 2
    cases = [("2", "0"), ("2", "1/4"), ("-2", "1/2"), ("6", "0"), ("3/2", "1/16")] if not align_corners else \
        [("1/2", "0"), ("3/2", "1/4"), ("-1/2", "0"), ("11/2", "0"), ("5/2", "-1/2")]
    for zoom, shift in map(lambda c: (Fraction(c[0]), Fraction(c[1])), cases):
        theta = torch.cat([float(zoom) * torch.eye(k), torch.full((k, 1), float(shift))], 1).expand(shape[0], k, k + 1)
        assert any(x.denominator == 2 for size in shape[2:] for x in exact_source(size, zoom, shift, align_corners))
        for t in (x, x.float(), labels):
            got = affine_grid_sample(t, theta, "nearest", padding_mode, align_corners, backend="medimg")
            expected = exact_nearest_warp(t, zoom, shift, align_corners, padding_mode)
            assert torch.equal(got, expected), (str(zoom), str(shift), t.dtype)


def test_exact_nearest_oracle_agrees_with_torch():
    """Guards the oracle above: where torch's float64 grid is exact (align_corners=True, s - 1 a power of
    two) it matches torch's nearest warp, ties included."""
    x = torch.arange(2 * 9 * 17, dtype=torch.float64).view(1, 2, 9, 17)
    for zoom, shift in [("1/2", "0"), ("3/2", "1/4"), ("11/2", "0")]:
        theta = torch.tensor([[[float(Fraction(zoom)), 0, float(Fraction(shift))],
                               [0, float(Fraction(zoom)), float(Fraction(shift))]]], dtype=torch.float64)
        for padding_mode in PADDINGS:
            assert torch.equal(exact_nearest_warp(x, Fraction(zoom), Fraction(shift), True, padding_mode),
                               reference(x, theta, "nearest", padding_mode, True)), (zoom, padding_mode)


# ----------------------------------------------------------------------------- label maps

@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("dtype", INT_DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 17, 23), (1, 1, 5, 1), (1, 2, 7, 9, 11)], ids=str)
def test_integer_labels_nearest(cpu_isa, shape, dtype, padding_mode, align_corners):
    """dtype kept; values only the input's (plus 0 with zeros padding), each exactly the one torch's
    nearest warp picks, extreme values (int64 beyond 2^53) included."""
    gen = torch.Generator().manual_seed(case_seed(shape, dtype, padding_mode, align_corners))
    labels = random_input(shape, dtype, gen)
    small = torch.randint(0, 5, shape, generator=gen).to(dtype)
    for kind in THETA_KINDS:
        theta = random_theta(shape[0], len(shape) - 2, kind, gen, torch.float32)
        got = affine_grid_sample(labels, theta, "nearest", padding_mode, align_corners, backend="medimg")
        assert got.dtype == dtype and got.shape == labels.shape
        allowed = set(labels.unique().tolist()) | ({0} if padding_mode == "zeros" else set())
        assert set(got.unique().tolist()) <= allowed, kind
        assert torch.equal(got, index_oracle(labels, theta, padding_mode, align_corners)), kind
        got_small = affine_grid_sample(small, theta, "nearest", padding_mode, align_corners, backend="medimg")
        assert torch.equal(got_small, reference(small, theta, "nearest", padding_mode, align_corners)), kind


@pytest.mark.parametrize("dtype", [torch.float64, torch.uint8])
def test_index_oracle_agrees_with_torch(dtype):
    """The oracle above is itself torch's nearest warp (guards the oracle, not medimg)."""
    gen = torch.Generator().manual_seed(6)
    x = torch.randint(0, 100, (2, 2, 6, 7), generator=gen).to(dtype)
    theta = random_theta(2, 2, "mild", gen)
    assert torch.equal(index_oracle(x, theta, "zeros", False), reference(x, theta, "nearest", "zeros", False))


# ----------------------------------------------------------------------------- memory layouts

LAYOUTS_2D = {
    "transposed": lambda x: x.transpose(2, 3),
    "channel_slice": lambda x: x[:, 1:3],
    "steps": lambda x: x[:, :, ::2, 1::3],
    "channels_last": lambda x: x.contiguous(memory_format=torch.channels_last),
    "batch_expanded": lambda x: x[:1].expand(3, *x.shape[1:]),
    "negative_offset_view": lambda x: x.permute(0, 3, 2, 1)[:, 1:, 2:],
}
LAYOUTS_3D = {
    "permuted": lambda x: x.permute(0, 1, 4, 2, 3),
    "channel_slice": lambda x: x[:, 1:2],
    "steps": lambda x: x[:, :, 1::2, ::3, ::2],
    "channels_last_3d": lambda x: x.contiguous(memory_format=torch.channels_last_3d),
}


@pytest.mark.parametrize(("dtype", "mode"), [(torch.float32, "bilinear"), (torch.float64, "bilinear"),
                                             (torch.float32, "nearest"), (torch.int32, "nearest")], ids=str)
@pytest.mark.parametrize("layout", [*(f"2d-{n}" for n in LAYOUTS_2D), *(f"3d-{n}" for n in LAYOUTS_3D)])
def test_non_contiguous_input(cpu_isa, layout, dtype, mode):
    dims, name = layout.split("-", 1)
    gen = torch.Generator().manual_seed(7)
    base = random_input((3, 4, 9, 11) if dims == "2d" else (2, 3, 7, 9, 11), dtype, gen)
    x = (LAYOUTS_2D if dims == "2d" else LAYOUTS_3D)[name](base)
    assert not x.is_contiguous() or name.startswith("channels_last")
    theta = random_theta(x.shape[0], x.dim() - 2, "mild", gen, torch.float32)
    # nearest picks the same pixel whatever the layout: exact. bilinear may run a vector path for
    # unit-stride rows and a scalar one otherwise (different FMA contraction): a few ulp of the data.
    atol = 0.0 if mode == "nearest" else 8 * torch.finfo(dtype).eps * float(base.abs().max())
    for padding_mode in PADDINGS:
        got = affine_grid_sample(x, theta, mode, padding_mode, backend="medimg")
        expected = affine_grid_sample(x.contiguous(), theta, mode, padding_mode, backend="medimg")
        assert got.is_contiguous() and got.shape == x.shape and got.dtype == dtype
        torch.testing.assert_close(got, expected, rtol=0, atol=atol, msg=lambda m, p=padding_mode: f"{p}: {m}")
        if dtype == torch.float64:
            torch.testing.assert_close(got, reference(x, theta, mode, padding_mode), rtol=0, atol=1e-10)


WIDE_THETAS = {  # near the identity (long interior runs that cross rows), one of them flipped along x
    2: [[[1.02, 0.003, 0.01], [-0.2, 0.97, 0.02]], [[-1.01, 0.0, 0.0], [0.1, 1.0, -0.03]]],
    3: [[[0.98, 0.01, 0.0, 0.02], [0.15, 1.01, 0.02, 0.0], [-0.1, 0.0, 0.99, 0.01]]],
}


@pytest.mark.parametrize("dims", [2, 3])
def test_rows_wider_than_a_kernel_segment(cpu_isa, dims):
    """Rows of several kernel segments (512 pixels) with C = 3: the interior kernels restart their
    per-segment buffers of offsets and fractions, and every channel reads the same ones. Against
    float64 torch: float32 coordinates of 1100-pixel rows are ~1e-4 pixel off, hence atol 1e-3."""
    gen = torch.Generator().manual_seed(11)
    shape = (2, 3, 40, 1100) if dims == 2 else (1, 3, 6, 8, 700)
    theta = torch.tensor(WIDE_THETAS[dims])
    x = random_input(shape, torch.float32, gen)
    got = affine_grid_sample(x, theta, "bilinear", backend="medimg")
    expected = reference(x.double(), theta.double()).float()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-3 * float(x.abs().max()))

    labels = torch.randint(0, 200, shape, generator=gen)
    nearest = affine_grid_sample(labels.float(), theta, "nearest", backend="medimg")
    assert (nearest != reference(labels.float(), theta, "nearest")).float().mean() < 0.005
    for dtype in (torch.uint8, torch.int64):  # the same pixels as the float32 nearest path
        warped = affine_grid_sample(labels.to(dtype), theta, "nearest", backend="medimg")
        assert warped.dtype == dtype and torch.equal(warped.long(), nearest.long()), dtype


# Outputs of 8 MiB and more, with rows of odd byte lengths (unaligned for the streaming stores).
STREAMED_CASES = [
    ((3, 2, 301, 611), torch.int64, "nearest"),
    ((3, 1, 1700, 1701), torch.uint8, "nearest"),
    ((3, 1, 1000, 1003), torch.float32, "bilinear"),
    ((3, 2, 431, 433), torch.float64, "bilinear"),
    ((2, 1, 101, 103, 105), torch.float32, "bilinear"),
]


@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
@pytest.mark.parametrize(("shape", "dtype", "mode"), STREAMED_CASES, ids=str)
def test_large_outputs_equal_the_same_warp_per_sample(cpu_isa, shape, dtype, mode, padding_mode):
    """A batch whose output reaches 8 MiB is written a row at a time with non-temporal stores
    (AVX2); one sample at a time stays below that and takes the plain stores. Both bit for bit,
    zero-padded row ends included (rotations by any angle)."""
    gen = torch.Generator().manual_seed(case_seed(shape, dtype, padding_mode))
    x = random_input(shape, dtype, gen)
    theta = random_theta(shape[0], len(shape) - 2, "mild", gen, torch.float32)
    assert x.numel() * x.element_size() >= 8 << 20 > x[0].numel() * x.element_size()
    batch = affine_grid_sample(x, theta, mode, padding_mode, backend="medimg")
    per_sample = torch.cat([affine_grid_sample(x[i : i + 1], theta[i : i + 1], mode, padding_mode, backend="medimg")
                            for i in range(shape[0])])
    assert torch.equal(batch, per_sample)

def assert_nearest_scatter_is_the_forward_read(device: torch.device | str, dims: int, theta_kind: str) -> None:
    """The nearest backward sends each output's gradient to the very pixel the forward read, at
    exact ties (a shift of half a pixel: 1/1024 is exact, so every coordinate is k + 0.5) and
    near ties past the first 512-pixel row segment (rotations of 1024-pixel rows; with these, a
    backward that computed coordinates from the row's start sent 2 gradients elsewhere in 2D and
    4 in 3D). Warping the pixels' own 1-based indices says which pixel each output read (0: none)."""
    shape = (16, 1, 3, 1024) if dims == 2 else (4, 1, 2, 3, 1024)
    theta = torch.eye(dims, dims + 1).repeat(shape[0], 1, 1)
    if theta_kind == "half-pixel shift":
        theta[:, 0, dims] = 1.0 / shape[-1]  # normalised units: 2 / W per pixel
    else:  # about z, within +-8.6 degrees
        angle = (torch.rand(shape[0], generator=torch.Generator().manual_seed(14)) - 0.5) * 0.3
        theta[:, :2, :2] = torch.stack([angle.cos(), -angle.sin(), angle.sin(), angle.cos()], 1).view(-1, 2, 2)
    numel = math.prod(shape[2:])
    index = torch.arange(1, numel + 1, dtype=torch.float32).repeat(shape[0], 1).view(shape).to(device)
    index.requires_grad_(True)
    read = affine_grid_sample(index, theta.to(device), "nearest", backend="medimg")
    (grad,) = torch.autograd.grad(read, index, torch.ones_like(read))
    for n in range(shape[0]):
        taken = read[n].detach().flatten().long()
        counts = torch.bincount(taken[taken > 0] - 1, minlength=numel).float()
        assert torch.equal(grad[n].flatten(), counts), f"sample {n}"
    if theta_kind == "half-pixel shift":  # ties round to even: only each row's last output reads outside
        assert int((read == 0).sum()) == math.prod(shape[:-1])


@pytest.mark.parametrize("theta_kind", ["half-pixel shift", "rotated"])
@pytest.mark.parametrize("dims", [2, 3])
def test_nearest_backward_scatters_to_the_pixels_the_forward_read(cpu_isa, dims, theta_kind):
    """Each instruction set: the AVX2 forward's interior kernel fuses base + step * i into one
    FMA, and the backward's scalar code must round it alike (see CMakeLists.txt)."""
    assert_nearest_scatter_is_the_forward_read("cpu", dims, theta_kind)


@pytest.mark.cuda
@pytest.mark.parametrize("theta_kind", ["half-pixel shift", "rotated"])
@pytest.mark.parametrize("dims", [2, 3])
def test_cuda_nearest_backward_scatters_to_the_pixels_the_forward_read(dims, theta_kind):
    assert_nearest_scatter_is_the_forward_read(CUDA, dims, theta_kind)


def test_axis_of_one_pixel_with_a_tiny_step(cpu_isa):
    """Bilinear along an axis of one pixel has no interior cell: a step of 1e-7 across it (rotation
    noise) must not let the kernels read the neighbouring sample, forward or backward."""
    x = torch.rand(2, 1, 1, 64, dtype=torch.float64)
    x[0] = 1e30
    theta = torch.tensor([[1.0, 0.0, 0.0], [1e-7, 1.0, 0.0]], dtype=torch.float64).repeat(2, 1, 1)
    got = affine_grid_sample(x.float(), theta.float(), backend="medimg")
    torch.testing.assert_close(got[1].double(), reference(x, theta)[1], rtol=0, atol=1e-6)
    volume = torch.rand(2, 1, 1, 32, 32)
    volume[0] = float("nan")
    a = 1e-16  # a rotation about y by rounding noise: the depth axis of one voxel gets a step
    rotation = torch.tensor([[math.cos(a), 0, math.sin(a), 0], [0, 1, 0, 0], [-math.sin(a), 0, math.cos(a), 0]])
    warped = affine_grid_sample(volume, rotation.repeat(2, 1, 1), backend="medimg")
    torch.testing.assert_close(warped[1], reference(volume, rotation.repeat(2, 1, 1))[1], rtol=0, atol=1e-6)
    grad_out = torch.ones_like(x)
    grad_out[0] = 0  # sample 0 gets no gradient of its own: a write from sample 1 would show there
    (gx, gt), (rx, rt) = gradients_and_reference(x, theta, grad_out, "bilinear", "zeros", False)
    assert torch.equal(gx[0], torch.zeros_like(gx[0]))
    torch.testing.assert_close(gx, rx, rtol=0, atol=1e-12)
    torch.testing.assert_close(gt[1], rt[1], rtol=0, atol=1e-9)


def test_subnormal_step_counts_as_constant(cpu_isa):
    """A step below DBL_MIN along an axis moves no coordinate: the same warp as a zero step."""
    x = torch.rand(2, 3, 5, 70, dtype=torch.float64)
    constant = torch.tensor([[[1.0, 0.0, 0.25], [0.0, 1.0, 0.5]]], dtype=torch.float64).repeat(2, 1, 1)
    subnormal = constant.clone()
    subnormal[:, 1, 0] = 1e-310
    for mode in MODES:
        expected = torch.ops.medimg.affine_sample(x, constant, mode, "zeros", False)
        assert torch.equal(torch.ops.medimg.affine_sample(x, subnormal, mode, "zeros", False), expected)


def test_backward_with_a_huge_step_is_zero_outside(cpu_isa):
    """Pixels 1e7 apart along x, all far outside: no gradient anywhere (a slack larger than the
    image must empty the interior, not invert it)."""
    x = torch.rand(1, 1, 8, 600, dtype=torch.float64)
    coeffs = torch.tensor([[[1e7, 0.0, -2000.0 - 441e7], [0.0, 1.0, 0.0]]], dtype=torch.float64)
    grad_input, grad_coeffs = torch.ops.medimg.affine_sample_backward(torch.ones_like(x), x, coeffs, "bilinear",
                                                                      "zeros", False, True, True)
    assert torch.equal(grad_input, torch.zeros_like(x)) and torch.equal(grad_coeffs, torch.zeros_like(coeffs))


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64], ids=str)
def test_nearest_reflection_rounds_as_torch_next_to_a_tie(cpu_isa, dtype):
    """Reflection about -0.5 computes (x + 0.5) - 0.5 in float32, which moves 0.5 + 2^-24 onto
    the tie at 0.5 (then 0, half to even): the vectorised interior must round the same value."""
    x = torch.arange(16, dtype=dtype).expand(1, 1, 4, 16).contiguous()
    coeffs = torch.tensor([[[0.0, 0.0, 0.5 + 2**-24], [0.0, 1.0, 0.0]]], dtype=torch.float64)
    got = torch.ops.medimg.affine_sample(x, coeffs, "nearest", "reflection", False)
    assert torch.equal(got, torch.zeros_like(x))


# ----------------------------------------------------------------------------- gradients

GRAD_CASES = [(shape, padding_mode, align_corners)
              for shape in [(1, 2, 4, 5), (1, 1, 3, 4, 5)]
              for padding_mode in PADDINGS for align_corners in (False, True)]


@pytest.mark.parametrize(("shape", "padding_mode", "align_corners"), GRAD_CASES, ids=str)
def test_gradcheck_bilinear(shape, padding_mode, align_corners):
    gen = torch.Generator().manual_seed(case_seed(shape, padding_mode, align_corners))
    x = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    theta = random_theta(shape[0], len(shape) - 2, "mild", gen).requires_grad_()

    def warp(x: Tensor, theta: Tensor) -> Tensor:
        return affine_grid_sample(x, theta, "bilinear", padding_mode, align_corners, backend="medimg")

    assert torch.autograd.gradcheck(warp, (x, theta), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("shape", [(1, 2, 4, 5), (1, 1, 3, 4, 5)], ids=str)
def test_gradcheck_nearest_input(shape, padding_mode):
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    theta = random_theta(shape[0], len(shape) - 2, "mild", gen)
    assert torch.autograd.gradcheck(
        lambda x: affine_grid_sample(x, theta, "nearest", padding_mode, backend="medimg"), (x,), eps=1e-6, atol=1e-6)
    # theta gets a zero gradient in nearest mode, as with torch
    theta.requires_grad_()
    affine_grid_sample(x, theta, "nearest", padding_mode, backend="medimg").backward(torch.randn(shape, dtype=x.dtype))
    assert theta.grad is not None and torch.equal(theta.grad, torch.zeros_like(theta))


def gradients_and_reference(x: Tensor, theta: Tensor, grad_out: Tensor, mode: str, padding_mode: str,
                            align_corners: bool) -> list[tuple[Tensor, Tensor]]:
    """[(d/dx, d/dtheta) of medimg's warp, the same of torch's] for the output gradient grad_out."""
    grads = []
    for fn in (lambda a, b: affine_grid_sample(a, b, mode, padding_mode, align_corners, backend="medimg"),
               lambda a, b: reference(a, b, mode, padding_mode, align_corners)):
        a, b = x.clone().requires_grad_(), theta.clone().requires_grad_()
        fn(a, b).backward(grad_out)
        grads.append((a.grad, b.grad))
    return grads


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(2, 3, 9, 11), (1, 2, 5, 6, 7)], ids=str)
def test_float32_gradients_match_torch(cpu_isa, shape, mode, padding_mode, align_corners):
    gen = torch.Generator().manual_seed(case_seed(shape, mode, padding_mode, align_corners, "grad"))
    x = torch.randn(shape, generator=gen)
    grad_out = torch.randn(shape, generator=gen)
    for kind in ("mild", "zoom_out"):
        theta = random_theta(shape[0], len(shape) - 2, kind, gen, torch.float32)
        (gx, gt), (rx, rt) = gradients_and_reference(x, theta, grad_out, mode, padding_mode, align_corners)
        torch.testing.assert_close(gx, rx, rtol=0, atol=1e-4 * float(rx.abs().max()) + 1e-6)
        torch.testing.assert_close(gt, rt, rtol=0, atol=1e-3 * float(rt.abs().max()) + 1e-5)


@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("shape", [(2, 2, 24, 70), (1, 2, 6, 10, 40)], ids=str)
def test_float64_gradients_of_long_rows_match_torch(cpu_isa, shape, align_corners, padding_mode):
    """Rows with long runs of interior pixels (the backward's fast path: no bounds checks, row
    sums for theta) and their borders, near-identity and rotated thetas, float64 against torch.
    (Not the identity: at integer coordinates d/dtheta is a one-sided derivative, and torch's
    grid, a few ulp off, takes the other side.)"""
    gen = torch.Generator().manual_seed(case_seed(shape, align_corners, padding_mode, "long"))
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    grad_out = torch.randn(shape, generator=gen, dtype=torch.float64)
    k = len(shape) - 2
    near_identity = torch.tensor(WIDE_THETAS[k][:1], dtype=torch.float64).expand(shape[0], k, k + 1)
    for theta in (near_identity, random_theta(shape[0], k, "mild", gen)):
        (gx, gt), (rx, rt) = gradients_and_reference(x, theta, grad_out, "bilinear", padding_mode, align_corners)
        torch.testing.assert_close(gx, rx, rtol=0, atol=1e-10 * float(rx.abs().max()))
        torch.testing.assert_close(gt, rt, rtol=0, atol=1e-9 * float(rt.abs().max()))


# ----------------------------------------------------------------------------- torch.library

def _opcheck_cases() -> list[tuple[tuple[int, ...], str, str, bool]]:
    return [((2, 3, 5, 6), "bilinear", "zeros", False), ((1, 2, 4, 5), "bilinear", "reflection", True),
            ((1, 1, 3, 4, 5), "bilinear", "border", False), ((2, 2, 4, 5), "nearest", "zeros", True)]


@needs_cpu_kernels
@pytest.mark.parametrize(("shape", "mode", "padding_mode", "align_corners"), _opcheck_cases(), ids=str)
def test_opcheck_forward(shape, mode, padding_mode, align_corners):
    gen = torch.Generator().manual_seed(10)
    x = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    theta = random_theta(shape[0], len(shape) - 2, "mild", gen)
    coeffs = pixel_coefficients(theta, tuple(shape[2:]), align_corners).detach().requires_grad_()
    args = (x, coeffs, mode, padding_mode, align_corners)
    torch.library.opcheck(torch.ops.medimg.affine_sample.default, args)
    torch.library.opcheck(torch.ops.medimg.affine_sample.default, (x.detach(), coeffs.detach(), *args[2:]))
    torch.testing.assert_close(torch.ops.medimg.affine_sample(*args),
                               reference(x.detach(), theta, mode, padding_mode, align_corners), rtol=0, atol=1e-10)


@needs_cpu_kernels
@pytest.mark.parametrize(("need_input", "need_coeffs"), [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize(("shape", "mode", "padding_mode", "align_corners"), _opcheck_cases(), ids=str)
def test_opcheck_backward(shape, mode, padding_mode, align_corners, need_input, need_coeffs):
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    grad_out = torch.randn(shape, generator=gen, dtype=torch.float64)
    coeffs = pixel_coefficients(random_theta(shape[0], len(shape) - 2, "mild", gen), tuple(shape[2:]),
                                align_corners)
    args = (grad_out, x, coeffs, mode, padding_mode, align_corners, need_input, need_coeffs)
    torch.library.opcheck(torch.ops.medimg.affine_sample_backward.default, args)
    grad_input, grad_coeffs = torch.ops.medimg.affine_sample_backward(*args)
    assert grad_input.shape == (x.shape if need_input else (0,))
    assert grad_coeffs.shape == (coeffs.shape if need_coeffs else (0,))
    if need_input:  # the input gradient is the vjp of the (linear in input) forward
        a = x.clone().requires_grad_()
        torch.ops.medimg.affine_sample(a, coeffs, mode, padding_mode, align_corners).backward(grad_out)
        torch.testing.assert_close(grad_input, a.grad, rtol=0, atol=1e-12)


@needs_cpu_kernels
@pytest.mark.parametrize(("mode", "padding_mode", "align_corners", "k", "backend"), [
    ("bilinear", "reflection", False, 2, "aot_eager"), ("nearest", "zeros", True, 2, "aot_eager"),
    ("bilinear", "border", True, 3, "aot_eager"),
    ("bilinear", "zeros", False, 2, "inductor"),  # generated code around the op, compiled by a C++ compiler
])
def test_torch_compile_matches_eager(mode, padding_mode, align_corners, k, backend):
    torch._dynamo.reset()
    gen = torch.Generator().manual_seed(12)
    shape = (2, 3, 9, 11) if k == 2 else (1, 2, 5, 6, 7)
    x = torch.randn(shape, generator=gen)
    theta = random_theta(shape[0], k, "mild", gen, torch.float32)
    grad_out = torch.randn(shape, generator=gen)

    def fn(x: Tensor, theta: Tensor) -> Tensor:
        return affine_grid_sample(x * 2, theta, mode, padding_mode, align_corners) + 1

    results = []
    for f in (fn, torch.compile(fn, backend=backend)):
        a, b = x.clone().requires_grad_(), theta.clone().requires_grad_()
        out = f(a, b)
        out.backward(grad_out)
        results.append((out.detach(), a.grad, b.grad))
    for eager, compiled in zip(results[0], results[1], strict=True):
        torch.testing.assert_close(compiled, eager, rtol=0, atol=0)


@needs_cpu_kernels
@pytest.mark.parametrize("backend", ["medimg", "torch"])
def test_torch_compile_fullgraph_keeps_the_finiteness_check(backend):
    """The finiteness check of theta is data-dependent: in Python it would break the graph, so
    while tracing it runs inside an op, and a compiled call still raises the eager error."""
    torch._dynamo.reset()
    gen = torch.Generator().manual_seed(13)
    x = torch.randn(2, 1, 7, 9, generator=gen)
    theta = random_theta(2, 2, "mild", gen, torch.float32)

    def fn(x: Tensor, theta: Tensor) -> Tensor:
        return affine_grid_sample(x, theta, backend=backend)

    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    a, b = theta.clone().requires_grad_(), theta.clone().requires_grad_()
    out, expected = compiled(x, a), fn(x, b)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    out.sum().backward()
    expected.sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)
    for bad in (float("nan"), float("inf"), 1e308):
        broken = theta.double().clone()
        broken[1, 0, 2] = bad
        if bad == 1e308 and backend == "torch":
            continue  # finite: only the kernel's float64 matrix can overflow
        with pytest.raises(ValueError, match=r"^theta: "):
            torch.compile(fn, backend="aot_eager", fullgraph=True)(x.double(), broken)


@needs_cpu_kernels
def test_non_contiguous_temporaries_reach_the_kernel():
    """Inputs the op must copy or convert first: (a) the stride-0 grad_output of loss.sum() and a transposed one,
    (b) the same through opcheck's test_aot_dispatch_dynamic with requires_grad inputs, (c) float32 and
    non-contiguous coeffs in the forward op. Each must give what the contiguous float64 path gives."""
    gen = torch.Generator().manual_seed(9)
    failures = []
    for trial in range(4):  # (a)
        x = torch.randn(2, 3, 7, 9, generator=gen)
        theta = random_theta(2, 2, "mild", gen, torch.float32)
        grads = []
        transposed = torch.randn(2, 3, 9, 7, generator=gen).transpose(2, 3)
        for fn in (lambda a, b: affine_grid_sample(a, b, backend="medimg"), reference):
            a, b = x.clone().requires_grad_(), theta.clone().requires_grad_()
            if trial % 2:
                fn(a, b).sum().backward()  # grad_output: a scalar expanded with stride 0
            else:
                fn(a, b).backward(transposed)
            grads.append((a.grad, b.grad))
        (gx, gt), (rx, rt) = grads
        if not (torch.allclose(gx, rx, rtol=0, atol=1e-5) and torch.allclose(gt, rt, rtol=1e-3, atol=1e-4)):
            failures.append(f"(a) trial {trial}")
    x = torch.randn(2, 3, 5, 6, generator=gen, dtype=torch.float64)
    coeffs = pixel_coefficients(random_theta(2, 2, "mild", gen), (5, 6), False)
    try:  # (b)
        torch.library.opcheck(torch.ops.medimg.affine_sample.default,
                              (x.clone().requires_grad_(), coeffs.clone().requires_grad_(), "bilinear", "zeros",
                               False), test_utils="test_aot_dispatch_dynamic")
    except Exception as error:  # collected, reported below
        failures.append(f"(b) {type(error).__name__}")
    expected = torch.ops.medimg.affine_sample(x, coeffs, "bilinear", "zeros", False)
    for name, c in [("float32", coeffs.float().double().float()),
                    ("transposed", coeffs.transpose(1, 2).contiguous().transpose(1, 2))]:  # (c)
        got = torch.ops.medimg.affine_sample(x, c, "bilinear", "zeros", False)
        if not torch.allclose(got, expected, rtol=0, atol=1e-5):
            failures.append(f"(c) {name} coeffs")
    assert failures == []


# ----------------------------------------------------------------------------- backends

@needs_cpu_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64, torch.bool])
@pytest.mark.parametrize("shape", [(2, 3, 17, 23), (1, 2, 7, 9, 11)], ids=str)
def test_torch_backend_equals_medimg(shape, dtype):
    gen = torch.Generator().manual_seed(13)
    x = random_input(shape, dtype, gen) if dtype != torch.int64 else torch.randint(0, 9, shape, generator=gen)
    for kind in THETA_KINDS:
        theta = random_theta(shape[0], len(shape) - 2, kind, gen)
        for mode in MODES if dtype.is_floating_point else ["nearest"]:
            for padding_mode in PADDINGS:
                for align_corners in (False, True):
                    args = (x, theta, mode, padding_mode, align_corners)
                    ours = affine_grid_sample(*args, backend="medimg")
                    theirs = affine_grid_sample(*args, backend="torch")
                    auto = affine_grid_sample(*args)
                    assert ours.dtype == theirs.dtype == dtype
                    assert torch.equal(auto, ours)
                    atol = 1e-4 * 10 if dtype == torch.float32 and mode == "bilinear" else 1e-10
                    if dtype == torch.float32 and mode == "nearest":
                        assert (ours != theirs).float().mean() < 0.005
                    else:
                        torch.testing.assert_close(ours.double(), theirs.double(), rtol=0, atol=atol)


# ----------------------------------------------------------------------------- bad input

def _bad_cases() -> list:
    img, th = torch.zeros(2, 1, 4, 5), torch.eye(2, 3).repeat(2, 1, 1)
    vol, th3 = torch.zeros(2, 1, 3, 4, 5), torch.eye(3, 4).repeat(2, 1, 1)
    nan, inf = th.clone(), th3.clone()
    nan[1, 0, 2] = float("nan")
    inf[0, 2, 1] = float("inf")
    return [
        ("theta 3x3 for 2d", (img, torch.eye(3).repeat(2, 1, 1)), {}, ValueError,
         r"^theta: expected shape \(2, 2, 3\)"),
        ("theta 2x3 for 3d", (vol, th), {}, ValueError, r"^theta: expected shape \(2, 3, 4\)"),
        ("theta unbatched", (img, torch.eye(2, 3)), {}, ValueError, "^theta: expected shape"),
        ("theta wrong batch", (img, th[:1]), {}, ValueError, r"^theta: .*got \(1, 2, 3\)"),
        ("theta integer", (img, th.long()), {}, TypeError, "^theta: expected a floating dtype"),
        ("theta nan", (img, nan), {}, ValueError, "^theta: .*NaN"),
        ("theta inf", (vol, inf), {}, ValueError, "^theta: .*infinite"),
        ("theta not a tensor", (img, th.tolist()), {}, TypeError, "^theta: expected a torch.Tensor"),
        ("input not a tensor", (img.numpy(), th), {}, TypeError, "^input: expected a torch.Tensor"),
        ("unknown mode", (img, th), {"mode": "bicubic"}, ValueError, "^mode: .*'bicubic'"),
        ("unknown padding", (img, th), {"padding_mode": "wrap"}, ValueError, "^padding_mode: .*'wrap'"),
        ("integer bilinear", (img.long(), th), {}, ValueError, "^input: .*mode='nearest'"),
        ("bool bilinear", (img.bool(), th), {"mode": "bilinear"}, ValueError, "^input: .*mode='nearest'"),
        ("input 3-d", (torch.zeros(2, 4, 5), th), {}, ValueError, r"^input: expected \(N, C, H, W\)"),
        ("input 6-d", (torch.zeros(2, 1, 2, 3, 4, 5), th), {}, ValueError, r"^input: expected \(N, C, H, W\)"),
        ("empty batch", (torch.zeros(0, 1, 4, 5), th[:0]), {}, ValueError, "^input: empty batch"),
        ("theta on meta", (img, th.to("meta")), {}, ValueError, "one device.*theta on meta"),
        ("input on meta", (img.to("meta"), th), {}, ValueError, "one device.*input on meta"),
        ("align_corners int", (img, th), {"align_corners": 1}, TypeError, "^align_corners: expected True or False"),
        ("align_corners None", (img, th), {"align_corners": None}, TypeError, "^align_corners: expected True or"),
        ("align_corners numpy", (img, th), {"align_corners": np.bool_(True)}, TypeError,
         "^align_corners: .*of type numpy.bool"),
        ("mode a list", (img, th), {"mode": ["bilinear"]}, ValueError, r"^mode: .*\['bilinear'\]"),
        ("padding a list", (img, th), {"padding_mode": ["zeros"]}, ValueError, "^padding_mode: "),
        ("no channels", (torch.zeros(2, 0, 4, 5), th), {}, ValueError, r"^input: every channel .*\(2, 0, 4, 5\)"),
        ("zero height", (torch.zeros(2, 1, 0, 5), th), {}, ValueError, "^input: every channel and spatial size"),
        ("zero depth", (torch.zeros(2, 1, 0, 4, 5), th3), {}, ValueError, "^input: every channel and spatial"),
        ("unknown backend", (img, th), {"backend": "cuda"}, ValueError, "^backend: .*'cuda'"),
        ("complex input", (img.to(torch.complex64), th), {}, TypeError, "^input: unsupported dtype"),
        ("sparse input", (img.to_sparse(), th), {}, TypeError, "^input: expected a dense tensor"),
        ("sparse theta", (img, th.to_sparse()), {}, TypeError, "^theta: expected a dense tensor"),
    ]


@pytest.mark.parametrize(("case", "args", "kwargs", "error", "match"), _bad_cases(), ids=[c[0] for c in _bad_cases()])
def test_bad_input(case, args, kwargs, error, match):
    for backend in ("auto", "torch", "medimg") if "backend" not in kwargs else (kwargs.pop("backend"),):
        with pytest.raises(error, match=match):
            affine_grid_sample(*args, **kwargs, backend=backend)


@needs_cpu_kernels
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_input_on_cpu_takes_the_reference_unless_medimg_is_asked(dtype):
    x, theta = torch.rand(1, 1, 4, 5, dtype=dtype), torch.eye(2, 3)[None]
    with pytest.raises(TypeError, match=r"^input: .*not supported by medimg's CPU kernel.*backend='torch'"):
        affine_grid_sample(x, theta, backend="medimg")
    for backend in ("torch", "auto"):
        torch.testing.assert_close(affine_grid_sample(x, theta, backend=backend), reference(x, theta), rtol=0, atol=0)


@pytest.mark.parametrize("backend", ["medimg", "torch"])
@pytest.mark.parametrize("labels_dtype", [torch.int64, torch.uint8, torch.bool], ids=str)
def test_image_and_labels_equal_two_warps(labels_dtype, backend):
    """One set of coefficients for both: the same results as two affine_grid_sample calls."""
    if backend == "medimg" and _extension.cpu is None:
        pytest.skip("medimg._C is not built")
    gen = torch.Generator().manual_seed(18)
    image = torch.rand(3, 2, 9, 11, generator=gen)
    labels = random_input((3, 1, 9, 11), labels_dtype, gen)
    theta = random_theta(3, 2, "mild", gen, torch.float32)
    warped, warped_labels = warp_image_and_labels(image, labels, theta, "bilinear", "reflection", True, backend)
    assert torch.equal(warped, affine_grid_sample(image, theta, "bilinear", "reflection", True, backend=backend))
    expected = affine_grid_sample(labels, theta, "nearest", "reflection", True, backend=backend)
    assert warped_labels.dtype == labels_dtype and torch.equal(warped_labels, expected)
    with pytest.raises(ValueError, match=r"^mask: spatial shape \(9, 10\)"):
        warp_image_and_labels(image, labels[..., :10], theta, "bilinear", "zeros", False, backend)
    with pytest.raises(TypeError, match=r"^mask: unsupported dtype"):
        warp_image_and_labels(image, labels.to(torch.complex64), theta, "bilinear", "zeros", False, backend)


# ----------------------------------------------------------------------------- CUDA
# The same oracle on the GPU: torch's own warp of the same CUDA tensors.

CUDA = torch.device("cuda")


def assert_float_warp_close(got: Tensor, expected: Tensor, theta: Tensor, mode: str, align_corners: bool,
                            eps: float, scale: float, what: str) -> None:
    """bilinear: within `eps` of the input's scale. nearest: equal, except where the source coordinate
    is within 1e-4 pixels of a half-integer (under 0.5% of pixels), where float32 rounding decides."""
    if mode == "bilinear":
        torch.testing.assert_close(got, expected, rtol=0, atol=eps * scale, msg=lambda m: f"{what}: {m}")
        return
    ambiguous = near_tie(theta.cpu(), tuple(got.shape), align_corners, 1e-4).expand(got.shape)
    mismatch = (got != expected).cpu()
    assert mismatch.float().mean() < 0.005, what
    assert not (mismatch & ~ambiguous).any(), f"{what}: {int(mismatch.sum())} pixels differ"


@pytest.mark.cuda
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_cuda_float_matches_grid_sample(shape, mode, padding_mode, align_corners):
    """float64 and float32 CUDA kernels, the CPU tests' tolerances, against torch's CPU warp (the
    CPU tests' oracle): torch's own CUDA warp was measured 1.2e-7 off in float64 (H200, torch
    2.11) where medimg's CUDA kernel met the float64 tolerance against the CPU warp."""
    gen = torch.Generator().manual_seed(case_seed(shape, mode, padding_mode, align_corners, "cuda"))
    for dtype, eps in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        x = random_input(shape, dtype, gen).to(CUDA)
        for kind in THETA_KINDS:
            theta = random_theta(shape[0], len(shape) - 2, kind, gen, dtype).to(CUDA)
            got = affine_grid_sample(x, theta, mode, padding_mode, align_corners, backend="medimg")
            assert got.device == x.device and got.dtype == dtype and got.shape == x.shape and got.is_contiguous()
            expected = reference(x.cpu(), theta.cpu(), mode, padding_mode, align_corners)
            assert_float_warp_close(got.cpu(), expected, theta, mode, align_corners, eps, float(x.abs().max()),
                                    f"{dtype}, theta {kind}")


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", [(2, 3, 17, 23), (1, 2, 7, 9, 11)], ids=str)
def test_cuda_half_matches_float32_warp(shape, dtype):
    """16-bit inputs: coordinates and weights in float32, one rounding of the result to `dtype`."""
    gen = torch.Generator().manual_seed(case_seed(shape, dtype))
    x = random_input(shape, torch.float32, gen).to(CUDA, dtype)
    for mode in MODES:
        for padding_mode in PADDINGS:
            for align_corners in (False, True):
                theta = random_theta(shape[0], len(shape) - 2, "mild", gen, torch.float32).to(CUDA)
                got = affine_grid_sample(x, theta, mode, padding_mode, align_corners, backend="medimg")
                assert got.dtype == dtype and got.device == x.device
                expected = reference(x.float(), theta, mode, padding_mode, align_corners).to(dtype)
                eps = 2 * torch.finfo(dtype).eps
                assert_float_warp_close(got.float(), expected.float(), theta, mode, align_corners, eps,
                                        float(x.abs().max()), f"{mode}, {padding_mode}, align_corners={align_corners}")


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_cuda_16_bit_conversions_are_exact(dtype):
    """The kernel converts 16-bit values with the device's cvt instructions: a 16-bit warp equals
    the float32 warp of the same values rounded by torch, bit for bit. A shift by half a pixel
    averages neighbours, so results land on rounding ties; the values include subnormals, the
    largest finite values and zeros of both signs."""
    info = torch.finfo(dtype)
    gen = torch.Generator().manual_seed(case_seed("16-bit", dtype))
    special = torch.tensor([info.tiny, info.tiny * info.eps, 3 * info.tiny * info.eps, info.max,
                            -info.max, info.max * (1 - info.eps), 0.0, -0.0, 1.0, 1.0 + info.eps])
    values = torch.cat([special, torch.randn(4 * 2 * 8 * 16 - special.numel(), generator=gen)])
    x = values.view(4, 2, 8, 16).to(dtype)
    shift = torch.tensor([[1.0, 0.0, 1.0 / 16], [0.0, 1.0, 0.0]])  # half a pixel along x
    theta = torch.cat([shift.expand(2, 2, 3), random_theta(2, 2, "mild", gen, torch.float32)]).cuda()
    for mode in MODES:
        got = affine_grid_sample(x.cuda(), theta, mode, backend="medimg")
        widened = affine_grid_sample(x.cuda().float(), theta, mode, backend="medimg")
        assert torch.equal(got, widened.to(dtype)), mode


@pytest.mark.cuda
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("dtype", INT_DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(2, 3, 17, 23), (1, 2, 7, 9, 11)], ids=str)
def test_cuda_integer_labels_nearest(shape, dtype, padding_mode, align_corners):
    gen = torch.Generator().manual_seed(case_seed(shape, dtype, padding_mode, align_corners, "cuda"))
    labels = random_input(shape, dtype, gen)
    for kind in THETA_KINDS:
        theta = random_theta(shape[0], len(shape) - 2, kind, gen, torch.float32)
        got = affine_grid_sample(labels.to(CUDA), theta.to(CUDA), "nearest", padding_mode, align_corners,
                                 backend="medimg")
        assert got.dtype == dtype and got.device.type == "cuda"
        assert torch.equal(got.cpu(), index_oracle(labels, theta, padding_mode, align_corners)), kind


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8, torch.int64], ids=str)
@pytest.mark.parametrize("align_corners", [False, True])
def test_cuda_matches_cpu(dtype, align_corners):
    """The CUDA kernels sample where the CPU kernels do, including rows of several 512-pixel
    segments, whose coordinates both restart from each segment's first pixel."""
    gen = torch.Generator().manual_seed(14)
    for shape in [(2, 3, 17, 23), (1, 2, 7, 9, 11), (2, 2, 5, 1100), (1, 1, 3, 4, 700)]:
        x = random_input(shape, dtype, gen)
        theta = random_theta(shape[0], len(shape) - 2, "mild", gen)
        for mode in MODES if dtype.is_floating_point else ["nearest"]:
            for padding_mode in PADDINGS:
                cpu = affine_grid_sample(x, theta, mode, padding_mode, align_corners, backend="medimg")
                gpu = affine_grid_sample(x.to(CUDA), theta.to(CUDA), mode, padding_mode, align_corners,
                                         backend="medimg")
                if mode == "nearest":
                    ambiguous = near_tie(theta, shape, align_corners, 1e-4).expand(shape)
                    assert not ((gpu.cpu() != cpu) & ~ambiguous).any(), (shape, padding_mode)
                else:
                    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-4 * float(x.abs().max()))


@pytest.mark.cuda
@pytest.mark.parametrize("identity", ["identity", "flip"])
@pytest.mark.parametrize("shape", [(2, 3, 17, 23), (1, 2, 7, 9, 11)], ids=str)
def test_cuda_exact_cases(shape, identity):
    """Identity and flips are exact copies on the GPU too, for every dtype."""
    k = len(shape) - 2
    theta = torch.eye(k, k + 1).expand(shape[0], k, k + 1).clone()
    if identity == "flip":
        theta[:, 0, 0] = -1
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8, torch.int64):
        x = random_input(shape, dtype, torch.Generator().manual_seed(15)).to(CUDA)
        expected = x if identity == "identity" else x.flip(-1)
        for mode in MODES if dtype.is_floating_point else ["nearest"]:
            for align_corners in (False, True):
                got = affine_grid_sample(x, theta.to(CUDA), mode, "zeros", align_corners, backend="medimg")
                assert torch.equal(got, expected), (dtype, mode, align_corners)


@pytest.mark.cuda
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(2, 3, 9, 11), (1, 2, 5, 6, 7)], ids=str)
def test_cuda_gradients_match_torch(shape, mode, padding_mode, align_corners):
    """Gradients of input and theta on the GPU against torch's CUDA warp (float64 and float32)."""
    gen = torch.Generator().manual_seed(case_seed(shape, mode, padding_mode, align_corners, "cuda-grad"))
    for dtype, eps in ((torch.float64, 1e-9), (torch.float32, 1e-3)):
        x = torch.randn(shape, generator=gen, dtype=dtype).to(CUDA)
        grad_out = torch.randn(shape, generator=gen, dtype=dtype).to(CUDA)
        for kind in ("mild", "zoom_out"):
            theta = random_theta(shape[0], len(shape) - 2, kind, gen, dtype).to(CUDA)
            (gx, gt), (rx, rt) = gradients_and_reference(x, theta, grad_out, mode, padding_mode, align_corners)
            torch.testing.assert_close(gx, rx, rtol=0, atol=eps * float(rx.abs().max()) + 1e-6)
            torch.testing.assert_close(gt, rt, rtol=0, atol=eps * float(rt.abs().max()) + 1e-5)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_cuda_half_gradients(dtype):
    """16-bit backward accumulates in float32: close to the float32 gradients."""
    gen = torch.Generator().manual_seed(16)
    x = torch.randn(2, 3, 17, 23, generator=gen).to(CUDA)
    grad_out = torch.randn(2, 3, 17, 23, generator=gen).to(CUDA)
    theta = random_theta(2, 2, "mild", gen, torch.float32).to(CUDA)
    grads = []
    for work in (dtype, torch.float32):
        a = x.to(work).requires_grad_()
        b = theta.clone().requires_grad_()
        affine_grid_sample(a, b).backward(grad_out.to(work))
        assert a.grad.dtype == work
        grads.append((a.grad.float(), b.grad))
    (gx, gt), (rx, rt) = grads
    eps = 8 * torch.finfo(dtype).eps
    torch.testing.assert_close(gx, rx, rtol=0, atol=eps * float(rx.abs().max()))
    torch.testing.assert_close(gt, rt, rtol=0, atol=eps * float(rt.abs().max()))


@pytest.fixture
def warn_only(request):
    """torch.use_deterministic_algorithms(True, warn_only=request.param) for one test."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(True, warn_only=request.param)
    yield request.param
    torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


@needs_cpu_kernels
@pytest.mark.parametrize("warn_only", [False, True], indirect=True, ids=["strict", "warn_only"])
def test_cpu_backward_is_deterministic_and_says_nothing(warn_only):
    """The CPU backward partitions the scatter by plane, with no atomics: nothing to alert."""
    x, theta = torch.rand(2, 1, 5, 6, requires_grad=True), torch.eye(2, 3).repeat(2, 1, 1).requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        affine_grid_sample(x, theta, backend="medimg").sum().backward()


@pytest.mark.parametrize("warn_only", [False, True], indirect=True, ids=["strict", "warn_only"])
def test_alert_not_deterministic_raises_or_warns(warn_only):
    """What the CUDA backward calls first: torch's own behaviour for a non-deterministic op."""
    if warn_only:
        with pytest.warns(UserWarning, match=r"^a kernel accumulates with float atomics"):
            alert_not_deterministic("a kernel")
    else:
        with pytest.raises(RuntimeError, match=r"^a kernel accumulates with float atomics"):
            alert_not_deterministic("a kernel")


@pytest.mark.cuda
@pytest.mark.parametrize("warn_only", [False, True], indirect=True, ids=["strict", "warn_only"])
def test_cuda_backward_honours_deterministic_algorithms(warn_only):
    x = torch.rand(2, 1, 5, 6, device=CUDA, requires_grad=True)
    out = affine_grid_sample(x, torch.eye(2, 3, device=CUDA).repeat(2, 1, 1), backend="medimg").sum()
    if warn_only:
        with pytest.warns(UserWarning, match="CUDA backward accumulates with float atomics"):
            out.backward()
    else:
        with pytest.raises(RuntimeError, match="CUDA backward accumulates with float atomics"):
            out.backward()


@pytest.mark.cuda
def test_cuda_backward_of_more_samples_than_a_grid_dimension():
    """65537 samples: more than the 65535 blocks a grid's y dimension holds, so the backward
    launches in chunks of samples; gradients equal the CPU kernel's."""
    gen = torch.Generator().manual_seed(77)
    x = torch.rand(65537, 1, 2, 3, generator=gen)
    theta = random_theta(x.shape[0], 2, "mild", gen, torch.float32)
    grads = []
    for device in ("cpu", CUDA):
        xd, td = x.to(device).requires_grad_(), theta.to(device).requires_grad_()
        out = affine_grid_sample(xd, td, backend="medimg")
        grads.append([g.cpu() for g in torch.autograd.grad(out, (xd, td), torch.ones_like(out))])
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=0, atol=1e-5)
    torch.testing.assert_close(grads[1][1], grads[0][1], rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
@pytest.mark.parametrize(("shape", "padding_mode", "align_corners"), GRAD_CASES[::3], ids=str)
def test_cuda_gradcheck(shape, padding_mode, align_corners):
    gen = torch.Generator().manual_seed(case_seed(shape, padding_mode, align_corners, "cuda"))
    x = torch.randn(shape, generator=gen, dtype=torch.float64).to(CUDA).requires_grad_()
    theta = random_theta(shape[0], len(shape) - 2, "mild", gen).to(CUDA).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, theta: affine_grid_sample(x, theta, "bilinear", padding_mode, align_corners, backend="medimg"),
        (x, theta), eps=1e-6, atol=1e-6)


@pytest.mark.cuda
@pytest.mark.parametrize(("shape", "mode", "padding_mode", "align_corners"), _opcheck_cases(), ids=str)
def test_cuda_opcheck(shape, mode, padding_mode, align_corners):
    gen = torch.Generator().manual_seed(17)
    x = torch.randn(shape, generator=gen, dtype=torch.float64).to(CUDA)
    grad_out = torch.randn(shape, generator=gen, dtype=torch.float64).to(CUDA)
    theta = random_theta(shape[0], len(shape) - 2, "mild", gen).to(CUDA)
    coeffs = pixel_coefficients(theta, tuple(shape[2:]), align_corners)
    torch.library.opcheck(torch.ops.medimg.affine_sample.default,
                          (x.requires_grad_(), coeffs.requires_grad_(), mode, padding_mode, align_corners))
    torch.library.opcheck(torch.ops.medimg.affine_sample_backward.default,
                          (grad_out, x.detach(), coeffs.detach(), mode, padding_mode, align_corners, True, True))


@pytest.mark.cuda
def test_cuda_bad_input():
    image, theta = torch.rand(2, 1, 8, 9, device=CUDA), torch.eye(2, 3, device=CUDA).expand(2, 2, 3)
    with pytest.raises(ValueError, match=r"one device.*theta on cpu"):
        affine_grid_sample(image, theta.cpu())
    with pytest.raises(ValueError, match=r"one device.*input on cpu"):
        affine_grid_sample(image.cpu(), theta)
    with pytest.raises(ValueError, match=r"^theta: holds NaN"):
        affine_grid_sample(image, theta.clone().fill_(float("nan")))
    with pytest.raises(ValueError, match=r"^input: .*mode='nearest'"):
        affine_grid_sample(image.long(), theta)


# ----------------------------------------------------------------------------- regressions from review

@needs_cpu_kernels
@pytest.mark.parametrize("theta_rows", [
    [[math.cos(math.radians(270)), -math.sin(math.radians(270)), 0.0],
     [math.sin(math.radians(270)), math.cos(math.radians(270)), 0.0]],   # cos is 1.8e-16, not 0
    [[-math.cos(math.radians(90)), -math.sin(math.radians(90)), 0.0],
     [-math.sin(math.radians(90)), math.cos(math.radians(90)), 0.0]],     # quarter turn with a flip
])
def test_reads_stay_inside_the_plane(cpu_isa, theta_rows):
    """A 64x64 view of a 65x65 buffer whose extra row and column are NaN: nothing may read them."""
    buffer = torch.full((1, 1, 65, 65), float("nan"))
    buffer[..., :64, :64] = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(3))
    image = buffer[..., :64, :64]
    theta = torch.tensor([theta_rows], dtype=torch.float64)
    for mode in ("bilinear", "nearest"):
        out = affine_grid_sample(image, theta.float(), mode=mode)
        assert not out.isnan().any(), mode
        torch.testing.assert_close(out, reference(image.contiguous(), theta.float(), mode), atol=1e-4, rtol=0)


@needs_cpu_kernels
def test_zero_padding_does_not_leak_non_finite_pixels(cpu_isa):
    """Taps outside the image contribute nothing, even when the pixel they would point at is inf."""
    image = torch.rand(1, 1, 12, 12, generator=torch.Generator().manual_seed(4))
    image[..., 0, 0] = float("inf")
    theta = torch.tensor([[[1.0, 0.0, 0.25], [0.0, 1.0, 0.25]]])  # shifts by 1.5 px: left/top taps fall outside
    for mode in ("bilinear", "nearest"):
        out = affine_grid_sample(image, theta, mode=mode)
        expected = reference(image, theta, mode)
        assert torch.equal(out.isnan(), expected.isnan()), mode
        assert torch.equal(out.isinf(), expected.isinf()), mode


@needs_cpu_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8, torch.int64], ids=str)
@pytest.mark.parametrize("padding_mode", PADDINGS)
def test_tiny_step_keeps_far_pixels_outside(cpu_isa, dtype, padding_mode):
    """A step of 1e-20 source pixels per output pixel puts the window crossings beyond int64:
    they must still clamp to the row, not wrap and call far-away pixels interior."""
    image = (1 + torch.arange(256, dtype=torch.float32).reshape(1, 1, 16, 16) % 7).to(dtype)
    theta = torch.tensor([[[1.0, 0.0, 0.0], [1e-20, 1.9, 0.0]]])
    modes = ("bilinear", "nearest") if dtype.is_floating_point else ("nearest",)
    for mode in modes:
        got = affine_grid_sample(image, theta, mode, padding_mode, backend="medimg")
        expected = affine_grid_sample(image, theta, mode, padding_mode, backend="torch")
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0, msg=f"{mode}, {padding_mode}")


def test_theta_gradient_after_a_first_call_in_inference_mode():
    """pixel_coefficients keeps its constants per shape: made inside inference mode, they could
    not be saved for a later backward."""
    shape = (2, 1, 13, 11)
    affine._cached_constants.cache_clear()  # made afresh, inside inference mode
    with torch.inference_mode():
        affine_grid_sample(torch.rand(shape), torch.eye(2, 3).expand(2, 2, 3), backend="medimg")
    theta = (torch.eye(2, 3) * 0.9).expand(2, 2, 3).clone().requires_grad_()
    affine_grid_sample(torch.rand(shape), theta, backend="medimg").sum().backward()
    assert theta.grad is not None and torch.isfinite(theta.grad).all()


def test_fake_tensor_mode_leaves_no_fake_constants_behind():
    """Constants made while FakeTensorMode is active are fake: they must not be kept for later
    eager calls of the same shape."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    spatial = (7, 9)
    affine._cached_constants.cache_clear()
    with FakeTensorMode():
        fake = pixel_coefficients(torch.eye(2, 3).expand(1, 2, 3), spatial, False)
    assert type(fake) is not torch.Tensor
    got = pixel_coefficients(torch.eye(2, 3).expand(1, 2, 3), spatial, False)
    assert type(got) is torch.Tensor and torch.equal(got, torch.eye(2, 3, dtype=torch.float64).expand(1, 2, 3))


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("spatial", [(7, 9), (1, 12), (5, 6, 4)], ids=str)
def test_pixel_coefficients_numpy_equals_torch(spatial, align_corners):
    """A CPU theta without gradient takes the NumPy formula, one that needs a gradient torch's:
    the same bits (a last-bit difference moves float64 pixels at nearest-neighbour ties), and an
    identity theta exactly the identity in both."""
    k = len(spatial)
    theta = random_theta(64, k, "zoom_out", torch.Generator().manual_seed(29))
    plain = pixel_coefficients(theta, spatial, align_corners)
    tracked = pixel_coefficients(theta.clone().requires_grad_(), spatial, align_corners)
    assert tracked.requires_grad and not plain.requires_grad and plain.dtype == torch.float64
    assert torch.equal(plain, tracked.detach())
    assert torch.equal(pixel_coefficients(torch._neg_view(-theta), spatial, align_corners), plain)  # negative bit
    for dtype in (torch.float32, torch.float16, torch.bfloat16):  # NumPy has no bfloat16
        torch.testing.assert_close(pixel_coefficients(theta.to(dtype), spatial, align_corners),
                                   pixel_coefficients(theta.to(dtype).double(), spatial, align_corners), rtol=0, atol=0)
    eye = torch.eye(k, k + 1).expand(3, k, k + 1)
    for t in (eye, eye.clone().requires_grad_()):
        if min(spatial) > 1 or not align_corners:  # a 1-pixel axis with align_corners maps everything to 0
            assert torch.equal(pixel_coefficients(t, spatial, align_corners).detach(),
                               torch.eye(k, k + 1, dtype=torch.float64).expand(3, k, k + 1))


@needs_cpu_kernels
def test_float64_nearest_does_not_depend_on_theta_gradient():
    """Round decimal thetas put many float64 coordinates next to nearest-neighbour ties: with or
    without a gradient on theta, the same pixels."""
    image = torch.arange(64 * 64, dtype=torch.float64).reshape(1, 1, 64, 64)
    theta = torch.tensor([[[0.1, 0.7, 0.25], [0.1, 0.0, -0.1]]], dtype=torch.float64)
    plain = affine_grid_sample(image, theta, mode="nearest")
    assert torch.equal(plain, affine_grid_sample(image, theta.clone().requires_grad_(), mode="nearest").detach())


@needs_cpu_kernels
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_jit_trace_keeps_theta_an_input():
    """Under torch.jit.trace, theta must stay a graph input (not a NumPy constant)."""
    image = torch.rand(2, 1, 8, 9)
    eye = torch.eye(2, 3).expand(2, 2, 3).contiguous()
    traced = torch.jit.trace(lambda x, t: affine_grid_sample(x, t), (image, eye), check_trace=False)
    shifted = eye.clone()
    shifted[:, 0, 2] = 0.5
    assert torch.equal(traced(image, shifted), affine_grid_sample(image, shifted))


def test_overflowing_theta_is_rejected():
    theta = torch.tensor([[[1e308, -1e308, 0.0], [0.0, 1.0, 0.0]]], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^theta: "):
        affine_grid_sample(torch.rand(1, 1, 16, 16, dtype=torch.float64), theta, backend="medimg")


@needs_cpu_kernels
def test_op_rejects_coefficients_of_another_batch():
    x = torch.rand(3, 1, 8, 8)
    coeffs = pixel_coefficients(torch.eye(2, 3).expand(1, 2, 3), (8, 8), False)
    with pytest.raises(ValueError, match=r"^coeffs: "):
        torch.ops.medimg.affine_sample(x, coeffs, "bilinear", "zeros", False)


def test_direct_kernel_calls_only_where_nothing_would_see_them():
    """Eager calls of plain tensors skip torch's dispatcher (direct_call_allowed); autograd,
    tracing, modes and functorch transforms must still see the op."""
    from torch.overrides import TorchFunctionMode
    from torch.utils._python_dispatch import TorchDispatchMode

    plain = torch.rand(2, 3)
    assert direct_call_allowed(plain, plain)
    assert not direct_call_allowed(plain, plain.clone().requires_grad_())
    with torch.no_grad():
        assert direct_call_allowed(plain, plain.clone().requires_grad_())
    assert not direct_call_allowed(torch.nn.Parameter(plain))
    with TorchFunctionMode():
        assert not direct_call_allowed(plain)
    with TorchDispatchMode():
        assert not direct_call_allowed(plain)
    seen = []
    torch.func.vmap(lambda row: seen.append(direct_call_allowed(row)) or row)(plain)
    assert seen == [False]
    # lazy views: their memory does not hold their values
    assert not direct_call_allowed(torch._neg_view(plain))
    assert not direct_call_allowed(torch.randn(2, 3, dtype=torch.complex64).conj())
    assert not direct_call_allowed(torch._efficientzerotensor(2, 3))


@needs_cpu_kernels
def test_negative_bit_views_warp_their_values():
    """A negative-bit view (e.g. .imag of a conjugate) must warp its values, not its memory."""
    gen = torch.Generator().manual_seed(14)
    values = torch.randn(2, 1, 8, 9, generator=gen)
    negative_view = torch._neg_view(-values)
    assert negative_view.is_neg()
    theta = random_theta(2, 2, "mild", gen, torch.float32)
    assert torch.equal(affine_grid_sample(negative_view, theta), affine_grid_sample(values, theta))


@needs_cpu_kernels
@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")  # vmap of affine_grid
def test_direct_kernel_calls_keep_autograd_and_vmap():
    image = torch.rand(3, 1, 9, 11, dtype=torch.float64)
    theta = torch.eye(2, 3, dtype=torch.float64).repeat(3, 1, 1) + 0.1 * torch.rand(3, 2, 3, dtype=torch.float64)
    eager = affine_grid_sample(image, theta)
    with_grad = affine_grid_sample(image.clone().requires_grad_(), theta.clone().requires_grad_())
    assert with_grad.grad_fn is not None and torch.equal(with_grad.detach(), eager)
    # vmap (no finiteness check: it is data-dependent control flow, which vmap refuses)
    def one(x: Tensor, t: Tensor) -> Tensor:
        return warp_image_and_labels(x[None], None, t[None], "bilinear", "zeros", False, theta_is_finite=True)[0][0]

    torch.testing.assert_close(torch.func.vmap(one)(image, theta), eager, rtol=0, atol=1e-12)


@needs_cpu_kernels
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize(("shape", "dtype", "mode", "theta_dtype", "theta_layout"), [
    ((3, 2, 9, 11), torch.float32, "bilinear", torch.float32, "contiguous"),
    ((3, 2, 9, 11), torch.float64, "bilinear", torch.float64, "transposed"),
    ((3, 1, 9, 11), torch.float32, "nearest", torch.float64, "contiguous"),
    ((3, 1, 9, 11), torch.int64, "nearest", torch.float32, "transposed"),
    ((3, 1, 9, 11), torch.bool, "nearest", torch.float32, "contiguous"),
    ((2, 2, 5, 6, 7), torch.float32, "bilinear", torch.float32, "transposed"),
    ((2, 1, 5, 6, 7), torch.uint8, "nearest", torch.float64, "contiguous"),
], ids=str)
def test_one_call_equals_the_op(device, shape, dtype, mode, theta_dtype, theta_layout, padding_mode,
                                align_corners):
    """A plain eager call takes one call into the device's module (coefficients and warp); under
    a mode the op runs as torch's dispatcher sees it. Both give the same bits, for every option,
    theta dtype and theta stride."""
    gen = torch.Generator().manual_seed(15)
    k = len(shape) - 2
    image = (torch.rand(shape, generator=gen) * 5).to(dtype).to(device)
    theta = random_theta(shape[0], k, "zoom_out", gen, theta_dtype).to(device)
    if theta_layout == "transposed":
        theta = theta.transpose(1, 2).contiguous().transpose(1, 2)
    counting = CountingModule(getattr(_extension, device.type))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_extension, device.type, counting)
        one_call = affine_grid_sample(image, theta, mode, padding_mode, align_corners)
    assert [c for c in counting.calls if c != "populate_pages"] == ["affine_warp_theta"]
    with Watching():
        through_op = affine_grid_sample(image, theta, mode, padding_mode, align_corners)
    assert one_call.dtype == through_op.dtype == dtype and torch.equal(one_call, through_op)


@needs_cpu_kernels
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e308])
def test_one_call_checks_theta_as_the_op(device, bad):
    """The one-call path refuses what the op refuses, with its messages, and warps nothing of an
    unchecked non-finite theta that the op would not."""
    image = torch.rand(2, 1, 6, 7, device=device)
    theta = torch.eye(2, 3, dtype=torch.float64, device=device).repeat(2, 1, 1)
    theta[1, 0, 1] = bad
    message = "values so large" if math.isfinite(bad) else "holds NaN or infinite"
    with pytest.raises(ValueError, match=f"^theta: {message}"):
        affine_grid_sample(image, theta)
    with Watching(), pytest.raises(ValueError, match=f"^theta: {message}"):
        affine_grid_sample(image, theta)
    unchecked = affine_grid_sample(image, theta, check_finite=False)
    with Watching():
        torch.testing.assert_close(unchecked, affine_grid_sample(image, theta, check_finite=False), rtol=0, atol=0,
                                   equal_nan=True)


@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")  # vmap of affine_grid
@pytest.mark.parametrize("spatial", [(8, 9), (4, 5, 6)], ids=str)
def test_torch_func_transforms_take_the_reference(spatial):
    """torch.func.grad and jacrev cannot differentiate a torch.library custom op (pytorch#168393):
    under them "auto" takes the F.affine_grid + F.grid_sample reference, so they give its
    gradients; vmap batches it (its finiteness check cannot run there, and says so)."""
    gen = torch.Generator().manual_seed(16)
    k = len(spatial)
    image = torch.rand(2, 1, *spatial, generator=gen, dtype=torch.float64)
    theta = random_theta(2, k, "mild", gen)

    def reference(x: Tensor, t: Tensor) -> Tensor:
        return F.grid_sample(x, F.affine_grid(t, list(x.shape), align_corners=False), align_corners=False)

    grad_theta = torch.func.grad(lambda t: affine_grid_sample(image, t).square().sum())(theta)
    assert torch.equal(grad_theta, torch.func.grad(lambda t: reference(image, t).square().sum())(theta))
    jacobian = torch.func.jacrev(lambda x: affine_grid_sample(x, theta).sum(dim=(1, 2, 3)))(image)
    assert torch.equal(jacobian, torch.func.jacrev(lambda x: reference(x, theta).sum(dim=(1, 2, 3)))(image))
    batched = torch.func.vmap(lambda x, t: affine_grid_sample(x[None], t[None], check_finite=False)[0])(image, theta)
    torch.testing.assert_close(batched, affine_grid_sample(image, theta), rtol=0, atol=1e-12)
    with pytest.raises(RuntimeError, match="check_finite=False"):
        torch.func.vmap(lambda x, t: affine_grid_sample(x[None], t[None])[0])(image, theta)


def test_finite_or_raise_opcheck():
    values = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.medimg.finite_or_raise.default, (values, "theta: not finite"))
    with pytest.raises(ValueError, match=r"^theta: not finite$"):
        torch.ops.medimg.finite_or_raise(torch.tensor([1.0, float("nan")]), "theta: not finite")


@needs_cpu_kernels
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
def test_unchecked_non_finite_theta_gives_nan_or_padding(padding_mode, device):
    """check_finite=False skips the check (a stream sync on CUDA): NaN, inf or overflowing
    matrices must still read nothing outside the input, giving NaN (bilinear) or padding values
    (nearest), and never crash."""
    image = torch.rand(3, 2, 37, 45, generator=torch.Generator().manual_seed(15)).to(device)
    labels = torch.randint(1, 5, (3, 1, 37, 45), generator=torch.Generator().manual_seed(16)).to(device)
    theta = torch.tensor([[[float("nan"), 0.0, 0.0], [0.0, 1.0, 0.0]],
                          [[float("inf"), 0.0, 0.0], [0.0, 1.0, float("-inf")]],
                          [[1e38, 0.0, 0.0], [0.0, -1e38, 0.0]]], device=device)
    with pytest.raises(ValueError, match=r"^theta: "):
        affine_grid_sample(image, theta)
    warped = affine_grid_sample(image, theta, padding_mode=padding_mode, check_finite=False)
    assert warped.shape == image.shape
    if device.type == "cpu":  # NaN coordinates blend NaN weights (how CUDA rounds NaN to an index is its own)
        assert warped[0].isnan().all()
    assert (warped[~warped.isnan()].abs() <= 1).all()  # else only input or padding values
    warped_labels = affine_grid_sample(labels, theta, mode="nearest", padding_mode=padding_mode, check_finite=False)
    assert set(warped_labels.unique().tolist()) <= {0, 1, 2, 3, 4}
    with pytest.raises(TypeError, match=r"^check_finite: "):
        affine_grid_sample(image, theta, check_finite=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64], ids=str)
def test_finite_mask_equals_isfinite(dtype):
    """x - x == 0 is torch.isfinite, also at the largest finite values (no overflow), -0 and
    subnormals, and for several tensors at once."""
    info = torch.finfo(dtype)
    values = torch.tensor([0.0, -0.0, 1.0, -2.5, info.max, -info.max, info.tiny / 4, float("nan"), float("inf"),
                           float("-inf")], dtype=dtype)
    assert torch.equal(finite_mask(values), torch.isfinite(values))
    other = values.flip(0)
    assert torch.equal(finite_mask(values, other), torch.isfinite(values) & torch.isfinite(other))
    assert finite_mask(torch.randn(3, requires_grad=True)).grad_fn is None

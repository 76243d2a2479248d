"""Random rotation, zoom, flips, translation and shear of an image batch and its masks, as
one affine warp per sample (one kernel call for the images, one for the masks)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from medimg.ops._arrays import Array, numpy_allowed, ordered_matmul
from medimg.ops._boundary import check_backend, check_sizes_positive, check_tensor, constant_cache, use_compiled
from medimg.ops.affine import check_options, coefficient_constants, warp_image_and_labels
from medimg.ops.random_affine import fused_warp_allowed, random_affine_matrices, random_affine_warp
from medimg.transforms._sampling import as_range, check_generator, check_image, check_probability, is_number

_MIN_ZOOM = 1e-6


class RandomAffine:
    """Random affine augmentation of a batch, the mask moving with its image.

    Per sample: rotation about the centre (2D: one angle; 3D: about z, y and x), isotropic
    zoom, optional translation and shear, and flips, composed into one matrix, so the batch
    is warped by a single kernel call (and its mask by a second, nearest-neighbour one, which
    keeps the mask dtype and never invents a label).

    Args:
        degrees: rotation range in degrees: a number d for (-d, d), or (low, high); for 3D
            one range for all three axes or a sequence of three ranges (z, y, x).
        scale: zoom range (> 0); a factor above 1 enlarges the content.
        translate: None, or the largest shift as a fraction of the size per axis (x, y[, z]),
            or one fraction for every axis (in 3D, a pair (x, y) reuses y's fraction for z).
        shear: None, or an x-shear angle range in degrees (number or (low, high)).
        hflip_p, vflip_p, dflip_p: probabilities of flipping along W, H and D (3D).
        p: probability that a sample is transformed at all.
        mode: image interpolation, "bilinear" or "nearest" (masks always use nearest).
        padding_mode: "zeros", "border" or "reflection", for images and masks alike.
        align_corners: as ``F.grid_sample``.
        backend: "auto" | "medimg" | "torch" for the warp.

    Shape:
        image: (N, C, H, W) or (N, C, D, H, W), float.
        mask: None, (N, C_m, *spatial) or (N, *spatial), any integer or bool dtype (or float).

    Example:
        >>> t = RandomAffine(degrees=15, scale=(0.9, 1.1), hflip_p=0.5)
        >>> image, mask = t(torch.rand(32, 1, 256, 256), torch.randint(0, 4, (32, 256, 256)),
        ...                 generator=torch.Generator().manual_seed(0))
    """

    def __init__(self, degrees: float | tuple = 15.0, scale: float | tuple[float, float] = (0.9, 1.1),
                 translate: float | tuple[float, ...] | None = None, shear: float | tuple[float, float] | None = None,
                 hflip_p: float = 0.5, vflip_p: float = 0.0, dflip_p: float = 0.0, p: float = 1.0,
                 mode: str = "bilinear", padding_mode: str = "zeros", align_corners: bool = False,
                 backend: str = "auto") -> None:
        if isinstance(degrees, (tuple, list)) and len(degrees) == 3:
            self.degrees = [as_range("degrees", d, symmetric=True) for d in degrees]
        else:
            self.degrees = [as_range("degrees", degrees, symmetric=True)] * 3
        self.scale = as_range("scale", scale, symmetric=False)
        if self.scale[0] < _MIN_ZOOM:  # 1 / zoom enters theta, which must stay finite in float32
            raise ValueError(f"scale: zoom factors must be >= {_MIN_ZOOM}, got {scale!r}")
        self.translate = None if translate is None else self._translate_fractions(translate)
        self.shear = None if shear is None else as_range("shear", shear, symmetric=True)
        if self.shear is not None and max(abs(self.shear[0]), abs(self.shear[1])) >= 90:
            raise ValueError(f"shear: angles must lie in (-90, 90) degrees, got {shear!r}")
        self.flip_p = [check_probability("hflip_p", hflip_p), check_probability("vflip_p", vflip_p),
                       check_probability("dflip_p", dflip_p)]
        self.p = check_probability("p", p)
        align_corners = bool(align_corners) if isinstance(align_corners, np.bool_) else align_corners
        check_options(mode, padding_mode, align_corners)
        self.mode, self.padding_mode, self.align_corners = mode, padding_mode, align_corners
        self.backend = check_backend(backend)

    @staticmethod
    def _translate_fractions(translate: float | tuple[float, ...]) -> list[float]:
        values = [translate] * 3 if is_number(translate) else translate
        if not isinstance(values, (tuple, list, np.ndarray, Tensor)) or not 2 <= len(values) <= 3 or \
                any(not is_number(t) or not 0.0 <= t <= 1.0 for t in values):
            raise ValueError(f"translate: expected fractions in [0, 1], one for every axis or one per axis "
                             f"(x, y[, z]; in 3D a pair reuses y's for z), got {translate!r}")
        values = [float(t) for t in values]
        return values + [values[-1]] * (3 - len(values))

    def __call__(self, image: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None
                 ) -> tuple[Tensor, Tensor | None]:
        image = check_image(image)
        check_sizes_positive("image", image)  # before the draws, whose constants divide by the sizes
        check_generator(generator, image.device)
        spatial = tuple(image.shape[2:])
        mask_view = None if mask is None else self._mask_as_batch(mask, image)
        if fused_warp_allowed(image, mask_view, self.mode, self.padding_mode, self.align_corners, self.backend):
            uniform, spec, shear, translate = self._kernel_draws(image.shape[0], spatial, image.device, generator)
            warped, warped_mask = random_affine_warp(uniform, spec, len(spatial), shear, translate, image, mask_view,
                                                     self.mode, self.padding_mode, self.align_corners)
        else:
            dtype = torch.float64 if image.dtype == torch.float64 else torch.float32
            theta, coeffs = self._draw(image.shape[0], spatial, image.device, generator, dtype)
            # The matrices are finite by construction: no check (on CUDA, no device sync).
            warped, warped_mask = warp_image_and_labels(image, mask_view, theta.to(dtype), self.mode,
                                                        self.padding_mode, self.align_corners, self.backend,
                                                        theta_is_finite=True, coeffs=coeffs)
        return warped, None if mask is None else warped_mask.view(mask.shape)

    @staticmethod
    def _mask_as_batch(mask: Tensor, image: Tensor) -> Tensor:
        check_tensor("mask", mask)
        spatial = tuple(image.shape[2:])
        if mask.dim() == image.dim() - 1 and mask.shape[0] == image.shape[0] and tuple(mask.shape[1:]) == spatial:
            return mask.unsqueeze(1)
        if mask.dim() == image.dim() and mask.shape[0] == image.shape[0] and tuple(mask.shape[2:]) == spatial:
            return mask
        raise ValueError(f"mask: expected (N, *spatial) or (N, C, *spatial) matching image {tuple(image.shape)}, "
                         f"got {tuple(mask.shape)}")

    def sample_theta(self, n: int, spatial: tuple[int, ...], device: torch.device,
                     generator: torch.Generator | None = None) -> Tensor:
        """Sampling matrices (N, k, k + 1), float64, in F.affine_grid's convention.

        The forward transform A = T R S D (flips and zoom D, shear S, rotation R, translation
        T, applied in that order) is composed in centred pixel units, so rotations are rigid
        whatever the aspect ratio, and inverted in closed form (D^-1 S^-1 R^T, then the shift):
        theta maps output coordinates to the input coordinates they sample. Every draw of the
        batch comes from one ``torch.rand`` call, and the few array ops after it work on the
        whole batch (their count, not the batch size, is what a call costs). On the CPU, outside
        tracing, they run in NumPy, whose calls cost a fraction of torch's on batches of tens to
        hundreds (2-5% of a RandomAffine call on 32 x 1x256^2, 8% on 128 x 1x28^2); elsewhere in
        torch, on the device, without a sync. Where medimg's kernels are built (and the backend
        allows them), one kernel call composes them instead (medimg.ops.random_affine), with the
        same bits but for sin, cos and tan.
        """
        return self._draw(n, spatial, device, generator, torch.float64)[0]

    def _draw(self, n: int, spatial: tuple[int, ...], device: torch.device, generator: torch.Generator | None,
              theta_dtype: torch.dtype) -> tuple[Tensor, Tensor | None]:
        """sample_theta's theta (float64), and the warp's pixel coefficients of it rounded to
        `theta_dtype` where the compiled kernel composed both (else None)."""
        if len(spatial) not in (2, 3) or any(int(s) < 1 for s in spatial):
            raise ValueError(f"spatial: expected 2 or 3 sizes >= 1, got {tuple(spatial)}")
        k = len(spatial)
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:  # the cache keys on the GPU itself
            device = torch.device("cuda", torch.cuda.current_device())
        if use_compiled(self.backend, device):
            uniform, spec, shear, translate = self._kernel_draws(n, tuple(spatial), device, generator)
            return random_affine_matrices(uniform, spec, k, shear, translate, theta_dtype != torch.float64)
        xp = np if numpy_allowed(device) else torch
        layout = _draw_layout(self._draw_spec(k), tuple(spatial), self.align_corners, device, xp)
        uniform = torch.rand(n, len(layout.low), device=device, generator=generator, dtype=torch.float64)
        theta = _compose_theta(uniform.numpy() if xp is np else uniform, layout, xp)
        return (torch.from_numpy(theta) if xp is np else theta), None

    def _kernel_draws(self, n: int, spatial: tuple[int, ...], device: torch.device,
                      generator: torch.Generator | None) -> tuple[Tensor, Tensor, bool, bool]:
        """The batch's uniform draws (N, columns) float64 on `device`, and what the kernel
        (medimg.ops.random_affine) reads with them: _kernel_spec on `device`, and whether the
        shear and translation columns are drawn."""
        spec = _kernel_spec(self._draw_spec(len(spatial)), spatial, self.align_corners, device)
        uniform = torch.rand(n, spec.columns, device=device, generator=generator, dtype=torch.float64)
        return uniform, spec.values, spec.shear, spec.translate

    def _draw_spec(self, k: int) -> tuple:
        """The parameters that shape sample_theta's draws for k spatial dims, hashable."""
        degrees = tuple(self.degrees[:1] if k == 2 else self.degrees)
        translate = None if self.translate is None else tuple(self.translate[:k])
        return degrees, self.scale, self.shear, translate, tuple(self.flip_p[:k]), self.p

    def __repr__(self) -> str:
        return (f"RandomAffine(degrees={self.degrees}, scale={self.scale}, translate={self.translate}, "
                f"shear={self.shear}, flip_p={self.flip_p}, p={self.p}, mode={self.mode!r}, "
                f"padding_mode={self.padding_mode!r}, align_corners={self.align_corners})")


@dataclass(frozen=True)
class _DrawLayout:
    """The columns of sample_theta's uniform draws and the constants it combines them with,
    as arrays of one library (NumPy, or torch on the batch's device).

    Columns: k flip events and the "apply" event (uniforms, against ``probabilities``), the
    zoom, the rotation angles (1 in 2D; z, y, x in 3D), then the shear angle and the k
    translations (pixels) when those are enabled. ``low + span * u`` maps a uniform to its range.
    """

    low: Array
    span: Array
    probabilities: Array
    angles: slice
    shear: int | None
    translate: slice | None
    ratio: Array  # (k, k + 1): centred pixel units to F.affine_grid's normalised ones
    identity: Array


@constant_cache
def _draw_layout(spec: tuple, spatial: tuple[int, ...], align_corners: bool, device: torch.device,
                 xp: ModuleType) -> _DrawLayout:
    degrees, scale, shear, translate, flip_p, p = spec
    k = len(spatial)
    # Normalised coordinates are centred pixel coordinates divided by `half` per axis (x, y[, z]).
    half = [(s - 1) / 2 if align_corners else s / 2 for s in reversed(spatial)]
    ranges = [(0.0, 1.0)] * (k + 1) + [scale]
    angles = slice(len(ranges), len(ranges) + len(degrees))
    ranges += [(math.radians(lo), math.radians(hi)) for lo, hi in degrees]
    shear_column = None
    if shear is not None:
        shear_column = len(ranges)
        ranges.append((math.radians(shear[0]), math.radians(shear[1])))
    translate_columns = None
    if translate is not None:
        translate_columns = slice(len(ranges), len(ranges) + k)
        ranges += [(-t * 2 * h, t * 2 * h) for t, h in zip(translate, half, strict=True)]
    unit = [max(h, 0.5) for h in half] + [1.0]

    def array(values: list) -> Array:
        if xp is np:
            return np.array(values, dtype=np.float64)
        return torch.tensor(values, dtype=torch.float64, device=device)

    return _DrawLayout(
        low=array([lo for lo, _ in ranges]), span=array([hi - lo for lo, hi in ranges]),
        probabilities=array([*flip_p, p]), angles=angles, shear=shear_column, translate=translate_columns,
        ratio=array([[unit[a] / unit[r] for a in range(k + 1)] for r in range(k)]),  # exact 1 on the diagonal
        identity=array([[float(r == a) for a in range(k + 1)] for r in range(k)]))


class _KernelSpec(NamedTuple):
    """What medimg.ops.random_affine's kernel reads beside the draws: `values`, the draw layout
    and pixel_coefficients' constants as one float64 vector (order in
    csrc/common/random_affine.h), and the layout's column count and optional columns."""

    values: Tensor
    columns: int
    shear: bool
    translate: bool


@constant_cache
def _kernel_spec(spec: tuple, spatial: tuple[int, ...], align_corners: bool, device: torch.device) -> _KernelSpec:
    """The kernel's spec for these draw parameters, sizes and align_corners, on `device`."""
    layout = _draw_layout(spec, spatial, align_corners, torch.device("cpu"), np)
    parts = [layout.low, layout.span, layout.probabilities, layout.ratio.ravel(),
             np.array(coefficient_constants(spatial, align_corners), dtype=np.float64).ravel()]
    return _KernelSpec(torch.from_numpy(np.concatenate(parts)).to(device), len(layout.low), layout.shear is not None,
                       layout.translate is not None)


def _compose_theta(uniform: Array, layout: _DrawLayout, xp: ModuleType) -> Array:
    """Theta (N, k, k + 1) from the uniforms (N, columns) of sample_theta, in the library `xp`
    (numpy or torch) of the arrays: the same elementwise operations in the same order in both,
    so the same bits, but for sin, cos and tan, whose last bit may differ between libraries."""
    n, k = uniform.shape[0], layout.ratio.shape[0]
    draws = layout.low + uniform * layout.span  # each column mapped to its range
    events = draws[:, : k + 1] < layout.probabilities  # a flip per axis, then "transform this sample"
    row_scale = xp.where(events[:, :k], -1.0, 1.0) / draws[:, k + 1 : k + 2]  # D^-1 scales the rows
    inverse = _inverse_rotation(draws[:, layout.angles], xp)  # R^-1
    if layout.shear is not None:  # S = I + tan(a) e_x e_y^T, S^-1 = I - tan(a) e_x e_y^T
        inverse[:, 0] -= xp.tan(draws[:, layout.shear : layout.shear + 1]) * inverse[:, 1]
    inverse = inverse * row_scale[:, :, None]
    if layout.translate is None:
        shift = xp.zeros_like(inverse[:, :, :1])
    else:
        shift = -ordered_matmul(inverse, draws[:, layout.translate][:, :, None])
    theta = xp.concatenate([inverse, shift], axis=2)
    return xp.where(events[:, k].reshape(n, 1, 1), theta * layout.ratio, layout.identity)


def _inverse_rotation(angles: Array, xp: ModuleType) -> Array:
    """R^-1 = R^T (N, k, k) for angles (N, 1) in 2D, or (N, 3) in 3D: R = Rz Ry Rx, the three
    rotating about z (the x-y plane), y (x-z) and x (y-z)."""
    cos, sin = xp.cos(angles), xp.sin(angles)
    if angles.shape[1] == 1:
        return xp.concatenate([cos, sin, -sin, cos], axis=1).reshape(-1, 2, 2)
    rz, ry, rx = (_plane_rotation(cos[:, i], sin[:, i], plane, xp) for i, plane in enumerate([(0, 1), (0, 2), (1, 2)]))
    return xp.swapaxes(ordered_matmul(ordered_matmul(rz, ry), rx), 1, 2)


def _plane_rotation(cos: Array, sin: Array, axes: tuple[int, int], xp: ModuleType) -> Array:
    """(N, 3, 3) rotations by angles of the given cos and sin in the plane of two axes (x=0, y=1, z=2)."""
    one, zero = xp.ones_like(cos), xp.zeros_like(cos)
    rows = [[one if i == j else zero for j in range(3)] for i in range(3)]
    i, j = axes
    rows[i][i], rows[i][j], rows[j][i], rows[j][j] = cos, -sin, sin, cos
    return xp.stack([xp.stack(row, axis=1) for row in rows], axis=1)

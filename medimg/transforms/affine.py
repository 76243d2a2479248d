"""Random rotation, zoom, flips, translation and shear of an image batch and its masks, as
one affine warp per sample (one kernel call for the images, one for the masks)."""

from __future__ import annotations

import torch
from torch import Tensor

from medimg.ops._boundary import check_backend, check_tensor
from medimg.ops.affine import MODES, PADDING_MODES, affine_grid_sample, warp_image_and_labels
from medimg.transforms._sampling import (
    as_range,
    bernoulli,
    check_generator,
    check_image,
    check_probability,
    uniform,
)


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
            or one fraction for every axis.
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
        if self.scale[0] <= 0:
            raise ValueError(f"scale: zoom factors must be > 0, got {scale!r}")
        self.translate = None if translate is None else self._translate_fractions(translate)
        self.shear = None if shear is None else as_range("shear", shear, symmetric=True)
        if self.shear is not None and max(abs(self.shear[0]), abs(self.shear[1])) >= 90:
            raise ValueError(f"shear: angles must lie in (-90, 90) degrees, got {shear!r}")
        self.flip_p = [check_probability("hflip_p", hflip_p), check_probability("vflip_p", vflip_p),
                       check_probability("dflip_p", dflip_p)]
        self.p = check_probability("p", p)
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {tuple(MODES)}, got {mode!r}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode: expected one of {tuple(PADDING_MODES)}, got {padding_mode!r}")
        self.mode, self.padding_mode, self.align_corners = mode, padding_mode, bool(align_corners)
        self.backend = check_backend(backend)

    @staticmethod
    def _translate_fractions(translate: float | tuple[float, ...]) -> list[float]:
        values = [float(translate)] * 3 if isinstance(translate, (int, float)) else [float(t) for t in translate]
        if not 2 <= len(values) <= 3 or any(not 0.0 <= t <= 1.0 for t in values):
            raise ValueError(f"translate: expected fractions in [0, 1] per axis (x, y[, z]), got {translate!r}")
        return values + [values[-1]] * (3 - len(values))

    def __call__(self, image: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None
                 ) -> tuple[Tensor, Tensor | None]:
        image = check_image(image)
        check_generator(generator, image.device)
        spatial = tuple(image.shape[2:])
        mask_view = None if mask is None else self._mask_as_batch(mask, image)
        dtype = torch.float64 if image.dtype == torch.float64 else torch.float32
        theta = self.sample_theta(image.shape[0], spatial, image.device, generator).to(dtype)
        if mask_view is None:
            return affine_grid_sample(image, theta, self.mode, self.padding_mode, self.align_corners,
                                      backend=self.backend), None
        warped, warped_mask = warp_image_and_labels(image, mask_view, theta, self.mode, self.padding_mode,
                                                    self.align_corners, self.backend)
        return warped, warped_mask.view(mask.shape)

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
        theta maps output coordinates to the input coordinates they sample.
        """
        k = len(spatial)
        f64 = torch.float64
        draw = lambda bounds: uniform(n, bounds, device, generator, f64)  # noqa: E731
        flip_p = torch.tensor(self.flip_p[:k], dtype=f64, device=device)
        flips = torch.rand(n, k, device=device, generator=generator, dtype=f64) < flip_p
        zoom = draw(self.scale)
        inverse = self._rotation(n, k, draw).transpose(1, 2)  # R^-1
        if self.shear is not None:  # S = I + tan(a) e_x e_y^T, S^-1 = I - tan(a) e_x e_y^T
            tan = torch.tan(torch.deg2rad(draw(self.shear))).unsqueeze(1)
            inverse = torch.cat([(inverse[:, 0] - tan * inverse[:, 1]).unsqueeze(1), inverse[:, 1:]], dim=1)
        row_scale = torch.where(flips, -1.0, 1.0) / zoom.unsqueeze(1)  # D^-1 scales the rows
        inverse = inverse * row_scale.unsqueeze(2)

        # Normalised coordinates are centred pixel coordinates divided by `half` per axis.
        half = [(s - 1) / 2 if self.align_corners else s / 2 for s in reversed(spatial)]
        if self.translate is None:
            shift = torch.zeros(n, k, 1, dtype=f64, device=device)
        else:
            axes = zip(self.translate[:k], half, strict=True)
            forward_shift = torch.stack([draw((-t, t)) * (2 * h) for t, h in axes], dim=1)
            shift = -(inverse @ forward_shift.unsqueeze(2))
        unit = [max(h, 0.5) for h in half] + [1.0]
        ratio = torch.tensor([[unit[a] / unit[r] for a in range(k + 1)] for r in range(k)], dtype=f64, device=device)
        theta = torch.cat([inverse, shift], dim=2) * ratio  # exact 1 on the diagonal ratio
        apply = bernoulli(n, self.p, device, generator).view(n, 1, 1)
        return torch.where(apply, theta, torch.eye(k, k + 1, dtype=f64, device=device))

    def _rotation(self, n: int, k: int, draw) -> Tensor:
        if k == 2:
            return _rotation_2d(torch.deg2rad(draw(self.degrees[0])))
        angles = [torch.deg2rad(draw(bounds)) for bounds in self.degrees]
        rz = _embed_rotation(_rotation_2d(angles[0]), (0, 1))
        ry = _embed_rotation(_rotation_2d(angles[1]), (0, 2))
        rx = _embed_rotation(_rotation_2d(angles[2]), (1, 2))
        return rz @ ry @ rx

    def __repr__(self) -> str:
        return (f"RandomAffine(degrees={self.degrees}, scale={self.scale}, translate={self.translate}, "
                f"shear={self.shear}, flip_p={self.flip_p}, p={self.p}, mode={self.mode!r}, "
                f"padding_mode={self.padding_mode!r}, align_corners={self.align_corners})")


def _rotation_2d(angle: Tensor) -> Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def _embed_rotation(rotation: Tensor, axes: tuple[int, int]) -> Tensor:
    """A 2D rotation (N, 2, 2) acting on two of the three axes (x=0, y=1, z=2)."""
    out = torch.eye(3, dtype=rotation.dtype, device=rotation.device).repeat(rotation.shape[0], 1, 1)
    i, j = axes
    out[:, i, i], out[:, i, j] = rotation[:, 0, 0], rotation[:, 0, 1]
    out[:, j, i], out[:, j, j] = rotation[:, 1, 0], rotation[:, 1, 1]
    return out



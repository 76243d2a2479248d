"""Fundus photographs (green channel) with their vessel masks and field of view."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from medimg.data.synthetic import _fields as f
from medimg.data.synthetic import _vessels
from medimg.data.synthetic._base import CHUNK_PIXELS, Sample, SyntheticDataset

_N_UNIFORM = 48
_SLOTS, _STEPS = 96, 34  # vessel tips per image, growth steps
_STEP = 0.045  # segment length, normalised units
_R_MIN = 0.005  # thinnest vessel radius, normalised units (a third of a pixel at 128 x 128)


class RetinaVessels(SyntheticDataset):
    """Green-channel fundus images with a branching vessel tree to segment.

    Each image has a circular field of view (FOV, black outside), a background with an
    illumination gradient and vignetting plus a faint choroidal texture, a bright optic disc
    (with a brighter cup) near the left or right side, a darker macula towards the centre,
    and a vessel tree: eight trunks (arteries and veins) leave the disc, the temporal ones
    arching around the macula, each a random walk of straight segments that tapers and
    branches (children take part of the parent's radius by Murray's law) until it is thinner
    than a third of a pixel (at 128 x 128) or leaves the FOV. Vessels are dark, anti-aliased
    capsules whose contrast falls with their width; the mask marks pixels whose centre lies
    within a vessel's radius (at least half a pixel, so thin vessels stay connected).

    What makes it hard: thin vessels are sub-pixel, faint and close to the noise and texture
    level; contrast and illumination vary across the image and between images; vessels cross
    the bright disc; and the mask counts thin vessels at full weight.

    Args:
        length: number of samples (>= 0).
        size: image height and width in pixels (>= 16); the tree is the same at every size.
        seed: dataset seed; sample ``i`` depends only on ``(seed, i, size)``.

    Shape:
        - image: (1, H, W) float32 in [0, 1], zero outside the FOV.
        - mask: (H, W) int64 in {0, 1}, vessels (only inside the FOV).
        - fov: (H, W) bool, the field of view.
        Batches (``get_batch``, ``batch``) add a leading batch dimension N.

    Example:
        >>> ds = RetinaVessels(100, size=256)
        >>> s = ds[0]; s["image"].shape, s["mask"].sum()
    """

    def __init__(self, length: int, size: int = 128, seed: int = 0) -> None:
        super().__init__(length, size, seed)

    def render(self, seeds: Sequence[int], noise: bool = True) -> Sample:
        """One sample per seed as a batch; ``noise=False`` leaves out the Gaussian noise (clean targets).

        The vessel trees of the whole batch grow together (their cost is per growth step, not
        per vessel); the pixel maps are then composed in cache-sized chunks of samples.
        """
        size, n = self.size, len(seeds)
        gens = f.generators(seeds)
        u = f.rand(gens, _N_UNIFORM).T  # (K, N)
        table = f.rand(gens, _SLOTS, _STEPS, _vessels.TABLE_FIELDS)
        low = f.randn(gens, 1, 24, 24)
        nz = f.randn(gens, size, size) if noise else None
        p = _layout(u)
        segments = _vessels.grow(_trunks(u, p), table, p["fov_r"], _STEP, _R_MIN)
        seg_r = segments[:, 5].float()
        contrast = f.lerp(u[43], 0.1, 0.22)[segments[:, 0].long()] * (seg_r / 0.02).clamp(max=1.2) ** 0.6
        coverage, vessels = _vessels.rasterise(segments, contrast, n, size)

        chunk = max(1, CHUNK_PIXELS // (size * size))
        images = []
        for i in range(0, n, chunk):
            sl = slice(i, i + chunk)
            images.append(self._compose({k: v[sl] for k, v in p.items()}, low[sl], coverage[sl],
                                        None if nz is None else nz[sl]))
        image = torch.cat(images) if len(images) > 1 else images[0]
        y, x = f.grid(size)
        fov = (x * x + y * y) < f.col(p["fov_r"] ** 2)  # (N, H, W)
        return {"image": image.unsqueeze(1), "mask": (vessels & fov).long(), "fov": fov}

    def _compose(self, p: dict[str, Tensor], low: Tensor, coverage: Tensor, nz: Tensor | None) -> Tensor:
        """Background, disc, macula, vessels and noise of a chunk of samples: (n, H, W)."""
        size = self.size
        px = 2.0 / size
        y, x = f.grid(size)
        texture = f.smooth(low, size)[:, 0]

        # Illumination (vignetting and a linear gradient) and choroidal texture.
        fov_r, u = p["fov_r"], p["u"].T
        rho2 = x * x + y * y  # (1, H, W)
        theta = 2 * math.pi * u[3]
        gradient = (f.col(torch.cos(theta)) * x + f.col(torch.sin(theta)) * y) * f.col(f.lerp(u[4], 0.0, 0.25))
        image = (1.0 - f.col(f.lerp(u[2], 0.25, 0.5) / fov_r**2) * rho2).mul_(gradient.add_(1.0))
        image.mul_(f.col(f.lerp(u[1], 0.3, 0.48)))
        image.addcmul_(texture, f.col(f.lerp(u[5], 0.008, 0.025)))

        # Optic disc (bright, with a brighter cup) on one side; the macula towards the centre.
        side, d_cx, d_cy, d_r = p["side"], p["d_cx"], p["d_cy"], p["d_r"]
        disc = f.ellipse_sdf(y, x, d_cy, d_cx, d_r * f.lerp(u[10], 1.0, 1.15), d_r, f.lerp(u[11], -0.2, 0.2))
        disc = disc.div_(f.col(-0.35 * d_r)).add_(0.5).clamp_(0.0, 1.0)  # a soft rim, 35% of the radius
        image.addcmul_(disc, f.col(f.lerp(u[12], 0.15, 0.35)))
        image.addcmul_(f.blob(y, x, d_cy, d_cx + side * d_r * 0.15, d_r * f.lerp(u[13], 0.25, 0.4)),
                       f.col(f.lerp(u[14], 0.05, 0.15)))
        m_cx, m_cy = d_cx - side * fov_r * f.lerp(u[15], 0.75, 0.88), d_cy + f.lerp(u[16], -0.05, 0.08)
        image.addcmul_(f.blob(y, x, m_cy, m_cx, f.lerp(u[17], 0.1, 0.18)), f.col(-f.lerp(u[18], 0.03, 0.1)))

        image.sub_(coverage)
        if nz is not None:
            image.addcmul_(nz, f.col(f.log_lerp(u[44], 0.004, 0.02)))
        image.mul_(f.inside(rho2 - f.col(fov_r**2), 2 * px)).mul_(rho2 < f.col(fov_r**2))
        return image.clamp_(0.0, 1.0)


def _layout(u: Tensor) -> dict[str, Tensor]:
    """Per-sample geometry shared by the trees and the pixel maps: FOV radius, disc side, centre, radius."""
    fov_r = f.lerp(u[0], 0.86, 0.95)
    side = torch.where(u[6] < 0.5, -1.0, 1.0)
    return {"u": u.T, "fov_r": fov_r, "side": side, "d_cx": side * fov_r * f.lerp(u[7], 0.45, 0.58),
            "d_cy": f.lerp(u[8], -0.1, 0.1), "d_r": f.lerp(u[9], 0.085, 0.12)}


def _trunks(u: Tensor, p: dict[str, Tensor]) -> Tensor:
    """Eight trunks per sample, 4 directions x (artery, vein), as (N, 8, 5) ``[x, y, heading, radius, curvature]``.

    Temporal trunks (towards the macula) arch around it; nasal ones run straighter.
    """
    n = u.shape[1]
    k = torch.arange(8)
    upper = torch.where(k % 4 < 2, -1.0, 1.0)  # superior (-y) or inferior (+y)
    temporal = k % 2 == 0
    vein = k >= 4
    uk = u[19:43].T.reshape(n, 8, 3)  # per trunk: direction, curvature, radius
    spread = torch.where(temporal, f.lerp(uk[..., 0], 0.25, 0.55), f.lerp(uk[..., 0], 0.3, 0.75))
    heading = torch.where(temporal, math.pi / 2 + spread, math.pi / 2 - spread) * upper  # temporal = -x
    curv = torch.where(temporal, f.lerp(uk[..., 1], 0.05, 0.085) * upper, f.lerp(uk[..., 1], -0.015, 0.015))
    radius = f.lerp(uk[..., 2], 0.016, 0.022) * torch.where(vein, 1.0, 0.75)
    mirror = (p["side"] < 0).view(-1, 1)  # disc on the left: temporal is +x
    heading = torch.where(mirror, math.pi - heading, heading)
    curv = torch.where(mirror, -curv, curv)
    d_r = p["d_r"].view(-1, 1)
    sx = p["d_cx"].view(-1, 1) + 0.3 * d_r * torch.cos(heading)
    sy = p["d_cy"].view(-1, 1) + 0.3 * d_r * torch.sin(heading)
    return torch.stack([sx, sy, heading, radius, curv], dim=2)

"""Frontal chest radiographs, normal or with pneumonia-like opacities."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from medimg.data.synthetic import _fields as f
from medimg.data.synthetic._base import Sample, SyntheticDataset, check_fraction

_N_UNIFORM = 48


def _lung_sdf(y: Tensor, x: Tensor, cy: Tensor, cx: Tensor, ry: Tensor, rx: Tensor) -> Tensor:
    """Approximate signed distance to a lung field: an ellipse narrowing towards its apex (N, H, W)."""
    rel = (y - f.col(cy)) / f.col(ry)  # (N, H, 1), -1 at the apex, 1 at the base
    r = rel.clamp(-1.0, 1.0)
    width = f.col(rx) * (0.8 + 0.25 * r - 0.1 * r * r)  # narrower at the apex, broad at the base
    q = ((x - f.col(cx)) / width).square_()
    q += rel.square()
    return q.sqrt_().sub_(1.0).mul_(f.col(torch.minimum(rx, ry)))


def _ramp(t: Tensor, lo: float | Tensor, hi: float | Tensor) -> Tensor:
    """0 below `lo`, 1 above `hi`, linear between (a cheap smooth step)."""
    return ((t - lo) / (hi - lo)).clamp_(0.0, 1.0)


class ChestXRay(SyntheticDataset):
    """Frontal (PA) chest radiographs; 3 of 4 (by default) show pneumonia.

    Each image has a torso of soft tissue, two dark lung fields narrowing to the apices, a
    bright heart shadow on the patient's left (image right, radiological convention) over the
    lower medial left lung, the mediastinum and spine, curved bright rib bands and clavicles,
    fine vascular markings in the lungs, smooth soft-tissue (breast) shadows, a random
    exposure (gain and gamma) and Gaussian noise. Pneumonia adds patchy opacities inside the
    lungs: a smoothed random field thresholded at a random level (from a few small patches
    to most of a lung), multifocal or confined to one zone of one lung (lobar), with soft
    edges and a random density.

    What makes it hard: the opacity's density is log-uniform down to a faint haze and its
    extent down to a few percent of the lung; normal images carry lung markings and soft
    tissue shadows of similar brightness; and exposure, body habitus, inspiration depth
    (lung size) and noise vary between images far more than an opacity shifts the image's
    mean or spread.

    Args:
        length: number of samples (>= 0).
        size: image height and width in pixels (>= 16).
        pneumonia_ratio: probability that a sample shows pneumonia, in [0, 1].
        seed: dataset seed; sample ``i`` depends only on ``(seed, i, size, pneumonia_ratio)``.

    Shape:
        - image: (1, H, W) float32 in [0, 1].
        - label: () int64, 1 pneumonia, 0 normal.
        Batches (``get_batch``, ``batch``) add a leading batch dimension N.

    Example:
        >>> ds = ChestXRay(1000, size=128)
        >>> x, y = ds[0]["image"], ds[0]["label"]
    """

    def __init__(self, length: int, size: int = 128, pneumonia_ratio: float = 0.75, seed: int = 0) -> None:
        super().__init__(length, size, seed)
        self.pneumonia_ratio = check_fraction("pneumonia_ratio", pneumonia_ratio)

    def extra_repr(self) -> str:
        return f"pneumonia_ratio={self.pneumonia_ratio}"

    def _render(self, seeds: Sequence[int], noise: bool = True) -> Sample:
        """One sample per seed as a batch; ``noise=False`` leaves out the Gaussian noise (clean targets)."""
        size = self.size
        px = 2.0 / size
        gens = f.generators(seeds)
        u = f.rand(gens, _N_UNIFORM).T  # (K, N)
        coarse = f.randn(gens, 1, 6, 6)
        fine = f.randn(gens, 2, 24, 24)
        coarse = F.interpolate(coarse, size=fine.shape[-2:], mode="bicubic", align_corners=False) * 1.15
        soft_field, opacity_field, markings = f.smooth(torch.cat([coarse, fine], dim=1), size).unbind(1)
        y, x = f.grid(size)

        # Torso of soft tissue; the shoulders' corners stay dark.
        mid = f.lerp(u[0], -0.05, 0.05)  # midline
        body = f.ellipse_sdf(y, x, f.lerp(u[1], 0.1, 0.25), mid, f.lerp(u[2], 1.15, 1.35), f.lerp(u[3], 0.88, 1.05),
                             f.lerp(u[4], -0.05, 0.05))
        i_soft = f.lerp(u[5], 0.42, 0.58)
        image = f.inside(body, 3 * px).mul_(f.col(i_soft - 0.06)).add_(0.06)
        image.addcmul_(soft_field, f.col(f.lerp(u[6], 0.01, 0.04)))

        # Lungs: the patient's right lung is on the image left; inspiration depth scales both.
        depth = f.lerp(u[7], 0.9, 1.1)
        l_cy = f.lerp(u[8], -0.12, 0.0)
        l_ry, l_rx = depth * f.lerp(u[9], 0.5, 0.6), f.lerp(u[10], 0.24, 0.3)
        gap = f.lerp(u[11], 0.06, 0.12)  # half-width of the mediastinum
        right = _lung_sdf(y, x, l_cy, mid - gap - l_rx, l_ry, l_rx)
        left_rx = l_rx * f.lerp(u[12], 0.9, 1.0)
        left = _lung_sdf(y, x, l_cy + f.lerp(u[13], 0.0, 0.05), mid + gap + left_rx, l_ry, left_rx)
        lungs = f.inside(torch.minimum(right, left), 2 * px)

        # Heart (soft tissue) hides the lower medial left lung; mediastinum and spine along the midline.
        h_r = f.lerp(u[16], 0.2, 0.28)
        heart = f.ellipse_sdf(y, x, l_cy + l_ry * f.lerp(u[17], 0.4, 0.6), mid + f.lerp(u[18], 0.08, 0.18),
                              h_r * f.lerp(u[19], 0.75, 0.9), h_r, f.lerp(u[20], -0.6, -0.2))
        lungs.mul_(f.inside(heart, 4 * px).mul_(-f.col(f.lerp(u[21], 0.75, 0.95))).add_(1.0))
        image.addcmul_(lungs, f.col(-f.lerp(u[14], 0.2, 0.32)))
        image.addcmul_(markings.mul_(lungs), f.col(f.lerp(u[15], 0.01, 0.035)))
        spine_w = f.lerp(u[22], 0.05, 0.08)
        spine = _ramp(f.col(spine_w) - (x - f.col(mid)).abs(), 0.0, 2 * px)  # (N, 1, W)
        vertebrae = 0.8 + 0.2 * torch.cos((y - f.col(u[23])) * (2 * math.pi / 0.11))  # (1 or N, H, 1)
        image.addcmul_(spine * vertebrae, f.col(f.lerp(u[24], 0.04, 0.09)))

        # Ribs: periodic arcs, highest a little lateral of the spine; clavicles across the top.
        ax = (x - f.col(mid)).abs()
        arc = f.col(f.lerp(u[25], 0.5, 1.0)) * (ax - 0.45).square()  # (N, 1, W)
        spacing = depth * f.lerp(u[26], 0.13, 0.17)
        phase = (y - arc) * f.col(2 * math.pi / spacing) + f.col(2 * math.pi * u[27])
        ribs = _ramp(torch.cos_(phase), f.col(f.lerp(u[28], 0.2, 0.45)), 1.0)
        window = _ramp(0.9 - ax, 0.0, 0.15) * _ramp(ax, 0.04, 0.14) * _ramp(y - f.col(l_cy - l_ry), -0.1, 0.05) \
            * _ramp(f.col(l_cy + l_ry + 0.05) - y, 0.0, 0.15)
        image.addcmul_(ribs, window * f.col(f.lerp(u[29], 0.04, 0.09)))
        clav_y = f.col(l_cy - l_ry + f.lerp(u[30], 0.0, 0.08)) + 0.25 * (ax - 0.15).abs()
        clavicle = _ramp(f.col(f.lerp(u[31], 0.025, 0.04)) - (y - clav_y).abs_(), 0.0, 2 * px)
        image.addcmul_(clavicle, _ramp(0.65 - ax, 0.0, 0.1) * f.col(f.lerp(u[32], 0.06, 0.12)))

        # Pneumonia: a thresholded random field inside the lungs, multifocal or one zone of one lung.
        label = (u[33] < self.pneumonia_ratio).long()
        level, soft = f.lerp(u[34], -0.4, 1.6), f.lerp(u[35], 0.3, 0.8)
        opacity = _ramp(opacity_field, f.col(level - soft), f.col(level + soft))
        lobar = u[36] < 0.45
        side = torch.where(u[37] < 0.5, -1.0, 1.0)
        one_lung = lobar | (u[38] < 0.3)
        side_w = torch.where(f.col(one_lung), _ramp((x - f.col(mid)) * f.col(side), -0.05, 0.05), 1.0)
        zone_c = l_cy + l_ry * f.lerp(u[39], -0.5, 0.6)
        zone_w = torch.where(f.col(lobar), _ramp(f.col(0.35 * l_ry) - (y - f.col(zone_c)).abs(), 0.0, 0.15), 1.0)
        density = f.log_lerp(u[40], 0.05, 0.3) * label.float()
        image.addcmul_(opacity.mul_(lungs).mul_(side_w).mul_(zone_w), f.col(density))

        # Exposure and detector noise.
        image.clamp_(0.0, 1.0).pow_(f.col(f.lerp(u[41], 0.8, 1.25))).mul_(f.col(f.lerp(u[42], 0.85, 1.1)))
        if noise:
            n = f.randn(gens, size, size)
            image = f.gaussian_noise(image, f.log_lerp(u[43], 0.008, 0.035), n)
        return {"image": image.clamp_(0.0, 1.0).unsqueeze(1), "label": label}

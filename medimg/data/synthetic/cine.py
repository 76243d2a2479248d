"""Cine sequences of a beating left ventricle (short axis), normal or with abnormal wall motion."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from medimg.data.synthetic import _fields as f
from medimg.data.synthetic._base import Sample, SyntheticDataset, check_fraction, check_size

_N_UNIFORM = 40


def _frame_col(p: Tensor) -> Tensor:
    """Per-sample values (N,) as (N, 1, 1, 1), to broadcast against (N, T, H, W)."""
    return p.view(-1, 1, 1, 1)


class CineSequences(SyntheticDataset):
    """Short-axis cine MRI-like sequences of a contracting left ventricle, with an EF value.

    Each frame shows a bright blood pool inside a dark myocardial ring, a bright right
    ventricle crescent beside it, textured background tissue, small respiratory drift and
    Rician noise. The endocardial radius follows one cardiac cycle over the frames (systole
    over 30-40% of it, end-diastole within 8% of a cycle of the first frame): at angle theta,
    ``R(theta, t) = R_ed(theta) * (1 - k(theta) * c(t))`` with ``c`` rising from 0 (ED) to 1
    (ES) and back; the myocardium keeps its area, so the wall thickens as it contracts.

    Motion: normal hearts contract with ``k`` in [0.2, 0.33] around the whole ring (with at
    most 30% regional variation). Abnormal hearts (label 1) have globally reduced contraction
    (``k`` in [0.07, 0.2]), a hypokinetic or akinetic wall segment (45-100% less contraction
    over a 60-120 degree arc), or both.

    The ejection fraction is an area proxy, computed from the drawn blood pool:
    ``(EDA - ESA) / EDA``, with EDA and ESA its largest and smallest area (sum of the
    anti-aliased pool coverage) over the frames.

    What makes it hard: the ranges of global contraction of normal and globally hypokinetic
    hearts touch, a regional defect reduces the EF only a little, ED may fall between frames,
    and heart size, shape, wall thickness, intensities and noise vary between sequences.

    Args:
        length: number of sequences (>= 0).
        frames: frames per sequence, one cardiac cycle (>= 2).
        size: frame height and width in pixels (>= 16).
        seed: dataset seed; sequence ``i`` depends only on ``(seed, i, frames, size, abnormal_fraction)``.
        abnormal_fraction: probability that a sequence has abnormal motion, in [0, 1] (keyword only).

    Shape:
        - frames: (T, 1, H, W) float32 in [0, 1].
        - label: () int64, 1 abnormal motion, 0 normal.
        - ef: () float32 in (0, 1).
        Batches (``get_batch``, ``batch``) add a leading batch dimension N.

    Example:
        >>> ds = CineSequences(200, frames=16, size=64)
        >>> s = ds[0]; s["frames"].shape, s["label"], s["ef"]
    """

    def __init__(self, length: int, frames: int = 16, size: int = 64, seed: int = 0, *,
                 abnormal_fraction: float = 0.5) -> None:
        super().__init__(length, size, seed)
        self.frames = check_size(frames, "frames", 2)
        self.abnormal_fraction = check_fraction("abnormal_fraction", abnormal_fraction)

    def extra_repr(self) -> str:
        return f"frames={self.frames}, abnormal_fraction={self.abnormal_fraction}"

    def _pixels_per_sample(self) -> int:
        return self.frames * self.size * self.size

    def _render(self, seeds: Sequence[int]) -> Sample:
        size, n, frames = self.size, len(seeds), self.frames
        px = 2.0 / size
        gens = f.generators(seeds)
        u = f.rand(gens, _N_UNIFORM).T  # (K, N)
        texture = f.smooth(f.randn(gens, 1, 12, 12), size)  # (N, 1, H, W)
        y, x = f.grid(size)

        # Cardiac cycle: c(t) rises 0 -> 1 over systole, falls back over diastole.
        s = (torch.arange(frames, dtype=torch.float32) / frames + f.lerp(u[0], -0.08, 0.08).view(-1, 1)) % 1.0
        ts = f.lerp(u[1], 0.3, 0.4).view(-1, 1)
        cycle = torch.where(s < ts, torch.sin(0.5 * math.pi * s / ts) ** 2,
                            torch.cos(0.5 * math.pi * (s - ts) / (1 - ts)) ** 2)  # (N, T)
        drift = f.lerp(u[2], 0.0, 0.025).view(-1, 1) * torch.sin(2 * math.pi * (s + u[3].view(-1, 1)))

        # Polar coordinates about the LV centre, in the ventricle's own (slightly oval) frame.
        cx, cy = f.lerp(u[4], -0.12, 0.12), f.lerp(u[5], -0.12, 0.12)
        psi, oval = math.pi * u[6], f.lerp(u[7], 0.82, 1.0)
        du, dv = x - f.col(cx), y - f.col(cy)
        a = du * f.col(torch.cos(psi)) + dv * f.col(torch.sin(psi))
        b = (dv * f.col(torch.cos(psi)) - du * f.col(torch.sin(psi))) / f.col(oval)
        rho = torch.hypot(a, b)  # (N, H, W)
        c_t, s_t = a / rho.clamp_min(1e-6), b / rho.clamp_min(1e-6)  # cos and sin of the polar angle

        # ED shape (low harmonics), wall thickness, and contraction k(theta) per pixel angle.
        r0 = f.lerp(u[8], 0.26, 0.38)
        h2, p2, h3, p3 = f.lerp(u[9], 0.0, 0.06), 2 * math.pi * u[10], f.lerp(u[11], 0.0, 0.04), 2 * math.pi * u[12]
        cos2, sin2 = c_t * c_t - s_t * s_t, 2 * c_t * s_t
        cos3, sin3 = c_t * (4 * c_t * c_t - 3), s_t * (3 - 4 * s_t * s_t)
        r_ed = f.col(r0) * (1 + f.col(h2) * (cos2 * f.col(torch.cos(p2)) + sin2 * f.col(torch.sin(p2)))
                            + f.col(h3) * (cos3 * f.col(torch.cos(p3)) + sin3 * f.col(torch.sin(p3))))
        wall = f.col(f.lerp(u[13], 0.08, 0.13))
        label = (u[14] < self.abnormal_fraction).long()
        mode = (u[15] * 3).long()  # abnormal: 0 global, 1 regional, 2 both
        global_low = (label == 1) & (mode != 1)
        k0 = torch.where(global_low, f.lerp(u[16], 0.07, 0.2), f.lerp(u[16], 0.2, 0.33))
        regional = (label == 1) & (mode != 0)
        depth = torch.where(regional, f.lerp(u[17], 0.45, 1.0), f.lerp(u[17], 0.0, 0.3))
        width = torch.where(regional, f.lerp(u[18], math.pi / 3, 2 * math.pi / 3), f.lerp(u[18], 1.0, 2.5))
        kappa = 1.0 / (1.0 - torch.cos(0.5 * width))  # bump falls to exp(-1) at half the arc width
        th = 2 * math.pi * u[19]
        bump = torch.exp(f.col(kappa) * (c_t * f.col(torch.cos(th)) + s_t * f.col(torch.sin(th)) - 1.0))
        k = f.col(k0) * (1.0 - f.col(depth) * bump)

        # Per frame: endocardium, epicardium (constant myocardial area), right ventricle.
        shift = drift.view(n, frames, 1, 1)  # respiratory drift: a small vertical translation per frame
        rho_t = torch.hypot(a.unsqueeze(1) - shift * _frame_col(torch.sin(psi)),
                            b.unsqueeze(1) - shift * _frame_col(torch.cos(psi) / oval))
        endo = r_ed.unsqueeze(1) * (1.0 - k.unsqueeze(1) * cycle.view(n, frames, 1, 1))  # (N, T, H, W)
        epi = (endo.square() + ((r_ed + wall) ** 2 - r_ed**2).unsqueeze(1)).sqrt_()
        edge = px
        blood = f.inside(rho_t - endo, edge)
        myo_outer = f.inside(rho_t - epi, edge)
        rv_angle = psi + math.pi + f.lerp(u[20], -0.5, 0.5)
        rv_dist = r0 + f.lerp(u[21], 0.0, 0.1)
        rv_r = f.lerp(u[22], 0.24, 0.34)
        rv_x = f.col(cx + rv_dist * torch.cos(rv_angle))
        rv_y = f.col(cy + rv_dist * torch.sin(rv_angle))
        rv_rho = torch.hypot(((x - rv_x) / 1.4).unsqueeze(1), (y - rv_y).unsqueeze(1) - shift)  # behind the LV
        rv_r_t = _frame_col(rv_r) * (1.0 - _frame_col(f.lerp(u[23], 0.1, 0.25)) * cycle.view(n, frames, 1, 1))
        rv = f.inside(rv_rho - rv_r_t, edge)

        i_bg, i_blood, i_myo = f.lerp(u[24], 0.25, 0.4), f.lerp(u[25], 0.6, 0.85), f.lerp(u[26], 0.06, 0.18)
        image = (_frame_col(i_bg) + _frame_col(f.lerp(u[27], 0.02, 0.06)) * texture).expand(n, frames, size, size)
        image = torch.lerp(image, _frame_col(i_blood).expand_as(image), rv)
        image = torch.lerp(image, _frame_col(i_myo).expand_as(image), myo_outer)
        image = torch.lerp(image, _frame_col(i_blood).expand_as(image), blood)
        sigma = f.log_lerp(u[28], 0.015, 0.06)
        noise = f.randn(gens, frames, size, size)
        image = f.rician_noise(image, sigma, noise, f.shifted(noise)).clamp_(0.0, 1.0)

        area = blood.sum(dim=(2, 3))  # (N, T), in pixels
        eda, esa = area.amax(dim=1), area.amin(dim=1)
        ef = ((eda - esa) / eda.clamp_min(1e-6)).float()
        return {"frames": image.unsqueeze(2), "label": label, "ef": ef}

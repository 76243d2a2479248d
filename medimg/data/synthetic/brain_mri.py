"""Axial brain MRI slices with and without a tumour, with its mask and bounding box."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from medimg.data.boxes import masks_to_boxes
from medimg.data.synthetic import _fields as f
from medimg.data.synthetic._base import Sample, SyntheticDataset, check_fraction

_N_UNIFORM = 40


class BrainMRI(SyntheticDataset):
    """T1-like axial brain slices; half of them (by default) hold a tumour.

    Each slice has a scalp (bright ring), skull (dark ring), a thin dark CSF rim, brain tissue
    with a grey/white-matter pattern and fine texture (smooth random fields), two darker
    lateral ventricles, a multiplicative bias field and Rician noise. A tumour is an irregular
    blob (an ellipse whose boundary is displaced by a smoothed random field) somewhere inside
    the brain, with a radius of 2-11% of the image width, sometimes with a faint oedema
    around it. Its mask holds the pixels whose centre lies inside both the tumour and the
    brain; a tumour smaller than a pixel (at small sizes) marks the pixel nearest its centre,
    so a mask is empty exactly when the label is 0. The scene (label, anatomy, tumour) is
    the same at every size; only the pixel grid and the noise realisation change.

    What makes it hard: the tumour's contrast to the tissue around it is drawn per sample,
    log-uniform from clearly brighter (+0.32) to only slightly brighter or darker (0.03, below
    the texture and noise amplitude); its radius is log-uniform, so many tumours are small;
    it may overlap the ventricles; and the global appearance (tissue brightness, head size
    and shape, bias field, noise level) varies more between slices than a tumour changes the
    image mean or spread, so image-level intensity statistics barely separate the classes.

    Args:
        length: number of samples (>= 0).
        size: image height and width in pixels (>= 16).
        tumour_fraction: probability that a sample holds a tumour, in [0, 1].
        seed: dataset seed; sample ``i`` depends only on ``(seed, i, size, tumour_fraction)``.

    Shape:
        - image: (1, H, W) float32 in [0, 1].
        - label: () int64, 1 with a tumour, 0 without.
        - mask: (H, W) int64 in {0, 1}, the tumour's pixels (all zero when label is 0).
        - box: (4,) float32 ``[x0, y0, x1, y1]`` in pixels, inclusive-exclusive bounds of the
          mask (``mask[y0:y1, x0:x1]`` holds all of it); ``[0, 0, 0, 0]`` when label is 0.
        Batches (``get_batch``, ``batch``) add a leading batch dimension N to each.

    Example:
        >>> ds = BrainMRI(1000, size=128, seed=0)
        >>> sample = ds[3]                       # dict: image, label, mask, box
        >>> batch = ds.batch(32, generator=7)    # the same dict with batch dimension 32
    """

    def __init__(self, length: int, size: int = 128, tumour_fraction: float = 0.5, seed: int = 0) -> None:
        super().__init__(length, size, seed)
        self.tumour_fraction = check_fraction("tumour_fraction", tumour_fraction)

    def extra_repr(self) -> str:
        return f"tumour_fraction={self.tumour_fraction}"

    def _render(self, seeds: Sequence[int], noise: bool = True) -> Sample:
        """One sample per seed as a batch; ``noise=False`` leaves out the Rician noise (clean targets)."""
        size = self.size
        px = 2.0 / size
        gens = f.generators(seeds)
        u = f.rand(gens, _N_UNIFORM).T  # (K, N): u[k] is one parameter
        coarse = f.randn(gens, 1, 12, 12)
        fine = f.randn(gens, 2, 32, 32)
        y, x = f.grid(size)

        # Head: scalp, skull, CSF rim and brain as nested ellipses sharing centre and angle.
        cx, cy = f.lerp(u[0], -0.05, 0.05), f.lerp(u[1], -0.05, 0.05)
        ry = f.lerp(u[2], 0.80, 0.92)
        rx = ry * f.lerp(u[3], 0.76, 0.88)
        angle = f.lerp(u[4], -0.15, 0.15)
        scalp_t, skull_t, csf_t = f.lerp(u[5], 0.035, 0.07), f.lerp(u[6], 0.03, 0.05), f.lerp(u[7], 0.01, 0.025)
        brain_t = scalp_t + skull_t + csf_t
        head_d = f.ellipse_sdf(y, x, cy, cx, ry, rx, angle)
        edge = px
        brain = f.inside(head_d, edge, brain_t)
        i_scalp, i_skull = f.lerp(u[8], 0.55, 0.85), f.lerp(u[9], 0.04, 0.14)
        i_csf, i_tissue = f.lerp(u[10], 0.08, 0.2), f.lerp(u[11], 0.36, 0.54)
        image = f.inside(head_d, edge).mul_(f.col(i_scalp))
        image.addcmul_(f.inside(head_d, edge, scalp_t), f.col(i_skull - i_scalp))
        image.addcmul_(f.inside(head_d, edge, scalp_t + skull_t), f.col(i_csf - i_skull))

        # Grey/white matter: a thresholded coarse field; texture: a fine field; one upsampling for all three.
        coarse = F.interpolate(coarse, size=fine.shape[-2:], mode="bicubic", align_corners=False) * 1.15
        wm, fine_tex, tumour_field = f.smooth(torch.cat([coarse, fine], dim=1), size).unbind(1)
        tissue = torch.sigmoid(wm.mul_(3.0)).mul_(f.col(f.lerp(u[12], 0.04, 0.14))).add_(f.col(i_tissue))
        tissue.addcmul_(fine_tex, f.col(f.lerp(u[14], 0.01, 0.035)))

        # Lateral ventricles: two splayed ellipses near the centre of the brain.
        bry, brx = ry - brain_t, rx - brain_t
        v_ry, v_rx = bry * f.lerp(u[15], 0.12, 0.26), brx * f.lerp(u[16], 0.05, 0.12)
        v_sep, v_tilt = brx * f.lerp(u[17], 0.06, 0.14), f.lerp(u[18], 0.1, 0.4)
        vc_y = cy + bry * f.lerp(u[19], -0.15, 0.05)
        ca, sa = torch.cos(angle), torch.sin(angle)
        ventricles = torch.minimum(
            f.ellipse_sdf(y, x, vc_y - v_sep * sa, cx - v_sep * ca, v_ry, v_rx, angle + v_tilt),
            f.ellipse_sdf(y, x, vc_y + v_sep * sa, cx + v_sep * ca, v_ry, v_rx, angle - v_tilt))
        tissue.lerp_(f.col(i_csf).expand_as(tissue), f.inside(ventricles, edge))

        # Tumour: an ellipse displaced by a bounded random field, centred well inside the brain.
        label = (u[20] < self.tumour_fraction).long()
        rho, phi = 0.62 * u[21].sqrt(), 2 * math.pi * u[22]
        lx, ly = rho * brx * torch.cos(phi), rho * bry * torch.sin(phi)
        t_cx, t_cy = cx + lx * ca - ly * sa, cy + lx * sa + ly * ca
        t_r = f.log_lerp(u[23], 0.04, 0.22)
        t_aspect, t_angle = f.lerp(u[24], 1.0, 1.5), math.pi * u[25]
        tumour_d = f.ellipse_sdf(y, x, t_cy, t_cx, t_r, t_r * t_aspect, t_angle)
        tumour_d.addcmul_(tumour_field.clamp_(-1.0, 1.0), f.col(f.lerp(u[26], 0.15, 0.4) * t_r))
        present = f.col(label.float())
        contrast = torch.where(u[27] < 0.6, 1.0, -1.0) * f.log_lerp(u[28], 0.03, 0.32)
        tumour = f.inside(tumour_d, edge).mul_(present * f.col(contrast))
        oedema = f.inside(tumour_d, 3 * edge, -t_r * f.lerp(u[29], 0.2, 0.8))
        tissue.addcmul_(oedema, present * f.col(-f.lerp(u[30], 0.0, 0.06)))
        tissue.addcmul_(tumour, fine_tex.mul_(0.1).add_(0.9))
        mask = (tumour_d < 0).logical_and_(head_d < f.col(-brain_t)).logical_and_(present > 0)
        # A tumour smaller than a pixel may cover no pixel centre: mark the pixel nearest its centre.
        missed = ((label == 1) & ~mask.flatten(1).any(1)).nonzero().squeeze(1)
        row = ((t_cy[missed] + 1.0) / px).long().clamp_(0, size - 1)
        col = ((t_cx[missed] + 1.0) / px).long().clamp_(0, size - 1)
        mask[missed, row, col] = True
        mask = mask.long()

        image.addcmul_(brain, tissue.sub_(f.col(i_csf)))
        coeffs = torch.stack([f.lerp(u[k], -1.0, 1.0) for k in range(31, 36)], dim=1)
        image.mul_(f.bias_field(y, x, coeffs, f.lerp(u[36], 0.05, 0.35))).mul_(f.col(f.lerp(u[37], 0.9, 1.1)))
        if noise:
            sigma = f.log_lerp(u[38], 0.01, 0.06)
            n = f.randn(gens, size, size)
            image = f.rician_noise(image, sigma, n, f.shifted(n))
        image = image.clamp_(0.0, 1.0).unsqueeze(1)
        return {"image": image, "label": label, "mask": mask, "box": masks_to_boxes(mask)}

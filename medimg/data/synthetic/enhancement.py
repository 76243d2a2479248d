"""Clean/degraded image pairs for denoising, super-resolution and contrast enhancement."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from medimg.data.synthetic import _fields as f
from medimg.data.synthetic._base import Sample, SyntheticDataset, check_choice
from medimg.data.synthetic.brain_mri import BrainMRI
from medimg.data.synthetic.chest_xray import ChestXRay
from medimg.data.synthetic.retina import RetinaVessels

SOURCES = {"brain": BrainMRI, "chest": ChestXRay, "retina": RetinaVessels}
KINDS = ("noise", "rician", "blur_down2", "low_contrast")
DEGRADATIONS = (*KINDS, "mixed")
BLUR_SIGMA = 1.0  # pixels, before x2 downsampling
_DEGRADATION_STREAM = 0x5EED  # the degradation's generator is seeded apart from the source image's


def _blur_down2(clean: Tensor) -> Tensor:
    """Gaussian blur, area downsampling by 2 (ceil for odd sizes), bilinear upsampling back."""
    h, w = clean.shape[-2:]
    low = F.interpolate(f.gaussian_blur(clean, BLUR_SIGMA), size=(math.ceil(h / 2), math.ceil(w / 2)), mode="area")
    return F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)


class EnhancementPairs(SyntheticDataset):
    """Pairs of a clean image and a degraded copy, for image restoration models.

    The clean image is a noise-free sample of ``BrainMRI``, ``ChestXRay`` or ``RetinaVessels``
    (with those classes' default settings); the degradation, with parameters drawn per sample:

    - ``"noise"``: additive Gaussian noise, standard deviation log-uniform in [0.02, 0.15].
    - ``"rician"``: magnitude of the image plus complex Gaussian noise of the same range (the
      noise of magnitude MR images: a positive bias where the signal is low).
    - ``"blur_down2"``: Gaussian blur (sigma 1 pixel), x2 area downsampling, then **bilinear**
      upsampling back to ``size`` (align_corners=False), so both images have the same shape.
    - ``"low_contrast"``: contrast about the image's mean scaled by a factor in [0.2, 0.5],
      plus a brightness shift in [-0.1, 0.1].
    - ``"mixed"``: one of the four above per sample, uniformly.

    Args:
        length: number of pairs (>= 0).
        size: image height and width in pixels (>= 16).
        degradation: one of ``"noise"``, ``"rician"``, ``"blur_down2"``, ``"low_contrast"``, ``"mixed"``.
        source: ``"brain"``, ``"chest"`` or ``"retina"``.
        seed: dataset seed; pair ``i`` depends only on ``(seed, i, size, degradation, source)``,
            and its clean image is the noise-free version of sample ``i`` of the source dataset
            with the same seed.

    Shape:
        - clean: (1, H, W) float32 in [0, 1].
        - degraded: (1, H, W) float32 in [0, 1].
        Batches (``get_batch``, ``batch``) add a leading batch dimension N.

    Example:
        >>> ds = EnhancementPairs(500, size=128, degradation="rician", source="brain")
        >>> pair = ds[0]; pair["clean"].shape, pair["degraded"].shape
    """

    def __init__(self, length: int, size: int = 128, degradation: str = "noise", source: str = "brain",
                 seed: int = 0) -> None:
        super().__init__(length, size, seed)
        self.degradation = check_choice("degradation", degradation, DEGRADATIONS)
        self.source = check_choice("source", source, tuple(SOURCES))
        self._source = SOURCES[source](length, size=size, seed=seed)

    def extra_repr(self) -> str:
        return f"degradation={self.degradation!r}, source={self.source!r}"

    def _pixels_per_sample(self) -> int:
        return 1  # one chunk: the source renders in its own chunks, the degradations are few passes

    def _render(self, seeds: Sequence[int]) -> Sample:
        clean = self._source.render(seeds, noise=False)["image"]
        gens = f.generators([f.sample_seed(s, _DEGRADATION_STREAM) for s in seeds])
        u = f.rand(gens, 3)  # (N, 3): kind, strength, shift
        if self.degradation == "mixed":
            kind = (u[:, 0] * len(KINDS)).long().clamp_(max=len(KINDS) - 1)
        else:
            kind = torch.full((len(seeds),), KINDS.index(self.degradation))
        degraded = torch.empty_like(clean)
        shape = clean.shape[1:]
        for k, name in enumerate(KINDS):
            idx = (kind == k).nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            x, uu = clean[idx], u[idx]
            if name in ("noise", "rician"):
                sigma = f.log_lerp(uu[:, 1], 0.02, 0.15)
                fields = 2 if name == "rician" else 1
                n = f.randn([gens[i] for i in idx.tolist()], fields, *shape[1:])
                out = f.gaussian_noise(x, sigma, n) if name == "noise" else f.rician_noise(x, sigma, n[:, :1], n[:, 1:])
            elif name == "blur_down2":
                out = _blur_down2(x)
            else:
                mean = x.mean(dim=(1, 2, 3), keepdim=True)
                factor = f.lerp(uu[:, 1], 0.2, 0.5).view(-1, 1, 1, 1)
                out = (x - mean) * factor + mean + f.lerp(uu[:, 2], -0.1, 0.1).view(-1, 1, 1, 1)
            degraded[idx] = out.clamp_(0.0, 1.0)
        return {"clean": clean, "degraded": degraded}

"""``medimg bench intensity``: the intensity transforms on a batch of 32 x 1x256x256 float32 images
(every sample transformed), medimg against the same formula in plain torch ops and, where they
import, MONAI (per sample, as its dictionary transforms run) and kornia (batched). Percentile
normalisation (1st and 99th), Gaussian noise (std 0.05) and a gamma curve (0.7-1.5). On CUDA
also noise and gamma on 512 x 1x512x512 (where bytes, not launches, set the time), and medimg
with ``check_finite=False`` beside the default (its finiteness check waits for the stream)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from medimg.bench.peers import import_peer
from medimg.bench.suite import Implementations, reports_by_device
from medimg.bench.timing import copy_bandwidth
from medimg.transforms import Normalize01, RandomGamma, RandomGaussianNoise

MEDIMG = "medimg"
PERCENTILES, NOISE_STD, GAMMA = (1.0, 99.0), 0.05, (0.7, 1.5)
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Case:
    name: str
    transform: str  # "percentiles", "noise" or "gamma"
    shape: tuple[int, ...] = (32, 1, 256, 256)
    device: str = "cpu"

    def batch(self) -> Tensor:
        return torch.rand(self.shape, generator=torch.Generator().manual_seed(0)).to(self.device)


CASES = (Case("Normalize01(percentiles=(1, 99)) 32x1x256x256 f32", "percentiles"),
         Case("RandomGaussianNoise(std=0.05, p=1) 32x1x256x256 f32", "noise"),
         Case("RandomGamma(gamma=(0.7, 1.5), p=1) 32x1x256x256 f32", "gamma"))
# On CUDA the issue's batch is host-bound; 512 x 1x512^2 (512 MiB) shows the kernels' bandwidth.
# (torch.quantile refuses more than 2^24 elements, so percentiles stay at the small batch.)
CUDA_CASES = (*(Case(f"cuda {case.name}", case.transform, case.shape, "cuda") for case in CASES),
              Case("cuda RandomGaussianNoise(std=0.05, p=1) 512x1x512x512 f32", "noise", (512, 1, 512, 512), "cuda"),
              Case("cuda RandomGamma(gamma=(0.7, 1.5), p=1) 512x1x512x512 f32", "gamma", (512, 1, 512, 512), "cuda"))


def _torch_reference(case: Case, image: Tensor, generator: torch.Generator) -> Callable[[], object]:
    """The transform's formula in plain torch ops (torch.quantile, torch.randn, pow)."""
    n = image.shape[0]
    flat = image.flatten(1)
    if case.transform == "percentiles":
        levels = torch.tensor([p / 100 for p in PERCENTILES], device=image.device)

        def percentiles() -> Tensor:
            lo, hi = torch.quantile(flat, levels, dim=1).view(2, n, 1, 1, 1)
            return ((image - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)

        return percentiles
    if case.transform == "noise":
        return lambda: image + NOISE_STD * torch.randn(image.shape, device=image.device, generator=generator)

    def gamma() -> Tensor:
        g = torch.empty(n, 1, 1, 1, device=image.device).uniform_(*GAMMA, generator=generator)
        lo, hi = flat.amin(1).view(n, 1, 1, 1), flat.amax(1).view(n, 1, 1, 1)
        extent = (hi - lo).clamp_min(1e-8)
        return ((image - lo) / extent).clamp(0, 1).pow(g) * extent + lo

    return gamma


def _medimg(case: Case, image: Tensor, generator: torch.Generator, check_finite: bool) -> Callable[[], object]:
    transform = {"percentiles": lambda: Normalize01(percentiles=PERCENTILES, check_finite=check_finite),
                 "noise": lambda: RandomGaussianNoise(std=(NOISE_STD, NOISE_STD), p=1.0),
                 "gamma": lambda: RandomGamma(gamma=GAMMA, p=1.0, check_finite=check_finite)}[case.transform]()
    return lambda: transform(image, generator=generator)


def _monai(case: Case, image: Tensor) -> Callable[[], object] | None:
    if (mt := import_peer("monai.transforms")) is None:
        return None
    transform = {"percentiles": lambda: mt.ScaleIntensityRangePercentiles(*PERCENTILES, b_min=0.0, b_max=1.0,
                                                                          clip=True),
                 "noise": lambda: mt.RandGaussianNoise(prob=1.0, std=NOISE_STD),
                 "gamma": lambda: mt.RandAdjustContrast(prob=1.0, gamma=GAMMA)}[case.transform]()
    samples = list(image)
    return lambda: [transform(s) for s in samples]


def _kornia(case: Case, image: Tensor) -> Callable[[], object] | None:
    if case.transform == "percentiles" or (aug := import_peer("kornia.augmentation")) is None:
        return None  # kornia has no percentile normalisation
    transform = aug.RandomGaussianNoise(std=NOISE_STD, p=1.0) if case.transform == "noise" else \
        aug.RandomGamma(gamma=GAMMA, p=1.0)
    return lambda: transform(image)


def implementations(case: Case) -> Implementations:
    """Name -> (callable, bytes read per call) for one case."""
    image = case.batch()
    generator = torch.Generator(image.device).manual_seed(1)
    impls: Implementations = {
        MEDIMG: (_medimg(case, image, generator, check_finite=True), image.nbytes),
        "torch ops (same formula)": (_torch_reference(case, image, generator), image.nbytes),
    }
    if case.device != "cpu" and case.transform != "noise":  # the finiteness check waits for the stream
        impls["medimg, check_finite=False"] = (_medimg(case, image, generator, check_finite=False), image.nbytes)
    for name, fn in (("MONAI, per sample", _monai(case, image)), ("kornia", _kornia(case, image))):
        if fn is not None:
            impls[name] = (fn, None)
    return impls


def run(min_run_time: float = 0.5, devices: tuple[str, ...] = ("cpu",)) -> str:
    """Run every case on each of `devices` ("cpu", "cuda") and return the report."""
    return reports_by_device(devices, "intensity transforms",
                             "; % copy bw = bytes of the image / time / copy bandwidth",
                             lambda device: CASES if device == "cpu" else CUDA_CASES, implementations, MEDIMG,
                             min_run_time, copy_bandwidth, items=lambda case: case.shape[0])

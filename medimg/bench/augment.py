"""``medimg bench augment``: affine augmentation of images and masks, 2D and 3D.

Cases: batch 32 of 1x256x256 float32 images with int64 (and uint8) masks, rotation
+-15 degrees, zoom 0.9-1.1, horizontal flip p=0.5; volumes 2 x 1x128^3. Each implementation
warps the same batch (peers with their own random parameters of the same ranges);
ratios are medimg's speed-up, and for the bare warp the fraction of copy bandwidth.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medimg.bench.report import format_rows
from medimg.bench.suite import Implementations, measure_cases
from medimg.bench.timing import copy_bandwidth
from medimg.ops import affine_grid_sample
from medimg.transforms import RandomAffine

MEDIMG = "medimg RandomAffine"
DEGREES, SCALE, HFLIP_P = 15.0, (0.9, 1.1), 0.5


@dataclass(frozen=True)
class Case:
    name: str
    shape: tuple[int, ...]
    mask_dtype: torch.dtype | None

    def batch(self) -> tuple[Tensor, Tensor | None]:
        g = torch.Generator().manual_seed(0)
        image = torch.rand(self.shape, generator=g)
        if self.mask_dtype is None:
            return image, None
        mask = torch.randint(0, 4, (self.shape[0], *self.shape[2:]), generator=g).to(self.mask_dtype)
        return image, mask


CASES = (
    Case("2D 32x1x256x256 f32 image + int64 mask", (32, 1, 256, 256), torch.int64),
    Case("2D 32x1x256x256 f32 image + uint8 mask", (32, 1, 256, 256), torch.uint8),
    Case("2D 32x1x256x256 f32 image only", (32, 1, 256, 256), None),
    Case("3D 2x1x128^3 f32 volume", (2, 1, 128, 128, 128), None),
)


def reference_warp(image: Tensor, mask: Tensor | None, theta: Tensor) -> tuple[Tensor, Tensor | None]:
    """F.affine_grid + F.grid_sample: bilinear image, nearest mask (through float and back)."""
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    warped = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if mask is None:
        return warped, None
    m = F.grid_sample(mask.unsqueeze(1).float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return warped, m.squeeze(1).to(mask.dtype)


def _opencv(image: Tensor, mask: Tensor | None) -> Callable[[], object] | None:
    try:
        cv2 = importlib.import_module("cv2")
    except ImportError:
        return None
    cv2.setNumThreads(torch.get_num_threads())
    images = image[:, 0].numpy()
    masks = None if mask is None else mask.to(torch.uint8).numpy()  # warpAffine has no int64
    rng = np.random.default_rng(0)
    h, w = images.shape[1:]

    def run() -> None:
        for i in range(images.shape[0]):
            matrix = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-DEGREES, DEGREES), rng.uniform(*SCALE))
            if rng.random() < HFLIP_P:
                matrix[0, :2] *= -1
                matrix[0, 2] = w - 1 - matrix[0, 2]
            cv2.warpAffine(images[i], matrix, (w, h), flags=cv2.INTER_LINEAR)
            if masks is not None:
                cv2.warpAffine(masks[i], matrix, (w, h), flags=cv2.INTER_NEAREST)

    return run


def _kornia(image: Tensor, mask: Tensor | None) -> Callable[[], object] | None:
    try:
        aug = importlib.import_module("kornia.augmentation")
    except ImportError:
        return None
    keys = ["input"] if mask is None else ["input", "mask"]
    pipeline = aug.AugmentationSequential(
        aug.RandomAffine(degrees=DEGREES, scale=SCALE, p=1.0),
        aug.RandomHorizontalFlip(p=HFLIP_P),
        data_keys=keys,
    )
    inputs = [image] if mask is None else [image, mask.unsqueeze(1).float()]
    return lambda: pipeline(*inputs)


def _monai(image: Tensor, mask: Tensor | None) -> Callable[[], object] | None:
    try:
        mt = importlib.import_module("monai.transforms")
    except ImportError:
        return None
    keys = ["image"] if mask is None else ["image", "mask"]
    modes = ["bilinear"] if mask is None else ["bilinear", "nearest"]
    spatial = image.dim() - 2
    transform = mt.Compose([
        mt.RandAffined(keys=keys, prob=1.0, rotate_range=[math.radians(DEGREES)] * (1 if spatial == 2 else 3),
                       scale_range=[SCALE[1] - 1.0] * spatial, mode=modes, padding_mode="zeros"),
        mt.RandFlipd(keys=keys, prob=HFLIP_P, spatial_axis=spatial - 1),
    ])
    samples = [{"image": image[i]} if mask is None else {"image": image[i], "mask": mask[i : i + 1]}
               for i in range(image.shape[0])]
    return lambda: [transform(s) for s in samples]


def implementations(case: Case) -> Implementations:
    """Name -> (callable, bytes read and written per call, for bandwidth) for one case."""
    image, mask = case.batch()
    spatial_dims = image.dim() - 2
    transform = RandomAffine(degrees=DEGREES, scale=SCALE, hflip_p=HFLIP_P)
    theta = transform.sample_theta(image.shape[0], tuple(image.shape[2:]), image.device,
                                   torch.Generator().manual_seed(1)).float()
    nbytes = image.nbytes + (0 if mask is None else mask.nbytes)
    generator = torch.Generator().manual_seed(2)
    impls: Implementations = {
        MEDIMG: (lambda: transform(image, mask, generator=generator), nbytes),
        "medimg.ops.affine_grid_sample (fixed theta)": (
            lambda: (affine_grid_sample(image, theta),
                     None if mask is None else affine_grid_sample(mask.unsqueeze(1), theta, mode="nearest")),
            nbytes),
        "F.affine_grid + F.grid_sample": (lambda: reference_warp(image, mask, theta), nbytes),
    }
    peers = {"OpenCV warpAffine loop (uint8 mask)": _opencv(image, mask) if spatial_dims == 2 else None,
             "kornia AugmentationSequential": _kornia(image, mask) if spatial_dims == 2 else None,
             "MONAI RandAffined+RandFlipd loop": _monai(image, mask)}
    for name, fn in peers.items():
        if fn is not None:
            impls[name] = (fn, None)
    return impls


def run(min_run_time: float = 0.5) -> str:
    """Run every case and return the report."""
    bandwidth = copy_bandwidth(min_run_time=min_run_time)
    rows = measure_cases(CASES, implementations, min_run_time, items=lambda case: case.shape[0])
    header = (f"affine augmentation on the CPU, {torch.get_num_threads()} threads; copy bandwidth "
              f"{bandwidth / 1e9:.1f} GB/s; % copy bw = (bytes of image + mask) / time / copy bandwidth")
    return header + format_rows(rows, MEDIMG, bandwidth)

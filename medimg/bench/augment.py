"""``medimg bench augment``: affine augmentation of images and masks, 2D and 3D.

Cases: batch 32 of 1x256x256 float32 images with int64 (and uint8) masks, rotation
+-15 degrees, zoom 0.9-1.1, horizontal flip p=0.5; a batch of 128 MedMNIST-sized 28x28
images and a single one (as a transform in a Dataset's __getitem__ runs), where the cost per
call, not per pixel, decides; volumes 2 x 1x128^3. Peers on the CPU,
where they can be imported: OpenCV, albumentations, kornia, torchvision (v2) and MONAI. Each
implementation warps the same batch (peers with their own random parameters of the same
ranges); ratios are medimg's speed-up, and for the bare warp the fraction of copy bandwidth.
On a CUDA device the same cases run there, plus batches far larger than the L2 cache
(512 x 1x512x512 in float32 and bfloat16, 16 x 1x128^3) for the fraction of the card's
copy bandwidth; peers there: F.grid_sample, kornia, torchvision and
cupyx.scipy.ndimage.affine_transform.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medimg.bench.peers import import_peer
from medimg.bench.suite import Implementations, reports_by_device
from medimg.bench.timing import copy_bandwidth
from medimg.ops import affine_grid_sample
from medimg.ops.affine import pixel_coefficients
from medimg.transforms import RandomAffine

MEDIMG = "medimg RandomAffine"
DEGREES, SCALE, HFLIP_P = 15.0, (0.9, 1.1), 0.5


@dataclass(frozen=True)
class Case:
    name: str
    shape: tuple[int, ...]
    mask_dtype: torch.dtype | None
    device: str = "cpu"
    dtype: torch.dtype = torch.float32

    def batch(self) -> tuple[Tensor, Tensor | None]:
        g = torch.Generator().manual_seed(0)
        image = torch.rand(self.shape, generator=g).to(self.device, self.dtype)
        if self.mask_dtype is None:
            return image, None
        mask = torch.randint(0, 4, (self.shape[0], *self.shape[2:]), generator=g).to(self.device, self.mask_dtype)
        return image, mask


DEVICES = ("cpu", "cuda")
CASES = (
    Case("2D 32x1x256x256 f32 image + int64 mask", (32, 1, 256, 256), torch.int64),
    Case("2D 32x1x256x256 f32 image + uint8 mask", (32, 1, 256, 256), torch.uint8),
    Case("2D 32x1x256x256 f32 image only", (32, 1, 256, 256), None),
    Case("2D 128x1x28x28 f32 image + int64 mask (MedMNIST size)", (128, 1, 28, 28), torch.int64),
    # one sample per call, as a transform in Dataset.__getitem__ runs: the cost per call, not per pixel
    Case("2D 1x1x28x28 f32 image + int64 mask (one sample per call)", (1, 1, 28, 28), torch.int64),
    Case("3D 2x1x128^3 f32 volume", (2, 1, 128, 128, 128), None),
)
CUDA_CASES = (
    *(Case(f"cuda {case.name}", case.shape, case.mask_dtype, "cuda") for case in CASES),
    Case("cuda 2D 512x1x512x512 f32 image only", (512, 1, 512, 512), None, "cuda"),
    Case("cuda 2D 512x1x512x512 bf16 image only", (512, 1, 512, 512), None, "cuda", torch.bfloat16),
    Case("cuda 2D 512x1x512x512 f32 image + uint8 mask", (512, 1, 512, 512), torch.uint8, "cuda"),
    Case("cuda 3D 16x1x128^3 f32 volume", (16, 1, 128, 128, 128), None, "cuda"),
)


def reference_warp(image: Tensor, mask: Tensor | None, theta: Tensor) -> tuple[Tensor, Tensor | None]:
    """F.affine_grid + F.grid_sample: bilinear image, nearest mask (through float and back)."""
    grid = F.affine_grid(theta.to(image.dtype), list(image.shape), align_corners=False)
    warped = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if mask is None:
        return warped, None
    m = F.grid_sample(mask.unsqueeze(1).float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return warped, m.squeeze(1).to(mask.dtype)


def _opencv(image: Tensor, mask: Tensor | None, convert_in_loop: bool = False) -> Callable[[], object] | None:
    """cv2.warpAffine per sample: linear image, nearest mask. warpAffine has no int64, so the mask
    travels as uint8 (labels < 256): converted once outside the timing, or (``convert_in_loop``)
    per sample inside it and back to the mask's dtype, which is what a pipeline that needs int64
    labels out (cross-entropy targets), as medimg gives them, must do."""
    if (cv2 := import_peer("cv2")) is None:
        return None
    cv2.setNumThreads(torch.get_num_threads())
    images = image[:, 0].numpy()
    masks = None if mask is None else (mask if convert_in_loop else mask.to(torch.uint8)).numpy()
    rng = np.random.default_rng(0)
    h, w = images.shape[1:]

    def run() -> None:
        for i in range(images.shape[0]):
            matrix = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-DEGREES, DEGREES), rng.uniform(*SCALE))
            if rng.random() < HFLIP_P:
                matrix[0, :2] *= -1
                matrix[0, 2] = w - 1 - matrix[0, 2]
            cv2.warpAffine(images[i], matrix, (w, h), flags=cv2.INTER_LINEAR)
            if masks is not None and convert_in_loop:
                labels = cv2.warpAffine(masks[i].astype(np.uint8), matrix, (w, h), flags=cv2.INTER_NEAREST)
                labels.astype(masks.dtype)
            elif masks is not None:
                cv2.warpAffine(masks[i], matrix, (w, h), flags=cv2.INTER_NEAREST)

    return run


def _albumentations(image: Tensor, mask: Tensor | None) -> Callable[[], object] | None:
    """albumentations Affine + HorizontalFlip per sample (linear image, nearest mask, zeros outside)."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no version check over the network
    if (albu := import_peer("albumentations")) is None:
        return None
    transform = albu.Compose([albu.Affine(rotate=(-DEGREES, DEGREES), scale=SCALE, p=1.0),
                              albu.HorizontalFlip(p=HFLIP_P)])
    images = image[:, 0].numpy()
    masks = None if mask is None else mask.numpy()

    def run() -> None:
        for i in range(images.shape[0]):
            if masks is None:
                transform(image=images[i])
            else:
                transform(image=images[i], mask=masks[i])

    return run


def _kornia(image: Tensor, mask: Tensor | None) -> Callable[[], object] | None:
    if (aug := import_peer("kornia.augmentation")) is None:
        return None
    keys = ["input"] if mask is None else ["input", "mask"]
    pipeline = aug.AugmentationSequential(
        aug.RandomAffine(degrees=DEGREES, scale=SCALE, p=1.0),
        aug.RandomHorizontalFlip(p=HFLIP_P),
        data_keys=keys,
    )
    inputs = [image] if mask is None else [image, mask.unsqueeze(1).float()]
    return lambda: pipeline(*inputs)


def _torchvision(image: Tensor, mask: Tensor | None) -> Callable[[], object] | None:
    """torchvision.transforms.v2 RandomAffine + RandomHorizontalFlip on an Image and its Mask
    (bilinear image, nearest mask, zeros outside). A v2 transform draws one set of parameters
    per call, so per-sample parameters, as the others draw them, take one call per sample."""
    v2, tv_tensors = import_peer("torchvision.transforms.v2"), import_peer("torchvision.tv_tensors")
    if v2 is None or tv_tensors is None:
        return None
    transform = v2.Compose([v2.RandomAffine(degrees=DEGREES, scale=SCALE,
                                            interpolation=v2.InterpolationMode.BILINEAR),
                            v2.RandomHorizontalFlip(p=HFLIP_P)])
    images = [tv_tensors.Image(image[i]) for i in range(image.shape[0])]
    masks = None if mask is None else [tv_tensors.Mask(mask[i : i + 1]) for i in range(mask.shape[0])]
    return lambda: [transform(x) if masks is None else transform(x, masks[i]) for i, x in enumerate(images)]


def _monai(image: Tensor, mask: Tensor | None) -> Callable[[], object] | None:
    if (mt := import_peer("monai.transforms")) is None:
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


def _cupy(image: Tensor, mask: Tensor | None, theta: Tensor) -> Callable[[], object] | None:
    """cupyx.scipy.ndimage.affine_transform per sample (it takes one matrix per call): order 1
    for the image, order 0 for the mask, zeros outside; the same pixel matrices as medimg's."""
    cp, ndimage = import_peer("cupy"), import_peer("cupyx.scipy.ndimage")
    if cp is None or ndimage is None:
        return None
    if image.dtype not in (torch.float32, torch.float64):  # cupy has no bfloat16
        return None
    k = image.dim() - 2
    # medimg's M maps (x, y[, z]) to (x, y[, z]); ndimage indexes ([z,] y, x): reverse both axes.
    m = pixel_coefficients(theta, tuple(image.shape[2:]), False).flip(1)
    matrices = [cp.asarray(m[i, :, :k].flip(1).contiguous()) for i in range(m.shape[0])]
    offsets = [cp.asarray(m[i, :, k].contiguous()) for i in range(m.shape[0])]
    images = [cp.asarray(image[i, 0]) for i in range(image.shape[0])]
    masks = [] if mask is None else [cp.asarray(mask[i]) for i in range(mask.shape[0])]

    def run() -> None:
        for i, plane in enumerate(images):
            ndimage.affine_transform(plane, matrices[i], offsets[i], order=1, mode="constant")
            if masks:
                ndimage.affine_transform(masks[i], matrices[i], offsets[i], order=0, mode="constant")

    return run


def implementations(case: Case) -> Implementations:
    """Name -> (callable, bytes read and written per call, for bandwidth) for one case."""
    image, mask = case.batch()
    spatial_dims = image.dim() - 2
    transform = RandomAffine(degrees=DEGREES, scale=SCALE, hflip_p=HFLIP_P)
    theta = transform.sample_theta(image.shape[0], tuple(image.shape[2:]), image.device,
                                   torch.Generator(image.device).manual_seed(1)).float()
    nbytes = image.nbytes + (0 if mask is None else mask.nbytes)
    generator = torch.Generator(image.device).manual_seed(2)
    impls: Implementations = {
        MEDIMG: (lambda: transform(image, mask, generator=generator), nbytes),
        "medimg.ops.affine_grid_sample (fixed theta)": (
            lambda: (affine_grid_sample(image, theta),
                     None if mask is None else affine_grid_sample(mask.unsqueeze(1), theta, mode="nearest")),
            nbytes),
        "F.affine_grid + F.grid_sample": (lambda: reference_warp(image, mask, theta), nbytes),
    }
    on_cpu, planar = case.device == "cpu", spatial_dims == 2
    if not on_cpu:  # the theta check waits for the stream on CUDA (on the CPU it costs nothing)
        impls["medimg.ops.affine_grid_sample (fixed theta, check_finite=False)"] = (
            lambda: (affine_grid_sample(image, theta, check_finite=False),
                     None if mask is None else affine_grid_sample(mask.unsqueeze(1), theta, mode="nearest",
                                                                  check_finite=False)),
            nbytes)
    # OpenCV has no int64: also timed with the conversions that give medimg's dtypes in and out.
    converts = mask is not None and mask.dtype != torch.uint8
    mask_dtype = None if mask is None else str(mask.dtype).removeprefix("torch.")
    opencv = "OpenCV warpAffine loop" + ("" if mask is None else " (uint8 mask)")
    peers = {opencv: _opencv(image, mask) if on_cpu and planar else None,
             f"OpenCV loop, {mask_dtype} mask via uint8":
                 _opencv(image, mask, convert_in_loop=True) if on_cpu and planar and converts else None,
             "albumentations Affine+HFlip loop": _albumentations(image, mask) if on_cpu and planar else None,
             "kornia AugmentationSequential": _kornia(image, mask) if planar else None,
             "torchvision v2 RandomAffine+HFlip loop": _torchvision(image, mask) if planar else None,
             "MONAI RandAffined+RandFlipd loop": _monai(image, mask) if on_cpu else None,
             "cupyx affine_transform loop": None if on_cpu else _cupy(image, mask, theta)}
    for name, fn in peers.items():
        if fn is not None:
            impls[name] = (fn, None)
    return impls


def run(min_run_time: float = 0.5, devices: tuple[str, ...] = ("cpu",)) -> str:
    """Run every case on each of `devices` ("cpu", "cuda") and return the report."""
    return reports_by_device(devices, "affine augmentation",
                             "; % copy bw = (bytes of image + mask) / time / copy bandwidth",
                             lambda device: CASES if device == "cpu" else CUDA_CASES, implementations, MEDIMG,
                             min_run_time, copy_bandwidth, items=lambda case: case.shape[0])

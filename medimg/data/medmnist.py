"""MedMNIST ``.npz`` files (PathMNIST, ChestMNIST, OrganAMNIST, ..., OrganMNIST3D) read
from disk: keys ``train_images``, ``train_labels``, ``val_images``, ``val_labels``,
``test_images``, ``test_labels``."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from medimg.data._image_io import PathLike

SPLITS = ("train", "val", "test")
_LUMA = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32)


class MedMNISTDataset(Dataset):
    """One split of a MedMNIST ``.npz`` file, held in memory.

    Images are uint8 ``(N, H, W)`` (grayscale), ``(N, H, W, 3)`` (RGB) or ``(N, D, H, W)``
    (the 3D sets, whose last axis is not 3) and become float32 / 255; float images are kept
    as stored. Labels ``(N,)`` or ``(N, 1)`` are one class per image; ``(N, K)`` with K > 1
    are K binary labels per image (ChestMNIST).

    Args:
        path: the ``.npz`` file, e.g. ``pathmnist.npz`` or ``chestmnist_224.npz``.
        split: "train", "val" or "test".
        channels: None to keep the stored channels, 1 for grayscale (RGB by ITU-R 601-2
            luma), 3 for RGB (grayscale repeated). 3D volumes have one channel.
        transform: None, or a callable applied to each sample's image tensor.

    Attributes:
        images: (N, ...) uint8 (or float) tensor as stored. labels: (N,) or (N, K) int64.
        targets: the single labels as a list (single-label files only). multi_label: bool.

    Shape:
        sample["image"]: (C, H, W) or (1, D, H, W) float32 in [0, 1];
        sample["label"]: int64 scalar, or (K,) int64 for multi-label files.

    Example:
        >>> ds = MedMNISTDataset("pathmnist.npz", split="val")
        >>> ds[0]["image"].shape, ds[0]["label"]
        (torch.Size([3, 28, 28]), tensor(0))
    """

    def __init__(self, path: PathLike, split: str = "train", channels: int | None = None,
                 transform: Callable[[Tensor], Tensor] | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
        if channels not in (None, 1, 3):
            raise ValueError(f"channels: expected None, 1 or 3, got {channels!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform: expected a callable or None, got {type(transform).__name__}")
        self.path, self.split, self.channels, self.transform = Path(path), split, channels, transform
        images, labels = _load(self.path, split)

        self.volumetric = images.ndim == 4 and images.shape[-1] not in (1, 3)
        if images.ndim == 4 and not self.volumetric:
            images = np.moveaxis(images, -1, 1)  # (N, H, W, C) -> (N, C, H, W)
        elif images.ndim == 3 or self.volumetric:
            images = images[:, None]
        else:
            raise ValueError(f"{self.path}: {split}_images has shape {images.shape}; expected (N, H, W), "
                             f"(N, H, W, 3) or (N, D, H, W)")
        if self.volumetric and channels == 3:
            raise ValueError(f"channels: 3D volumes in {self.path} have one channel, got channels=3")
        if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
            raise ValueError(f"{self.path}: {split}_images has dtype {images.dtype}; expected uint8 or float")
        self.images = torch.from_numpy(np.ascontiguousarray(images))

        if labels.ndim == 1:
            labels = labels[:, None]
        if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"{self.path}: {split}_labels has shape {labels.shape} and dtype {labels.dtype}; "
                             f"expected integers (N,), (N, 1) or (N, K)")
        self.multi_label = labels.shape[1] > 1
        self.labels = torch.from_numpy(labels.astype(np.int64))
        if not self.multi_label:
            self.labels = self.labels[:, 0]
        self.targets = None if self.multi_label else self.labels.tolist()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        image = self.images[index]
        image = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
        if self.channels == 1 and image.shape[0] == 3:
            image = (image * _LUMA.view(3, 1, 1)).sum(0, keepdim=True).clamp_(0.0, 1.0)
        elif self.channels == 3 and image.shape[0] == 1:
            image = image.repeat(3, 1, 1)
        if self.transform is not None:
            image = self.transform(image)
        return {"image": image, "label": self.labels[index].clone()}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(path={str(self.path)!r}, split={self.split!r}, n={len(self)}, "
                f"image={tuple(self.images.shape[1:])}, multi_label={self.multi_label})")


def _load(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The split's images and labels, with errors naming the file and the keys."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such MedMNIST .npz file")
    wanted = (f"{split}_images", f"{split}_labels")
    with open(path, "rb") as handle:  # our own handle, closed even when np.load fails
        try:
            data = np.load(handle, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise ValueError(f"{path}: cannot read .npz file: {error}") from error
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: not a .npz archive (it holds a single {type(data).__name__})")
        with data:
            missing = [k for k in wanted if k not in data.files]
            if missing:
                raise ValueError(f"{path}: missing key(s) {missing}; the file has {sorted(data.files)}")
            try:
                images, labels = (data[k] for k in wanted)
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
                raise ValueError(f"{path}: cannot read {wanted}: {error}") from error
    if images.ndim == 0 or labels.ndim == 0 or len(images) != len(labels):
        raise ValueError(f"{path}: {wanted[0]} has {len(images)} entries but {wanted[1]} has {len(labels)}")
    return images, labels

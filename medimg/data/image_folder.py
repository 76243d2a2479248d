"""Classification datasets stored one folder per class, e.g. the Kaggle brain MRI set
(``root/yes/``, ``root/no/``) or the chest X-ray pneumonia set (``chest_xray/train/NORMAL/``,
``chest_xray/train/PNEUMONIA/``, with ``root="chest_xray/train"``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from medimg.data._image_io import (
    PathLike,
    Size,
    check_channels,
    check_readable,
    existing_dir,
    read_image,
    resolve_size,
)

logger = logging.getLogger("medimg.data")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _visible(name: str) -> bool:
    """False for hidden entries such as ``.DS_Store`` and macOS ``._name.jpg`` resource forks."""
    return not name.startswith(".")


def _image_files(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    """Image files under `folder` (recursively, hidden entries skipped), sorted by path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if _visible(d)]
        found += [Path(dirpath, f) for f in filenames if _visible(f) and f.lower().endswith(extensions)]
    return sorted(found)


class ImageFolderDataset(Dataset):
    """Images in ``root/<class name>/`` folders, labelled by folder.

    Classes are the visible sub-folders of `root`, sorted by name, labelled 0, 1, ...;
    each class folder is searched recursively for files with one of `extensions` (any
    case), hidden files skipped.

    Args:
        root: the folder holding one sub-folder per class.
        size: None to keep each file's size (then batches need equal-sized files), an int
            for (size, size), or (height, width); bilinear with antialiasing.
        channels: 1 (grayscale) or 3 (RGB); see ``medimg.data._image_io`` for the scaling.
        extensions: file name endings to include, compared case-insensitively.
        transform: None, or a callable applied to each sample's (C, H, W) image tensor. For
            batched augmentation on the device, see ``medimg.data.loader.DeviceAugmentLoader``.
        skip_bad: False: a file that cannot be decoded raises ValueError when loaded. True:
            every file is decoded once here, and unreadable ones are logged on the
            ``medimg.data`` logger and left out (this reads the whole dataset once).

    Attributes:
        classes: class names, sorted. class_to_index: name -> label.
        samples: (path, label) pairs. targets: the labels alone.
        counts: class name -> number of images. skipped: paths left out by `skip_bad`.

    Shape:
        sample["image"]: (channels, H, W) float32 in [0, 1]; sample["label"]: int64 scalar;
        sample["path"]: str.

    Example:
        >>> ds = ImageFolderDataset("chest_xray/train", size=256)
        >>> print(ds.summary())
        >>> ds[0]["image"].shape, ds[0]["label"]
        (torch.Size([1, 256, 256]), tensor(0))
    """

    def __init__(self, root: PathLike, size: Size | None = None, channels: int = 1,
                 extensions: Sequence[str] = IMAGE_EXTENSIONS, transform: Callable[[Tensor], Tensor] | None = None,
                 skip_bad: bool = False) -> None:
        self.root = existing_dir(root, "root")
        self.size = resolve_size(size)
        self.channels = check_channels(channels)
        if isinstance(extensions, str) or not extensions:
            raise ValueError(f"extensions: expected a non-empty sequence of endings such as '.png', got {extensions!r}")
        self.extensions = tuple(e.lower() for e in extensions)
        if transform is not None and not callable(transform):
            raise TypeError(f"transform: expected a callable or None, got {type(transform).__name__}")
        self.transform = transform

        self.classes = sorted(d.name for d in self.root.iterdir() if d.is_dir() and _visible(d.name))
        if not self.classes:
            raise ValueError(f"root {self.root}: no class folders found; expected root/<class name>/<image files>")
        self.class_to_index = {name: i for i, name in enumerate(self.classes)}
        self.samples: list[tuple[str, int]] = []
        self.skipped: list[str] = []
        for name, label in self.class_to_index.items():
            folder = self.root / name
            files = _image_files(folder, self.extensions)
            if not files:
                raise ValueError(f"class folder {folder}: no image files with extensions {self.extensions}")
            if skip_bad:
                files = self._readable(files)
                if not files:
                    raise ValueError(f"class folder {folder}: none of its image files can be read")
            self.samples += [(str(f), label) for f in files]
        self.targets = [label for _, label in self.samples]
        self.counts = {name: self.targets.count(label) for name, label in self.class_to_index.items()}

    def _readable(self, files: list[Path]) -> list[Path]:
        good = []
        for f in files:
            try:
                check_readable(f)
            except (OSError, ValueError) as error:
                logger.warning("skipping unreadable image %s (%s)", f, error)
                self.skipped.append(str(f))
            else:
                good.append(f)
        return good

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Tensor | str]:
        path, label = self.samples[index]
        image = read_image(path, self.channels, self.size)
        if self.transform is not None:
            image = self.transform(image)
        return {"image": image, "label": torch.tensor(label, dtype=torch.int64), "path": path}

    def summary(self) -> str:
        """A readable table of classes, labels and image counts."""
        total = len(self.samples)
        width = max(len(c) for c in self.classes)
        lines = [f"{type(self).__name__}: {total} images in {len(self.classes)} classes under {self.root}"]
        for name, label in self.class_to_index.items():
            n = self.counts[name]
            lines.append(f"  {label:>3}  {name:<{width}}  {n:>7}  ({100.0 * n / total:5.1f}%)")
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)} unreadable files")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, classes={self.classes}, n={len(self)}, "
                f"size={self.size}, channels={self.channels})")

"""The DRIVE retinal vessel segmentation set (40 fundus photographs, 565 x 584) as laid
out in its archive::

    root/training/images/21_training.tif      root/test/images/01_test.tif
    root/training/1st_manual/21_manual1.gif    root/test/1st_manual/01_manual1.gif
    root/training/mask/21_training_mask.gif    root/test/mask/01_test_mask.gif
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import Tensor
from torch.utils.data import Dataset

from medimg.data._image_io import (
    PathLike,
    Size,
    check_channels,
    check_readable,
    existing_dir,
    image_size,
    read_image,
    read_mask,
    resolve_size,
)

logger = logging.getLogger("medimg.data")

SPLITS = ("training", "test")


class DRIVEDataset(Dataset):
    """Fundus images of one DRIVE split with their vessel annotations and field-of-view masks.

    Images are found as ``root/<split>/images/<id>_<split>.tif``; for each, the manual
    annotation ``1st_manual/<id>_manual1.gif`` and the field-of-view mask
    ``mask/<id>_<split>_mask.gif``. A pixel is vessel (or inside the field of view) when
    its gray value is above 0 (the files hold 0 and 255).

    Args:
        root: the DRIVE folder holding ``training/`` and ``test/``.
        split: "training" or "test".
        size: None for the files' size, an int for (size, size), or (height, width); the
            image is resized bilinearly, the masks by nearest neighbour.
        skip_bad: True: every file is decoded here and sizes compared; samples with an
            unreadable file or mismatched sizes are logged on the ``medimg.data`` logger and
            left out. False: such a sample raises ValueError when loaded.
        channels: 3 for RGB, 1 for the green channel alone (where vessels contrast best).
        require_manual: True: a missing annotation raises FileNotFoundError naming the file
            (here, for every image). False: samples without one have no "mask" key (some
            copies of the test split lack ``1st_manual``).

    Shape:
        sample["image"]: (channels, H, W) float32 in [0, 1]; sample["mask"]: (H, W) int64
        in {0, 1}; sample["fov"]: (H, W) bool; sample["id"]: str such as "21".

    Example:
        >>> ds = DRIVEDataset("DRIVE", split="training", channels=1, size=512)
        >>> s = ds[0]
        >>> s["image"].shape, s["mask"].shape, s["fov"].dtype
        (torch.Size([1, 512, 512]), torch.Size([512, 512]), torch.bool)
    """

    def __init__(self, root: PathLike, split: str = "training", size: Size | None = None, skip_bad: bool = False,
                 channels: int = 3, require_manual: bool = True) -> None:
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
        self.root = existing_dir(root, "root")
        self.split = split
        self.size = resolve_size(size)
        self.channels = check_channels(channels)
        self.require_manual = bool(require_manual)
        folder = existing_dir(self.root / split / "images", "root")
        images = sorted(p for p in folder.iterdir()
                        if p.suffix.lower() in (".tif", ".tiff") and not p.name.startswith("."))
        if not images:
            raise ValueError(f"{folder}: no .tif images; expected <id>_{split}.tif files")
        self.samples: list[dict[str, str | None]] = []
        self.skipped: list[str] = []
        for image in images:
            sample = self._sample(image)
            if skip_bad and not self._usable(sample):
                self.skipped.append(sample["image"])
                continue
            self.samples.append(sample)

    def _sample(self, image: Path) -> dict[str, str | None]:
        sample_id = image.stem.split("_")[0]
        split_dir = self.root / self.split
        fov = split_dir / "mask" / f"{sample_id}_{self.split}_mask.gif"
        manual = split_dir / "1st_manual" / f"{sample_id}_manual1.gif"
        if not fov.is_file():
            raise FileNotFoundError(f"{image}: its field-of-view mask {fov} does not exist")
        if not manual.is_file():
            if self.require_manual:
                raise FileNotFoundError(f"{image}: its manual annotation {manual} does not exist "
                                        f"(pass require_manual=False to load images without one)")
            manual = None
        return {"id": sample_id, "image": str(image), "manual": None if manual is None else str(manual),
                "fov": str(fov)}

    def _usable(self, sample: dict[str, str | None]) -> bool:
        try:
            for key in ("image", "manual", "fov"):
                if sample[key] is not None:
                    check_readable(sample[key])
            _check_sizes(sample)
        except (OSError, ValueError) as error:
            logger.warning("skipping DRIVE sample %s (%s)", sample["id"], error)
            return False
        return True

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Tensor | str]:
        sample = self.samples[index]
        _check_sizes(sample)
        image = read_image(sample["image"], channels=3, size=self.size)
        if self.channels == 1:
            image = image[1:2].clone()
        out: dict[str, Tensor | str] = {"image": image}
        if sample["manual"] is not None:
            out["mask"] = (read_mask(sample["manual"], self.size) > 0).long()
        out["fov"] = read_mask(sample["fov"], self.size) > 0
        out["id"] = sample["id"]
        return out

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, "
                f"size={self.size}, channels={self.channels})")


def _check_sizes(sample: dict[str, str | None]) -> None:
    """ValueError naming both files when a mask's size differs from its image's (headers only)."""
    image = sample["image"]
    expected = image_size(image)
    for key in ("manual", "fov"):
        other = sample[key]
        if other is None:
            continue
        got = image_size(other)
        if got != expected:
            raise ValueError(f"{other}: size (H, W) = {got} differs from its image {image}: {expected}")

"""NIfTI volumes (``.nii``, ``.nii.gz``: MRI, CT, the Medical Segmentation Decathlon,
BraTS) as float tensors in [0, 1], with their label maps. Needs nibabel
(``pip install "medimg[nifti]"``), imported on first use.

Axis order: nibabel indexes voxels as (i, j, k) = (X, Y, Z) of the file; medimg returns
them transposed to (Z, Y, X) = (D, H, W), the layout of ``(N, C, D, H, W)`` batches, so W
is the file's fastest-varying axis. With ``canonical=True`` the volume is first reoriented
to the closest RAS+ orientation (``nibabel.as_closest_canonical``): then D runs inferior to
superior, H posterior to anterior and W left to right, whatever the scanner wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from medimg.data._image_io import PathLike, optional_import, unit_window

NiftiWindow = tuple[float, float] | str | None


def _check_window(window: NiftiWindow, percentiles: tuple[float, float]) -> None:
    if window == "percentile":
        lo, hi = percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"percentiles: expected 0 <= low < high <= 100, got {percentiles!r}")
    elif window is not None and not (isinstance(window, (tuple, list)) and len(window) == 2
                                     and all(isinstance(v, Real) and not isinstance(v, bool) for v in window)
                                     and window[1] > window[0]):
        raise ValueError(f"window: expected None, 'percentile' or (low, high) with high > low, got {window!r}")


def _load(path: PathLike, canonical: bool) -> Any:
    nibabel = optional_import("nibabel", "nifti", "reading NIfTI files")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such NIfTI file")
    try:
        image = nibabel.load(path)
        return nibabel.as_closest_canonical(image) if canonical else image
    except Exception as error:  # ImageFileError, bad headers, truncated gzip
        raise ValueError(f"{path}: cannot read NIfTI file: {error}") from error


def _as_dhw(data: np.ndarray, path: PathLike) -> np.ndarray:
    """(X, Y, Z) voxel data as a contiguous (Z, Y, X) array; 2D gets Z = 1, a trailing 4th axis of 1 is dropped."""
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3:
        raise ValueError(f"{path}: data shape {data.shape}; expected a 3D volume (X, Y, Z)")
    return np.ascontiguousarray(data.transpose(2, 1, 0))


def read_nifti(path: PathLike, window: NiftiWindow = None, percentiles: tuple[float, float] = (0.5, 99.5),
               canonical: bool = False) -> Tensor:
    """Read a NIfTI volume as intensities in [0, 1].

    The header's scl_slope/scl_inter are applied; NaN voxels become 0 before windowing.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file holding a 3D volume (or 4D with one volume).
        window: None: min-max over the volume; (low, high): ``clip((v - low) / (high - low), 0, 1)``
            in the file's units (e.g. (-1000, 400) HU); "percentile": low and high are the
            volume's `percentiles` (robust to outliers, common for MRI).
        percentiles: (low, high) in [0, 100], used with ``window="percentile"``.
        canonical: reorient to the closest RAS+ orientation first (see the module docstring).

    Returns:
        (1, D, H, W) float32 in [0, 1], D/H/W being the file's Z/Y/X axes.

    Example:
        >>> read_nifti("BraTS/flair.nii.gz", window="percentile").shape
        torch.Size([1, 155, 240, 240])
    """
    _check_window(window, percentiles)
    image = _load(path, canonical)
    try:
        data = np.asarray(image.get_fdata(dtype=np.float32))
    except Exception as error:
        raise ValueError(f"{path}: cannot read NIfTI data: {error}") from error
    data = np.nan_to_num(_as_dhw(data, path), nan=0.0)
    if window == "percentile":
        lo, hi = (float(v) for v in np.percentile(data, percentiles))
    elif window is not None:
        lo, hi = float(window[0]), float(window[1])
    else:
        lo = hi = None
    return torch.from_numpy(unit_window(data, lo, hi)).unsqueeze(0)


def read_nifti_labels(path: PathLike, canonical: bool = False) -> Tensor:
    """Read a NIfTI label map (segmentation) as integers, in the axis order of :func:`read_nifti`.

    Returns:
        (D, H, W) int64.

    Raises:
        ValueError: the file holds values that are not whole numbers (naming it).
    """
    image = _load(path, canonical)
    try:
        data = np.asanyarray(image.dataobj)
    except Exception as error:
        raise ValueError(f"{path}: cannot read NIfTI data: {error}") from error
    data = _as_dhw(data, path)
    if not np.issubdtype(data.dtype, np.integer):
        rounded = np.rint(data)
        if not np.array_equal(rounded, data):
            raise ValueError(f"{path}: a label map must hold whole numbers, found values such as "
                             f"{data[rounded != data].flat[0]}")
        data = rounded
    return torch.from_numpy(data.astype(np.int64))


def _paths(name: str, paths: Sequence[PathLike]) -> list[Path]:
    if isinstance(paths, (str, Path)):
        raise TypeError(f"{name}: expected a list of paths, got a single path {str(paths)!r}")
    out = [Path(p) for p in paths]
    for p in out:
        if not p.is_file():
            raise FileNotFoundError(f"{name}: no such NIfTI file: {p}")
    return out


class NiftiDataset(Dataset):
    """NIfTI volumes, each with an optional label map of the same shape.

    Args:
        images: the image files.
        masks: None, or one label-map file per image, in the same order.
        window, percentiles, canonical: as :func:`read_nifti` (masks follow `canonical`).

    Shape:
        sample["image"]: (1, D, H, W) float32 in [0, 1]; sample["mask"]: (D, H, W) int64
        (only with `masks`); sample["path"]: the image path, str.

    Example:
        >>> ds = NiftiDataset(sorted(glob("Task09_Spleen/imagesTr/*.nii.gz")),
        ...                   sorted(glob("Task09_Spleen/labelsTr/*.nii.gz")), window=(-160, 240))
    """

    def __init__(self, images: Sequence[PathLike], masks: Sequence[PathLike] | None = None,
                 window: NiftiWindow = None, percentiles: tuple[float, float] = (0.5, 99.5),
                 canonical: bool = False) -> None:
        _check_window(window, percentiles)
        self.images = _paths("images", images)
        if not self.images:
            raise ValueError("images: expected at least one NIfTI file, got an empty list")
        self.masks = None if masks is None else _paths("masks", masks)
        if self.masks is not None and len(self.masks) != len(self.images):
            raise ValueError(f"masks: {len(self.masks)} files for {len(self.images)} images; expected one per image")
        self.window, self.percentiles, self.canonical = window, percentiles, bool(canonical)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Tensor | str]:
        path = self.images[index]
        image = read_nifti(path, self.window, self.percentiles, self.canonical)
        out: dict[str, Tensor | str] = {"image": image}
        if self.masks is not None:
            mask_path = self.masks[index]
            mask = read_nifti_labels(mask_path, self.canonical)
            if tuple(mask.shape) != tuple(image.shape[1:]):
                raise ValueError(f"{mask_path}: label map shape (D, H, W) = {tuple(mask.shape)} differs from its "
                                 f"image {path}: {tuple(image.shape[1:])}")
            out["mask"] = mask
        out["path"] = str(path)
        return out

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(n={len(self)}, masks={self.masks is not None}, window={self.window!r}, "
                f"canonical={self.canonical})")

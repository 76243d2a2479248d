"""DICOM images (CT, MR, X-ray) as float tensors in [0, 1]: single slices, series of
slices as a volume, and a dataset over a folder of ``.dcm`` files. Needs pydicom
(``pip install "medimg[dicom]"``), imported on first use.

Stored values are first mapped to modality units (Hounsfield units for CT) by
``value * RescaleSlope + RescaleIntercept``, then windowed to [0, 1] by
``clip((value - lo) / (hi - lo), 0, 1)`` with ``lo = center - width / 2`` and
``hi = center + width / 2``. MONOCHROME1 images (white = 0) are inverted after windowing
so that higher values are always brighter.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from medimg.data._image_io import PathLike, Size, existing_dir, optional_import, resize_image, resolve_size, unit_window

Window = tuple[float, float] | str | None


def check_window(window: Window) -> Window:
    """None, "auto" or a (center, width) pair with width > 0."""
    if window is None or window == "auto":
        return window
    if (isinstance(window, (tuple, list)) and len(window) == 2
            and all(isinstance(v, Real) and not isinstance(v, bool) for v in window) and window[1] > 0):
        return float(window[0]), float(window[1])
    raise ValueError(f"window: expected None, 'auto' or (center, width) with width > 0, got {window!r}")


def _number(ds: Any, keyword: str, default: float | None) -> float | None:
    """A numeric attribute (the first of a multi-valued one), or `default` when absent or empty."""
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        if len(value) == 0:
            return default
        value = value[0]
    return float(value)


def _dataset(path: PathLike) -> Any:
    pydicom = optional_import("pydicom", "dicom", "reading DICOM files")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such DICOM file")
    try:
        return pydicom.dcmread(path)
    except Exception as error:  # InvalidDicomError, truncated files, bad values
        raise ValueError(f"{path}: cannot read DICOM file: {error}") from error


def _modality_values(ds: Any, path: PathLike) -> np.ndarray:
    """(H, W) float64 stored values mapped by RescaleSlope and RescaleIntercept."""
    if "PixelData" not in ds:
        raise ValueError(f"{path}: the DICOM file has no pixel data")
    samples, frames = int(ds.get("SamplesPerPixel", 1)), int(_number(ds, "NumberOfFrames", 1))
    if samples != 1:
        raise ValueError(f"{path}: {samples} samples per pixel ({ds.get('PhotometricInterpretation')}); "
                         f"expected a monochrome image")
    if frames != 1:
        raise ValueError(f"{path}: {frames} frames; expected a single-frame image")
    try:
        pixels = ds.pixel_array
    except Exception as error:  # a compressed transfer syntax without its decoder, bad data
        raise ValueError(f"{path}: cannot decode the pixel data: {error}") from error
    slope, intercept = _number(ds, "RescaleSlope", 1.0), _number(ds, "RescaleIntercept", 0.0)
    return pixels.astype(np.float64) * slope + intercept


def _file_window(ds: Any) -> tuple[float, float] | None:
    center, width = _number(ds, "WindowCenter", None), _number(ds, "WindowWidth", None)
    return None if center is None or width is None or width <= 0 else (center, width)


def _windowed(values: np.ndarray, window: Window, ds: Any) -> np.ndarray:
    if window == "auto":
        window = _file_window(ds)
    if window is None:
        out = unit_window(values)
    else:
        center, width = window
        out = unit_window(values, center - width / 2, center + width / 2)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        out = 1.0 - out
    return out.astype(np.float32)


def read_dicom(path: PathLike, window: Window = None) -> Tensor:
    """Read one single-frame monochrome DICOM file as an image in [0, 1].

    Args:
        path: the DICOM file.
        window: None: min-max of the rescaled values; (center, width): that window in
            modality units (e.g. (40, 400) for a CT soft-tissue window); "auto": the file's
            first WindowCenter/WindowWidth, or min-max when it has none.

    Returns:
        (1, H, W) float32 in [0, 1] (see the module docstring for the arithmetic).

    Raises:
        ImportError: pydicom is not installed.
        FileNotFoundError / ValueError: a missing, unreadable, colour or multi-frame file
            (the message names it).

    Example:
        >>> read_dicom("ct/slice_042.dcm", window=(40, 400)).shape
        torch.Size([1, 512, 512])
    """
    window = check_window(window)
    ds = _dataset(path)
    return torch.from_numpy(_windowed(_modality_values(ds, path), window, ds)).unsqueeze(0)


def _slice_position(ds: Any) -> float | None:
    """Position along the slice normal (from ImageOrientationPatient; z without it)."""
    position = ds.get("ImagePositionPatient")
    if position is None or len(position) != 3:
        return None
    position = np.array([float(v) for v in position])
    orientation = ds.get("ImageOrientationPatient")
    if orientation is None or len(orientation) != 6:
        return float(position[2])
    normal = np.cross([float(v) for v in orientation[:3]], [float(v) for v in orientation[3:]])
    return float(position @ normal)


def _dicom_files(folder: Path, pattern: str, recursive: bool) -> list[Path]:
    pattern = pattern.lower()
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        found += [Path(dirpath, f) for f in filenames
                  if not f.startswith(".") and fnmatch.fnmatch(f.lower(), pattern)]
    return sorted(found)


def read_dicom_series(folder: PathLike, window: Window = None, pattern: str = "*.dcm") -> Tensor:
    """Read the slices of one DICOM series in `folder` as a volume in [0, 1].

    Slices are ordered by their position along the slice normal (ImagePositionPatient
    projected on the normal of ImageOrientationPatient, i.e. z for axial slices), or by
    InstanceNumber where positions are missing. Each slice is rescaled by its own
    slope/intercept, then the volume is windowed as a whole.

    Args:
        folder: the folder holding the series' files (not searched recursively).
        window: None (min-max over the volume), (center, width), or "auto" (the first
            slice's WindowCenter/WindowWidth, else min-max).
        pattern: file names to read, a case-insensitive glob; "*" for files without an
            extension.

    Returns:
        (1, D, H, W) float32 in [0, 1], D ordered from the lowest position.

    Raises:
        ValueError: no files; files from several series; a slice whose size differs from
            the first one's, or that has neither position nor InstanceNumber (naming it).
    """
    window = check_window(window)
    folder = existing_dir(folder, "folder")
    files = _dicom_files(folder, pattern, recursive=False)
    if not files:
        raise ValueError(f"folder {folder}: no files matching {pattern!r}")
    datasets = [_dataset(f) for f in files]
    series = {str(ds.get("SeriesInstanceUID")) for ds in datasets if ds.get("SeriesInstanceUID") is not None}
    if len(series) > 1:
        raise ValueError(f"folder {folder}: files from {len(series)} series (SeriesInstanceUID); "
                         f"put each series in its own folder")

    positions = [_slice_position(ds) for ds in datasets]
    if all(p is not None for p in positions):
        keys = positions
    else:
        keys = [_number(ds, "InstanceNumber", None) for ds in datasets]
        for f, key in zip(files, keys, strict=True):
            if key is None:
                raise ValueError(f"{f}: neither ImagePositionPatient nor InstanceNumber; cannot order the slices")
    order = sorted(range(len(files)), key=lambda i: (keys[i], str(files[i])))

    slices = []
    for i in order:
        values = _modality_values(datasets[i], files[i])
        if slices and values.shape != slices[0].shape:
            raise ValueError(f"{files[i]}: slice size {values.shape} differs from {files[order[0]]}: "
                             f"{slices[0].shape}")
        slices.append(values)
    volume = _windowed(np.stack(slices), window, datasets[order[0]])
    return torch.from_numpy(volume).unsqueeze(0)


class DicomSliceDataset(Dataset):
    """Every DICOM file under `root` (recursively) as one 2D image.

    Args:
        root: the folder to search.
        window: None, (center, width) or "auto"; see :func:`read_dicom`.
        size: None to keep each file's size, an int or (height, width); bilinear.
        pattern: file names to include, a case-insensitive glob.
        transform: None, or a callable applied to each (1, H, W) image.

    Shape:
        sample["image"]: (1, H, W) float32 in [0, 1]; sample["path"]: str.

    Example:
        >>> ds = DicomSliceDataset("ct_slices", window=(40, 400), size=256)
    """

    def __init__(self, root: PathLike, window: Window = "auto", size: Size | None = None, pattern: str = "*.dcm",
                 transform: Callable[[Tensor], Tensor] | None = None) -> None:
        self.window = check_window(window)
        self.size = resolve_size(size)
        self.root = existing_dir(root, "root")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform: expected a callable or None, got {type(transform).__name__}")
        self.transform = transform
        self.files = [str(f) for f in _dicom_files(self.root, pattern, recursive=True)]
        if not self.files:
            raise ValueError(f"root {self.root}: no files matching {pattern!r}")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Tensor | str]:
        path = self.files[index]
        image = resize_image(read_dicom(path, self.window), self.size)
        if self.transform is not None:
            image = self.transform(image)
        return {"image": image, "path": path}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, n={len(self)}, window={self.window!r})"

"""Reading one 2D image file with Pillow into a float tensor in [0, 1], and its mask.

Intensity scaling by the file's pixel type:

- 8-bit (``L``, ``RGB``, palette, ``1``, ...): value / 255.
- 16-bit (``I;16*``): value / 65535.
- 32-bit integer (``I``): value / 65535 when every value lies in [0, 65535] (16-bit data
  that Pillow decodes as ``I``), otherwise min-max scaled.
- 32-bit float (``F``): min-max scaled per image (a constant image becomes zeros).

Colour to grayscale uses Pillow's ITU-R 601-2 luma (``convert("L")``); grayscale to colour
repeats the one channel. Resizing is bilinear with antialiasing for images and nearest for
masks, so a mask never gains a value its file does not hold.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

PathLike = str | os.PathLike
Size = int | tuple[int, int]

T = TypeVar("T")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def resolve_size(size: Size | None, name: str = "size") -> tuple[int, int] | None:
    """None, or (height, width) from an int (square) or a pair of positive ints."""
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (isinstance(size, (tuple, list)) and len(size) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
        return int(size[0]), int(size[1])
    raise ValueError(f"{name}: expected None, a positive int or a (height, width) pair of positive ints, got {size!r}")


def check_channels(channels: int, allowed: tuple[int, ...] = (1, 3)) -> int:
    if channels not in allowed:
        raise ValueError(f"channels: expected one of {allowed}, got {channels!r}")
    return channels


def existing_dir(path: PathLike, name: str) -> Path:
    """`path` as a Path, or FileNotFoundError / NotADirectoryError naming the argument and path."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{name}: no such folder: {path}")
    if not path.is_dir():
        raise NotADirectoryError(f"{name}: not a folder: {path}")
    return path


def _decode(path: PathLike, convert: Callable[[Image.Image], T], what: str = "image") -> T:
    """Open and fully decode `path`, then `convert` the image; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what} file")
    try:
        with Image.open(path) as im:
            im.load()
            return convert(im)
    except Exception as error:  # Pillow's decoders raise many types on corrupt data.
        raise ValueError(f"{path}: cannot read {what}: {error}") from error


def check_readable(path: PathLike) -> None:
    """Decode the whole file; FileNotFoundError or ValueError naming it when that fails."""
    _decode(path, lambda im: None)


def image_size(path: PathLike) -> tuple[int, int]:
    """(height, width) from the file's header, without decoding the pixels."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        with Image.open(path) as im:
            width, height = im.size
    except Exception as error:
        raise ValueError(f"{path}: cannot read image: {error}") from error
    return height, width


def _scaled(array: np.ndarray, mode: str) -> np.ndarray:
    """float32 values in [0, 1] from the pixel array of a Pillow `mode` (see the module docstring)."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255)
    if mode in _SIXTEEN_BIT:
        return array.astype(np.float32) / np.float32(65535)
    if mode == "I" and array.size and array.min() >= 0 and array.max() <= 65535:
        return array.astype(np.float32) / np.float32(65535)
    array = array.astype(np.float64)
    lo, hi = (array.min(), array.max()) if array.size else (0.0, 0.0)
    if not hi > lo:
        return np.zeros(array.shape, np.float32)
    return ((array - lo) / (hi - lo)).astype(np.float32)


def _pixels(im: Image.Image, channels: int) -> np.ndarray:
    """(H, W) or (H, W, 3) float32 in [0, 1] with the requested number of channels."""
    if im.mode in ("I", "F", *_SIXTEEN_BIT):
        gray = _scaled(np.asarray(im), im.mode)
        return gray if channels == 1 else np.repeat(gray[:, :, None], 3, axis=2)
    target = "L" if channels == 1 else "RGB"
    if im.mode != target:
        im = im.convert(target)
    return _scaled(np.asarray(im), im.mode)


def resize_image(image: Tensor, size: tuple[int, int] | None) -> Tensor:
    """Bilinear, antialiased resize of a (C, H, W) float image to `size`, clamped to [0, 1]."""
    if size is None or tuple(image.shape[-2:]) == tuple(size):
        return image
    out = F.interpolate(image.unsqueeze(0), size=size, mode="bilinear", align_corners=False, antialias=True)
    return out.squeeze(0).clamp_(0.0, 1.0)


def resize_mask(mask: Tensor, size: tuple[int, int] | None) -> Tensor:
    """Nearest-neighbour resize of an (H, W) label map to `size`, keeping its dtype and values."""
    if size is None or tuple(mask.shape[-2:]) == tuple(size):
        return mask
    out = F.interpolate(mask[None, None].to(torch.float32), size=size, mode="nearest-exact")
    return out[0, 0].to(mask.dtype)


def read_image(path: PathLike, channels: int = 1, size: Size | None = None) -> Tensor:
    """Read one 2D image file as a float tensor in [0, 1].

    Args:
        path: an image file Pillow can decode (PNG, JPEG, BMP, TIFF, GIF, ...).
        channels: 1 for grayscale, 3 for RGB.
        size: None to keep the file's size, an int for (size, size), or (height, width);
            bilinear with antialiasing.

    Returns:
        (channels, H, W) float32 in [0, 1], scaled as the module docstring describes.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: the file cannot be decoded (unknown format, truncated, ...); the
            message starts with the path.

    Example:
        >>> read_image("chest_xray/train/NORMAL/IM-0115-0001.jpeg", size=256).shape
        torch.Size([1, 256, 256])
    """
    check_channels(channels)
    size = resolve_size(size)
    pixels = _decode(path, lambda im: _pixels(im, channels))
    image = torch.from_numpy(np.ascontiguousarray(pixels))
    image = image.unsqueeze(0) if image.dim() == 2 else image.permute(2, 0, 1).contiguous()
    return resize_image(image, size)


def _gray_values(im: Image.Image) -> np.ndarray:
    if im.mode not in ("L", "I", *_SIXTEEN_BIT):
        im = im.convert("L")
    return np.asarray(im).astype(np.int64)


def read_mask(path: PathLike, size: Size | None = None) -> Tensor:
    """Read one 2D mask file as its gray values.

    Palette images (GIF, indexed PNG) are read through their palette (the value shown,
    not the palette index); colour masks are converted to luma.

    Args:
        path: an image file Pillow can decode.
        size: None, an int or (height, width); nearest-neighbour.

    Returns:
        (H, W) int64 gray values (0..255 for 8-bit files, 0..65535 for 16-bit ones).
    """
    size = resolve_size(size)
    values = _decode(path, _gray_values, what="mask")
    return resize_mask(torch.from_numpy(values), size)


def unit_window(values: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """float32 ``clip((values - lo) / (hi - lo), 0, 1)``; lo and hi default to the min and max.

    Computed in the input's float precision (float64 for integers). Where ``hi <= lo`` (a
    constant image under min-max) the result is zeros at or below `lo` and ones above it.
    """
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    if lo is None or hi is None:
        lo_, hi_ = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        lo, hi = (lo_ if lo is None else lo), (hi_ if hi is None else hi)
    if not hi > lo:
        return (values > lo).astype(np.float32)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def optional_import(module: str, extra: str, purpose: str) -> Any:
    """Import an optional dependency, or raise an ImportError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f'{purpose} needs {module}: pip install "medimg[{extra}]"') from error

"""Move each collated batch to the device and augment it there, one transform call per batch."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from medimg.data.boxes import masks_to_boxes

Key = str | int


def to_device(batch: Any, device: torch.device, non_blocking: bool = True) -> Any:
    """`batch` with every tensor in it (nested dicts, lists, tuples) moved to `device`; other values as they are."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(to_device(v, device, non_blocking) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device, non_blocking) for v in batch)
    return batch


class DeviceAugmentLoader:
    """Wrap a DataLoader: move each batch to `device`, then augment the whole batch there.

    The workers decode and collate on the CPU; the batched transform (e.g.
    ``medimg.transforms.Compose`` or ``RandomAffine``) then runs once per batch on the
    device, images and masks warped together so they stay aligned. Several mask keys
    (e.g. ``("mask", "fov")`` for DRIVE) are stacked along the channel axis for that one
    call and split back into their own shapes and dtypes afterwards.

    Args:
        loader: an iterable of collated batches, usually a ``torch.utils.data.DataLoader``
            (use ``pin_memory=True`` so that the copy to a GPU is asynchronous).
        transform: None, or a callable ``image, mask = transform(image, mask, generator=generator)``.
        device: where batches go.
        image_key: the key (dict batches) or position (tuple/list batches) of the images;
            a batch that is a tensor is the images.
        mask_key: None, or the key(s) of masks to transform with the images; keys absent
            from a batch are left alone.
        generator: a ``torch.Generator`` on `device` for reproducible augmentation, or None.
        box_key: None, or the key of boxes (N, 4) to recompute from the first mask after the
            warp (``masks_to_boxes``), so that tumour boxes follow their masks.
        non_blocking: passed to ``Tensor.to``.

    Shape:
        batch[image_key]: (N, C, H, W) or (N, C, D, H, W); each mask (N, *spatial) or
        (N, C_m, *spatial).

    Example:
        >>> loader = DataLoader(DRIVEDataset("DRIVE", channels=1, size=512), batch_size=4, shuffle=True,
        ...                     num_workers=2, pin_memory=True)
        >>> augment = Compose([RandomAffine(degrees=15, hflip_p=0.5), RandomGamma()])
        >>> for batch in DeviceAugmentLoader(loader, augment, device="cuda", mask_key=("mask", "fov")):
        ...     logits = model(batch["image"])
    """

    def __init__(self, loader: Iterable, transform: Callable[..., tuple[Tensor, Tensor | None]] | None = None,
                 device: str | torch.device = "cpu", image_key: Key = "image",
                 mask_key: Key | Sequence[Key] | None = "mask", generator: torch.Generator | None = None,
                 non_blocking: bool = True, box_key: Key | None = None) -> None:
        if transform is not None and not callable(transform):
            raise TypeError(f"transform: expected a callable or None, got {type(transform).__name__}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")
        self.loader, self.transform, self.generator = loader, transform, generator
        self.device = torch.device(device)
        self.image_key = image_key
        self.mask_keys: tuple[Key, ...] = (() if mask_key is None else
                                           (mask_key,) if isinstance(mask_key, (str, int)) else tuple(mask_key))
        self.non_blocking = bool(non_blocking)
        if box_key is not None and not self.mask_keys:
            raise ValueError("box_key: boxes are recomputed from a mask, but mask_key is None")
        self.box_key = box_key

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            batch = to_device(batch, self.device, self.non_blocking)
            yield batch if self.transform is None else self._augment(batch)

    def _augment(self, batch: Any) -> Any:
        if isinstance(batch, Tensor):
            return self.transform(batch, None, generator=self.generator)[0]
        if isinstance(batch, Mapping):
            fields, has = dict(batch), lambda k: k in batch
        elif isinstance(batch, (list, tuple)):
            fields, has = list(batch), lambda k: isinstance(k, int) and -len(batch) <= k < len(batch)
        else:
            raise TypeError(f"batch: expected a dict, tuple, list or tensor, got {type(batch).__name__}")
        if not has(self.image_key):
            keys = list(batch) if isinstance(batch, Mapping) else f"positions 0..{len(batch) - 1}"
            raise ValueError(f"image_key: {self.image_key!r} is not in the batch (it has {keys})")
        image = fields[self.image_key]
        mask_keys = [k for k in self.mask_keys if has(k)]
        masks = [fields[k] for k in mask_keys]
        mask = None if not masks else masks[0] if len(masks) == 1 else _stack(masks, mask_keys, image)
        image, mask = self.transform(image, mask, generator=self.generator)
        fields[self.image_key] = image
        if len(masks) == 1:
            fields[mask_keys[0]] = mask
        elif masks:
            for k, part in zip(mask_keys, _unstack(mask, masks, image), strict=True):
                fields[k] = part
        if self.box_key is not None and masks and has(self.box_key):
            if image.dim() != 4:
                raise ValueError(f"box_key: boxes are 2D (x0, y0, x1, y1); the batch holds {image.dim() - 2}D images")
            first = fields[mask_keys[0]]
            fields[self.box_key] = masks_to_boxes(first if first.dim() == image.dim() - 1 else first.amax(1))
        if isinstance(batch, Mapping):
            return fields
        return type(batch)(*fields) if hasattr(batch, "_fields") else type(batch)(fields)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(transform={self.transform!r}, device={str(self.device)!r}, "
                f"image_key={self.image_key!r}, mask_key={self.mask_keys!r}, batches={len(self.loader)})")


def _as_channels(mask: Tensor, image: Tensor) -> Tensor:
    return mask.unsqueeze(1) if mask.dim() == image.dim() - 1 else mask


def _stack(masks: list[Tensor], keys: list[Key], image: Tensor) -> Tensor:
    """Masks as one (N, sum C_m, *spatial) tensor of their promoted dtype."""
    spatial = (image.shape[0], *image.shape[2:])
    for key, m in zip(keys, masks, strict=True):
        view = _as_channels(m, image)
        if view.dim() != image.dim() or (view.shape[0], *view.shape[2:]) != spatial:
            raise ValueError(f"mask_key: batch[{key!r}] has shape {tuple(m.shape)}; expected (N, *spatial) or "
                             f"(N, C, *spatial) matching the images {tuple(image.shape)}")
    dtype = functools.reduce(torch.promote_types, [m.dtype for m in masks])
    return torch.cat([_as_channels(m, image).to(dtype) for m in masks], dim=1)


def _unstack(stacked: Tensor, masks: list[Tensor], image: Tensor) -> list[Tensor]:
    sizes = [_as_channels(m, image).shape[1] for m in masks]
    parts = torch.split(stacked, sizes, dim=1)
    return [part.reshape(m.shape).to(m.dtype) for part, m in zip(parts, masks, strict=True)]

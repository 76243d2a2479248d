"""Chaining transforms that share the ``(image, mask, generator)`` calling convention."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

Transform = Callable[..., tuple[Tensor, Tensor | None]]


class Compose:
    """Apply transforms in order; each gets the image and mask the previous one returned.

    Example:
        >>> import torch
        >>> from medimg.transforms import Compose, Normalize01, RandomAffine, RandomGamma
        >>> t = Compose([RandomAffine(degrees=10), Normalize01(), RandomGamma()])
        >>> images, masks = torch.rand(4, 1, 32, 32), torch.randint(0, 3, (4, 32, 32))
        >>> image, mask = t(images, masks, generator=torch.Generator().manual_seed(0))
    """

    def __init__(self, transforms: Sequence[Transform]) -> None:
        for i, t in enumerate(transforms):
            if not callable(t):
                raise TypeError(f"transforms[{i}]: expected a callable transform, got {type(t).__name__}")
        self.transforms = list(transforms)

    def __call__(self, image: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None
                 ) -> tuple[Tensor, Tensor | None]:
        for t in self.transforms:
            image, mask = t(image, mask, generator=generator)
        return image, mask

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(t) for t in self.transforms)
        return f"Compose([\n  {inner}\n])"

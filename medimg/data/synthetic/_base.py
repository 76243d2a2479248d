"""The Dataset plumbing every synthetic dataset shares: argument checks, per-index seeding,
single samples, index-consistent batches and fresh random batches."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from medimg.data.synthetic._fields import sample_seed

MIN_SIZE = 16
CHUNK_PIXELS = 1 << 19
Sample = dict[str, Tensor]


def check_length(length: int) -> int:
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ValueError(f"length: expected an integer >= 0, got {length!r}")
    return length


def check_size(size: int, name: str = "size", minimum: int = MIN_SIZE) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {size!r}")
    return size


def check_fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name}: expected a number in [0, 1], got {value!r}")
    return float(value)


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed: expected an integer, got {seed!r}")
    return seed


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {tuple(choices)}, got {value!r}")
    return value


class SyntheticDataset(Dataset):
    """A map-style dataset whose sample ``i`` is rendered on the fly from ``(seed, i)``.

    Subclasses implement ``_render(seeds, **options)``: one batch, vectorised over samples,
    from one generator seed per sample; ``render`` calls it on chunks of about 2^19 pixels
    (8 images of 256 x 256), which keeps the intermediate maps in cache. Everything else
    follows from it:

    - ``ds[i]``: one sample (a dict of tensors without a batch dimension);
    - ``ds.get_batch(indices)``: the same samples stacked into one batch, rendered together;
    - ``ds.__getitems__(indices)``: what a ``DataLoader`` calls to fetch a whole batch at once;
    - ``ds.batch(n, generator)``: n samples with this dataset's settings, from an integer seed
      s (then identical to ``ds.get_batch(range(n))`` of the same dataset built with seed s),
      a ``torch.Generator``, or None (torch's global generator): for endless training streams.

    ``ds[i]`` and row ``j`` of a batch holding index ``i`` agree up to float rounding (below
    1e-6; vectorised and scalar math paths may round differently): random draws come from
    each sample's own generator, and every step is elementwise or per sample.
    """

    def __init__(self, length: int, size: int, seed: int) -> None:
        self.length = check_length(length)
        self.size = check_size(size)
        self.seed = check_seed(seed)

    def _render(self, seeds: Sequence[int], **options: bool) -> Sample:  # pragma: no cover - abstract
        raise NotImplementedError

    def _pixels_per_sample(self) -> int:
        return self.size * self.size

    def render(self, seeds: Sequence[int], **options: bool) -> Sample:
        """One sample per generator seed, as a batch (N, ...); `options` go to the subclass."""
        chunk = max(1, CHUNK_PIXELS // self._pixels_per_sample())
        parts = [self._render(seeds[i:i + chunk], **options) for i in range(0, len(seeds), chunk)]
        if len(parts) == 1:
            return parts[0]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def __len__(self) -> int:
        return self.length

    def _index(self, index: int) -> int:
        i = int(index)
        if not -self.length <= i < self.length:
            raise IndexError(f"index {index} is out of range for a dataset of length {self.length}")
        return i % self.length

    def __getitem__(self, index: int) -> Sample:
        return {k: v[0] for k, v in self.get_batch([index]).items()}

    def get_batch(self, indices: Sequence[int]) -> Sample:
        """Samples `indices` rendered as one batch: the same tensors as ``ds[i]``, stacked."""
        indices = [self._index(i) for i in indices]
        if not indices:
            raise ValueError("indices: expected at least one index")
        return self.render([sample_seed(self.seed, i) for i in indices])

    def __getitems__(self, indices: Sequence[int]) -> list[Sample]:
        out = self.get_batch(indices)
        return [{k: v[j] for k, v in out.items()} for j in range(len(indices))]

    def batch(self, n: int, generator: torch.Generator | int | None = None) -> Sample:
        """A batch of `n` fresh samples with this dataset's settings (its length and seed are ignored).

        Args:
            n: batch size (>= 1).
            generator: an int seed s (the samples are then those of indices 0..n-1 of a
                dataset built with seed s), a CPU ``torch.Generator`` (advanced by one draw),
                or None for torch's global generator.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n: expected an integer >= 1, got {n!r}")
        if isinstance(generator, int) and not isinstance(generator, bool):
            seeds = [sample_seed(generator, i) for i in range(n)]
        elif generator is None or isinstance(generator, torch.Generator):
            if generator is not None and generator.device.type != "cpu":
                raise ValueError(f"generator: expected a CPU generator, got one on {generator.device}")
            seeds = torch.randint(0, 2**62, (n,), generator=generator).tolist()
        else:
            raise ValueError(f"generator: expected None, an int seed or a torch.Generator, got {generator!r}")
        return self.render(seeds)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra = f", {extra}" if extra else ""
        return f"{type(self).__name__}(length={self.length}, size={self.size}{extra}, seed={self.seed})"

"""Intensity augmentation and normalisation, per sample, on the batch's device.

Each is called as ``image, mask = t(image, mask=None, generator=None)`` on a floating batch
(N, C, H, W) or (N, C, D, H, W), and returns an image of the same shape and dtype; the mask
passes through unchanged. Random transforms apply to each sample with probability ``p``.
They work in place in fresh buffers, one per transform (two for RandomGamma where autograd
records it), bit for bit the out-of-place formula, rather than allocating one per operation
(RandomContrast's arithmetic on 32 x 1x256^2: 0.23 ms against 0.38 ms here).
Transforms built on per-sample statistics (Normalize01, RandomGamma, RandomContrast) refuse
a sample with NaN or infinite pixels, which would spread over the whole sample through its
statistic; on CUDA that check is a device sync, which ``check_finite=False`` skips. The
elementwise ones leave such pixels as they are.

Example:
    >>> import torch
    >>> from medimg.transforms import Compose, Normalize01, RandomContrast, RandomGaussianNoise
    >>> t = Compose([Normalize01(percentiles=(1, 99)), RandomContrast(p=1.0), RandomGaussianNoise(0.02)])
    >>> image, _ = t(torch.rand(8, 1, 64, 64), generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from medimg import _extension
from medimg.ops._boundary import check_backend, check_sizes_positive, finite_mask, use_compiled
from medimg.ops.gamma import gamma_curve
from medimg.ops.noise import random_gaussian_noise
from medimg.ops.order_statistics import order_statistics
from medimg.transforms._sampling import (
    as_range,
    check_generator,
    check_image,
    check_probability,
    is_number,
    per_sample,
)


def _check_float(image: Tensor) -> Tensor:
    image = check_image(image)
    if not image.is_floating_point():
        raise TypeError(f"image: intensity transforms need a floating image, got {image.dtype}")
    check_sizes_positive("image", image)
    return image


def _require_finite(transform: str, finite: Tensor) -> None:
    """Raise naming the samples whose flag in `finite` (N,) is False. One device sync on CUDA."""
    if not bool(finite.all()):
        samples = (~finite).nonzero().flatten().tolist()
        raise ValueError(f"image: sample(s) {samples} hold NaN or infinite pixels, which {transform} would "
                         "spread over the whole sample; replace them first (e.g. torch.nan_to_num)")


def _least_positive(eps: float, dtype: torch.dtype) -> float:
    """`eps`, but at least the smallest normal number of `dtype` (1e-8 is 0 in float16)."""
    return max(eps, torch.finfo(dtype).tiny)


def _sample_extent(image: Tensor, transform: str | None) -> tuple[Tensor, Tensor]:
    """Per-sample minimum and maximum, (N, 1, ..., 1); NaN or inf pixels refused unless
    `transform` (the name for the error) is None."""
    flat = image.flatten(1)
    # NaN propagates into both. On CUDA one reduction reads the batch once (torch.aminmax); on
    # the CPU torch.aminmax along a dimension is not vectorised (32 x 256^2 f32 here: 3.2 ms,
    # against 0.25 ms for amin and amax).
    lo, hi = torch.aminmax(flat, dim=1) if flat.is_cuda else (flat.amin(1), flat.amax(1))
    if transform is not None:
        _require_finite(transform, finite_mask(lo, hi))
    return per_sample(lo, image), per_sample(hi, image)


def _sample_percentiles(image: Tensor, fractions: tuple[float, float], check_finite: bool, method: str
                        ) -> list[Tensor]:
    """Per-sample values at `fractions` (in [0, 1]) of each sample's sorted pixels, interpolated
    linearly between neighbours as torch.quantile does, (N, 1, ..., 1) in image's dtype; no size
    limit (quantile refuses inputs of more than 2^24 elements). The order statistics by `method`
    (see _order_statistics). In float64 for float64, else float32."""
    flat = image.flatten(1)
    work = flat if flat.dtype == torch.float64 else flat.float()
    last = work.shape[1] - 1
    positions = [fraction * last for fraction in fractions]
    needed = {k for p in positions for k in (math.floor(p), math.ceil(p))}
    # Every method orders NaN after +inf: a sample is finite where its smallest and largest
    # values are, so selection and sort check two more order statistics instead of making a
    # pass of their own (32 x 1x256^2: 4.2 ms a call, against 6.0); kthvalue would take two calls.
    extremes = check_finite and method != "kthvalue"
    if check_finite and not extremes:
        _require_finite("Normalize01", finite_mask(flat).all(1))
    order_statistic = _order_statistics(work, sorted(needed | ({0, last} if extremes else set())), method)
    if extremes:
        _require_finite("Normalize01", finite_mask(order_statistic[0], order_statistic[last]))
    values = []
    for position in positions:
        below = math.floor(position)
        low = order_statistic[below]
        high = low if position == below else order_statistic[below + 1]
        values.append(per_sample(torch.lerp(low, high, position - below), image))
    return values


def _percentile_method(device: torch.device, backend: str) -> str:
    """How Normalize01 finds order statistics: "select", medimg's selection kernel (on the CPU, 11x
    faster than four torch.kthvalue calls on 32 x 256^2 here; backend "medimg" insists, and
    raises off the CPU); else "sort", one sort (CUDA's kthvalue gives each row one thread
    block), or "kthvalue" on the CPU."""
    if backend == "medimg" or (backend == "auto" and device.type == "cpu" and _extension.cpu is not None):
        return "select"
    return "kthvalue" if device.type == "cpu" else "sort"


def _order_statistics(work: Tensor, ks: list[int], method: str) -> dict[int, Tensor]:
    """The k-th smallest value of each row of `work` (N, L) for each k in `ks` (ascending), (N,),
    differentiable, by `method` ("select", "sort" or "kthvalue")."""
    if method == "select":
        selected = work.gather(1, order_statistics(work.detach(), ks, backend="medimg"))
        return {k: selected[:, j] for j, k in enumerate(ks)}
    if method == "sort":
        ordered = work.sort(dim=1).values
        return {k: ordered[:, k] for k in ks}
    return {k: work.kthvalue(k + 1, dim=1).values for k in ks}


class Normalize01:
    """Min-max scaling of each sample to [0, 1] (the normalisation of the reference study).

    Args:
        percentiles: None (true min and max), or (low, high) percentiles in [0, 100] whose
            values map to 0 and 1, with everything outside clipped (robust to hot pixels).
        eps: smallest range divided by (> 0; at least the dtype's smallest normal number), so
            that a constant sample maps to 0.
        check_finite: refuse samples with NaN or infinite pixels (a device sync on CUDA);
            False skips the check, and such a sample comes out NaN.
        backend: how percentiles are found: "auto" (medimg's selection kernel on the CPU where
            it is built; a sort on CUDA), "medimg" (insist on the kernel: CPU only) or "torch"
            (torch.kthvalue on the CPU, a sort elsewhere).

    Shape:
        image: (N, C, H, W) or (N, C, D, H, W), floating; statistics over each whole sample
        (all channels). Returned with the same shape and dtype.
    """

    def __init__(self, percentiles: tuple[float, float] | None = None, eps: float = 1e-8,
                 check_finite: bool = True, backend: str = "auto") -> None:
        if percentiles is not None:
            lo, hi = as_range("percentiles", percentiles, symmetric=False)
            if not 0.0 <= lo < hi <= 100.0:
                raise ValueError(f"percentiles: expected 0 <= low < high <= 100, got {percentiles!r}")
            percentiles = (lo, hi)
        if not is_number(eps) or not 0.0 < float(eps) < math.inf:
            raise ValueError(f"eps: expected a finite number > 0, got {eps!r}")
        self.percentiles, self.eps, self.check_finite = percentiles, float(eps), bool(check_finite)
        self.backend = check_backend(backend)

    def __call__(self, image: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None
                 ) -> tuple[Tensor, Tensor | None]:
        image = _check_float(image)
        if self.percentiles is None:
            lo, hi = _sample_extent(image, "Normalize01" if self.check_finite else None)
        else:
            fractions = (self.percentiles[0] / 100.0, self.percentiles[1] / 100.0)
            lo, hi = _sample_percentiles(image, fractions, self.check_finite,
                                         _percentile_method(image.device, self.backend))
        scaled = (image - lo).div_((hi - lo).clamp_min(_least_positive(self.eps, image.dtype)))
        if self.percentiles is not None:
            scaled.clamp_(0.0, 1.0)
        return scaled, mask

    def __repr__(self) -> str:
        return f"Normalize01(percentiles={self.percentiles}, eps={self.eps}, check_finite={self.check_finite})"


class _RandomIntensity:
    """Shared parameter drawing: one value per sample from `bounds`, identity where not applied.
    `check_finite`: whether a transform built on a per-sample statistic refuses NaN or inf."""

    identity: float = 0.0

    def __init__(self, bounds: tuple[float, float], p: float, check_finite: bool = True) -> None:
        self.bounds, self.p, self.check_finite = bounds, check_probability("p", p), bool(check_finite)

    def draw(self, image: Tensor, generator: torch.Generator | None) -> Tensor:
        """Per-sample values (N, 1, ..., 1) in image's dtype: one uniform pair per sample, the
        first mapped to `bounds`, the second deciding whether the sample is transformed (five
        small ops: on a GPU each is a launch)."""
        check_generator(generator, image.device)
        low, high = self.bounds
        draws = torch.rand(image.shape[0], 2, device=image.device, generator=generator, dtype=torch.float32)
        values = draws[:, 0].mul(high - low).add_(low)
        return per_sample(torch.where(draws[:, 1] < self.p, values, self.identity), image)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.bounds}, p={self.p})"


class RandomGamma(_RandomIntensity):
    """Gamma curve on each sample's own intensity range: ((x - min) / range) ** gamma * range + min,
    so the sample keeps its minimum and maximum whatever their sign (medimg.ops.gamma_curve: on
    the CPU, float32, a vectorised kernel, 2.5x the torch.pow formula here; on CUDA one pass).

    Args:
        gamma: range of gamma (> 0); below 1 brightens mid-tones, above 1 darkens them.
        p: probability per sample.
        check_finite: as Normalize01's.
        backend: as gamma_curve's: "auto" (a kernel where one is built and no gradient is
            recorded: float32 on the CPU, any floating dtype on CUDA; else torch ops), "medimg"
            or "torch".

    Shape:
        image: (N, C, H, W) or (N, C, D, H, W), floating; returned with its shape and dtype.
    """

    identity = 1.0

    def __init__(self, gamma: tuple[float, float] = (0.7, 1.5), p: float = 0.5, check_finite: bool = True,
                 backend: str = "auto") -> None:
        bounds = as_range("gamma", gamma, symmetric=False)
        if bounds[0] <= 0:
            raise ValueError(f"gamma: values must be > 0, got {gamma!r}")
        super().__init__(bounds, p, check_finite)
        self.backend = check_backend(backend)

    def __call__(self, image: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None
                 ) -> tuple[Tensor, Tensor | None]:
        image = _check_float(image)
        gamma = self.draw(image, generator)
        lo, hi = _sample_extent(image, "RandomGamma" if self.check_finite else None)
        extent = (hi - lo).clamp_min(_least_positive(1e-8, image.dtype))
        return gamma_curve(image, gamma.flatten(), lo.flatten(), extent.flatten(), backend=self.backend), mask


class RandomContrast(_RandomIntensity):
    """Contrast about each sample's mean: (x - mean) * factor + mean.

    Args:
        factor: range of the factor (>= 0); below 1 flattens, above 1 stretches.
        p: probability per sample.
        check_finite: as Normalize01's.

    Shape:
        image: (N, C, H, W) or (N, C, D, H, W), floating; returned with its shape and dtype.
    """

    identity = 1.0

    def __init__(self, factor: tuple[float, float] = (0.75, 1.25), p: float = 0.5, check_finite: bool = True
                 ) -> None:
        super().__init__(as_range("factor", factor, symmetric=False, low=0.0), p, check_finite)

    def __call__(self, image: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None
                 ) -> tuple[Tensor, Tensor | None]:
        image = _check_float(image)
        factor = self.draw(image, generator)
        mean = image.flatten(1).mean(1)
        if self.check_finite:
            _require_finite("RandomContrast", finite_mask(mean))
        mean = per_sample(mean, image)
        return (image - mean).mul_(factor).add_(mean), mask


class RandomBrightness(_RandomIntensity):
    """Additive brightness shift: x + delta.

    Args:
        delta: range of the shift: a number d means (-d, d), or (low, high).
        p: probability per sample.

    Shape:
        image: (N, C, H, W) or (N, C, D, H, W), floating; returned with its shape and dtype.
    """

    identity = 0.0

    def __init__(self, delta: float | tuple[float, float] = 0.1, p: float = 0.5) -> None:
        super().__init__(as_range("delta", delta, symmetric=True), p)

    def __call__(self, image: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None
                 ) -> tuple[Tensor, Tensor | None]:
        image = _check_float(image)
        return image + self.draw(image, generator), mask


_NOISE_KERNEL_DTYPES = (torch.float32, torch.float64)


class RandomGaussianNoise(_RandomIntensity):
    """Additive Gaussian noise with a per-sample standard deviation drawn from `std`. For
    float32/float64 batches on the CPU or CUDA (where medimg's kernel for the device is built)
    the noise, each sample's standard deviation and whether it is noised come from a
    counter-based generator seeded by one draw of `generator` on the batch's device
    (medimg.ops.random_gaussian_noise: one kernel; 2.1 ms on 32 x 1x256^2 on the CPU here,
    against 8.4 ms with torch.randn); otherwise from torch.randn. Either way the generator's seed gives the same
    noise again on the same machine, device and build (CPU and CUDA generators draw different
    seeds, and the kernel's last bits may differ between instruction sets).

    Args:
        std: range of the standard deviation (>= 0): a number s means (0, s), or (low, high).
        p: probability per sample.
        backend: "auto" (medimg's kernel for float32/float64 on the CPU or CUDA where it is
            built, else torch.randn), "medimg" (insist on the kernel) or "torch" (torch.randn
            everywhere).

    Shape:
        image: (N, C, H, W) or (N, C, D, H, W), floating; returned with its shape and dtype.
    """

    identity = 0.0

    def __init__(self, std: float | tuple[float, float] = (0.0, 0.05), p: float = 0.5, backend: str = "auto") -> None:
        if is_number(std) and not 0.0 <= float(std) < math.inf:
            raise ValueError(f"std: expected a finite number >= 0, or a (low, high) pair, got {std!r}")
        bounds = as_range("std", (0.0, float(std)) if is_number(std) else std, symmetric=False)
        if bounds[0] < 0:
            raise ValueError(f"std: must be >= 0, got {std!r}")
        super().__init__(bounds, p)
        self.backend = check_backend(backend)

    def __call__(self, image: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None
                 ) -> tuple[Tensor, Tensor | None]:
        image = _check_float(image)
        if self.backend == "medimg" or (self.backend == "auto" and image.dtype in _NOISE_KERNEL_DTYPES
                                        and use_compiled("auto", image.device)):
            # drawn on the batch's device (where the generator lives): no host sync on CUDA. The
            # kernel draws each sample's sigma and p decision from the seed too: two launches.
            check_generator(generator, image.device)
            seed = torch.randint(-(2**63), 2**63 - 1, (), generator=generator, dtype=torch.int64, device=image.device)
            return random_gaussian_noise(image, seed, self.bounds, self.p, backend="medimg"), mask
        sigma = self.draw(image, generator)
        noise = torch.randn(image.shape, device=image.device, generator=generator, dtype=image.dtype)
        return noise.mul_(sigma).add_(image), mask

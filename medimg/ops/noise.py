"""Gaussian noise added to an image batch in one pass, from a counter-based generator
(Philox4x32-10, csrc/common/philox.h) whose stream is the same on the CPU and on CUDA. On the
CPU, torch's normal_ draws one value at a time from one Mersenne Twister (torch.randn and the
addition: 8.4 ms for 32 x 1x256^2 here, against 2.1 ms for RandomGaussianNoise on this kernel,
two threads); on CUDA the kernel makes one pass where randn and the addition make two.
`random_gaussian_noise` also draws each sample's sigma and p decision in the kernel."""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from medimg import _extension
from medimg.ops import _reference
from medimg.ops._boundary import call_op, check_tensor, cuda_stream, empty_output, num_threads, use_compiled, view


def gaussian_noise(image: Tensor, sigma: Tensor, seed: Tensor, *, backend: str = "auto") -> Tensor:
    """``image + sigma[n] * z`` with z ~ N(0, 1) drawn per element from the seed.

    The same seed gives the same noise whatever the thread count, and on the CPU and CUDA
    alike (up to float rounding); sample n's noise depends on (seed, n, position) alone.
    Differentiable with respect to image (the identity), not sigma.

    Args:
        image: (N, ...) float32 or float64, on the CPU or a CUDA device.
        sigma: (N,) standard deviations, image's dtype and device.
        seed: int64 scalar tensor on the CPU or on image's device (a tensor, so that drawing
            it from a generator needs no host read: the CUDA kernel reads it on the device; a
            CPU seed is copied there first, a copy that may wait for the stream).
        backend: "auto" (the kernel where built), "medimg" (insist) or "torch" (the same
            generator in torch ops, medimg.ops._reference: equal up to float rounding, slow).

    Returns:
        A new contiguous tensor, image's shape and dtype.
    """
    check_tensor("image", image)
    check_tensor("sigma", sigma)
    check_tensor("seed", seed)
    _check_image_dtype(image)
    if tuple(sigma.shape) != (image.shape[0],) or sigma.dtype != image.dtype or sigma.device != image.device:
        raise ValueError(f"sigma: expected {image.dtype} ({image.shape[0]},) on {image.device}, got {sigma.dtype} "
                         f"{tuple(sigma.shape)} on {sigma.device}")
    if sigma.requires_grad:
        raise ValueError("sigma: the noise is not differentiable with respect to sigma")
    _check_seed(seed, image)
    if not _kernel_called(image, backend) or image.numel() == 0:  # empty: the formula keeps the autograd link
        return _reference.gaussian_noise(image, sigma, seed)
    return call_op(torch.ops.medimg.gaussian_noise, _KERNELS, image, sigma, seed)


def random_gaussian_noise(image: Tensor, seed: Tensor, std: tuple[float, float], p: float = 1.0, *,
                          backend: str = "auto") -> Tensor:
    """``gaussian_noise`` with each sample's sigma drawn from the seed too: sample n is noised with
    probability p, with sigma uniform on [std[0], std[1]]; the others come out unchanged.

    RandomGaussianNoise in one kernel after its seed: on a GPU, drawing the per-sample sigmas and
    decisions in torch ops took five launches of their own (32 x 1x256^2 on an H100: 0.18 ms
    per call, 8 launches, against 0.04 ms for ``image + 0.05 * torch.randn_like(image)``).

    Args:
        image: (N, ...) float32 or float64, on the CPU or a CUDA device.
        seed: int64 scalar tensor, as gaussian_noise's; sigma and noise come from its Philox
            stream (medimg.ops._reference.noise_sigma says which counters).
        std: (low, high), 0 <= low <= high, finite in image's dtype.
        p: probability in [0, 1] that a sample is noised.
        backend: as gaussian_noise's.

    Returns:
        A new contiguous tensor, image's shape and dtype. Differentiable with respect to image.
    """
    check_tensor("image", image)
    check_tensor("seed", seed)
    _check_image_dtype(image)
    low, high = _check_std(std, image.dtype)
    if not _is_real(p) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"p: expected a probability in [0, 1], got {p!r}")
    p = float(p)
    _check_seed(seed, image)
    if not _kernel_called(image, backend) or image.numel() == 0:
        sigma = _reference.noise_sigma(seed, image.shape[0], low, high, p, image.dtype, image.device)
        return _reference.gaussian_noise(image, sigma, seed)
    return call_op(torch.ops.medimg.random_gaussian_noise, _RANDOM_KERNELS, image, seed, low, high, p)


def _check_image_dtype(image: Tensor) -> None:
    if image.dim() < 1 or image.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"image: expected float32 or float64 (N, ...), got {image.dtype} {tuple(image.shape)}")


def _kernel_called(image: Tensor, backend: str) -> bool:
    """Whether a noise kernel serves this call (backend and build); raises where one is asked for
    but the device has none."""
    if not use_compiled(backend, image.device):
        return False
    if image.device.type not in _KERNELS:
        raise ValueError(f"image: the noise kernel runs on the CPU and CUDA, got a tensor on {image.device}; "
                         "pass backend='torch'")
    return True


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_std(std: object, dtype: torch.dtype) -> tuple[float, float]:
    """(low, high) as floats: 0 <= low <= high, high finite in `dtype`."""
    if not isinstance(std, (tuple, list)) or len(std) != 2 or not all(map(_is_real, std)):
        raise ValueError(f"std: expected a (low, high) pair of numbers, got {std!r}")
    low, high = float(std[0]), float(std[1])
    if not (0.0 <= low <= high <= torch.finfo(dtype).max):
        raise ValueError(f"std: expected 0 <= low <= high <= {torch.finfo(dtype).max:g} ({dtype}), got {std!r}")
    return low, high


def _check_seed(seed: Tensor, image: Tensor) -> None:
    if seed.dim() != 0 or seed.dtype != torch.int64 or seed.device not in (torch.device("cpu"), image.device):
        where = "the CPU" if image.device.type == "cpu" else f"the CPU or on {image.device}"
        raise ValueError(f"seed: expected an int64 scalar tensor on {where}, got {seed.dtype} {tuple(seed.shape)} "
                         f"on {seed.device}")


@torch.library.custom_op("medimg::gaussian_noise", mutates_args=())
def _gaussian_noise_op(image: Tensor, sigma: Tensor, seed: Tensor) -> Tensor:
    raise NotImplementedError(f"medimg::gaussian_noise has no kernel for device {image.device.type}")


@_gaussian_noise_op.register_fake
def _(image: Tensor, sigma: Tensor, seed: Tensor) -> Tensor:
    return torch.empty_like(image, memory_format=torch.contiguous_format)


@_gaussian_noise_op.register_kernel("cpu")
def _gaussian_noise_cpu(image: Tensor, sigma: Tensor, seed: Tensor) -> Tensor:
    module = _extension.require(_extension.cpu, _extension.cpu_error, "gaussian_noise on the CPU")
    image, sigma = image.contiguous(), sigma.contiguous()
    out = empty_output(image.shape, image.dtype)
    module.gaussian_noise(view(image), view(sigma), int(seed) & (2**64 - 1), view(out), num_threads())
    return out


@_gaussian_noise_op.register_kernel("cuda")
def _gaussian_noise_cuda(image: Tensor, sigma: Tensor, seed: Tensor) -> Tensor:
    module = _extension.require(_extension.cuda, _extension.cuda_error, "gaussian_noise on CUDA")
    image, sigma = image.contiguous(), sigma.contiguous()
    seed = seed.to(image.device, non_blocking=True)
    out = torch.empty_like(image, memory_format=torch.contiguous_format)
    module.gaussian_noise(view(image), view(sigma), view(seed), view(out), cuda_stream(image.device))
    return out


_gaussian_noise_op.register_autograd(lambda ctx, grad: (grad, None, None))

_KERNELS = {"cpu": _gaussian_noise_cpu, "cuda": _gaussian_noise_cuda}


@torch.library.custom_op("medimg::random_gaussian_noise", mutates_args=())
def _random_gaussian_noise_op(image: Tensor, seed: Tensor, low: float, high: float, p: float) -> Tensor:
    raise NotImplementedError(f"medimg::random_gaussian_noise has no kernel for device {image.device.type}")


@_random_gaussian_noise_op.register_fake
def _(image: Tensor, seed: Tensor, low: float, high: float, p: float) -> Tensor:
    return torch.empty_like(image, memory_format=torch.contiguous_format)


@_random_gaussian_noise_op.register_kernel("cpu")
def _random_gaussian_noise_cpu(image: Tensor, seed: Tensor, low: float, high: float, p: float) -> Tensor:
    module = _extension.require(_extension.cpu, _extension.cpu_error, "random_gaussian_noise on the CPU")
    image = image.contiguous()
    out = empty_output(image.shape, image.dtype)
    module.random_gaussian_noise(view(image), int(seed) & (2**64 - 1), low, high, p, view(out), num_threads())
    return out


@_random_gaussian_noise_op.register_kernel("cuda")
def _random_gaussian_noise_cuda(image: Tensor, seed: Tensor, low: float, high: float, p: float) -> Tensor:
    module = _extension.require(_extension.cuda, _extension.cuda_error, "random_gaussian_noise on CUDA")
    image = image.contiguous()
    seed = seed.to(image.device, non_blocking=True)
    out = torch.empty_like(image, memory_format=torch.contiguous_format)
    module.random_gaussian_noise(view(image), view(seed), low, high, p, view(out), cuda_stream(image.device))
    return out


_random_gaussian_noise_op.register_autograd(lambda ctx, grad: (grad, None, None, None, None))

_RANDOM_KERNELS = {"cpu": _random_gaussian_noise_cpu, "cuda": _random_gaussian_noise_cuda}

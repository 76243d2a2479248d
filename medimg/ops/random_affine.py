"""RandomAffine's per-sample matrices, theta and the warp's pixel coefficients, from its uniform
draws in one kernel call (csrc/common/random_affine.h). Composed with torch ops on the device
they cost about twenty small kernel launches per batch, which on a GPU outweigh the warp
itself for batches of up to millions of pixels."""

from __future__ import annotations

import torch
from torch import Tensor

from medimg import _extension
from medimg.ops._boundary import call_op, cuda_stream, view


def random_affine_matrices(uniform: Tensor, spec: Tensor, k: int, shear: bool, translate: bool,
                           round_to_float: bool) -> tuple[Tensor, Tensor]:
    """theta and pixel coefficients, each (N, k, k + 1) float64, on uniform's device.

    Args:
        uniform: (N, columns) float64 draws in [0, 1), columns as RandomAffine's draw layout.
        spec: float64 (the layout's ranges, probabilities, ratios and pixel_coefficients'
            constants; see csrc/common/random_affine.h), on uniform's device.
        k: 2 (images) or 3 (volumes); shear, translate: whether those columns are drawn.
        round_to_float: fold theta rounded to float32 into the coefficients, as RandomAffine
            casts it for non-float64 images.

    Returns:
        theta as RandomAffine's Python reference composes it (the same bits but for sin, cos and
        tan), and ``pixel_coefficients(theta)`` with the same bits as that function.
    """
    return call_op(torch.ops.medimg.random_affine, _KERNELS, uniform.contiguous(), spec.contiguous(), k, shear,
                   translate, round_to_float)


@torch.library.custom_op("medimg::random_affine", mutates_args=())
def _random_affine_op(uniform: Tensor, spec: Tensor, k: int, shear: bool, translate: bool, round_to_float: bool
                      ) -> tuple[Tensor, Tensor]:
    raise NotImplementedError(f"medimg::random_affine has no kernel for device {uniform.device.type}")


def _outputs(uniform: Tensor, spec: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Empty theta and coeffs (N, k, k + 1) float64 on uniform's device, after the checks that
    the kernels cannot make (layout sizes are checked in C++)."""
    if k not in (2, 3) or uniform.dim() != 2 or uniform.dtype != torch.float64:
        raise ValueError(f"random_affine: expected k in (2, 3) and float64 uniform (N, columns), got k={k}, "
                         f"uniform {uniform.dtype} {tuple(uniform.shape)}")
    if spec.device != uniform.device:
        raise ValueError(f"spec: on {spec.device}, but uniform is on {uniform.device}")
    shape = (uniform.shape[0], k, k + 1)
    return uniform.new_empty(shape), uniform.new_empty(shape)


@_random_affine_op.register_fake
def _(uniform: Tensor, spec: Tensor, k: int, shear: bool, translate: bool, round_to_float: bool
      ) -> tuple[Tensor, Tensor]:
    return _outputs(uniform, spec, k)


@_random_affine_op.register_kernel("cpu")
def _random_affine_cpu(uniform: Tensor, spec: Tensor, k: int, shear: bool, translate: bool, round_to_float: bool
                       ) -> tuple[Tensor, Tensor]:
    module = _extension.require(_extension.cpu, _extension.cpu_error, "RandomAffine's matrices on the CPU")
    theta, coeffs = _outputs(uniform, spec, k)
    module.random_affine(view(uniform), view(spec), view(theta), view(coeffs), shear, translate, round_to_float)
    return theta, coeffs


@_random_affine_op.register_kernel("cuda")
def _random_affine_cuda(uniform: Tensor, spec: Tensor, k: int, shear: bool, translate: bool, round_to_float: bool
                        ) -> tuple[Tensor, Tensor]:
    module = _extension.require(_extension.cuda, _extension.cuda_error, "RandomAffine's matrices on CUDA")
    theta, coeffs = _outputs(uniform, spec, k)
    module.random_affine(view(uniform), view(spec), view(theta), view(coeffs), shear, translate, round_to_float,
                         cuda_stream(uniform.device))
    return theta, coeffs


_KERNELS = {"cpu": _random_affine_cpu, "cuda": _random_affine_cuda}

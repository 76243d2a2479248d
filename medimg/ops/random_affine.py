"""RandomAffine's per-sample matrices, theta and the warp's pixel coefficients, from its uniform
draws in one kernel call (csrc/common/random_affine.h). Composed with torch ops on the device
they cost about twenty small kernel launches per batch, which on a GPU outweigh the warp
itself for batches of up to millions of pixels. For plain eager batches, random_affine_warp
also warps the image and its labels in the same call into the compiled module."""

from __future__ import annotations

import torch
from torch import Tensor

from medimg import _extension
from medimg.ops._affine_sample import KERNEL_DTYPES, MODES, PADDING_MODES, kernel_reads_dtype, plane_offsets_fit
from medimg.ops._boundary import (
    call_op,
    cuda_stream,
    direct_call_allowed,
    empty_output,
    num_threads,
    use_compiled,
    view,
)
from medimg.ops.affine import as_codes, check_options


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


def fused_warp_allowed(image: Tensor, labels: Tensor | None, mode: str, padding_mode: str, align_corners: bool,
                       backend: str) -> bool:
    """Whether random_affine_warp may take this batch: the compiled module for image's device is
    built and `backend` allows it, image and labels are on that device in dtypes its kernels
    take, every plane fits int32 offsets, and nothing would see the ops skipped
    (direct_call_allowed). Otherwise the ops run one at a time, and raise the errors that name
    the argument. `image` (and labels, (N, C_m, *spatial)) as RandomAffine has checked them."""
    check_options(mode, padding_mode, align_corners)
    device = image.device
    if backend == "torch" or not use_compiled("auto", device) or not plane_offsets_fit(image):
        return False
    if image.dtype not in KERNEL_DTYPES.get(device.type, ()) or (not image.is_floating_point() and mode != "nearest"):
        return False
    if labels is None:
        return direct_call_allowed(image)
    return (labels.device == device and kernel_reads_dtype(labels) and plane_offsets_fit(labels)
            and direct_call_allowed(image, labels))


def random_affine_warp(uniform: Tensor, spec: Tensor, k: int, shear: bool, translate: bool, image: Tensor,
                       labels: Tensor | None, mode: str, padding_mode: str, align_corners: bool
                       ) -> tuple[Tensor, Tensor | None]:
    """RandomAffine on a batch in one call into the compiled module: the matrices of
    random_affine_matrices (theta rounded to float32 unless image is float64), then
    ``affine_grid_sample`` of image (`mode`) and of labels (nearest) by them. The same kernels,
    so the same bits, as those ops one at a time, with one crossing from Python instead of
    three and none of the ops' wrappers: a RandomAffine call on one 28x28 image and its int64
    mask took 47 us, against 86 us through the ops (the 2-core CPU here). Only where
    fused_warp_allowed says so.

    Shapes: uniform (N, columns) float64 and spec as random_affine_matrices; image
    (N, C, *spatial) with k spatial dims; labels None or (N, C_m, *spatial), bool read as uint8.
    Returns the warped image and labels, their shapes and dtypes, contiguous.
    """
    theta, coeffs = _outputs(uniform, spec, k)
    device = image.device
    image_out = empty_output(image.shape, image.dtype, device)
    labels_out = None if labels is None else empty_output(labels.shape, labels.dtype, device)
    label_views = (None, None) if labels is None else (view(as_codes(labels)), view(as_codes(labels_out)))
    args = (view(uniform.contiguous()), view(spec.contiguous()), view(theta), view(coeffs), shear, translate,
            image.dtype != torch.float64, view(image), view(image_out), MODES[mode], *label_views,
            PADDING_MODES[padding_mode], align_corners)
    if device.type == "cpu":
        _extension.cpu.random_affine_warp(*args, num_threads())
    else:
        _extension.cuda.random_affine_warp(*args, cuda_stream(device))
    return image_out, labels_out

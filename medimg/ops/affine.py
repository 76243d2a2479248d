"""Affine warp of images, masks and volumes: ``F.grid_sample(input, F.affine_grid(theta))``
in one pass, without materialising the sampling grid."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from medimg import _extension
from medimg.ops import _reference
from medimg.ops._affine_sample import (
    FORWARD_KERNELS,
    MODES,
    PADDING_MODES,
    kernel_reads_dtype,
    plane_offsets_fit,
)
from medimg.ops._arrays import Array, numpy_allowed, ordered_matmul
from medimg.ops._boundary import (
    FLOAT_DTYPES,
    INTEGER_DTYPES,
    call_op,
    check_backend,
    check_batch,
    check_same_device,
    check_sizes_positive,
    check_tensor,
    constant_cache,
    cuda_stream,
    direct_call_allowed,
    empty_output,
    finite_mask,
    num_threads,
    tracing,
    use_compiled,
    view,
)


def affine_grid_sample(input: Tensor, theta: Tensor, mode: str = "bilinear", padding_mode: str = "zeros",
                       align_corners: bool = False, *, backend: str = "auto", check_finite: bool = True) -> Tensor:
    """Warp a batch by per-sample affine matrices, exactly as ``F.affine_grid`` + ``F.grid_sample``.

    Args:
        input: images (N, C, H, W) or volumes (N, C, D, H, W). float32/float64 on the CPU
            (float16/bfloat16 too on CUDA); integer or bool label maps with ``mode="nearest"``
            keep their dtype and never get an invented label.
        theta: (N, 2, 3) for images, (N, 3, 4) for volumes: the matrix that maps normalised
            output coordinates (x, y[, z], 1) in [-1, 1] to normalised input coordinates,
            ``F.affine_grid``'s convention. Must be finite.
        mode: "bilinear" (trilinear for volumes) or "nearest" (round half to even).
        padding_mode: "zeros", "border" or "reflection", as ``F.grid_sample``.
        align_corners: as ``F.affine_grid``/``F.grid_sample``: -1 and 1 are the centres of
            the corner pixels (True) or their outer edges (False).
        backend: "auto" | "medimg" | "torch" (the F.affine_grid + F.grid_sample reference).
            "auto" takes the reference for a dtype the kernel lacks (float16/bfloat16 on the CPU)
            and inside torch.func transforms: grad and jacrev cannot differentiate a
            torch.library custom op, and vmap batches the reference natively (under vmap, pass
            check_finite=False: the check branches on theta's values, which vmap refuses).
        check_finite: raise a ValueError if theta holds NaN or inf (or overflows the kernel's
            float64 matrix). On CUDA the check waits for the stream; False skips it, and a
            non-finite theta then gives NaN (bilinear) or padding values, never a read outside
            the input.

    Returns:
        The warped batch, input's shape and dtype, contiguous. Differentiable with respect to
        ``input`` and ``theta`` (bilinear; nearest gives input gradients only), to any order:
        a penalty on the input gradient (R1) costs two more kernel calls; derivatives of
        theta's gradient go through the F.grid_sample reference.

    Example:
        >>> image = torch.rand(8, 1, 64, 64); mask = (image > 0.5).long()
        >>> theta = torch.eye(2, 3).expand(8, 2, 3)
        >>> torch.equal(affine_grid_sample(mask, theta, mode="nearest"), mask)
        True
    """
    input, theta = _check_affine_args(input, theta, mode, padding_mode, align_corners)
    if not isinstance(check_finite, bool):
        raise TypeError(f"check_finite: expected True or False, got {check_finite!r}")
    backend = _pick_backend(backend, input)
    if _one_call_allowed(input, theta, backend):
        return _warp_in_one_call(input, theta, mode, padding_mode, align_corners, check_finite)
    theta, coeffs = _kernel_coefficients(input, theta, align_corners, backend, check_finite)
    return _warp(input, theta, coeffs, mode, padding_mode, align_corners)


def _one_call_allowed(input: Tensor, theta: Tensor, backend: str) -> bool:
    """Whether a checked warp may take _warp_in_one_call: the module for input's device is built
    and `backend` allows it, the kernel takes input's dtype, theta is float32/float64, every
    plane fits int32 offsets, and nothing would see the ops skipped (direct_call_allowed: no
    autograd, tracing or mode)."""
    return (backend != "torch" and _module_for(input.device) is not None and kernel_reads_dtype(input)
            and theta.dtype in (torch.float32, torch.float64) and plane_offsets_fit(input)
            and direct_call_allowed(input, theta))


def _module_for(device: torch.device):
    """The compiled module that runs kernels on `device`'s type, or None where it is not built."""
    return {"cpu": _extension.cpu, "cuda": _extension.cuda}.get(device.type)


def _warp_in_one_call(input: Tensor, theta: Tensor, mode: str, padding_mode: str, align_corners: bool,
                      check_finite: bool) -> Tensor:
    """pixel_coefficients and the warp in one call into the compiled module: the same bits as
    the op, without its wrappers and NumPy arithmetic (one 28x28 image on the 2-core CPU here:
    22 us a call, against 74 us through the op). On CUDA the coefficients are folded on the
    device (one small kernel, not the fold's torch ops) and, with check_finite, read back once."""
    device = input.device
    out = empty_output(input.shape, input.dtype, device)
    constants = _cached_constants(tuple(input.shape[2:]), align_corners, device)
    views = (view(as_codes(input)), view(theta), view(constants))
    options = (MODES[mode], PADDING_MODES[padding_mode], align_corners, check_finite)
    if device.type == "cpu":
        warped = _extension.cpu.affine_warp_theta(*views, view(as_codes(out)), *options, num_threads())
    else:
        k = input.dim() - 2
        coeffs = torch.empty((input.shape[0], k, k + 1), dtype=torch.float64, device=device)
        warped = _extension.cuda.affine_warp_theta(*views, view(coeffs), view(as_codes(out)), *options,
                                                   cuda_stream(device))
    if not warped:
        _check_finite_theta(theta)
        raise ValueError(f"theta: {_OVERFLOWING_THETA}")
    return out


def as_codes(t: Tensor) -> Tensor:
    """A tensor as the kernels read it: bool as uint8 (the same bytes)."""
    return t.view(torch.uint8) if t.dtype == torch.bool else t


def warp_image_and_labels(image: Tensor, labels: Tensor | None, theta: Tensor, mode: str, padding_mode: str,
                          align_corners: bool, backend: str = "auto", *, theta_is_finite: bool = False,
                          coeffs: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """``affine_grid_sample`` of an image batch (``mode``) and of its label maps (nearest; None:
    none) by the same theta, with one argument check and one set of pixel coefficients for both.
    What RandomAffine calls, so errors name its arguments, image and mask; shapes as
    affine_grid_sample. ``theta_is_finite=True`` (thetas composed from bounded draws) skips the
    finiteness check, which on CUDA is a device sync. ``coeffs``: ``pixel_coefficients(theta)``
    where the caller has them already (RandomAffine's kernel makes both at once); trusted, so
    they are neither checked finite nor against theta."""
    image, theta = _check_affine_args(image, theta, mode, padding_mode, align_corners, name="image")
    if labels is not None:
        if check_tensor("mask", labels).device != image.device:
            check_same_device(image=image, mask=labels)  # raises, naming both
        labels, _ = _check_affine_args(labels, theta, "nearest", padding_mode, align_corners, name="mask")
        if labels.shape[2:] != image.shape[2:]:
            raise ValueError(f"mask: spatial shape {tuple(labels.shape[2:])} differs from image's "
                             f"{tuple(image.shape[2:])}")
    backend = _pick_backend(backend, image, *([] if labels is None else [labels]))
    if coeffs is None or not use_compiled(backend, image.device):
        theta, coeffs = _kernel_coefficients(image, theta, align_corners, backend, check_finite=not theta_is_finite)
    warped = _warp(image, theta, coeffs, mode, padding_mode, align_corners)
    return warped, None if labels is None else _warp(labels, theta, coeffs, "nearest", padding_mode, align_corners)


def _pick_backend(backend: str, *inputs: Tensor) -> str:
    """`backend`, with "auto" resolved to "torch" where a compiled kernel lacks an input's dtype,
    and under torch.func transforms (grad, jacrev, vmap, ...): the autograd that custom ops get
    from torch.library is not a function those transforms can differentiate (pytorch#168393),
    and the reference is batched by vmap natively."""
    if backend != "auto":
        return check_backend(backend)
    if torch._C._are_functorch_transforms_active() or not all(map(kernel_reads_dtype, inputs)):
        return "torch"
    return backend


def _kernel_coefficients(input: Tensor, theta: Tensor, align_corners: bool, backend: str, check_finite: bool = True
                         ) -> tuple[Tensor, Tensor | None]:
    """theta, and the compiled kernel's pixel coefficients for `input` (None where `backend`
    picks the reference). Unless told not to, they are checked finite, with one check (one device
    sync on CUDA): a non-finite theta gives non-finite coefficients, so theta is looked at only
    then. While tracing, the check runs inside an op (medimg::finite_or_raise) whose output
    replaces what it checked, so torch.compile keeps it in one graph."""
    if not use_compiled(backend, input.device):
        if check_finite:
            if tracing():
                return torch.ops.medimg.finite_or_raise(theta, _NON_FINITE_THETA), None
            try:
                _check_finite_theta(theta)
            except RuntimeError as error:
                if not torch._C._are_functorch_transforms_active():
                    raise
                raise RuntimeError("theta: the finiteness check cannot run under torch.func.vmap (it branches on "
                                   "theta's values); pass check_finite=False") from error  # vmap refuses the branch
        return theta, None
    coeffs = pixel_coefficients(theta, tuple(input.shape[2:]), align_corners)
    if check_finite:
        if tracing():
            return theta, torch.ops.medimg.finite_or_raise(coeffs, f"{_NON_FINITE_THETA}, or {_OVERFLOWING_THETA}")
        if not bool(finite_mask(coeffs).all()):
            _check_finite_theta(theta)
            raise ValueError(f"theta: {_OVERFLOWING_THETA}")
    return theta, coeffs


def _warp(input: Tensor, theta: Tensor, coeffs: Tensor | None, mode: str, padding_mode: str, align_corners: bool
          ) -> Tensor:
    """The compiled op on `coeffs`, or the F.affine_grid + F.grid_sample reference on theta when
    there are none; bool masks travel as uint8."""
    if input.dtype == torch.bool:
        return _warp(input.view(torch.uint8), theta, coeffs, mode, padding_mode, align_corners).view(torch.bool)
    if coeffs is None:
        return _reference.affine_grid_sample(input, theta, mode, padding_mode, align_corners)
    return call_op(torch.ops.medimg.affine_sample, FORWARD_KERNELS, input, coeffs, mode, padding_mode,
                   align_corners)


def pixel_coefficients(theta: Tensor, spatial: tuple[int, ...], align_corners: bool) -> Tensor:
    """M (N, k, k + 1), float64: input pixel coordinate (x, y[, z]) = M · (w, h[, d], 1).

    Folds affine_grid's normalised base grid, theta and grid_sample's unnormalisation into
    one matrix per sample: row r of M is row r of theta times a constant (k + 1) x (k + 1)
    matrix, plus a constant row (one batched matmul and one add, differentiable, so gradients
    reach theta by autograd). The constants are arranged so that an identity theta gives
    exactly the identity matrix (no rounding). A plain CPU theta that needs no gradient, outside
    tracing, takes the same formula in NumPy (the same bits), whose calls on arrays this small
    cost a fraction of torch's.
    """
    k = len(spatial)
    constants = _cached_constants(tuple(int(s) for s in spatial), align_corners, theta.device)
    if type(theta) is Tensor and not theta.requires_grad and numpy_allowed(theta.device):
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite results are the caller's to reject
            plain = theta.to(torch.float64).numpy(force=True)  # force: a negative-bit view too
            return torch.from_numpy(_fold(plain, constants.numpy(), k))
    return _fold(theta.to(torch.float64), constants, k)


def _fold(theta: Array, constants: Array, k: int) -> Array:
    """pixel_coefficients' formula, with the same bits in NumPy and torch (ordered_matmul)."""
    return ordered_matmul(theta[..., None, :], constants[:, : k + 1])[..., 0, :] + constants[:, k + 1]


@constant_cache
def _cached_constants(spatial: tuple[int, ...], align_corners: bool, device: torch.device) -> Tensor:
    """coefficient_constants as a float64 tensor on `device`."""
    return torch.tensor(coefficient_constants(spatial, align_corners), dtype=torch.float64, device=device)


def coefficient_constants(spatial: tuple[int, ...], align_corners: bool) -> list[list[list[float]]]:
    """Per row r of theta (axis x, y[, z]): the (k + 1) x (k + 1) matrix that theta's row r is
    multiplied by, and the (k + 1) offsets then added, as k + 2 rows of k + 1 numbers."""
    sizes = [float(s) for s in reversed(spatial)]  # axis order x (W), y (H), z (D), as theta's rows
    k = len(sizes)
    rows = []
    for out_size in sizes:
        matrix = [[0.0] * (k + 1) for _ in range(k + 2)]
        for a, size in enumerate(sizes):
            # d(input pixel along r) / d(normalised coordinate along r) * d(normalised along a) / d(pixel a),
            # then the same factor times the normalised coordinate of output pixel 0 along a.
            if align_corners:
                ratio, shift = ((out_size - 1) / (size - 1), -(out_size - 1) / 2) if size > 1 else (0.0, 0.0)
            else:
                ratio, shift = out_size / size, (out_size / size - out_size) / 2
            matrix[a][a], matrix[a][k] = ratio, shift
        matrix[k][k] = (out_size - 1) / 2 if align_corners else out_size / 2  # theta's constant column
        matrix[k + 1][k] = (out_size - 1) / 2  # the centre of the input along r
        rows.append(matrix)
    return rows


def _check_affine_args(input: Tensor, theta: Tensor, mode: str, padding_mode: str, align_corners: bool,
                       name: str = "input") -> tuple[Tensor, Tensor]:
    """Shapes, devices, dtypes and options of one warp; errors name `input` as `name`."""
    check_tensor(name, input)
    check_tensor("theta", theta)
    if input.dim() not in (4, 5):
        raise ValueError(f"{name}: expected (N, C, H, W) or (N, C, D, H, W), got shape {tuple(input.shape)}")
    check_batch(name, input, 4)
    check_sizes_positive(name, input)
    k = input.dim() - 2
    if tuple(theta.shape) != (input.shape[0], k, k + 1):
        raise ValueError(f"theta: expected shape ({input.shape[0]}, {k}, {k + 1}) for a {input.dim()}-d input, "
                         f"got {tuple(theta.shape)}")
    check_same_device(**{name: input, "theta": theta})
    check_options(mode, padding_mode, align_corners)
    if input.dtype not in FLOAT_DTYPES and input.dtype not in INTEGER_DTYPES and input.dtype != torch.bool:
        raise TypeError(f"{name}: unsupported dtype {input.dtype}")
    if not input.is_floating_point() and mode != "nearest":
        raise ValueError(f"{name}: {input.dtype} labels need mode='nearest' (bilinear would invent labels), "
                         f"got mode={mode!r}")
    if not theta.is_floating_point():
        raise TypeError(f"theta: expected a floating dtype, got {theta.dtype}")
    return input, theta


def check_options(mode: object, padding_mode: object, align_corners: object) -> None:
    """The warp's string and bool options, each named in its error."""
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode: expected one of {tuple(MODES)}, got {mode!r}")
    if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode: expected one of {tuple(PADDING_MODES)}, got {padding_mode!r}")
    if not isinstance(align_corners, bool):
        kind = type(align_corners)
        raise TypeError(f"align_corners: expected True or False (a Python bool), got {align_corners!r} "
                        f"of type {kind.__module__}.{kind.__qualname__}")


_NON_FINITE_THETA = "theta: holds NaN or infinite values"
_OVERFLOWING_THETA = "values so large that the sampling matrix overflows float64"


def _check_finite_theta(theta: Tensor) -> None:
    if not bool(finite_mask(theta).all()):
        raise ValueError(_NON_FINITE_THETA)


# ----------------------------------------------------------------------------- custom ops

@torch.library.custom_op("medimg::finite_or_raise", mutates_args=())
def _finite_or_raise(values: Tensor, message: str) -> Tensor:
    """A copy of `values` (matrices of a few numbers per sample), after raising
    ValueError(message) if any is NaN or infinite: the check as an op, for traced graphs."""
    if not bool(finite_mask(values).all()):
        raise ValueError(message)
    return values.clone()


@_finite_or_raise.register_fake
def _(values: Tensor, message: str) -> Tensor:
    return torch.empty_like(values)


_finite_or_raise.register_autograd(lambda ctx, grad: (grad, None))

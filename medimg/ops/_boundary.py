"""The one checked boundary between tensors and the compiled kernels.

Every op validates its arguments here (clear Python errors that name the argument), then
turns tensors into view tuples ``(data_ptr, dtype_code, sizes, strides, device)`` that
``csrc/pybind_view.h`` converts into a C++ ``TensorView``. Outputs are always allocated by
torch; C++ never owns tensor memory.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Sequence
from functools import lru_cache, wraps
from typing import TypeVar

import torch
from torch import Tensor

from medimg import _extension

# Must match csrc/common/tensor_view.h::DType.
_DTYPE_CODES = {
    torch.uint8: 0,
    torch.int8: 1,
    torch.int16: 2,
    torch.int32: 3,
    torch.int64: 4,
    torch.float16: 5,
    torch.bfloat16: 6,
    torch.float32: 7,
    torch.float64: 8,
}
INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
BACKENDS = ("auto", "medimg", "torch")

T = TypeVar("T")
ViewTuple = tuple[int, int, tuple[int, ...], tuple[int, ...], int, Tensor]
Unravel = Callable[[int, int], tuple[int, ...]]


def view(t: Tensor) -> ViewTuple:
    """The kernel-side description of a tensor (strides in elements, device -1 for CPU).

    The tensor itself rides along as the last element: the tuple keeps it alive for as long
    as the kernel call that receives it, so ``view(x.contiguous())`` is safe.
    """
    device = -1 if t.device.type == "cpu" else t.device.index
    return (t.data_ptr(), _DTYPE_CODES[t.dtype], t.shape, t.stride(), device, t)  # torch.Size is a tuple


# glibc serves larger buffers with a fresh mmap on every call; smaller ones come back from its
# heap after the first call, already faulted in (populating those again costs 0.2 ms / 8 MiB).
_POPULATE_MIN_BYTES = 32 << 20


def empty_output(shape: Sequence[int], dtype: torch.dtype, device: torch.device | str = "cpu") -> Tensor:
    """``torch.empty`` for a kernel's output. Large CPU buffers are faulted in by all threads
    first: glibc maps them fresh on every call, and first touch from the kernel's inner loop
    costs more than the kernel that fills them (a 64 MiB output: 25 ms vs 10 ms populated)."""
    out = torch.empty(tuple(shape), dtype=dtype, device=device)
    nbytes = out.numel() * out.element_size()
    if out.device.type == "cpu" and nbytes >= _POPULATE_MIN_BYTES and _extension.cpu is not None:
        _extension.cpu.populate_pages(out.data_ptr(), nbytes, num_threads())
    return out


def num_threads() -> int:
    """Threads a CPU kernel may use: torch's own setting, so both libraries agree."""
    return torch.get_num_threads()


def cuda_stream(device: torch.device) -> int:
    """The current CUDA stream of `device` as an integer handle."""
    return torch.cuda.current_stream(device).cuda_stream


def alert_not_deterministic(what: str) -> None:
    """Honour torch.use_deterministic_algorithms for a kernel whose float atomics make its result
    depend on the order threads finish in: raise, or warn under warn_only, as torch's own ops do."""
    if not torch.are_deterministic_algorithms_enabled():
        return
    message = (f"{what} accumulates with float atomics and is not deterministic, but "
               "torch.use_deterministic_algorithms(True) is set")
    if torch.is_deterministic_algorithms_warn_only_enabled():
        warnings.warn(message, UserWarning, stacklevel=3)
    else:
        raise RuntimeError(message)


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    return backend


def finite_mask(*tensors: Tensor) -> Tensor:
    """True where every one of the same-shaped `tensors` is finite: x - x is 0 for a finite x and
    NaN for NaN or inf, without overflow. Two ops per tensor (a subtraction, then one comparison
    of their sum) where torch.isfinite takes four: each is a launch on a GPU, or a pass over
    every pixel when the tensors are images."""
    values = [t.detach() if t.requires_grad else t for t in tensors]  # a check, not part of any graph
    spread = values[0] - values[0]
    for v in values[1:]:
        spread = spread + (v - v)
    return spread == 0


def direct_call_allowed(*tensors: Tensor) -> bool:
    """Whether an op's registered kernel may run as a plain function, skipping torch's dispatcher
    and the custom-op wrappers (about 12 us of Python per call on the CPU here, a tenth of a
    RandomAffine call on one small sample; on a GPU it is host time per launch). Only when
    nothing would see the difference: plain tensors that need no autograd, nothing tracing, no
    dispatch or torch-function mode, no functorch transform (vmap, grad), and no lazy view
    (negative or conjugate bit, zero tensor) whose memory does not hold its values."""
    if watched():
        return False
    recording = torch.is_grad_enabled()
    return all(type(t) is Tensor and not (recording and t.requires_grad) and not t.is_neg() and not t.is_conj()
               and not t._is_zerotensor() for t in tensors)


def call_op(op: Callable[..., T], kernels: dict[str, Callable[..., T]], *args: object) -> T:
    """op(*args), or the kernel registered for the tensors' device (`kernels`, by device type)
    called directly where direct_call_allowed says nothing would see the difference."""
    tensors = [a for a in args if isinstance(a, Tensor)]
    kernel = kernels.get(tensors[0].device.type)
    if kernel is not None and direct_call_allowed(*tensors):
        return kernel(*args)
    return op(*args)


def watched() -> bool:
    """Whether more than eager execution sees torch ops now: tracing, a torch-function mode or a
    functorch transform (vmap, grad; their tensors have no storage of their own). Work must then
    stay in torch ops: no NumPy, no direct kernel calls."""
    return tracing() or torch._C._is_torch_function_mode_enabled() or torch._C._are_functorch_transforms_active()


def tracing() -> bool:
    """Whether torch.compile or torch.jit.trace traces, or a dispatch mode (FakeTensorMode,
    make_fx, ...) is active: tensors made now may be fake, symbolic or recorded, so they must not
    enter (or come from) a cache of real constants, nor leave torch for NumPy."""
    return (torch.compiler.is_compiling() or torch.jit.is_tracing()
            or torch._C._len_torch_dispatch_stack() > 0)


def constant_cache(make: Callable[..., T]) -> Callable[..., T]:
    """Keep what `make(*hashable args)` builds (small constant tensors, one set per shape and
    device): on CUDA, building them again would copy from the host and wait for the stream.
    They are built outside inference mode, so autograd may save them even if the first call
    came from inside one; while tracing() they are built afresh and not kept."""
    def build(*args: Hashable) -> T:
        with torch.inference_mode(False):
            return make(*args)

    kept = lru_cache(maxsize=64)(build)

    @wraps(make)
    def constants(*args: Hashable) -> T:
        return build(*args) if tracing() else kept(*args)

    constants.cache_clear = kept.cache_clear
    return constants


def use_compiled(backend: str, device: torch.device) -> bool:
    """Whether `backend` on `device` runs medimg's compiled kernel (else the torch reference).

    "auto" picks the kernel when the module for the device is built; "medimg" insists
    (the op then raises a clear error if the module is missing).
    """
    check_backend(backend)
    if backend == "torch":
        return False
    if backend == "medimg":
        return True
    if device.type == "cpu":
        return _extension.cpu is not None
    if device.type == "cuda":
        return _extension.cuda is not None
    return False


def check_tensor(name: str, value: object) -> Tensor:
    """A dense (strided) torch.Tensor: the kernels address elements by strides."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    if value.layout != torch.strided:
        raise TypeError(f"{name}: expected a dense tensor, got layout {value.layout}; convert it with .to_dense()")
    return value


def check_labels(name: str, t: Tensor) -> Tensor:
    """An integer (or bool) label map; bool is read as uint8 without a copy."""
    check_tensor(name, t)
    if t.dtype == torch.bool:
        return t.view(torch.uint8)
    if t.dtype not in INTEGER_DTYPES:
        raise TypeError(f"{name}: expected integer class labels (uint8, int8, int16, int32, int64 or bool), "
                        f"got {t.dtype}")
    return t


def check_batch(name: str, t: Tensor, min_ndim: int) -> None:
    if t.dim() < min_ndim:
        raise ValueError(f"{name}: expected at least {min_ndim} dimensions (batch first), got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name}: empty batch (shape {tuple(t.shape)})")


def check_sizes_positive(name: str, t: Tensor) -> None:
    """Every size after the batch's at least 1: a batch of images with no channel or no pixel."""
    if 0 in t.shape[1:]:
        raise ValueError(f"{name}: every channel and spatial size must be >= 1, got shape {tuple(t.shape)}")


def check_same_device(**tensors: Tensor) -> torch.device:
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise ValueError(f"expected all tensors on one device, got {listed}")
    return next(iter(devices.values()))


def check_label_pair(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Two label maps of one shape and device, promoted to one integer dtype."""
    pred, target = check_labels("pred", pred), check_labels("target", target)
    check_batch("pred", pred, 2)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have one shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    check_same_device(pred=pred, target=target)
    if pred.dtype != target.dtype:
        common = torch.promote_types(pred.dtype, target.dtype)
        pred, target = pred.to(common), target.to(common)
    return pred, target


def check_num_classes(num_classes: object) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise TypeError(f"num_classes: expected an int, got {type(num_classes).__name__}")
    if num_classes < 1:
        raise ValueError(f"num_classes: expected >= 1, got {num_classes}")
    return num_classes


def flatten_spatial(tensors: Sequence[Tensor], leading: Sequence[int], groups: int
                    ) -> tuple[list[Tensor], Unravel]:
    """Views of tensors sharing a spatial shape, with the spatial dims merged into `groups` dims.

    Tensor i is ``(*lead_i, *spatial)`` with ``leading[i]`` leading dims. Spatial dims are put
    in the memory order of the first tensor (so channels-last and transposed inputs stay
    zero-copy) and merged wherever every tensor allows; if more than `groups` dims remain,
    the tensors are copied to contiguous memory (documented cost of exotic layouts). The
    returned ``unravel(row, col)`` maps a position of the merged view back to the spatial
    index of the caller's tensors, for error messages.
    """
    spatial = tuple(tensors[0].shape[leading[0]:])
    dims = [d for d, size in enumerate(spatial) if size != 1]

    def stride(t: Tensor, lead: int, d: int) -> int:
        return t.stride(lead + d)

    first, first_lead = tensors[0], leading[0]
    order = sorted(dims, key=lambda d: -stride(first, first_lead, d))
    merged: list[list[int]] = []
    for d in order:
        if merged and all(
            stride(t, lead, merged[-1][-1]) == stride(t, lead, d) * spatial[d]
            for t, lead in zip(tensors, leading, strict=True)
        ):
            merged[-1].append(d)
        else:
            merged.append([d])
    if len(merged) > groups:
        contiguous = [t.contiguous() for t in tensors]
        return flatten_spatial(contiguous, leading, groups)

    merged = [[] for _ in range(groups - len(merged))] + merged
    views = []
    for t, lead in zip(tensors, leading, strict=True):
        sizes = list(t.shape[:lead]) + [_product(spatial[d] for d in g) for g in merged]
        strides = list(t.stride()[:lead]) + [stride(t, lead, g[-1]) if g else 1 for g in merged]
        views.append(t.as_strided(sizes, strides, t.storage_offset()))

    ordered_dims = [d for g in merged for d in g]
    inner = _product(spatial[d] for d in merged[-1]) if merged else 1

    def unravel(row: int, col: int) -> tuple[int, ...]:
        flat = row * inner + col
        index = [0] * len(spatial)
        for d in reversed(ordered_dims):
            flat, index[d] = divmod(flat, spatial[d])
        return tuple(index)

    return views, unravel


def _product(values) -> int:
    result = 1
    for v in values:
        result *= v
    return result


def invalid_label_error(op: str, name: str, value: int, index: tuple[int, ...], num_classes: int,
                        ignore_index: int | None) -> ValueError:
    """The error every backend raises for a label outside [0, num_classes)."""
    ignored = "" if ignore_index is None else f" and is not ignore_index={ignore_index}"
    return ValueError(
        f"{op}: {name} holds label {value} at index {index}, which is outside "
        f"[0, num_classes={num_classes}){ignored}"
    )

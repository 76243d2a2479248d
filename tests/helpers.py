"""Helpers shared by the op tests: kernel availability, hypothesis settings, label draws and
memory layouts (so every op is checked on the same awkward strides)."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from torch import Tensor

from medimg import _extension

needs_cpu_kernels = pytest.mark.skipif(_extension.cpu is None, reason=f"medimg._C not built: {_extension.cpu_error}")
# Backends that must behave alike: the compiled kernel and the pure-PyTorch reference.
BACKENDS = [pytest.param("medimg", marks=needs_cpu_kernels), "torch"]


def kernel_settings(max_examples: int) -> settings:
    """Hypothesis settings for tests using the `cpu_isa` fixture: it is function-scoped but holds
    no per-example state (it only selects the kernels), so sharing it across examples is fine."""
    return settings(max_examples=max_examples, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def random_labels(classes: Sequence[int], shape: Sequence[int], dtype: torch.dtype, gen: torch.Generator) -> Tensor:
    """Labels drawn uniformly from `classes` (a subset, so that some classes are absent)."""
    index = torch.randint(len(classes), tuple(shape), generator=gen)
    return torch.tensor(classes)[index].to(dtype)


def relayout(x: Tensor, layout: str, perm: Sequence[int] = (), dim: int = 0) -> Tensor:
    """`x` in another memory layout, same shape and (except "expanded") same values."""
    if layout == "contiguous":
        return x.contiguous()
    if layout == "strided":  # every dim read with step 2 from offset 1 of a larger buffer
        window = tuple(slice(1, None, 2) for _ in x.shape)
        big = torch.zeros([2 * s + 1 for s in x.shape], dtype=x.dtype)
        big[window] = x
        return big[window]
    if layout == "permuted":  # dims laid out in memory in the order `perm`
        inverse = [list(perm).index(d) for d in range(x.dim())]
        return x.permute(*perm).contiguous().permute(*inverse)
    if layout == "expanded":  # stride 0 along `dim`: every slice repeats the first
        return x.narrow(dim, 0, 1).expand(x.shape)
    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    raise AssertionError(layout)


@st.composite
def layouts(draw, ndim: int) -> tuple[str, tuple[int, ...], int]:
    names = ["contiguous", "strided", "permuted", "expanded"] + (["channels_last"] if ndim in (4, 5) else [])
    name = draw(st.sampled_from(names))
    perm = tuple(draw(st.permutations(range(ndim)))) if name == "permuted" else ()
    dim = draw(st.integers(0, ndim - 1)) if name == "expanded" else 0
    return name, perm, dim


class CountingModule:
    """A compiled module whose calls are counted by name."""

    def __init__(self, module) -> None:
        self.module, self.calls = module, []

    def __getattr__(self, name: str):
        function = getattr(self.module, name)
        if not callable(function):
            return function

        def counted(*args, **kwargs):
            self.calls.append(name)
            return function(*args, **kwargs)

        return counted


class Watching(torch.overrides.TorchFunctionMode):
    """A mode that changes nothing but makes every op go through torch's dispatcher."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def quick_copy_bandwidth(monkeypatch: pytest.MonkeyPatch, module) -> None:
    """Make a benchmark module's copy-bandwidth measurement quick (1 MiB for 10 ms)."""
    real = module.copy_bandwidth
    monkeypatch.setattr(module, "copy_bandwidth",
                        lambda device, min_run_time: real(nbytes=1 << 20, device=device, min_run_time=0.01))


def build_cuda_host_emulators(names: Sequence[str], directory: Path, fuse: bool = True) -> ctypes.CDLL:
    """The host emulators of CUDA kernels (tests/cuda_host/`names`) built into one library with
    the C++ compiler that built medimg (CXX, else g++/c++); skips the test without one. With
    `fuse`, FMA where the CPU kernels run their AVX2 path: nvcc fuses a * b + c, so do they.
    Without, every product and sum rounds: kernels that round explicitly where it matters
    (__fmul_rn, plain arithmetic on the host) are then emulated bit for bit there."""
    root = Path(__file__).resolve().parents[1]
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None or not (root / "csrc").is_dir():
        pytest.skip("needs a C++ compiler and the csrc/ sources")
    if not fuse:
        fma = ["-ffp-contract=off"]
    else:
        fma = ["-mfma", "-ffp-contract=fast"] if _extension.cpu.cpu_isa() == "avx2" else []
    library = directory / "emulators.so"
    sources = [str(root / "tests" / "cuda_host" / name) for name in names]
    subprocess.run([compiler, "-O2", "-std=gnu++17", "-shared", "-fPIC", "-fno-trapping-math", *fma,
                    f"-I{root / 'csrc'}", *sources, "-o", str(library)], check=True, timeout=600)
    return ctypes.CDLL(str(library))

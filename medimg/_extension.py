"""Loads the compiled modules once; a missing module is recorded, not raised, so that the
pure-PyTorch fallback keeps working and `medimg info` can say what is built."""

from __future__ import annotations

import importlib
from types import ModuleType


def _load(name: str) -> tuple[ModuleType | None, str | None]:
    try:
        return importlib.import_module(f"medimg.{name}"), None
    except ImportError as error:  # not built, or built for another platform
        return None, str(error)


cpu, cpu_error = _load("_C")
cuda, cuda_error = _load("_C_cuda")


def cuda_device_count() -> int:
    """CUDA devices that medimg's own CUDA module can see (0 where it is not built)."""
    return cuda.device_count() if cuda is not None else 0


def require(module: ModuleType | None, error: str | None, what: str) -> ModuleType:
    """Return a compiled module or raise a clear error naming what was asked for."""
    if module is None:
        raise RuntimeError(
            f"{what} needs a compiled medimg module that is not available ({error}); "
            "reinstall medimg with a compiler (and nvcc for CUDA), or pass backend='torch'"
        )
    return module

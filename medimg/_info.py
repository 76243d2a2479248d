"""What this installation of medimg is built with and can run: `medimg.info()`."""

from __future__ import annotations

import importlib.util
import platform
from typing import Any

import numpy
import torch

from medimg import _extension


def _triton_status() -> str:
    if importlib.util.find_spec("triton") is None:
        return "not installed"
    try:
        import triton
    except Exception as error:  # a broken install should be reported, not crash `info`
        return f"fails to import: {error}"
    return triton.__version__


def info() -> dict[str, Any]:
    """Versions, active CPU kernel path, OpenMP threads, CUDA build and GPUs, Triton.

    Returns:
        A flat dict of plain Python values (str, int, bool, list), stable keys.
    """
    from medimg import __version__

    cpu = _extension.cpu
    return {
        "medimg": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_module_built": cpu is not None,
        "cpu_isa_active": cpu.cpu_isa() if cpu else None,
        "cpu_isas_supported": cpu.supported_isas() if cpu else [],
        "compiler": cpu.compiler() if cpu else None,
        "openmp_max_threads": cpu.openmp_max_threads() if cpu else None,
        "torch_num_threads": torch.get_num_threads(),
        "cuda_module_built": _extension.cuda is not None,
        "cuda_runtime": _extension.cuda.runtime_version() if _extension.cuda else None,
        "cuda_devices": _extension.cuda_device_count(),
        "torch_cuda_available": torch.cuda.is_available(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "triton": _triton_status(),
    }

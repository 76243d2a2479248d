"""Shared test plumbing: fixtures that run a test once per CPU instruction set or once per
device (CPU, and CUDA where present), and the skip of tests marked `cuda` on machines without a
CUDA device (the markers themselves are
registered in pyproject.toml)."""

from __future__ import annotations

import pytest
import torch

from medimg import _extension


def _cpu_isas() -> list[str]:
    """Instruction sets whose CPU kernels are built and run on this CPU ([] without medimg._C)."""
    return list(_extension.cpu.supported_isas()) if _extension.cpu is not None else []


@pytest.fixture(params=_cpu_isas())
def cpu_isa(request: pytest.FixtureRequest):
    """Select the CPU kernels of one instruction set for the test, then restore the previous choice.

    Without a compiled CPU module the parameter list is empty and the test is skipped.
    The previous choice is what "auto" picked unless MEDIMG_CPU_ISA overrode it.
    """
    cpu = _extension.cpu
    previous = cpu.cpu_isa()
    cpu.select_isa(request.param)
    assert cpu.cpu_isa() == request.param
    try:
        yield request.param
    finally:
        cpu.select_isa(previous)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request: pytest.FixtureRequest) -> torch.device:
    """Run the test on the CPU and, where there is one, on a CUDA device."""
    return torch.device(request.param)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)

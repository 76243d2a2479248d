"""The pytest parameters of a ``medimg.bench`` suite that lists CASES (and CUDA_CASES) and
``implementations(case)``: one (case, implementation name) pair per benchmark."""

from types import ModuleType

import pytest
import torch


def suite_params(suite: ModuleType) -> list:
    """Every case of `suite` (its CUDA cases too where CUDA is available) with each of its
    implementations, as pytest parameters named "case|implementation"."""
    cases = suite.CASES + (suite.CUDA_CASES if torch.cuda.is_available() else ())
    return [pytest.param(case, name, id=f"{case.name}|{name}") for case in cases
            for name in suite.implementations(case)]

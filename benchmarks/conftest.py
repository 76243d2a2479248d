"""Benchmarks are run with pytest-benchmark: ``pytest benchmarks`` (see README)."""

import pytest

pytest.importorskip("pytest_benchmark")


@pytest.fixture(scope="session", autouse=True)
def _warm_memory() -> None:
    """Fresh pages of this VM cost the first implementation timed; touch them up front."""
    from medimg.bench.timing import warm_memory

    warm_memory()

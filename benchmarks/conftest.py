"""Benchmarks are run with pytest-benchmark: ``pytest benchmarks`` (see README)."""

import pytest

pytest.importorskip("pytest_benchmark")

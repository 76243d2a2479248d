"""Training steps of the reference models: backend="medimg" vs backend="torch" (same weights and
batch), on the cases of medimg.bench.models.CASES; ``medimg bench models`` prints the ratios."""

import pytest

from medimg.bench import models

PARAMS = [pytest.param(case, backend, id=f"{case.name}|{backend}")
          for case in models.CASES for backend in models.BACKENDS]


@pytest.mark.parametrize(("case", "backend"), PARAMS)
def test_training_step(benchmark, case, backend):
    benchmark.group = case.name
    benchmark.extra_info["items"] = case.items
    benchmark(case.step(backend))

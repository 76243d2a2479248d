"""Training steps of the reference models: backend="medimg" vs backend="torch" (same weights and
batch), on the cases of medimg.bench.models.CASES; ``medimg bench models`` prints the ratios."""

import pytest
import torch

from medimg.bench import models

DEVICES = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
PARAMS = [pytest.param(case, backend, device, id=f"{device} {case.name}|{backend}")
          for device in DEVICES for case in models.CASES for backend in models.BACKENDS]


@pytest.mark.parametrize(("case", "backend", "device"), PARAMS)
def test_training_step(benchmark, case, backend, device):
    benchmark.group = f"{device} {case.name}"
    benchmark.extra_info["items"] = case.items
    benchmark(case.step(backend, device))

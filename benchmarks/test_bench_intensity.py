"""Intensity transforms: medimg vs the same formula in torch ops and installed peers (MONAI,
kornia), on the cases of medimg.bench.intensity.CASES."""

import pytest
import torch

from medimg.bench import intensity

PARAMS = [
    pytest.param(case, name, id=f"{case.name}|{name}")
    for case in intensity.CASES + (intensity.CUDA_CASES if torch.cuda.is_available() else ())
    for name in intensity.implementations(case)
]


@pytest.mark.parametrize(("case", "name"), PARAMS)
def test_intensity_transform(benchmark, case, name):
    fn, nbytes = intensity.implementations(case)[name]
    benchmark.group = case.name
    benchmark.extra_info["bytes"] = nbytes
    benchmark(fn)

"""Intensity transforms: medimg vs the same formula in torch ops and installed peers (MONAI,
kornia), on the cases of medimg.bench.intensity.CASES."""

import pytest
from suite_params import suite_params

from medimg.bench import intensity

PARAMS = suite_params(intensity)


@pytest.mark.parametrize(("case", "name"), PARAMS)
def test_intensity_transform(benchmark, case, name):
    fn, nbytes = intensity.implementations(case)[name]
    benchmark.group = case.name
    benchmark.extra_info["bytes"] = nbytes
    benchmark(fn)

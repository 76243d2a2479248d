"""Segmentation statistics: medimg vs torch.bincount, numpy.bincount, the one-hot (MONAI-style)
formula and installed peers, on the shapes of medimg.bench.metrics.CASES.

pytest-benchmark groups each case, so its table shows every implementation's time and its
ratio to the fastest; ``medimg bench metrics`` prints the same comparison with speed-ups
and the fraction of copy bandwidth.
"""

import pytest
from suite_params import suite_params

from medimg.bench import metrics

PARAMS = suite_params(metrics)


@pytest.mark.parametrize(("case", "name"), PARAMS)
def test_segmentation_stats(benchmark, case, name):
    fn, nbytes = metrics.implementations(case)[name]
    benchmark.group = case.name
    benchmark.extra_info["bytes_read"] = nbytes
    benchmark(fn)

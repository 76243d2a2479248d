"""2D convolution: medimg.ops.conv2d (backend="medimg") vs F.conv2d (and, on the first layer's
forward, an OpenCV filter2D loop), forward and forward + backward, on the cases of
medimg.bench.conv.CASES (CNN and U-Net layers) and, where CUDA is available, CUDA_CASES.

pytest-benchmark groups each case, so its table shows every implementation's time and its
ratio to the fastest; ``medimg bench conv`` prints the same comparison with GFLOP/s.
"""

import pytest
from suite_params import suite_params

from medimg.bench import conv

PARAMS = suite_params(conv)


@pytest.mark.parametrize(("case", "name"), PARAMS)
def test_conv2d(benchmark, case, name):
    fn, nbytes = conv.implementations(case)[name]
    benchmark.group = case.name
    benchmark.extra_info["flops"] = case.flops
    benchmark.extra_info["bytes"] = nbytes
    benchmark(fn)

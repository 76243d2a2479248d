"""2D convolution: medimg.ops.conv2d (backend="medimg") vs F.conv2d (and, on the first layer's
forward, an OpenCV filter2D loop), forward and forward + backward, on the cases of
medimg.bench.conv.CASES (CNN and U-Net layers) and, where CUDA is available, CUDA_CASES.

pytest-benchmark groups each case, so its table shows every implementation's time and its
ratio to the fastest; ``medimg bench conv`` prints the same comparison with GFLOP/s.
"""

import pytest
import torch

from medimg.bench import conv

PARAMS = [
    pytest.param(case, name, id=f"{case.name}|{name}")
    for case in conv.CASES + (conv.CUDA_CASES if torch.cuda.is_available() else ())
    for name in conv.implementations(case)
]


@pytest.mark.parametrize(("case", "name"), PARAMS)
def test_conv2d(benchmark, case, name):
    fn, nbytes = conv.implementations(case)[name]
    benchmark.group = case.name
    benchmark.extra_info["flops"] = case.flops
    benchmark.extra_info["bytes"] = nbytes
    benchmark(fn)

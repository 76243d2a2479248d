"""Affine augmentation: medimg (RandomAffine and the bare op) vs F.affine_grid + F.grid_sample
and installed peers (OpenCV, albumentations, kornia, torchvision, MONAI), on the cases of medimg.bench.augment.CASES."""

import pytest
import torch

from medimg.bench import augment

PARAMS = [
    pytest.param(case, name, id=f"{case.name}|{name}")
    for case in augment.CASES + (augment.CUDA_CASES if torch.cuda.is_available() else ())
    for name in augment.implementations(case)
]


@pytest.mark.parametrize(("case", "name"), PARAMS)
def test_affine_augmentation(benchmark, case, name):
    fn, nbytes = augment.implementations(case)[name]
    benchmark.group = case.name
    benchmark.extra_info["bytes"] = nbytes
    benchmark(fn)

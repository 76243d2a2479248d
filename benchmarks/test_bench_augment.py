"""Affine augmentation: medimg (RandomAffine and the bare op) vs F.affine_grid + F.grid_sample
and installed peers (OpenCV, albumentations, kornia, torchvision, MONAI), on the cases of medimg.bench.augment.CASES."""

import pytest
from suite_params import suite_params

from medimg.bench import augment

PARAMS = suite_params(augment)


@pytest.mark.parametrize(("case", "name"), PARAMS)
def test_affine_augmentation(benchmark, case, name):
    fn, nbytes = augment.implementations(case)[name]
    benchmark.group = case.name
    benchmark.extra_info["bytes"] = nbytes
    benchmark(fn)

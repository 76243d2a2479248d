"""Tests of `medimg bench intensity`: the report, and the torch-ops reference computing what medimg
computes where no random draw separates them."""

from __future__ import annotations

import re

import pytest
import torch
from helpers import quick_copy_bandwidth

import medimg.bench.intensity as bench_intensity
from medimg.transforms import Normalize01

TINY = (bench_intensity.Case("tiny percentiles", "percentiles", (2, 1, 12, 10)),
        bench_intensity.Case("tiny noise", "noise", (2, 1, 12, 10)),
        bench_intensity.Case("tiny gamma", "gamma", (2, 1, 12, 10)))


@pytest.fixture
def tiny_cases(monkeypatch):
    monkeypatch.setattr(bench_intensity, "CASES", TINY)
    quick_copy_bandwidth(monkeypatch, bench_intensity)


def test_bench_intensity_report(tiny_cases):
    report = bench_intensity.run(min_run_time=0.01)
    assert report.startswith("intensity transforms on the CPU")
    for case in TINY:
        assert f"\n{case.name}\n" in report
    rows = [line for line in report.splitlines() if line.startswith("  medimg ")]
    assert len(rows) == 3 and all(re.search(r"\s1\.0x\s", row) for row in rows)
    assert report.count("torch ops (same formula)") == 3


def test_percentile_reference_is_normalize01():
    case = bench_intensity.Case("c", "percentiles", (3, 2, 11, 13))
    image = case.batch()
    reference = bench_intensity._torch_reference(case, image, torch.Generator().manual_seed(0))()
    expected, _ = Normalize01(percentiles=bench_intensity.PERCENTILES)(image)
    torch.testing.assert_close(reference, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("transform", ["noise", "gamma"])
def test_random_references_keep_shape_and_range(transform):
    case = bench_intensity.Case("c", transform, (3, 1, 9, 10))
    image = case.batch()
    out = bench_intensity._torch_reference(case, image, torch.Generator().manual_seed(0))()
    assert out.shape == image.shape and out.dtype == image.dtype and not torch.equal(out, image)
    if transform == "gamma":  # each sample keeps its minimum and maximum
        torch.testing.assert_close(out.flatten(1).amin(1), image.flatten(1).amin(1))
        torch.testing.assert_close(out.flatten(1).amax(1), image.flatten(1).amax(1))

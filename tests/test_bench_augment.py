"""Tests of `medimg bench augment`: the report, the reference's equality with medimg's op, and
peers that cannot be imported being left out."""

from __future__ import annotations

import importlib
import re

import pytest
import torch
from helpers import quick_copy_bandwidth

import medimg.bench.augment as bench_augment
from medimg.bench import peers
from medimg.ops import affine_grid_sample

TINY = bench_augment.Case("tiny 2D 2x1x12x10 f32 image + int64 mask", (2, 1, 12, 10), torch.int64)


@pytest.fixture
def tiny_cases(monkeypatch):
    monkeypatch.setattr(bench_augment, "CASES", (TINY,))
    quick_copy_bandwidth(monkeypatch, bench_augment)


def test_bench_augment_report(tiny_cases):
    report = bench_augment.run(min_run_time=0.01)
    assert report.startswith("affine augmentation on the CPU")
    rows = {line.strip().split("  ")[0]: line for line in report.splitlines() if line.startswith("  ")}
    assert re.search(r"\s1\.0x\s", rows[bench_augment.MEDIMG])  # medimg against itself
    assert "F.affine_grid + F.grid_sample" in rows
    assert rows["medimg.ops.affine_grid_sample (fixed theta)"].rstrip().endswith("%")  # % of copy bandwidth


@pytest.mark.parametrize("mask_dtype", [None, torch.int64, torch.uint8])
def test_reference_warp_is_the_same_warp(mask_dtype):
    image, mask = bench_augment.Case("c", (3, 1, 9, 14), mask_dtype).batch()
    theta = bench_augment.RandomAffine(degrees=30, scale=(0.8, 1.2), hflip_p=0.5).sample_theta(
        3, (9, 14), torch.device("cpu"), torch.Generator().manual_seed(3)).float()
    warped, warped_mask = bench_augment.reference_warp(image, mask, theta)
    torch.testing.assert_close(warped, affine_grid_sample(image, theta), atol=1e-5, rtol=0)
    if mask is None:
        assert warped_mask is None
    else:
        assert warped_mask.dtype == mask.dtype
        assert torch.equal(warped_mask, affine_grid_sample(mask.unsqueeze(1), theta, mode="nearest").squeeze(1))


@pytest.mark.parametrize("error", [ImportError, RuntimeError, OSError, AttributeError])
def test_peer_that_fails_to_import_is_left_out(monkeypatch, error):
    """A peer whose import fails (not installed, or, like PyPI's torchvision beside a CPU-only
    torch, installed but unloadable) is left out; the rest still run."""
    real = importlib.import_module

    def import_module(name, *args):
        if name.split(".")[0] in ("torchvision", "kornia"):
            raise error(f"cannot load {name}")
        return real(name, *args)

    monkeypatch.setattr(peers.importlib, "import_module", import_module)
    monkeypatch.setattr(peers, "_unavailable", {})
    names = bench_augment.implementations(TINY)
    assert not any(name.startswith(("torchvision", "kornia")) for name in names)
    assert {bench_augment.MEDIMG, "F.affine_grid + F.grid_sample"} <= set(names)
    note = peers.unavailable_peers()  # and the report says which were left out, and why
    assert note.startswith("peers not timed: ")
    assert f"kornia (installed, import failed: {error.__name__}: cannot load kornia.augmentation)" in note
    assert "torchvision (installed, import failed" in note


def test_peer_not_installed_is_named_so(monkeypatch):
    monkeypatch.setattr(peers, "_unavailable", {})
    assert peers.unavailable_peers() == ""
    assert peers.import_peer("medimg_no_such_peer.sub") is None
    assert peers.unavailable_peers() == "peers not timed: medimg_no_such_peer (not installed)"

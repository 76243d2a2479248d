"""``medimg bench metrics``: segmentation statistics (the Dice/IoU hot path).

Cases (random labels, seed 0): 2D batch 32 x 256 x 256 with 4 classes in uint8 and int64,
3D batch 2 x 128^3 int64. Every implementation computes the same [tp, fp, fn] (or the
peer's own Dice and IoU) from the same label maps; ratios are medimg's speed-up. On a CUDA
device the same cases run there, plus a 2D uint8 batch of 512 x 512 x 512 (far larger than the
L2 cache) for the fraction of the card's copy bandwidth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medimg.bench.peers import import_peer
from medimg.bench.suite import Implementations, reports_by_device
from medimg.bench.timing import copy_bandwidth
from medimg.ops import segmentation_stats

MEDIMG = "medimg.ops.segmentation_stats"


@dataclass(frozen=True)
class Case:
    name: str
    shape: tuple[int, ...]
    num_classes: int
    dtype: torch.dtype
    device: str = "cpu"

    def labels(self) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(0)
        pred = torch.randint(0, self.num_classes, self.shape, generator=g).to(self.dtype)
        target = torch.randint(0, self.num_classes, self.shape, generator=g).to(self.dtype)
        return pred.to(self.device), target.to(self.device)


DEVICES = ("cpu", "cuda")
CASES = (
    Case("2D 32x256x256 uint8, 4 classes", (32, 256, 256), 4, torch.uint8),
    Case("2D 32x256x256 int64, 4 classes", (32, 256, 256), 4, torch.int64),
    Case("3D 2x128^3 int64, 4 classes", (2, 128, 128, 128), 4, torch.int64),
)
CUDA_CASES = (
    *(Case(f"cuda {case.name}", case.shape, case.num_classes, case.dtype, "cuda") for case in CASES),
    Case("cuda 2D 512x512x512 uint8, 4 classes", (512, 512, 512), 4, torch.uint8, "cuda"),
)


def bincount_stats_torch(pred: Tensor, target: Tensor, k: int) -> Tensor:
    """[tp, fp, fn] from one torch.bincount over joint (sample, target, pred) indices."""
    n = pred.shape[0]
    batch = torch.arange(n, device=pred.device).view(n, *([1] * (pred.dim() - 1)))
    joint = (batch * k + target.long()) * k + pred.long()
    confusion = torch.bincount(joint.view(-1), minlength=n * k * k).view(n, k, k)
    tp = confusion.diagonal(dim1=1, dim2=2)
    return torch.stack([tp, confusion.sum(1) - tp, confusion.sum(2) - tp], -1)


def bincount_stats_numpy(pred: np.ndarray, target: np.ndarray, k: int) -> np.ndarray:
    """The same with numpy.bincount (intp joint indices)."""
    n = pred.shape[0]
    batch = np.arange(n, dtype=np.intp).reshape(n, *([1] * (pred.ndim - 1)))
    joint = (batch * k + target.astype(np.intp)) * k + pred
    confusion = np.bincount(joint.ravel(), minlength=n * k * k).reshape(n, k, k)
    tp = confusion.diagonal(axis1=1, axis2=2)
    return np.stack([tp, confusion.sum(1) - tp, confusion.sum(2) - tp], -1)


def one_hot_stats(pred: Tensor, target: Tensor, k: int) -> Tensor:
    """The one-hot formula of MONAI's DiceMetric/MeanIoU: float one-hot maps, products, sums."""
    p = F.one_hot(pred.long(), k).movedim(-1, 1).float()
    t = F.one_hot(target.long(), k).movedim(-1, 1).float()
    dims = tuple(range(2, p.dim()))
    tp = (p * t).sum(dims)
    return torch.stack([tp, p.sum(dims) - tp, t.sum(dims) - tp], -1)


def _peers(pred: Tensor, target: Tensor, k: int) -> dict[str, Callable[[], object]]:
    """MONAI and torchmetrics Dice + IoU where installed (each on its own preferred input)."""
    found: dict[str, Callable[[], object]] = {}
    if (monai_metrics := import_peer("monai.metrics")) is not None:
        p1 = F.one_hot(pred.long(), k).movedim(-1, 1).float()
        t1 = F.one_hot(target.long(), k).movedim(-1, 1).float()
        dice_metric = monai_metrics.DiceMetric(include_background=True, reduction="none")
        iou_metric = monai_metrics.MeanIoU(include_background=True, reduction="none")
        found["MONAI DiceMetric+MeanIoU (one-hot in)"] = lambda: (dice_metric(p1, t1), iou_metric(p1, t1))
    if (seg := import_peer("torchmetrics.functional.segmentation")) is not None:
        p64, t64 = pred.long(), target.long()
        found["torchmetrics dice_score+mean_iou"] = lambda: (
            seg.dice_score(p64, t64, num_classes=k, input_format="index", average=None),
            seg.mean_iou(p64, t64, num_classes=k, input_format="index", per_class=True),
        )
    return found


def implementations(case: Case) -> Implementations:
    """Name -> (callable, bytes it must read or None) for one case."""
    pred, target = case.labels()
    k = case.num_classes
    impls: Implementations = {
        MEDIMG: (lambda: segmentation_stats(pred, target, k), pred.nbytes + target.nbytes),
        "torch.bincount (joint index)": (lambda: bincount_stats_torch(pred, target, k), pred.nbytes + target.nbytes),
        "one-hot formula (MONAI-style)": (lambda: one_hot_stats(pred, target, k), None),
    }
    if case.device == "cpu":
        pn, tn = pred.numpy(), target.numpy()
        impls["numpy.bincount (joint index)"] = (lambda: bincount_stats_numpy(pn, tn, k), pred.nbytes + target.nbytes)
    for name, fn in _peers(pred, target, k).items():
        impls[name] = (fn, None)
    return impls


def run(min_run_time: float = 0.5, devices: tuple[str, ...] = ("cpu",)) -> str:
    """Run every case on each of `devices` ("cpu", "cuda") and return the report (also the
    copy bandwidth and thread count)."""
    return reports_by_device(devices, "segmentation statistics", " (bytes copied / s)",
                             lambda device: CASES if device == "cpu" else CUDA_CASES, implementations, MEDIMG,
                             min_run_time, copy_bandwidth)

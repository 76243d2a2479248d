"""Reproducible train/validation splits of a dataset, stratified by class."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset


def _labels_of(dataset: Dataset, labels: Sequence[int] | Tensor | None, n: int) -> list[int]:
    """One integer class per sample: `labels`, else ``dataset.samples``/``targets``, else ``dataset[i]["label"]``."""
    if labels is None:
        samples = getattr(dataset, "samples", None)
        targets = getattr(dataset, "targets", None)
        if isinstance(samples, Sequence) and len(samples) == n and all(
                isinstance(s, (tuple, list)) and len(s) == 2 for s in samples):
            labels = [label for _, label in samples]
        elif targets is not None and hasattr(targets, "__len__") and len(targets) == n:
            labels = targets
        else:
            labels = []
            for i in range(n):
                item = dataset[i]
                if not isinstance(item, dict) or "label" not in item:
                    raise ValueError("labels: the dataset has no `samples` or `targets` and its items are not dicts "
                                     "with a 'label'; pass labels= or stratify=False")
                labels.append(item["label"])
    if len(labels) != n:
        raise ValueError(f"labels: {len(labels)} labels for a dataset of {n} samples")
    out = []
    for i, label in enumerate(labels):
        shape = getattr(label, "shape", None)  # a tensor or numpy array
        if shape is not None:
            if math.prod(shape) != 1:
                raise ValueError(f"labels: sample {i} has label shape {tuple(shape)}; stratifying needs one "
                                 f"class per sample (pass labels= or stratify=False for multi-label data)")
            label = label.item()
        out.append(int(label))
    return out


def _val_counts(class_sizes: list[int], val: float, n: int) -> list[int]:
    """Validation samples per class: floor or ceil of ``val * size`` (largest remainders take the
    ceil so the total is ``round(val * n)``), then 1..size-1 for every class of two or more."""
    ideal = [val * size for size in class_sizes]
    counts = [math.floor(x) for x in ideal]
    target = min(max(round(val * n), 1), n - 1)
    splittable = [c for c, size in enumerate(class_sizes) if size >= 2]
    by_remainder = sorted(splittable, key=lambda c: (-(ideal[c] - counts[c]), c))
    for c in by_remainder[:max(target - sum(counts), 0)]:
        counts[c] += 1
    return [min(max(k, 1), size - 1) if size >= 2 else 0 for k, size in zip(counts, class_sizes, strict=True)]


def split(dataset: Dataset, val: float = 0.2, stratify: bool = True, seed: int = 0,
          labels: Sequence[int] | Tensor | None = None) -> tuple[Subset, Subset]:
    """Split `dataset` into disjoint train and validation subsets that together cover it.

    Stratified, each class is shuffled and ``val * class size`` of it (rounded down or up,
    so the whole validation part has ``round(val * n)`` samples) goes to validation; every
    class with at least two samples is then in both parts (a class of one sample goes to
    train). Not stratified, ``round(val * n)`` samples drawn at random go to validation. The
    draw depends only on `seed`; indices in each subset are in ascending order.

    Args:
        dataset: any map-style dataset.
        val: the validation fraction, in (0, 1).
        stratify: keep each class's proportion in both parts.
        seed: seed of the shuffles.
        labels: one class per sample; by default from ``dataset.samples`` ((path, label)
            pairs), ``dataset.targets``, or else ``dataset[i]["label"]`` (loads every sample).

    Returns:
        (train, val) ``torch.utils.data.Subset`` of `dataset`.

    Example:
        >>> train, val = split(ImageFolderDataset("chest_xray/train", size=256), val=0.1, seed=0)
    """
    if not isinstance(val, (int, float)) or isinstance(val, bool) or not 0.0 < val < 1.0:
        raise ValueError(f"val: expected a fraction in (0, 1), got {val!r}")
    n = len(dataset)
    if n < 2:
        raise ValueError(f"dataset: need at least 2 samples to split, got {n}")
    generator = torch.Generator().manual_seed(int(seed))
    if not stratify:
        if labels is not None and len(labels) != n:
            raise ValueError(f"labels: {len(labels)} labels for a dataset of {n} samples")
        order = torch.randperm(n, generator=generator).tolist()
        k = min(max(round(val * n), 1), n - 1)
        return Subset(dataset, sorted(order[k:])), Subset(dataset, sorted(order[:k]))

    classes: dict[int, list[int]] = {}
    for i, label in enumerate(_labels_of(dataset, labels, n)):
        classes.setdefault(label, []).append(i)
    keys = sorted(classes)
    counts = _val_counts([len(classes[c]) for c in keys], float(val), n)
    if sum(counts) == 0:
        raise ValueError(f"labels: all {n} samples have different classes, so no class can be in both parts; "
                         f"pass stratify=False")
    train, validation = [], []
    for c, k in zip(keys, counts, strict=True):
        members = classes[c]
        order = [members[j] for j in torch.randperm(len(members), generator=generator).tolist()]
        validation += order[:k]
        train += order[k:]
    return Subset(dataset, sorted(train)), Subset(dataset, sorted(validation))

"""Tests of `medimg.data.synthetic`: procedural datasets rendered on the fly from (seed, index).

Every dataset is checked for shapes, dtypes and value ranges (also at odd sizes),
determinism (per index, independent of access order and of batch composition), its
batched paths (``get_batch``, ``batch``, ``DataLoader`` via ``__getitems__``) and argument
errors; then per dataset for the consistency of its targets (tumour masks and boxes, vessel
masks inside the field of view, EF values) and class balance; and BrainMRI and ChestXRay for
non-triviality: image-level intensity statistics must not separate their classes.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor
from torch.utils.data import DataLoader

from medimg.data.synthetic import BrainMRI, ChestXRay, CineSequences, EnhancementPairs, RetinaVessels

# name -> (factory(length, size, seed), {key: (shape without batch given size s and frames t, dtype)})
DATASETS = {
    "brain": (lambda n, s, seed: BrainMRI(n, size=s, seed=seed),
              {"image": ("1ss", torch.float32), "label": ("", torch.int64), "mask": ("ss", torch.int64),
               "box": ("4", torch.float32)}),
    "chest": (lambda n, s, seed: ChestXRay(n, size=s, seed=seed),
              {"image": ("1ss", torch.float32), "label": ("", torch.int64)}),
    "retina": (lambda n, s, seed: RetinaVessels(n, size=s, seed=seed),
               {"image": ("1ss", torch.float32), "mask": ("ss", torch.int64), "fov": ("ss", torch.bool)}),
    "enhancement": (lambda n, s, seed: EnhancementPairs(n, size=s, degradation="mixed", seed=seed),
                    {"clean": ("1ss", torch.float32), "degraded": ("1ss", torch.float32)}),
    "cine": (lambda n, s, seed: CineSequences(n, frames=5, size=s, seed=seed),
             {"frames": ("t1ss", torch.float32), "label": ("", torch.int64), "ef": ("", torch.float32)}),
}
FLOAT_KEYS_IN_01 = ("image", "clean", "degraded", "frames")


def make(name: str, length: int = 8, size: int = 32, seed: int = 0):
    return DATASETS[name][0](length, size, seed)


def expected_shape(code: str, size: int, frames: int = 5) -> tuple[int, ...]:
    sizes = {"s": size, "t": frames, "1": 1, "4": 4}
    return tuple(sizes[c] for c in code)


def assert_same_sample(a: dict[str, Tensor], b: dict[str, Tensor]) -> None:
    """Equal up to float rounding (~1e-6) for floats; masks at most a few boundary pixels apart."""
    assert a.keys() == b.keys()
    for k in a:
        if a[k].is_floating_point():
            torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-5, msg=k)
        elif a[k].dim() == 0:
            assert torch.equal(a[k], b[k]), k
        else:
            assert (a[k] != b[k]).sum() <= 2, k


def threshold_accuracy(values: Tensor, labels: Tensor) -> float:
    """Best accuracy of ``value >= t`` or ``value < t`` over every threshold t (chosen on the same data)."""
    order = values.argsort()
    y = labels[order].float()
    n, pos = y.numel(), y.sum()
    # Predict 1 at and above position i: correct = negatives below i + positives from i on.
    neg_below = torch.cat([torch.zeros(1), torch.cumsum(1 - y, 0)])
    pos_from = pos - torch.cat([torch.zeros(1), torch.cumsum(y, 0)])
    above = (neg_below + pos_from) / n
    return float(torch.maximum(above, 1 - above).max())


def logistic_regression_accuracy(features: Tensor, labels: Tensor) -> float:
    """Training accuracy of a logistic regression fitted (LBFGS) on standardised features."""
    x = (features - features.mean(0)) / features.std(0).clamp_min(1e-8)
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ w + b, labels.float())
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float((((x @ w + b) > 0).long() == labels).float().mean())


# ----------------------------------------------------------------------------- every dataset

@pytest.mark.parametrize("size", [16, 37, 64])
@pytest.mark.parametrize("name", list(DATASETS))
def test_shapes_dtypes_and_ranges(name, size):
    ds = make(name, length=4, size=size)
    keys = DATASETS[name][1]
    sample = ds[0]
    assert sample.keys() == keys.keys()
    for k, (code, dtype) in keys.items():
        assert sample[k].dtype == dtype, k
        assert tuple(sample[k].shape) == expected_shape(code, size), k
    batch = ds.get_batch([0, 1, 2])
    for k, (code, _) in keys.items():
        assert tuple(batch[k].shape) == (3, *expected_shape(code, size)), k
    for k in FLOAT_KEYS_IN_01:
        if k in batch:
            assert torch.isfinite(batch[k]).all() and batch[k].min() >= 0 and batch[k].max() <= 1, k
            assert batch[k].std() > 0.01, k  # not blank


@pytest.mark.parametrize("name", list(DATASETS))
def test_deterministic_per_seed_and_index(name):
    a, b = make(name, seed=3), make(name, seed=3)
    first = [a[i] for i in (5, 2, 7)]  # any access order
    for i, s in zip((5, 2, 7), first, strict=True):
        assert_same_sample(s, b[i])
        for k in s:
            assert torch.equal(s[k], a[i][k]), k  # the same object path is bit-exact
    key = next(iter(DATASETS[name][1]))
    assert not torch.equal(make(name, seed=4)[5][key], first[0][key])
    assert not torch.equal(a[6][key], a[5][key])
    assert_same_sample(a[-1], a[7])
    assert type(a).__name__ in repr(a) and "seed=3" in repr(a)


@pytest.mark.parametrize("name", list(DATASETS))
def test_batches_match_single_samples(name):
    ds = make(name, length=10, seed=11)
    batch = ds.get_batch([9, 0, 4])
    for j, i in enumerate((9, 0, 4)):
        assert_same_sample({k: v[j] for k, v in batch.items()}, ds[i])
    # batch(n, seed) is the first n samples of the same dataset built with that seed.
    fresh = ds.batch(3, generator=5)
    twin = make(name, length=3, seed=5).get_batch([0, 1, 2])
    for k in fresh:
        assert torch.equal(fresh[k], twin[k]), k
    # A generator gives reproducible, different batches as it advances.
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    x1, x2 = ds.batch(2, generator=g1), ds.batch(2, generator=g2)
    for k in x1:
        assert torch.equal(x1[k], x2[k]), k
    key = next(iter(x1))
    assert not torch.equal(ds.batch(2, generator=g1)[key], x1[key])


@pytest.mark.parametrize("name", ["brain", "retina", "cine"])
def test_dataloader_fetches_whole_batches(name):
    ds = make(name, length=6, seed=2)
    loader = DataLoader(ds, batch_size=4, shuffle=False)
    batches = list(loader)
    assert len(batches) == 2 and len(ds) == 6
    expected = ds.get_batch([0, 1, 2, 3])
    for k in expected:
        assert torch.equal(batches[0][k], expected[k]), k
    assert batches[1][next(iter(expected))].shape[0] == 2


@pytest.mark.parametrize("name", list(DATASETS))
def test_length_and_index_errors(name):
    ds = make(name, length=3)
    assert len(ds) == 3 and len(make(name, length=0)) == 0
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(IndexError):
        ds[-4]
    with pytest.raises(ValueError, match="length"):
        make(name, length=-1)
    for bad in (15, 0, 32.0):
        with pytest.raises(ValueError, match="size"):
            make(name, size=bad)
    with pytest.raises(ValueError, match="n:"):
        ds.batch(0)
    with pytest.raises(ValueError, match="generator"):
        ds.batch(2, generator="seed")
    with pytest.raises(ValueError, match="indices"):
        ds.get_batch([])


@pytest.mark.parametrize(("cls", "arg"), [(BrainMRI, "tumour_fraction"), (ChestXRay, "pneumonia_ratio"),
                                          (CineSequences, "abnormal_fraction")])
@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), "half"])
def test_fraction_arguments_outside_0_1_raise(cls, arg, value):
    with pytest.raises(ValueError, match=arg):
        cls(4, **{arg: value})


def test_bad_choices_and_frames_raise():
    with pytest.raises(ValueError, match="degradation"):
        EnhancementPairs(4, degradation="jpeg")
    with pytest.raises(ValueError, match="source"):
        EnhancementPairs(4, source="ct")
    for frames in (1, 0, -3):
        with pytest.raises(ValueError, match="frames"):
            CineSequences(4, frames=frames)
    with pytest.raises(ValueError, match="seed"):
        BrainMRI(4, seed=1.5)


# ----------------------------------------------------------------------------- BrainMRI

@pytest.mark.parametrize("size", [16, 33, 64])
def test_brain_box_encloses_exactly_the_mask(size):
    batch = BrainMRI(120, size=size, seed=7).get_batch(range(120))
    for label, mask, box in zip(batch["label"], batch["mask"], batch["box"], strict=True):
        assert set(mask.unique().tolist()) <= {0, 1}
        assert bool(mask.any()) == bool(label == 1)  # empty mask iff no tumour
        if label == 0:
            assert torch.equal(box, torch.zeros(4))
            continue
        x0, y0, x1, y1 = box.long().tolist()
        assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
        assert mask[y0:y1, x0:x1].sum() == mask.sum()  # encloses every pixel
        assert mask[y0].any() and mask[y1 - 1].any() and mask[:, x0].any() and mask[:, x1 - 1].any()  # tight


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(-(2**40), 2**40), index=st.integers(0, 10**6), size=st.integers(16, 48))
def test_brain_any_seed_index_and_size(seed, index, size):
    sample = BrainMRI(index + 1, size=size, tumour_fraction=0.7, seed=seed)[index]
    image, mask, box = sample["image"], sample["mask"], sample["box"]
    assert image.min() >= 0 and image.max() <= 1
    assert bool(mask.any()) == bool(sample["label"] == 1)
    x0, y0, x1, y1 = box.long().tolist()
    assert mask[y0:y1, x0:x1].sum() == mask.sum()


def test_brain_tumour_fraction_is_respected():
    labels = BrainMRI(400, size=16, seed=1).get_batch(range(400))["label"]
    assert abs(labels.float().mean().item() - 0.5) < 0.07
    assert BrainMRI(50, size=16, tumour_fraction=0.0).get_batch(range(50))["label"].sum() == 0
    every = BrainMRI(50, size=16, tumour_fraction=1.0).get_batch(range(50))
    assert every["label"].all() and every["mask"].flatten(1).any(1).all()


def test_brain_sample_is_the_same_scene_at_every_size():
    small, large = BrainMRI(20, size=32, seed=4), BrainMRI(20, size=96, seed=4)
    a, b = small.get_batch(range(20)), large.get_batch(range(20))
    assert torch.equal(a["label"], b["label"])
    # Tumour boxes agree in normalised units (within a few pixels of the small image).
    assert torch.allclose(a["box"] / 32, b["box"] / 96, atol=3 / 32)


# ----------------------------------------------------------------------------- ChestXRay

@pytest.mark.parametrize("ratio", [0.75, 0.3])
def test_chest_class_balance(ratio):
    labels = ChestXRay(400, size=16, pneumonia_ratio=ratio, seed=2).get_batch(range(400))["label"]
    assert abs(labels.float().mean().item() - ratio) < 0.07


# ----------------------------------------------------------------------------- non-triviality

@pytest.mark.parametrize("ds", [BrainMRI(400, size=48, seed=9), ChestXRay(400, size=48, pneumonia_ratio=0.5, seed=9),
                                ChestXRay(400, size=48, seed=9)], ids=["brain", "chest-balanced", "chest-3:1"])
def test_intensity_statistics_do_not_separate_the_classes(ds):
    batch = ds.get_batch(range(len(ds)))
    images, labels = batch["image"].flatten(1), batch["label"]
    mean, std = images.mean(1), images.std(1)
    assert threshold_accuracy(mean, labels) <= 0.8
    assert threshold_accuracy(std, labels) <= 0.8
    assert logistic_regression_accuracy(torch.stack([mean, std], 1), labels) < 0.85


def test_untrained_cnn_is_not_perfect():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, 2))
    for ds in (BrainMRI(128, size=32, seed=1), ChestXRay(128, size=32, pneumonia_ratio=0.5, seed=1)):
        batch = ds.get_batch(range(128))
        with torch.no_grad():
            accuracy = (net(batch["image"]).argmax(1) == batch["label"]).float().mean()
        assert accuracy < 1.0


# ----------------------------------------------------------------------------- RetinaVessels

@pytest.mark.parametrize("size", [64, 97])
def test_retina_vessels_lie_inside_the_field_of_view(size):
    batch = RetinaVessels(6, size=size, seed=3).get_batch(range(6))
    mask, fov, image = batch["mask"], batch["fov"], batch["image"][:, 0]
    assert set(mask.unique().tolist()) <= {0, 1}
    assert not (mask.bool() & ~fov).any()
    assert (image[~fov] == 0).all()
    vessel_fraction = mask.flatten(1).sum(1) / fov.flatten(1).sum(1)
    assert ((vessel_fraction > 0.05) & (vessel_fraction < 0.35)).all()  # every vessel >= 1 pixel wide
    fov_fraction = fov.flatten(1).float().mean(1)  # a disc of radius 0.86-0.95 of the half-width
    assert ((fov_fraction > 0.55) & (fov_fraction < 0.72)).all()
    # Vessels are darker than the background around them (same image, inside the FOV).
    for img, m, f in zip(image, mask.bool(), fov, strict=True):
        assert img[m].mean() < img[f & ~m].mean()


# ----------------------------------------------------------------------------- EnhancementPairs

@pytest.mark.parametrize("source", ["brain", "chest", "retina"])
@pytest.mark.parametrize("degradation", ["noise", "rician", "blur_down2", "low_contrast", "mixed"])
def test_enhancement_pairs(source, degradation):
    ds = EnhancementPairs(4, size=33, degradation=degradation, source=source, seed=5)
    pair = ds.get_batch(range(4))
    clean, degraded = pair["clean"], pair["degraded"]
    assert clean.shape == degraded.shape == (4, 1, 33, 33)
    for t in (clean, degraded):
        assert t.dtype == torch.float32 and t.min() >= 0 and t.max() <= 1
    assert ((degraded - clean).abs().flatten(1).amax(1) > 0.01).all()  # every pair is degraded
    if degradation == "low_contrast":
        assert (degraded.flatten(1).std(1) < clean.flatten(1).std(1)).all()
    if degradation == "blur_down2":
        def tv(x: Tensor) -> Tensor:
            return (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).sum(1)
        assert (tv(degraded) < tv(clean)).all()


def test_enhancement_clean_is_the_noise_free_source():
    ds = EnhancementPairs(3, size=32, degradation="noise", source="brain", seed=8)
    noisy = BrainMRI(3, size=32, seed=8)
    clean, image = ds.get_batch(range(3))["clean"], noisy.get_batch(range(3))["image"]
    residual = (image - clean)[clean > 0.2]  # Rician noise is ~Gaussian where the signal is high
    assert 0.005 < residual.std() < 0.08 and residual.mean().abs() < 0.01


# ----------------------------------------------------------------------------- CineSequences

def test_cine_ejection_fraction():
    batch = CineSequences(200, frames=8, size=24, seed=6).get_batch(range(200))
    ef, labels = batch["ef"], batch["label"]
    assert ((ef > 0) & (ef < 1)).all()
    assert ef[labels == 1].mean() < ef[labels == 0].mean() - 0.05
    assert abs(labels.float().mean().item() - 0.5) < 0.1
    # EF is recomputable from the frames: the bright blood pool shrinks from ED to ES.
    frames = batch["frames"][:, :, 0]
    flat = frames.flatten(1)
    level = 0.5 * (flat.quantile(0.98, dim=1) + flat.median(dim=1).values)  # between tissue and blood
    bright = (frames > level.view(-1, 1, 1, 1)).flatten(2).sum(2).float()
    proxy = (bright.amax(1) - bright.amin(1)) / bright.amax(1)
    assert torch.corrcoef(torch.stack([proxy, ef]))[0, 1] > 0.5


def test_cine_two_frames_and_fractions():
    batch = CineSequences(4, frames=2, size=16, abnormal_fraction=1.0).get_batch(range(4))
    assert batch["frames"].shape == (4, 2, 1, 16, 16)
    assert batch["label"].all()
    assert CineSequences(20, size=16, abnormal_fraction=0.0).get_batch(range(20))["label"].sum() == 0

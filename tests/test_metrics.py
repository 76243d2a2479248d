"""medimg.metrics.dice / iou / confusion_matrix against slow, readable references.

The references below count tp/fp/fn with boolean masks per (sample, class) and reduce with
explicit Python loops, so they share no code with the library (no bincount, no nanmean).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from medimg.metrics import confusion_matrix, dice, iou
from medimg.ops import segmentation_stats

METRICS = {"dice": dice, "iou": iou}
REDUCTIONS = ("none", "mean", "sum", "mean_batch", "mean_class")
BACKENDS = ("auto", "medimg", "torch")


# ----------------------------------------------------------------------------- references

def ref_counts(pred: torch.Tensor, target: torch.Tensor, k: int, ignore_index: int | None = None) -> torch.Tensor:
    """(N, K, 3) float64 [tp, fp, fn] from boolean masks, one sample and class at a time."""
    n = pred.shape[0]
    out = torch.zeros(n, k, 3, dtype=torch.float64)
    for i in range(n):
        p = pred[i].reshape(-1).long()
        t = target[i].reshape(-1).long()
        if ignore_index is not None:
            keep = t != ignore_index
            p, t = p[keep], t[keep]
        for c in range(k):
            out[i, c, 0] = ((p == c) & (t == c)).sum().item()
            out[i, c, 1] = ((p == c) & (t != c)).sum().item()
            out[i, c, 2] = ((p != c) & (t == c)).sum().item()
    return out


def ref_scores(kind: str, pred, target, k, include_background=False, empty=math.nan, ignore_index=None):
    """(N, C) float64 scores; `empty` where the class is absent from both pred and target."""
    counts = ref_counts(pred, target, k, ignore_index)
    n = counts.shape[0]
    scores = torch.empty(n, k, dtype=torch.float64)
    for i in range(n):
        for c in range(k):
            tp, fp, fn = (float(v) for v in counts[i, c])
            if kind == "dice":
                num, den = 2 * tp, 2 * tp + fp + fn
            else:
                num, den = tp, tp + fp + fn
            scores[i, c] = num / den if den > 0 else empty
    return scores if include_background else scores[:, 1:]


def _mean_skipping_nan(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def ref_reduce(scores: torch.Tensor, reduction: str) -> torch.Tensor:
    rows = scores.tolist()
    if reduction == "none":
        out = scores
    elif reduction == "mean":
        out = torch.tensor(_mean_skipping_nan([v for row in rows for v in row]))
    elif reduction == "sum":
        out = torch.tensor(sum(v for row in rows for v in row if not math.isnan(v)), dtype=torch.float64)
    elif reduction == "mean_batch":
        out = torch.tensor([_mean_skipping_nan([row[c] for row in rows]) for c in range(scores.shape[1])])
    elif reduction == "mean_class":
        out = torch.tensor([_mean_skipping_nan(row) for row in rows])
    else:
        raise AssertionError(reduction)
    return out.float()


def ref_confusion(pred, target, k, ignore_index=None) -> torch.Tensor:
    p = pred.reshape(-1).tolist()
    t = target.reshape(-1).tolist()
    out = torch.zeros(k, k, dtype=torch.int64)
    for a, b in zip(t, p, strict=True):
        if ignore_index is not None and a == ignore_index:
            continue
        out[a, b] += 1
    return out


# ----------------------------------------------------------------------------- data

K = 5  # class 4 never appears anywhere


def make_labels(spatial: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """N=3 label maps with: class 4 absent from every sample; class 2 absent from both pred and
    target in sample 0; sample 2 all background in both (every foreground class empty there)."""
    g = torch.Generator().manual_seed(seed)
    pred = torch.randint(0, 4, (3, *spatial), generator=g)
    target = torch.randint(0, 4, (3, *spatial), generator=g)
    pred[0][pred[0] == 2] = 1
    target[0][target[0] == 2] = 3
    pred[2] = 0
    target[2] = 0
    return pred, target


SPATIAL = {2: (5, 6), 3: (3, 4, 5)}


def test_fixture_has_the_intended_empty_classes():
    pred, target = make_labels(SPATIAL[2])
    counts = ref_counts(pred, target, K)
    assert counts[:, 4].sum() == 0
    assert counts[0, 2].sum() == 0
    assert counts[2, 1:].sum() == 0
    assert counts[1, 1:4].sum(-1).gt(0).all()


# ----------------------------------------------------------------------------- values

@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("empty", ["nan", 1.0, 0.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["dice", "iou"])
def test_matches_reference(kind, reduction, empty, include_background, ndim):
    pred, target = make_labels(SPATIAL[ndim], seed=ndim)
    got = METRICS[kind](pred, target, K, include_background=include_background, reduction=reduction, empty=empty)
    empty_value = math.nan if empty == "nan" else empty
    expected = ref_reduce(ref_scores(kind, pred, target, K, include_background, empty_value), reduction)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, equal_nan=True)


@pytest.mark.parametrize("kind", ["dice", "iou"])
def test_empty_policy_and_nan_skipping(kind):
    """Explicit expectations on the fixture: NaN where the class is empty, mean_batch NaN for a
    class absent everywhere, mean_class NaN for an all-background sample."""
    pred, target = make_labels(SPATIAL[2])
    fn = METRICS[kind]
    none = fn(pred, target, K, reduction="none")
    assert none.shape == (3, K - 1)
    assert torch.isnan(none[:, 3]).all()  # class 4
    assert torch.isnan(none[0, 1])  # class 2 in sample 0
    assert torch.isnan(none[2]).all()  # background-only sample
    assert not torch.isnan(none[1, :3]).any()
    batch = fn(pred, target, K, reduction="mean_batch")
    assert torch.isnan(batch[3]) and not torch.isnan(batch[:3]).any()
    per_sample = fn(pred, target, K, reduction="mean_class")
    assert torch.isnan(per_sample[2]) and not torch.isnan(per_sample[:2]).any()
    assert not torch.isnan(fn(pred, target, K, reduction="mean"))
    ones = fn(pred, target, K, reduction="none", empty=1.0)
    assert (ones[:, 3] == 1).all() and (ones[2] == 1).all()
    zeros = fn(pred, target, K, reduction="none", empty=0.0)
    assert (zeros[:, 3] == 0).all() and (zeros[2] == 0).all()
    # "mean" over NaN-free entries only: equals the explicit mean of the finite entries
    finite = none[~torch.isnan(none)]
    torch.testing.assert_close(fn(pred, target, K, reduction="mean"), finite.mean())
    torch.testing.assert_close(fn(pred, target, K, reduction="sum"), finite.sum())


def test_all_empty_gives_nan_mean_and_zero_sum():
    pred = torch.zeros(2, 4, 4, dtype=torch.int64)
    assert torch.isnan(dice(pred, pred, 3, reduction="mean"))
    assert dice(pred, pred, 3, reduction="sum") == 0
    assert dice(pred, pred, 3, reduction="mean", include_background=True) == 1


def test_known_answer():
    pred = torch.tensor([[[0, 1], [2, 1]]])
    target = torch.tensor([[[0, 1], [2, 2]]])
    torch.testing.assert_close(dice(pred, target, 3, reduction="none"), torch.tensor([[2 / 3, 2 / 3]]))
    torch.testing.assert_close(dice(pred, target, 3, include_background=True, reduction="none"),
                               torch.tensor([[1.0, 2 / 3, 2 / 3]]))
    torch.testing.assert_close(iou(pred, target, 3, reduction="none"), torch.tensor([[0.5, 0.5]]))
    torch.testing.assert_close(iou(pred, target, 3, include_background=True, reduction="none"),
                               torch.tensor([[1.0, 0.5, 0.5]]))
    torch.testing.assert_close(dice(pred, target, 3), torch.tensor(2 / 3))
    torch.testing.assert_close(dice(pred, target, 3, include_background=True, reduction="sum"), torch.tensor(7 / 3))
    torch.testing.assert_close(iou(pred, target, 3, reduction="mean_batch"), torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(iou(pred, target, 3, include_background=True, reduction="mean_class"),
                               torch.tensor([2 / 3]))
    # a fourth class absent from both: NaN, 1 or 0 by policy
    torch.testing.assert_close(dice(pred, target, 4, reduction="none"),
                               torch.tensor([[2 / 3, 2 / 3, math.nan]]), equal_nan=True)
    torch.testing.assert_close(dice(pred, target, 4, reduction="none", empty=1.0), torch.tensor([[2 / 3, 2 / 3, 1.0]]))
    torch.testing.assert_close(dice(pred, target, 4, reduction="none", empty=0), torch.tensor([[2 / 3, 2 / 3, 0.0]]))
    torch.testing.assert_close(dice(pred, target, 4, reduction="mean", empty=0.0), torch.tensor(4 / 9))


def test_perfect_and_disjoint_predictions():
    target = torch.tensor([[[1, 1], [2, 2]]])
    torch.testing.assert_close(dice(target, target, 3, reduction="none"), torch.ones(1, 2))
    swapped = torch.tensor([[[2, 2], [1, 1]]])
    torch.testing.assert_close(iou(swapped, target, 3, reduction="none"), torch.zeros(1, 2))


# ----------------------------------------------------------------------------- ignore_index

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("ignore_index", "dtype"), [(1, torch.int64), (1, torch.uint8), (255, torch.uint8),
                                                     (255, torch.int64), (-1, torch.int64), (-1, torch.int8)])
@pytest.mark.parametrize("kind", ["dice", "iou"])
def test_ignore_index(kind, ignore_index, dtype, backend):
    pred, target = make_labels((6, 7), seed=5)
    g = torch.Generator().manual_seed(11)
    ignored = torch.rand(target.shape, generator=g) < 0.3
    target[ignored] = ignore_index
    # pred at ignored pixels is never inspected, even when it is out of range
    junk = torch.randint(0, K, pred.shape, generator=g)
    if ignore_index not in range(K):
        junk[0, 0, 0] = ignore_index  # an out-of-range pred value where the target is ignored
        target[0, 0, 0] = ignore_index
        ignored[0, 0, 0] = True
    pred = torch.where(ignored, junk, pred)
    pred, target = pred.to(dtype), target.to(dtype)
    got = METRICS[kind](pred, target, K, include_background=True, reduction="none", ignore_index=ignore_index,
                        backend=backend)
    expected = ref_scores(kind, pred, target, K, True, math.nan, ignore_index).float()
    torch.testing.assert_close(got, expected, equal_nan=True)
    # and it really differs from not ignoring: the ignored pixels would change the counts
    if ignore_index in range(K):
        plain = METRICS[kind](pred, target, K, include_background=True, reduction="none", backend=backend)
        assert not torch.allclose(plain, got, equal_nan=True)


def test_ignore_index_inside_range_removes_that_class_from_the_target():
    pred = torch.tensor([[[1, 1], [2, 0]]])
    target = torch.tensor([[[1, 2], [2, 1]]])
    # ignoring target==1 leaves pixels (0,1) and (1,0): class 2 tp=1, fp=0, fn=1 (pred 1 there)
    got = dice(pred, target, 3, include_background=True, reduction="none", ignore_index=1)
    torch.testing.assert_close(got, torch.tensor([[math.nan, 0.0, 2 / 3]]), equal_nan=True)


def test_out_of_range_label_raises_unless_ignored():
    pred = torch.tensor([[[0, 7], [1, 1]]])
    target = torch.tensor([[[0, 255], [1, 1]]])
    with pytest.raises(ValueError, match="target holds label 255"):
        dice(pred, target, 2)
    torch.testing.assert_close(dice(pred, target, 2, ignore_index=255, reduction="none"), torch.tensor([[1.0]]))


# ----------------------------------------------------------------------------- conventions

def _one_hot(labels: torch.Tensor, k: int, dtype: torch.dtype) -> torch.Tensor:
    return F.one_hot(labels.long(), k).movedim(-1, 1).to(dtype)


def _logits(labels: torch.Tensor, k: int, seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((labels.shape[0], k, *labels.shape[1:]), generator=g) + 5 * _one_hot(labels, k, torch.float32)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("kind", ["dice", "iou"])
def test_input_conventions_agree(kind, ndim):
    pred, target = make_labels(SPATIAL[ndim], seed=7)
    fn = METRICS[kind]
    kwargs = {"include_background": True, "reduction": "none"}
    expected = fn(pred, target, K, **kwargs)
    torch.testing.assert_close(expected, ref_scores(kind, pred, target, K, True).float(), equal_nan=True)
    variants = {
        "float logits pred": (_logits(pred, K), target),
        "float probabilities pred": (_logits(pred, K).softmax(1), target),
        "int one-hot pred": (_one_hot(pred, K, torch.int64), target),
        "uint8 one-hot pred": (_one_hot(pred, K, torch.uint8), target),
        "float one-hot target": (pred, _one_hot(target, K, torch.float32)),
        "int one-hot target": (pred, _one_hot(target, K, torch.int64)),
        "logits and float one-hot target": (_logits(pred, K), _one_hot(target, K, torch.float32)),
        "uint8 label maps": (pred.to(torch.uint8), target.to(torch.uint8)),
        "mixed dtypes": (pred.to(torch.int16), target.to(torch.uint8)),
    }
    for name, (p, t) in variants.items():
        got = fn(p, t, K, **kwargs)
        torch.testing.assert_close(got, expected, equal_nan=True, msg=lambda m, name=name: f"{name}: {m}")


def test_two_integer_tensors_of_equal_rank_are_label_maps():
    """Documented rule of to_label_maps: integer one-hot pred AND target are read as (N, C, H, W)
    label maps of 0/1 (not argmaxed); only a float or a one-dim-larger partner marks a class dim."""
    pred, target = make_labels(SPATIAL[2], seed=1)
    p1, t1 = _one_hot(pred, K, torch.int64), _one_hot(target, K, torch.int64)
    got = dice(p1, t1, K, include_background=True, reduction="none")
    torch.testing.assert_close(got, ref_scores("dice", p1, t1, K, True).float(), equal_nan=True)


def test_logits_take_argmax_not_threshold():
    # negative logits everywhere: the argmax still picks the largest
    logits = torch.tensor([[[[-5.0, -1.0]], [[-2.0, -3.0]]]])  # (1, 2, 1, 2): argmax -> [[1, 0]]
    target = torch.tensor([[[1, 0]]])
    torch.testing.assert_close(dice(logits, target, 2, include_background=True, reduction="none"),
                               torch.ones(1, 2))


def test_bool_label_maps():
    pred = torch.tensor([[[True, False], [True, True]]])
    target = torch.tensor([[[True, False], [False, True]]])
    torch.testing.assert_close(dice(pred, target, 2, reduction="none"), torch.tensor([[0.8]]))


@pytest.mark.parametrize("backend", ["medimg", "auto"])
@pytest.mark.parametrize("kind", ["dice", "iou"])
def test_backends_agree(kind, backend, cpu_isa):
    g = torch.Generator().manual_seed(2)
    pred = torch.randint(0, 4, (4, 9, 33), generator=g)
    target = torch.randint(0, 4, (4, 9, 33), generator=g)
    target[target == 3] = 255
    fn = METRICS[kind]
    for reduction in REDUCTIONS:
        ref = fn(pred, target, 4, reduction=reduction, ignore_index=255, backend="torch")
        got = fn(pred, target, 4, reduction=reduction, ignore_index=255, backend=backend)
        torch.testing.assert_close(got, ref, equal_nan=True)
    # non-contiguous (transposed, strided) inputs give the same as their contiguous copies
    p_t, t_t = pred.transpose(1, 2), target.transpose(1, 2)
    assert not p_t.is_contiguous()
    torch.testing.assert_close(fn(p_t, t_t, 4, reduction="none", ignore_index=255, backend=backend),
                               fn(p_t.contiguous(), t_t.contiguous(), 4, reduction="none", ignore_index=255,
                                  backend="torch"), equal_nan=True)
    p_s, t_s = pred[:, ::2, 1::3], target[:, ::2, 1::3]
    torch.testing.assert_close(fn(p_s, t_s, 4, reduction="none", ignore_index=255, backend=backend),
                               ref_scores(kind, p_s, t_s, 4, False, math.nan, 255).float(), equal_nan=True)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), h=st.integers(1, 6), w=st.integers(1, 6), k=st.integers(2, 5), seed=st.integers(0, 999),
       include_background=st.booleans(), kind=st.sampled_from(["dice", "iou"]))
def test_property_matches_reference(n, h, w, k, seed, include_background, kind):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randint(0, k, (n, h, w), generator=g)
    target = torch.randint(0, k, (n, h, w), generator=g)
    got = METRICS[kind](pred, target, k, include_background=include_background, reduction="none")
    expected = ref_scores(kind, pred, target, k, include_background).float()
    torch.testing.assert_close(got, expected, equal_nan=True)


# ----------------------------------------------------------------------------- confusion matrix

@pytest.mark.parametrize("ndim", [2, 3])
def test_confusion_matrix_counts(ndim):
    pred, target = make_labels(SPATIAL[ndim], seed=9)
    cm = confusion_matrix(pred, target, K)
    assert cm.dtype == torch.int64 and cm.shape == (K, K)
    torch.testing.assert_close(cm, ref_confusion(pred, target, K))
    assert cm.sum() == pred.numel()
    # rows are targets, columns predictions: consistent with the per-sample statistics
    stats = segmentation_stats(pred, target, K).sum(0)
    torch.testing.assert_close(cm.diagonal(), stats[:, 0])
    torch.testing.assert_close(cm.sum(0) - cm.diagonal(), stats[:, 1])  # fp: predicted c, target other
    torch.testing.assert_close(cm.sum(1) - cm.diagonal(), stats[:, 2])  # fn: target c, predicted other


def test_confusion_matrix_known_answer_and_orientation():
    pred = torch.tensor([[[0, 1], [2, 1]]])
    target = torch.tensor([[[0, 1], [2, 2]]])
    expected = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 1, 1]])  # target 2 predicted as 1 -> row 2, col 1
    torch.testing.assert_close(confusion_matrix(pred, target, 3), expected)
    torch.testing.assert_close(confusion_matrix(_logits(pred, 3), _one_hot(target, 3, torch.float32), 3), expected)


def test_confusion_matrix_normalize():
    pred = torch.tensor([[[0, 1], [2, 1]]])
    target = torch.tensor([[[0, 1], [2, 2]]])
    k = 4  # class 3 absent: an empty row and column
    true = confusion_matrix(pred, target, k, normalize="true")
    assert true.dtype == torch.float32
    torch.testing.assert_close(true, torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0.5, 0.5, 0], [0, 0, 0, 0]]))
    by_pred = confusion_matrix(pred, target, k, normalize="pred")
    torch.testing.assert_close(by_pred, torch.tensor([[1.0, 0, 0, 0], [0, 0.5, 0, 0], [0, 0.5, 1, 0], [0, 0, 0, 0]]))
    torch.testing.assert_close(confusion_matrix(pred, target, k, normalize="all"),
                               confusion_matrix(pred, target, k).float() / 4)


@pytest.mark.parametrize("normalize", ["true", "pred", "all"])
def test_confusion_matrix_normalize_sums(normalize):
    pred, target = make_labels(SPATIAL[3], seed=4)
    counts = ref_confusion(pred, target, K).double()
    got = confusion_matrix(pred, target, K, normalize=normalize)
    assert not torch.isnan(got).any()
    if normalize == "true":
        sums, present = got.sum(1), counts.sum(1) > 0
        expected = counts / counts.sum(1, keepdim=True).clamp_min(1)
    elif normalize == "pred":
        sums, present = got.sum(0), counts.sum(0) > 0
        expected = counts / counts.sum(0, keepdim=True).clamp_min(1)
    else:
        sums, present = got.sum().view(1), torch.tensor([True])
        expected = counts / counts.sum()
    torch.testing.assert_close(sums[present], torch.ones(int(present.sum())))
    assert (sums[~present] == 0).all() and (~present).any() == (normalize != "all")
    torch.testing.assert_close(got, expected.float())


@pytest.mark.parametrize("ignore_index", [1, 255])
def test_confusion_matrix_ignore_index(ignore_index):
    pred, target = make_labels((6, 5), seed=8)
    target = target.to(torch.uint8)
    pred = pred.to(torch.uint8)
    mask = torch.rand(target.shape, generator=torch.Generator().manual_seed(0)) < 0.25
    target[mask] = ignore_index
    pred[mask & (torch.arange(5) % 2 == 0)] = 200  # out-of-range pred under ignored pixels is fine
    cm = confusion_matrix(pred, target, K, ignore_index=ignore_index)
    torch.testing.assert_close(cm, ref_confusion(pred, target, K, ignore_index))
    assert cm.sum() == int((target != ignore_index).sum())
    if ignore_index == 1:
        assert (cm[1] == 0).all()


# ----------------------------------------------------------------------------- bad input

def _pair():
    return torch.tensor([[[0, 1], [2, 1]]]), torch.tensor([[[0, 1], [2, 2]]])


@pytest.mark.parametrize("fn", [dice, iou])
def test_bad_reduction(fn):
    pred, target = _pair()
    with pytest.raises(ValueError, match="reduction"):
        fn(pred, target, 3, reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        fn(pred, target, 3, reduction="mean_batches")


@pytest.mark.parametrize("empty", ["zero", True, False, None, "NaN", [1.0]])
@pytest.mark.parametrize("fn", [dice, iou])
def test_bad_empty(fn, empty):
    pred, target = _pair()
    with pytest.raises(ValueError, match="empty"):
        fn(pred, target, 3, empty=empty)


@pytest.mark.parametrize("fn", [dice, iou])
def test_single_class_without_background(fn):
    pred = torch.zeros(1, 2, 2, dtype=torch.int64)
    with pytest.raises(ValueError, match="include_background"):
        fn(pred, pred, 1)
    torch.testing.assert_close(fn(pred, pred, 1, include_background=True), torch.tensor(1.0))


@pytest.mark.parametrize("fn", [dice, iou])
def test_bad_num_classes(fn):
    pred, target = _pair()
    with pytest.raises(ValueError, match="num_classes"):
        fn(pred, target, 0)
    with pytest.raises(TypeError, match="num_classes"):
        fn(pred, target, 3.0)
    with pytest.raises(TypeError, match="num_classes"):
        confusion_matrix(pred, target, True)


def test_class_channel_of_wrong_size():
    pred, target = _pair()
    with pytest.raises(ValueError, match=r"pred: a class-channel tensor must be \(N, num_classes=3"):
        dice(_logits(pred, 4), target, 3)
    with pytest.raises(ValueError, match=r"target: a class-channel tensor must be \(N, num_classes=3"):
        iou(pred, _one_hot(target, 3, torch.float32)[:, :2], 3)
    with pytest.raises(ValueError, match="pred: a class-channel"):
        dice(_one_hot(pred, 4, torch.int64), target, 3)
    with pytest.raises(ValueError, match="pred: a class-channel"):
        confusion_matrix(torch.randn(1, 2, 2, 2), target, 3)


def test_float_label_map_is_not_a_label_map():
    """A float tensor is read as class scores: float labels (N, *spatial) are refused, naming it."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (2, 5, 4), generator=g)
    with pytest.raises(ValueError, match="pred: a class-channel"):
        dice(labels.float(), labels, 3)
    with pytest.raises(ValueError, match="target: a class-channel"):
        dice(_one_hot(labels, 3, torch.int64), labels.float(), 3)
    # int label map + float label map of one rank: refused (the rule reads both as class-channel
    # tensors, so the message names pred, the first one checked)
    with pytest.raises(ValueError, match="class-channel"):
        dice(labels, labels.float(), 3)
    with pytest.raises(ValueError, match="class-channel"):
        dice(labels[:, 0].float(), labels[:, 0], 3)  # (N, W) is too few dims for (N, C, *spatial)


@pytest.mark.parametrize("backend", BACKENDS)
def test_label_out_of_range(backend):
    pred, target = _pair()
    bad = pred.clone()
    bad[0, 1, 0] = 3
    with pytest.raises(ValueError, match=r"pred holds label 3 at index \(0, 1, 0\).*num_classes=3"):
        dice(bad, target, 3, backend=backend)
    bad_t = target.clone()
    bad_t[0, 0, 1] = -1
    with pytest.raises(ValueError, match=r"target holds label -1 at index \(0, 0, 1\)"):
        iou(pred, bad_t, 3, backend=backend)
    with pytest.raises(ValueError, match="target holds label -1"):
        confusion_matrix(pred, bad_t, 3)
    with pytest.raises(ValueError, match="pred holds label 3"):
        confusion_matrix(bad, target, 3)


def test_shape_mismatch():
    pred, target = _pair()
    with pytest.raises(ValueError, match="one shape"):
        dice(pred, target[:, :1], 3)
    with pytest.raises(ValueError, match="one shape"):
        confusion_matrix(pred[:, :, :1], target, 3)
    with pytest.raises(ValueError, match="one shape"):
        dice(_logits(pred, 3)[..., :1], target, 3)


def test_bad_types_and_options():
    pred, target = _pair()
    with pytest.raises(TypeError, match="pred"):
        dice(pred.tolist(), target, 3)
    with pytest.raises(TypeError, match="target"):
        iou(pred, None, 3)
    with pytest.raises(TypeError, match="ignore_index"):
        dice(pred, target, 3, ignore_index=1.5)
    with pytest.raises(ValueError, match="backend"):
        dice(pred, target, 3, backend="cuda")
    with pytest.raises(ValueError, match="normalize"):
        confusion_matrix(pred, target, 3, normalize="rows")
    with pytest.raises(ValueError, match="normalize"):
        confusion_matrix(pred, target, 3, normalize=True)

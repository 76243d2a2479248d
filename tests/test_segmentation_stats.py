"""Tests of `medimg.ops.segmentation_stats`: [tp, fp, fn] per (sample, class).

The oracle below is deliberately slow and obvious (one boolean mask per sample and class)
and independent of `medimg.ops._reference`; the compiled kernels (every supported CPU
instruction set) and the reference (backend="torch") are each compared with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from helpers import BACKENDS, kernel_settings, layouts, needs_cpu_kernels, random_labels, relayout
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import Tensor

from medimg.ops import segmentation_stats

LABEL_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)
SIGNED_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64)



# ----------------------------------------------------------------------------- oracle

def oracle(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = None) -> Tensor:
    """[tp, fp, fn] per (sample, class), counted with boolean masks. Assumes valid labels."""
    p, t = pred.long(), target.long()
    keep = torch.ones_like(t, dtype=torch.bool) if ignore_index is None else t != ignore_index
    out = torch.zeros(p.shape[0], num_classes, 3, dtype=torch.int64)
    for n in range(p.shape[0]):
        for c in range(num_classes):
            is_pred = (p[n] == c) & keep[n]
            is_target = (t[n] == c) & keep[n]
            out[n, c, 0] = (is_pred & is_target).sum()
            out[n, c, 1] = (is_pred & ~is_target).sum()
            out[n, c, 2] = (~is_pred & is_target).sum()
    return out


def invalid_label_message(name: str, value: int, index: tuple[int, ...], num_classes: int,
                          ignore_index: int | None = None) -> str:
    ignored = "" if ignore_index is None else f" and is not ignore_index={ignore_index}"
    return (f"segmentation_stats: {name} holds label {value} at index {index}, which is outside "
            f"[0, num_classes={num_classes}){ignored}")


# ----------------------------------------------------------------------------- inputs

def fits(value: int, dtype: torch.dtype) -> bool:
    """Whether `dtype` can hold `value`."""
    if dtype == torch.bool:
        return value in (0, 1)
    info = torch.iinfo(dtype)
    return info.min <= value <= info.max


@dataclass
class SegCase:
    pred: Tensor = field(repr=False)
    target: Tensor = field(repr=False)
    num_classes: int
    ignore_index: int | None
    shape: tuple[int, ...]
    dtypes: tuple[torch.dtype, torch.dtype]
    layouts: dict[str, tuple[str, tuple[int, ...], int]]


@st.composite
def seg_cases(draw, max_size: int = 40) -> SegCase:
    """Valid label maps: any dtype pair, 1-3 spatial dims, absent classes, ignored pixels
    (whose pred may hold any value), and each tensor in its own memory layout."""
    pred_dtype = draw(st.sampled_from(LABEL_DTYPES))
    target_dtype = draw(st.sampled_from((pred_dtype, *LABEL_DTYPES)))  # same dtype half the time
    num_classes = draw(st.integers(1, 2 if torch.bool in (pred_dtype, target_dtype) else 20))
    shape = (draw(st.integers(1, 4)), *draw(st.lists(st.integers(1, max_size), min_size=1, max_size=3)))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    some_classes = st.lists(st.integers(0, num_classes - 1), min_size=1, max_size=num_classes, unique=True)
    pred = random_labels(draw(some_classes), shape, pred_dtype, gen)
    target = random_labels(draw(some_classes), shape, target_dtype, gen)

    ignore_index = {
        "none": None,
        "a class": draw(st.integers(0, num_classes - 1)),
        "not a class": draw(st.sampled_from([-100, -1, 255, num_classes, 1000])),
    }[draw(st.sampled_from(["none", "a class", "not a class"]))]
    if ignore_index is not None and fits(ignore_index, target_dtype):
        target[torch.rand(shape, generator=gen) < 0.25] = ignore_index
    target_layout = draw(layouts(len(shape)))
    target = relayout(target, *target_layout)

    pred_layout = draw(layouts(len(shape)))
    garbage = [v for v in (num_classes, 100, -3) if fits(v, pred_dtype)]  # never a valid label
    if ignore_index is not None and garbage and pred_layout[0] != "expanded":
        pred[target.long() == ignore_index] = draw(st.sampled_from(garbage))
    pred = relayout(pred, *pred_layout)
    return SegCase(pred, target, num_classes, ignore_index, shape, (pred_dtype, target_dtype),
                   {"pred": pred_layout, "target": target_layout})


# ----------------------------------------------------------------------------- equality with the oracle

@kernel_settings(60)
@given(case=seg_cases())
def test_kernel_matches_oracle(cpu_isa, case):
    pred_before, target_before = case.pred.clone(), case.target.clone()
    got = segmentation_stats(case.pred, case.target, case.num_classes, case.ignore_index, backend="medimg")
    assert got.dtype == torch.int64
    assert got.shape == (case.shape[0], case.num_classes, 3)
    torch.testing.assert_close(got, oracle(case.pred, case.target, case.num_classes, case.ignore_index),
                               rtol=0, atol=0)
    assert torch.equal(case.pred, pred_before) and torch.equal(case.target, target_before)


@settings(max_examples=40, deadline=None)
@given(case=seg_cases())
def test_torch_backend_matches_oracle(case):
    got = segmentation_stats(case.pred, case.target, case.num_classes, case.ignore_index, backend="torch")
    assert got.dtype == torch.int64
    torch.testing.assert_close(got, oracle(case.pred, case.target, case.num_classes, case.ignore_index),
                               rtol=0, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_known_answer(backend):
    pred = torch.tensor([[0, 1, 1, 2, 7], [2, 2, 2, 2, 2]])
    target = torch.tensor([[0, 1, 2, 2, 255], [0, 1, 255, 255, 255]])
    got = segmentation_stats(pred, target, 4, ignore_index=255, backend=backend)
    expected = torch.tensor([
        [[1, 0, 0], [1, 1, 0], [1, 0, 1], [0, 0, 0]],  # the 7 is ignored, class 3 is absent
        [[0, 0, 1], [0, 0, 1], [0, 2, 0], [0, 0, 0]],
    ])
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    # without ignore_index the 255 and the 7 would be labels, and invalid ones
    with pytest.raises(ValueError, match="label 255"):
        segmentation_stats(pred, target, 4, backend=backend)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
@pytest.mark.parametrize("num_classes", [1, 3, 12])
def test_channels_last_n1hw(cpu_isa, dtype, num_classes):
    gen = torch.Generator().manual_seed(num_classes)
    pred = torch.randint(num_classes, (3, 1, 17, 29), generator=gen).to(dtype)
    target = torch.randint(num_classes, (3, 1, 17, 29), generator=gen).to(dtype)
    # With C == 1 `.contiguous(memory_format=channels_last)` may keep the NCHW strides (both
    # layouts describe the same memory); an explicit channels-last allocation gets stride 1 on C.
    pred_cl = pred.contiguous(memory_format=torch.channels_last)
    target_cl = target.contiguous(memory_format=torch.channels_last)
    pred_nhwc = torch.empty_like(pred, memory_format=torch.channels_last).copy_(pred)
    target_nhwc = torch.empty_like(target, memory_format=torch.channels_last).copy_(target)
    assert pred_nhwc.stride() == (17 * 29, 1, 29, 1)
    expected = oracle(pred, target, num_classes, 0)
    for p, t in [(pred_cl, target_cl), (pred_nhwc, target_nhwc), (pred_nhwc, target), (pred, target_nhwc),
                 (pred_nhwc[:, :, 1:, ::2], target_nhwc[:, :, 1:, ::2])]:
        if p.shape != pred.shape:
            expected = oracle(p, t, num_classes, 0)
        torch.testing.assert_close(segmentation_stats(p, t, num_classes, 0, backend="medimg"), expected,
                                   rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
def test_large_input_any_thread_count(cpu_isa, dtype):
    """89999 pixels per sample: several 32768-pixel units, the parallel path and scalar tails."""
    gen = torch.Generator().manual_seed(7)
    pred = torch.randint(4, (3, 299, 301), generator=gen).to(dtype)
    target = torch.randint(4, (3, 299, 301), generator=gen).to(dtype)
    target[:, ::5] = 2  # ignored rows: more ignored pixels than a random quarter
    expected = oracle(pred, target, 4, 2)
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            got = segmentation_stats(pred, target, 4, ignore_index=2, backend="medimg")
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
            got = segmentation_stats(pred.transpose(1, 2), target.transpose(1, 2), 4, 2, backend="medimg")
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("dtype", LABEL_DTYPES[:5])
@pytest.mark.parametrize("ignore_index", [None, 1])
def test_vector_block_boundaries(cpu_isa, dtype, ignore_index):
    """Rows just under, at and over the 255-vector blocks of 16- and 32-byte vectors, filled
    with one label so that every lane counter reaches its maximum."""
    lanes = [16 // dtype.itemsize, 32 // dtype.itemsize]
    for length in sorted({255 * n + d for n in lanes for d in (-1, 0, 1)} | {3 * 255 * lanes[1] + 5}):
        pred = torch.zeros(2, length, dtype=dtype)
        target = torch.zeros(2, length, dtype=dtype)
        target[1, ::3] = 1
        target[1, -1] = 0  # never ignored: the invalid label below goes there
        expected = oracle(pred, target, 2, ignore_index)
        got = segmentation_stats(pred, target, 2, ignore_index, backend="medimg")
        torch.testing.assert_close(got, expected, rtol=0, atol=0, msg=lambda m, n=length: f"length {n}: {m}")
        pred[1, -1] = 2
        with pytest.raises(ValueError) as info:
            segmentation_stats(pred, target, 2, ignore_index, backend="medimg")
        assert str(info.value) == invalid_label_message("pred", 2, (1, length - 1), 2, ignore_index)


@pytest.mark.parametrize("backend", BACKENDS)
def test_absent_classes_and_all_ignored(backend):
    pred = torch.full((2, 5, 6), 1, dtype=torch.int16)
    target = torch.full((2, 5, 6), 1, dtype=torch.int16)
    target[1] = -1  # the whole second sample is ignored
    got = segmentation_stats(pred, target, 3, ignore_index=-1, backend=backend)
    expected = torch.zeros(2, 3, 3, dtype=torch.int64)
    expected[0, 1, 0] = 30
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


# ----------------------------------------------------------------------------- invalid labels

@kernel_settings(50)
@given(case=seg_cases(max_size=12), data=st.data())
def test_out_of_range_label_is_reported_exactly(cpu_isa, case, data):
    """One invalid label at a random (non-ignored) index of a random layout: both backends name
    the tensor, the value and the index in the caller's coordinates."""
    name = data.draw(st.sampled_from(["pred", "target"]), label="name")
    assume(case.layouts[name][0] != "expanded")  # a write there would repeat along the stride-0 dim
    bad_tensor = case.pred if name == "pred" else case.target
    values = [v for v in (case.num_classes, case.num_classes + 7, 127, 255, -1, -100)
              if fits(v, bad_tensor.dtype) and v != case.ignore_index]
    assume(values)
    value = data.draw(st.sampled_from(values), label="value")
    if name == "pred" and case.ignore_index is not None:
        allowed = case.target.long() != case.ignore_index
    else:
        allowed = torch.ones(case.shape, dtype=torch.bool)
    positions = allowed.nonzero()
    assume(len(positions) > 0)
    index = tuple(positions[data.draw(st.integers(0, len(positions) - 1), label="position")].tolist())
    bad_tensor[index] = value

    expected = invalid_label_message(name, value, index, case.num_classes, case.ignore_index)
    for backend in ("medimg", "torch"):
        with pytest.raises(ValueError) as info:
            segmentation_stats(case.pred, case.target, case.num_classes, case.ignore_index, backend=backend)
        assert str(info.value) == expected, backend


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["pred", "target"])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "sliced", "channels_last"])
def test_out_of_range_label_index_is_the_callers(backend, name, layout):
    gen = torch.Generator().manual_seed(3)
    base = torch.randint(4, (4, 20, 9, 10), generator=gen, dtype=torch.int32)
    views = {
        "contiguous": lambda x: x,
        "transposed": lambda x: x.transpose(1, 3),  # (4, 10, 9, 20): the last dim is outermost in memory
        "sliced": lambda x: x[:, 1::3, ::2, 1:],
        "channels_last": lambda x: x.contiguous(memory_format=torch.channels_last),
    }
    pred, target = views[layout](base.clone()), views[layout](base.flip(1))
    index = (3, 5, 3, 1)
    (pred if name == "pred" else target)[index] = 9
    with pytest.raises(ValueError) as info:
        segmentation_stats(pred, target, 4, backend=backend)
    assert str(info.value) == invalid_label_message(name, 9, index, 4)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pred", "target"])
@pytest.mark.parametrize("index", [(0, 0, 0), (1, 150, 7), (2, 298, 300)])
def test_out_of_range_label_in_large_input(cpu_isa, name, index):
    """The error position survives the split into units, blocks and threads."""
    gen = torch.Generator().manual_seed(11)
    pred = torch.randint(4, (3, 299, 301), generator=gen, dtype=torch.uint8)
    target = torch.randint(4, (3, 299, 301), generator=gen, dtype=torch.uint8)
    (pred if name == "pred" else target)[index] = 200
    with pytest.raises(ValueError) as info:
        segmentation_stats(pred, target, 4, backend="medimg")
    assert str(info.value) == invalid_label_message(name, 200, index, 4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", SIGNED_DTYPES)
def test_negative_label(backend, dtype):
    pred = torch.zeros(2, 3, 4, dtype=dtype)
    target = torch.zeros(2, 3, 4, dtype=dtype)
    pred[1, 2, 0] = -1
    with pytest.raises(ValueError) as info:
        segmentation_stats(pred, target, 2, backend=backend)
    assert str(info.value) == invalid_label_message("pred", -1, (1, 2, 0), 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_invalid_pred_on_ignored_pixel_is_not_inspected(backend):
    pred = torch.zeros(1, 70, dtype=torch.uint8)
    target = torch.zeros(1, 70, dtype=torch.uint8)
    pred[0, 40], target[0, 40] = 250, 255
    got = segmentation_stats(pred, target, 1, ignore_index=255, backend=backend)
    torch.testing.assert_close(got, torch.tensor([[[69, 0, 0]]]), rtol=0, atol=0)
    with pytest.raises(ValueError) as info:
        segmentation_stats(pred, target, 1, ignore_index=254, backend=backend)
    assert str(info.value) == invalid_label_message("target", 255, (0, 40), 1, 254)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("dtype", "ignore_index", "wrapped"), [
    (torch.uint8, -1, 255), (torch.int8, 1000, -24), (torch.int16, 65535, -1), (torch.int32, 2**32 + 5, 5),
    (torch.bool, 256, 0),
])
def test_ignore_index_the_dtype_cannot_hold_matches_nothing(backend, dtype, ignore_index, wrapped):
    """An ignore_index outside the label dtype must not match its wrapped-around value."""
    pred = torch.tensor([[0, 1, 1, 0]], dtype=dtype)
    target = torch.tensor([[0, 1, 0, 0]], dtype=dtype)
    if dtype == torch.bool:  # 256 would wrap to 0 in the uint8 that bool is read as
        expected = torch.tensor([[[2, 0, 1], [1, 1, 0]]])
        torch.testing.assert_close(segmentation_stats(pred, target, 2, ignore_index, backend=backend), expected,
                                   rtol=0, atol=0)
        return
    target[0, 2] = wrapped
    with pytest.raises(ValueError) as info:
        segmentation_stats(pred, target, 2, ignore_index, backend=backend)
    assert str(info.value) == invalid_label_message("target", wrapped, (0, 2), 2, ignore_index)


@pytest.mark.parametrize("backend", BACKENDS)
def test_invalid_label_in_expanded_input(backend):
    """With a stride-0 dim the bad label sits at several indices; the one named must hold it."""
    pred = torch.zeros(2, 1, 9, dtype=torch.int64)
    pred[1, 0, 5] = 6
    pred = pred.expand(2, 7, 9)
    target = torch.zeros(2, 7, 9, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"pred holds label 6 at index \(1, \d, 5\)") as info:
        segmentation_stats(pred, target, 3, backend=backend)
    sample, row, col = (int(i) for i in str(info.value).split("index (")[1].split(")")[0].split(", "))
    assert int(pred[sample, row, col]) == 6


# ----------------------------------------------------------------------------- other bad input

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["pred", "target"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64, torch.complex64])
def test_non_integer_labels(backend, name, dtype):
    labels = {"pred": torch.zeros(2, 4, 4, dtype=torch.int64), "target": torch.zeros(2, 4, 4, dtype=torch.int64)}
    labels[name] = labels[name].to(dtype)
    with pytest.raises(TypeError, match=f"^{name}: expected integer class labels"):
        segmentation_stats(labels["pred"], labels["target"], 2, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("pred_shape", "target_shape", "message"), [
    ((2, 4, 4), (2, 4, 5), "one shape"),
    ((2, 4, 4), (2, 16), "one shape"),
    ((2, 4, 4), (1, 4, 4), "one shape"),
    ((0, 4, 4), (0, 4, 4), "empty batch"),
    ((5,), (5,), "at least 2 dimensions"),
    ((), (), "at least 2 dimensions"),
])
def test_bad_shapes(backend, pred_shape, target_shape, message):
    with pytest.raises(ValueError, match=message):
        segmentation_stats(torch.zeros(pred_shape, dtype=torch.uint8), torch.zeros(target_shape, dtype=torch.uint8),
                           2, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("num_classes", "error"), [
    (0, ValueError), (-3, ValueError), (2.0, TypeError), ("2", TypeError), (True, TypeError), (None, TypeError),
])
def test_bad_num_classes(backend, num_classes, error):
    labels = torch.zeros(1, 3, 3, dtype=torch.uint8)
    with pytest.raises(error, match="num_classes"):
        segmentation_stats(labels, labels, num_classes, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ignore_index", [1.0, "255", True, torch.tensor(1)])
def test_bad_ignore_index(backend, ignore_index):
    labels = torch.zeros(1, 3, 3, dtype=torch.uint8)
    with pytest.raises(TypeError, match="ignore_index"):
        segmentation_stats(labels, labels, 2, ignore_index, backend=backend)


@pytest.mark.parametrize("backend", ["", "cuda", "Torch", None])
def test_bad_backend(backend):
    labels = torch.zeros(1, 3, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="backend"):
        segmentation_stats(labels, labels, 2, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_on_two_devices(backend):
    pred = torch.zeros(1, 3, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="one device"):
        segmentation_stats(pred, pred.to("meta"), 2, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_not_a_tensor(backend):
    with pytest.raises(TypeError, match="pred"):
        segmentation_stats([[0, 1]], torch.zeros(1, 2, dtype=torch.uint8), 2, backend=backend)
    with pytest.raises(TypeError, match=r"^target: expected a dense tensor"):  # not "no kernel for device cpu"
        segmentation_stats(torch.zeros(1, 2, dtype=torch.uint8), torch.zeros(1, 2, dtype=torch.uint8).to_sparse(),
                           2, backend=backend)


# ----------------------------------------------------------------------------- torch.library

def _opcheck_inputs() -> list[tuple[Tensor, Tensor, int, int | None]]:
    gen = torch.Generator().manual_seed(5)
    a = torch.randint(3, (2, 6, 7), generator=gen, dtype=torch.uint8)
    b = torch.randint(3, (2, 6, 7), generator=gen, dtype=torch.uint8)
    c = torch.randint(12, (3, 4, 5, 6), generator=gen)
    d = torch.randint(12, (3, 4, 5, 6), generator=gen)
    return [
        (a, b, 3, None),
        (a, b, 3, 1),
        (c.transpose(1, 3), d.transpose(1, 3), 12, 255),  # non-contiguous, scalar path
        (c[:, ::2, 1:, ::3], d[:, ::2, 1:, ::3], 12, None),  # sliced: copied to contiguous
        (a.bool(), b.bool(), 2, None),
        (a.to(torch.int8), b.to(torch.int32), 3, -1),  # mixed dtypes
    ]


@needs_cpu_kernels
@pytest.mark.parametrize("index", range(len(_opcheck_inputs())))
def test_opcheck(index):
    pred, target, num_classes, ignore_index = _opcheck_inputs()[index]
    torch.library.opcheck(torch.ops.medimg.segmentation_stats.default, (pred, target, num_classes, ignore_index))
    torch.testing.assert_close(torch.ops.medimg.segmentation_stats(pred, target, num_classes, ignore_index),
                               oracle(pred, target, num_classes, ignore_index), rtol=0, atol=0)


# ----------------------------------------------------------------------------- CUDA

@pytest.mark.cuda
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(0)
    cases = []
    for dtype, num_classes, ignore_index in [(torch.uint8, 4, 255), (torch.int64, 4, 2), (torch.int16, 19, -1),
                                             (torch.int32, 1, None), (torch.bool, 2, None)]:
        pred = torch.randint(num_classes, (3, 37, 41, 5), generator=gen).to(dtype)
        target = torch.randint(num_classes, (3, 37, 41, 5), generator=gen).to(dtype)
        if ignore_index is not None and fits(ignore_index, dtype):
            target[:, ::3] = ignore_index
            pred[:, ::3] = num_classes if fits(num_classes, dtype) else 0
        cases.append((pred, target, num_classes, ignore_index))
    views = [lambda x: x, lambda x: x.transpose(1, 3), lambda x: x[:, 1::2, ::3],
             lambda x: x.contiguous(memory_format=torch.channels_last)]
    for pred, target, num_classes, ignore_index in cases:
        for make_view in views:
            cpu = segmentation_stats(make_view(pred), make_view(target), num_classes, ignore_index,
                                     backend="medimg")
            gpu = segmentation_stats(make_view(pred.cuda()), make_view(target.cuda()), num_classes, ignore_index,
                                     backend="medimg")
            assert gpu.device.type == "cuda" and gpu.dtype == torch.int64
            torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=0)
            torch.testing.assert_close(cpu, oracle(make_view(pred), make_view(target), num_classes, ignore_index),
                                       rtol=0, atol=0)

    pred, target = cases[1][0].clone(), cases[1][1].clone()  # int64, ignore_index 2 on every third row
    pred[2, 31, 6, 1], target[2, 31, 6, 1] = 9, 0  # the one invalid label, kept by every view
    for make_view in views:
        with pytest.raises(ValueError, match="pred holds label 9") as on_cpu:
            segmentation_stats(make_view(pred), make_view(target), 4, 2, backend="medimg")
        with pytest.raises(ValueError) as on_gpu:
            segmentation_stats(make_view(pred.cuda()), make_view(target.cuda()), 4, 2, backend="medimg")
        assert str(on_gpu.value) == str(on_cpu.value)

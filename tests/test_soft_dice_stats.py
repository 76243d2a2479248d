"""Tests of `medimg.ops.soft_dice_stats`: [sum p*t, sum p, sum t] per (sample, class), and its
gradient with respect to the probabilities.

The oracle is a float64 one-hot and three sums, independent of `medimg.ops._reference`; the
compiled kernels (every supported CPU instruction set) and the reference (backend="torch")
are compared with it. A `torch.compile` smoke test of both medimg ops closes the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
import torch
from helpers import BACKENDS, kernel_settings, layouts, needs_cpu_kernels, random_labels, relayout
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor
from torch._dynamo.testing import CompileCounterWithBackend

from medimg.ops import segmentation_stats, soft_dice_stats

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
LABEL_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)



# ----------------------------------------------------------------------------- oracle

def oracle_one_hot(probs: Tensor, target: Tensor) -> Tensor:
    """`target` as float64 (N, C, *spatial): one-hot of labels, or itself."""
    if target.dim() == probs.dim() - 1:
        return torch.stack([target.long() == c for c in range(probs.shape[1])], dim=1).to(torch.float64)
    return target.to(torch.float64)


def oracle(probs: Tensor, target: Tensor) -> Tensor:
    """[sum p*t, sum p, sum t] in float64; `target` holds labels or is shaped like `probs`."""
    p, t = probs.to(torch.float64), oracle_one_hot(probs, target)
    dims = tuple(range(2, probs.dim()))
    return torch.stack([(p * t).sum(dims), p.sum(dims), t.sum(dims)], dim=-1)


def stats_dtype(probs_dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if probs_dtype == torch.float64 else torch.float32


def tolerances(probs_dtype: torch.dtype, pixels: int) -> dict[str, float]:
    """Forward tolerances. Sums run over up to `pixels` terms of magnitude <= 1; 16-bit inputs
    are compared on their own (exactly representable) values, so only the accumulation differs."""
    if probs_dtype == torch.float64:
        return {"rtol": 1e-10, "atol": 1e-12 * max(pixels, 1)}
    if probs_dtype == torch.float32:
        return {"rtol": 1e-5, "atol": 1e-6 * max(pixels, 1)}
    return {"rtol": 1e-3, "atol": 1e-3}


def grad_tolerances(probs_dtype: torch.dtype) -> dict[str, float]:
    """The gradient is one multiply-add per element, rounded once to the probs dtype."""
    return {torch.float64: {"rtol": 1e-12, "atol": 1e-12}, torch.float32: {"rtol": 1e-6, "atol": 1e-6},
            torch.float16: {"rtol": 1e-3, "atol": 1e-3}, torch.bfloat16: {"rtol": 1e-2, "atol": 1e-2}}[probs_dtype]


# ----------------------------------------------------------------------------- inputs

@dataclass
class SoftCase:
    probs: Tensor = field(repr=False)
    target: Tensor = field(repr=False)
    kind: str  # "labels", "soft" or "one_hot"
    shape: tuple[int, ...]
    dtypes: tuple[torch.dtype, torch.dtype]
    layouts: dict[str, tuple[str, tuple[int, ...], int]]
    seed: int

    @property
    def pixels(self) -> int:
        return self.probs[0, 0].numel()

    def oracle_target(self) -> Tensor:
        """The target as the op reads it: labels, or cast to the dtype of probs."""
        return self.target if self.kind == "labels" else self.target.to(self.probs.dtype)


@st.composite
def soft_cases(draw, dtypes: Sequence[torch.dtype] = FLOAT_DTYPES, max_size: int = 20) -> SoftCase:
    """Probabilities of any float dtype with labels of any integer dtype (some classes absent),
    a soft target or a one-hot target; 1-3 spatial dims; each tensor in its own layout."""
    dtype = draw(st.sampled_from(dtypes))
    classes = draw(st.integers(1, 6))
    spatial = draw(st.lists(st.integers(1, max_size), min_size=1, max_size=3))
    shape = (draw(st.integers(1, 3)), classes, *spatial)
    seed = draw(st.integers(0, 2**32 - 1))
    gen = torch.Generator().manual_seed(seed)
    probs = torch.rand(shape, generator=gen)
    if draw(st.booleans()):
        probs = probs.softmax(1)
    probs = probs.to(dtype)

    kind = draw(st.sampled_from(["labels", "soft", "one_hot"]))
    label_shape = (shape[0], *spatial)
    present = draw(st.lists(st.integers(0, classes - 1), min_size=1, max_size=classes, unique=True))
    if kind == "labels":
        target_dtype = draw(st.sampled_from(LABEL_DTYPES if classes >= 2 else LABEL_DTYPES[:5]))
        target = random_labels(present, label_shape, target_dtype, gen)
    elif kind == "soft":
        target_dtype = draw(st.sampled_from(FLOAT_DTYPES))
        target = torch.rand(shape, generator=gen).to(target_dtype)
    else:
        target_dtype = draw(st.sampled_from([torch.bool, torch.uint8, dtype]))
        labels = random_labels(present, label_shape, torch.int64, gen)
        target = torch.nn.functional.one_hot(labels, classes).movedim(-1, 1).to(target_dtype)

    probs_layout, target_layout = draw(layouts(probs.dim())), draw(layouts(target.dim()))
    return SoftCase(relayout(probs, *probs_layout), relayout(target, *target_layout), kind, shape,
                    (dtype, target_dtype), {"probs": probs_layout, "target": target_layout}, seed)


# ----------------------------------------------------------------------------- forward

@kernel_settings(60)
@given(case=soft_cases())
def test_kernel_matches_oracle(cpu_isa, case):
    target_before = case.target.clone()
    got = soft_dice_stats(case.probs, case.target, backend="medimg")
    assert got.dtype == stats_dtype(case.probs.dtype)
    assert got.shape == (case.shape[0], case.shape[1], 3)
    torch.testing.assert_close(got.double(), oracle(case.probs, case.oracle_target()),
                               **tolerances(case.probs.dtype, case.pixels))
    assert torch.equal(case.target, target_before)


@settings(max_examples=40, deadline=None)
@given(case=soft_cases())
def test_torch_backend_matches_oracle(case):
    got = soft_dice_stats(case.probs, case.target, backend="torch")
    assert got.dtype == stats_dtype(case.probs.dtype)
    torch.testing.assert_close(got.double(), oracle(case.probs, case.oracle_target()),
                               **tolerances(case.probs.dtype, case.pixels))


@pytest.mark.parametrize("backend", BACKENDS)
def test_known_answer(backend):
    probs = torch.tensor([[[[0.25, 0.5], [1.0, 0.0]],
                           [[0.75, 0.5], [0.0, 1.0]]]])  # (1, 2, 2, 2)
    labels = torch.tensor([[[0, 1], [1, 1]]])
    expected = torch.tensor([[[0.25, 1.75, 1.0],    # class 0: p*t = 0.25 (one pixel), sum p, one pixel
                              [1.5, 2.25, 3.0]]])   # class 1: 0.5 + 0 + 1
    torch.testing.assert_close(soft_dice_stats(probs, labels, backend=backend), expected, rtol=0, atol=0)
    one_hot = torch.stack([labels == 0, labels == 1], dim=1).float()
    torch.testing.assert_close(soft_dice_stats(probs, one_hot, backend=backend), expected, rtol=0, atol=0)
    torch.testing.assert_close(soft_dice_stats(probs, 0.5 * one_hot, backend=backend),
                               expected * torch.tensor([0.5, 1.0, 0.5]), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("label_dtype", LABEL_DTYPES)
def test_label_dtypes_batch_of_one(cpu_isa, dtype, label_dtype):
    gen = torch.Generator().manual_seed(1)
    probs = torch.rand(1, 2, 9, 7, 5, generator=gen).softmax(1).to(dtype)
    labels = torch.randint(2, (1, 9, 7, 5), generator=gen).to(label_dtype)
    got = soft_dice_stats(probs, labels, backend="medimg")
    assert got.dtype == stats_dtype(dtype)
    torch.testing.assert_close(got.double(), oracle(probs, labels), **tolerances(dtype, 9 * 7 * 5))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["labels", "soft"])
def test_large_input_any_thread_count(cpu_isa, kind):
    """Enough elements for the parallel path; 10099 pixels: two full 4096-pixel chunks and a tail."""
    gen = torch.Generator().manual_seed(2)
    probs = torch.rand(2, 4, 97, 103, generator=gen).softmax(1)
    labels = torch.randint(4, (2, 97, 103), generator=gen)
    target = labels if kind == "labels" else torch.rand(2, 4, 97, 103, generator=gen)
    expected = oracle(probs, target)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            for p in (probs, probs.contiguous(memory_format=torch.channels_last)):
                leaf = p.detach().requires_grad_()
                stats = soft_dice_stats(leaf, target, backend="medimg")
                torch.testing.assert_close(stats.double(), expected, rtol=1e-5, atol=1e-3)
                (grad,) = torch.autograd.grad(stats, leaf, torch.linspace(0, 1, 24).view(2, 4, 3))
                results.append((stats, grad))
    finally:
        torch.set_num_threads(threads)
    for stats, grad in results[1:]:
        torch.testing.assert_close(stats, results[0][0], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(grad, results[0][1], rtol=0, atol=0)


# ----------------------------------------------------------------------------- backward

@kernel_settings(40)
@given(case=soft_cases(max_size=12))
def test_backward_matches_oracle_autograd(cpu_isa, case):
    weights = torch.rand(case.shape[0], case.shape[1], 3, generator=torch.Generator().manual_seed(case.seed))
    probs = case.probs.detach().requires_grad_()  # the caller's layout, as a leaf
    stats = soft_dice_stats(probs, case.target, backend="medimg")
    (grad,) = torch.autograd.grad(stats, probs, weights.to(stats.dtype))
    assert grad.dtype == probs.dtype and grad.shape == probs.shape

    reference = case.probs.detach().double().requires_grad_()
    (expected,) = torch.autograd.grad(oracle(reference, case.oracle_target()), reference, weights.double())
    torch.testing.assert_close(grad.double(), expected, **grad_tolerances(probs.dtype))


@needs_cpu_kernels
@pytest.mark.parametrize("backend", ["medimg", "torch"])
@pytest.mark.parametrize("kind", ["labels", "soft", "labels_3d", "transposed"])
def test_gradcheck(backend, kind):
    gen = torch.Generator().manual_seed(4)
    shape = (2, 3, 2, 3, 2) if kind == "labels_3d" else (2, 3, 4, 5)
    probs = torch.rand(shape, generator=gen, dtype=torch.float64).softmax(1)
    labels = torch.randint(3, (shape[0], *shape[2:]), generator=gen)
    target = torch.rand(shape, generator=gen, dtype=torch.float64) if kind == "soft" else labels
    if kind == "transposed":
        probs, target = probs.transpose(2, 3), target.transpose(1, 2)
    probs.requires_grad_()
    assert torch.autograd.gradcheck(lambda p: soft_dice_stats(p, target, backend=backend), (probs,))


@needs_cpu_kernels
@pytest.mark.parametrize("kind", ["labels", "soft", "soft_needs_grad"])
def test_gradgradcheck(kind):
    """Second derivatives (meta-learning through a Dice loss): the backward's own derivatives."""
    gen = torch.Generator().manual_seed(7)
    shape = (2, 3, 4, 5)
    probs = torch.rand(shape, generator=gen, dtype=torch.float64).softmax(1).requires_grad_()
    if kind == "labels":
        target = torch.randint(3, (shape[0], *shape[2:]), generator=gen)
        assert torch.autograd.gradgradcheck(lambda p: soft_dice_stats(p, target, backend="medimg"), (probs,))
        return
    target = torch.rand(shape, generator=gen, dtype=torch.float64).requires_grad_(kind == "soft_needs_grad")
    assert torch.autograd.gradgradcheck(lambda p, t: soft_dice_stats(p, t, backend="medimg"), (probs, target))


@pytest.mark.parametrize("target_dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("device", [pytest.param("cpu", marks=needs_cpu_kernels),
                                    pytest.param("cuda", marks=pytest.mark.cuda)])
def test_soft_target_gets_its_gradient(device, target_dtype):
    """A soft target that needs a gradient (a consistency loss between two predictions) gets
    the reference's, first and second order, also when its dtype differs from probs'."""
    gen = torch.Generator().manual_seed(8)
    probs = torch.rand(2, 3, 6, 5, generator=gen, dtype=torch.float64).softmax(1).to(device)
    target = torch.rand(2, 3, 6, 5, generator=gen, dtype=torch.float64).softmax(1).to(device, target_dtype)
    grads = []
    for backend in ("medimg", "torch"):
        p, t = probs.clone().requires_grad_(), target.clone().requires_grad_()
        stats = soft_dice_stats(p, t, backend=backend)
        dice = 2 * stats[..., 0] / (stats[..., 1] + stats[..., 2])
        (grad_p,) = torch.autograd.grad(dice.sum(), p, create_graph=True)
        (dice.sum() + grad_p.pow(2).sum()).backward()
        grads.append((p.grad, t.grad))
    (got_p, got_t), (want_p, want_t) = grads
    assert got_t is not None and got_t.dtype == target_dtype
    torch.testing.assert_close(got_p, want_p, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_t, want_t, rtol=1e-5, atol=1e-6)


@needs_cpu_kernels
@pytest.mark.parametrize("target_dtype", [torch.float32, torch.float16], ids=str)
def test_op_second_derivatives_reach_a_target_of_another_dtype(target_dtype):
    """The op itself casts a soft target to probs' dtype; second-order terms still reach it."""
    gen = torch.Generator().manual_seed(9)
    probs = torch.rand(2, 3, 4, 5, generator=gen, dtype=torch.float64).softmax(1)
    target = torch.rand(2, 3, 4, 5, generator=gen, dtype=torch.float64).to(target_dtype)
    grads = []
    for stats_of in (torch.ops.medimg.soft_dice_stats, lambda p, t: oracle(p, t.to(p.dtype))):
        p, t = probs.clone().requires_grad_(), target.clone().requires_grad_()
        stats = stats_of(p, t)
        (grad_p,) = torch.autograd.grad((stats[..., 0] / (stats[..., 1] + stats[..., 2])).sum(), p, create_graph=True)
        grad_p.pow(2).sum().backward()
        grads.append((p.grad, t.grad))
    (got_p, got_t), (want_p, want_t) = grads
    assert got_t.dtype == target_dtype
    torch.testing.assert_close(got_p, want_p, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(got_t, want_t)


@needs_cpu_kernels
def test_float_sums_of_a_strided_view_stay_accurate(cpu_isa):
    """A stride-0 view does not vectorise: its float partial sums still span few pixels before
    double takes over (one float sum over 4096 equal values was 2.4e-5 off)."""
    probs = torch.full((1, 1, 1), 0.4731).expand(1, 1, 9 * 19 * 19 * 4)
    stats = soft_dice_stats(probs, torch.zeros(1, probs.shape[2], dtype=torch.uint8), backend="medimg")
    want = 0.4731 * probs.shape[2]
    assert abs(float(stats[0, 0, 1]) - want) < 4e-6 * want


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool, torch.complex64])
def test_non_float_probs(backend, dtype):
    probs = torch.zeros(2, 3, 4, 4, dtype=dtype)
    with pytest.raises(TypeError, match=r"^probs: expected a floating dtype"):
        soft_dice_stats(probs, torch.zeros(2, 4, 4, dtype=torch.int64), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("probs_shape", "target_shape", "message"), [
    ((2, 3, 4, 4), (2, 4, 5), "target: expected shape"),  # labels
    ((2, 3, 4, 4), (1, 4, 4), "target: expected shape"),
    ((2, 3, 4, 4), (2, 2, 4, 4), "target: expected shape"),  # soft target with other classes
    ((2, 3, 4, 4), (2, 3, 4, 5), "target: expected shape"),
    ((2, 3, 4, 4), (2, 16), "target: expected labels"),
    ((2, 3, 4, 4), (2, 1, 3, 4, 4), "target: expected labels"),
    ((2, 3), (2,), "probs: expected at least 3 dimensions"),
    ((0, 3, 4), (0, 4), "probs: empty batch"),
])
def test_bad_shapes(backend, probs_shape, target_shape, message):
    target = torch.zeros(target_shape, dtype=torch.int64 if len(target_shape) < len(probs_shape) else torch.float32)
    with pytest.raises(ValueError, match=message):
        soft_dice_stats(torch.rand(probs_shape), target, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("dtype", "value"), [(torch.int64, 3), (torch.int64, -1), (torch.uint8, 255),
                                              (torch.int8, -128), (torch.int32, 1 << 20), (torch.bool, True)])
def test_out_of_range_labels(backend, dtype, value):
    classes = 1 if dtype == torch.bool else 3
    probs = torch.rand(2, classes, 5, 6)
    labels = torch.zeros(2, 5, 6, dtype=dtype)
    labels[1, 4, 5] = value
    with pytest.raises(ValueError, match=rf"^soft_dice_stats: target holds labels outside \[0, {classes}\)"):
        soft_dice_stats(probs, labels, backend=backend)
    with pytest.raises(ValueError, match="outside"):  # also when a gradient is wanted, and for a view
        soft_dice_stats(probs.transpose(2, 3).requires_grad_(), labels.transpose(1, 2), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float_labels_are_not_labels(backend):
    with pytest.raises(TypeError, match="target"):
        soft_dice_stats(torch.rand(2, 3, 4, 4), torch.zeros(2, 4, 4), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_on_two_devices(backend):
    probs = torch.rand(1, 2, 3, 3)
    with pytest.raises(ValueError, match="one device"):
        soft_dice_stats(probs, torch.zeros(1, 3, 3, dtype=torch.int64, device="meta"), backend=backend)
    with pytest.raises(ValueError, match="one device"):
        soft_dice_stats(probs.to("meta"), torch.zeros(1, 3, 3, dtype=torch.int64), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_not_a_tensor(backend):
    with pytest.raises(TypeError, match="probs"):
        soft_dice_stats([[[0.5]]], torch.zeros(1, 1, dtype=torch.int64), backend=backend)
    with pytest.raises(TypeError, match="target"):
        soft_dice_stats(torch.rand(1, 1, 1), [[0]], backend=backend)


@pytest.mark.parametrize("backend", ["", "cuda", "Torch", None])
def test_bad_backend(backend):
    with pytest.raises(ValueError, match="backend"):
        soft_dice_stats(torch.rand(1, 2, 3), torch.zeros(1, 3, dtype=torch.int64), backend=backend)


# ----------------------------------------------------------------------------- torch.library

def _opcheck_inputs() -> dict[str, tuple[Tensor, Tensor]]:
    gen = torch.Generator().manual_seed(6)
    probs = torch.rand(2, 3, 5, 6, generator=gen).softmax(1)
    labels = torch.randint(3, (2, 5, 6), generator=gen)
    return {
        "labels": (probs, labels),
        "uint8_labels": (probs.double(), labels.to(torch.uint8)),
        "soft": (probs, torch.rand(2, 3, 5, 6, generator=gen)),
        "int64_one_hot": (probs, torch.nn.functional.one_hot(labels, 3).movedim(-1, 1)),
        "bool_one_hot": (probs.double(), torch.nn.functional.one_hot(labels, 3).movedim(-1, 1).bool()),
        "transposed": (probs.transpose(2, 3), labels.transpose(1, 2)),
        "channels_last": (probs.contiguous(memory_format=torch.channels_last), labels),
        "float16_3d_expanded": (probs.half()[..., None].expand(2, 3, 5, 6, 2),
                                labels.to(torch.int16)[..., None].expand(2, 5, 6, 2)),
    }


@needs_cpu_kernels
@pytest.mark.parametrize("name", list(_opcheck_inputs()))
def test_opcheck(name):
    probs, target = _opcheck_inputs()[name]
    probs = probs.detach().requires_grad_()
    torch.library.opcheck(torch.ops.medimg.soft_dice_stats.default, (probs, target))
    stats = torch.ops.medimg.soft_dice_stats(probs, target)
    torch.testing.assert_close(stats.double(), oracle(probs, target), **tolerances(probs.dtype, 60))
    stats.sum().backward()  # the forward op's own backward, one-hot targets of any dtype included
    torch.testing.assert_close(probs.grad.double(), 1 + oracle_one_hot(probs, target), **grad_tolerances(probs.dtype))
    # The backward op takes the target as the forward read it: labels, or soft in probs' dtype.
    read = target if target.dim() == probs.dim() - 1 else target.to(probs.dtype)
    for needs_grad in (False, True):  # True: the backward op's own autograd (double backward)
        grad_stats = torch.rand_like(stats).requires_grad_(needs_grad)
        torch.library.opcheck(torch.ops.medimg.soft_dice_stats_backward.default,
                              (grad_stats, read, tuple(probs.shape), probs.dtype))
    if target.is_floating_point():  # a soft target with a gradient of its own
        torch.library.opcheck(torch.ops.medimg.soft_dice_stats.default, (probs, target.detach().requires_grad_()))


@needs_cpu_kernels
def test_op_backward_with_bool_labels():
    probs = torch.rand(1, 2, 3, 4, requires_grad=True)
    labels = torch.rand(1, 3, 4) > 0.5
    stats = torch.ops.medimg.soft_dice_stats(probs, labels)  # the forward accepts bool labels
    (grad,) = torch.autograd.grad(stats.sum(), probs)
    torch.testing.assert_close(grad, torch.ones_like(probs) + torch.stack([~labels, labels], 1).float())


@needs_cpu_kernels
def test_op_backward_with_soft_target_of_another_dtype():
    probs = torch.rand(1, 2, 3, 4, requires_grad=True)
    soft = torch.rand(1, 2, 3, 4, dtype=torch.float64)
    stats = torch.ops.medimg.soft_dice_stats(probs, soft)  # the forward casts soft to float32
    (grad,) = torch.autograd.grad(stats.sum(), probs)
    torch.testing.assert_close(grad, torch.ones_like(probs) + soft.float())


# ----------------------------------------------------------------------------- torch.compile

@needs_cpu_kernels
def test_torch_compile_both_ops():
    def dice_and_counts(pred, target, probs, labels):
        counts = segmentation_stats(pred, target, 4, ignore_index=255)
        soft = soft_dice_stats(probs, labels)
        dice = 2 * soft[..., 0] / (soft[..., 1] + soft[..., 2]).clamp_min(1e-6)
        return counts, dice

    gen = torch.Generator().manual_seed(8)
    pred = torch.randint(4, (2, 9, 11), generator=gen, dtype=torch.uint8)
    target = torch.randint(4, (2, 9, 11), generator=gen, dtype=torch.uint8)
    target[:, 0] = 255
    logits = torch.randn(2, 4, 9, 11, generator=gen)
    labels = target.long().clamp(max=3)

    backend = CompileCounterWithBackend("aot_eager")  # aot_eager, and a record of the graphs
    compiled = torch.compile(dice_and_counts, backend=backend, fullgraph=False)
    outputs = {}
    for name, fn in (("eager", dice_and_counts), ("compiled", compiled)):
        x = logits.clone().requires_grad_()
        counts, dice = fn(pred, target, x.softmax(1), labels)
        (grad,) = torch.autograd.grad(dice.sum(), x)
        outputs[name] = (counts, dice, grad)
    for got, expected in zip(outputs["compiled"], outputs["eager"], strict=True):
        torch.testing.assert_close(got, expected)
    traced = {str(node.target) for graph in backend.graphs for node in graph.graph.nodes}
    assert {"medimg.segmentation_stats", "medimg.soft_dice_stats"} <= traced  # both ops inside a graph
    torch.testing.assert_close(outputs["eager"][0], segmentation_stats(pred, target, 4, 255, backend="torch"),
                               rtol=0, atol=0)


# ----------------------------------------------------------------------------- CUDA

@pytest.mark.cuda
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(9)
    views = [lambda p, t: (p, t), lambda p, t: (p.transpose(-1, -2), t.transpose(-1, -2)),
             lambda p, t: (p.contiguous(memory_format=torch.channels_last), t)]
    for dtype in FLOAT_DTYPES:
        probs = torch.rand(2, 5, 33, 47, generator=gen).softmax(1).to(dtype)
        labels = torch.randint(5, (2, 33, 47), generator=gen, dtype=torch.uint8)
        soft = torch.rand(2, 5, 33, 47, generator=gen).to(dtype)
        for target in (labels, soft):
            for make_views in views:
                grads = []
                for device in ("cpu", "cuda"):
                    p, t = make_views(probs.to(device), target.to(device))
                    p = p.detach().requires_grad_()
                    stats = soft_dice_stats(p, t, backend="medimg")
                    assert stats.device.type == device and stats.dtype == stats_dtype(dtype)
                    weights = torch.linspace(0, 1, 30, dtype=stats.dtype, device=device).view(2, 5, 3)
                    (grad,) = torch.autograd.grad(stats, p, weights)
                    grads.append((stats.cpu(), grad.cpu()))
                (cpu_stats, cpu_grad), (gpu_stats, gpu_grad) = grads
                torch.testing.assert_close(gpu_stats, cpu_stats, rtol=1e-5, atol=1e-3)
                torch.testing.assert_close(gpu_grad, cpu_grad)
    labels[1, 3, 4] = 5
    with pytest.raises(ValueError, match="outside"):
        soft_dice_stats(probs.cuda(), labels.cuda(), backend="medimg")

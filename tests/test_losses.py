"""medimg.losses.DiceLoss / DiceCELoss against a pure-PyTorch reference written here: values and
input gradients, 2D and 3D, label and one-hot targets, float32 and float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medimg.losses import DiceCELoss, DiceLoss

LABEL_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
BACKENDS = ("auto", "torch")


# ----------------------------------------------------------------------------- reference

def ref_dice_loss(input, target, *, softmax=True, sigmoid=False, include_background=True, smooth_nr=1e-5,
                  smooth_dr=1e-5, weight=None, batch=False, reduction="mean"):
    """MONAI-style soft Dice loss in plain torch (autograd does the backward)."""
    if softmax:
        probs = torch.softmax(input, 1)
    elif sigmoid:
        probs = torch.sigmoid(input)
    else:
        probs = input
    classes = input.shape[1]
    if target.dim() == input.dim() - 1:
        if sigmoid and classes == 1:
            dense = target.unsqueeze(1).to(probs.dtype)
        else:
            dense = F.one_hot(target.long(), classes).movedim(-1, 1).to(probs.dtype)
    else:
        dense = target.to(probs.dtype)
    if not include_background:
        probs, dense = probs[:, 1:], dense[:, 1:]
    dims = tuple(range(2, probs.dim()))
    if batch:
        dims = (0, *dims)
    inter = (probs * dense).sum(dims)
    denom = probs.sum(dims) + dense.sum(dims)
    loss = 1.0 - (2.0 * inter + smooth_nr) / (denom + smooth_dr)
    if batch:
        loss = loss.unsqueeze(0)
    if weight is not None:
        w = torch.as_tensor(weight, dtype=loss.dtype)
        loss = loss * (w if include_background else w[1:])
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _labels(shape, classes, dtype=torch.int64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, classes, shape, generator=g).to(dtype)


def _logits(shape, dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (2 * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)


def _value_and_grad(fn, x, target, upstream_seed=5):
    """Loss and d(sum(loss * r))/dx for a fixed random r (so 'none' reductions are checked too)."""
    x = x.detach().clone().requires_grad_(True)
    loss = fn(x, target)
    r = torch.rand(loss.shape, generator=torch.Generator().manual_seed(upstream_seed), dtype=torch.float64)
    (loss * r.to(loss.dtype)).sum().backward()
    return loss.detach(), x.grad


def _tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}


SHAPES = {2: (2, 3, 7, 9), 3: (2, 3, 4, 5, 6)}


# ----------------------------------------------------------------------------- DiceLoss values/grads

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"include_background": False},
        {"batch": True},
        {"reduction": "sum"},
        {"reduction": "none"},
        {"reduction": "none", "batch": True, "include_background": False},
        {"weight": [0.25, 1.0, 3.0]},
        {"weight": [0.25, 1.0, 3.0], "include_background": False, "reduction": "sum"},
        {"smooth_nr": 0.5, "smooth_dr": 2.0},
        {"smooth_nr": 0.0, "smooth_dr": 1e-6, "batch": True},
        {"softmax": False, "sigmoid": True},
        {"softmax": False, "sigmoid": True, "include_background": False, "reduction": "none"},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default",
)
def test_dice_loss_matches_reference_labels(options, ndim, dtype, backend):
    x = _logits(SHAPES[ndim], dtype)
    target = _labels((SHAPES[ndim][0], *SHAPES[ndim][2:]), 3)
    module = DiceLoss(backend=backend, **options)
    got, got_grad = _value_and_grad(module, x, target)
    expected, expected_grad = _value_and_grad(lambda a, b: ref_dice_loss(a, b, **options), x, target)
    assert got.dtype == dtype
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, **_tol(dtype))
    torch.testing.assert_close(got_grad, expected_grad, **_tol(dtype))
    assert got_grad.abs().sum() > 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("label_dtype", LABEL_DTYPES)
def test_dice_loss_label_dtypes(label_dtype, backend):
    x = _logits((3, 4, 6, 5))
    target = _labels((3, 6, 5), 4, label_dtype, seed=2)
    got, got_grad = _value_and_grad(DiceLoss(backend=backend), x, target)
    expected, expected_grad = _value_and_grad(ref_dice_loss, x, target.long())
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got_grad, expected_grad)


def test_dice_loss_bool_labels():
    x = _logits((2, 2, 5, 5))
    target = _labels((2, 5, 5), 2).bool()
    got, got_grad = _value_and_grad(DiceLoss(), x, target)
    expected, expected_grad = _value_and_grad(ref_dice_loss, x, target.long())
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got_grad, expected_grad)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("target_kind", ["float one-hot", "int one-hot", "soft"])
def test_dice_loss_one_hot_and_soft_targets(target_kind, ndim, dtype, backend):
    shape = SHAPES[ndim]
    x = _logits(shape, dtype)
    labels = _labels((shape[0], *shape[2:]), shape[1], seed=3)
    one_hot = F.one_hot(labels, shape[1]).movedim(-1, 1)
    target = {
        "float one-hot": one_hot.float(),
        "int one-hot": one_hot,
        "soft": torch.softmax(_logits(shape, torch.float32, seed=9), 1),
    }[target_kind]
    for options in ({}, {"include_background": False, "reduction": "none"}, {"batch": True, "reduction": "sum"}):
        got, got_grad = _value_and_grad(DiceLoss(backend=backend, **options), x, target)
        expected, expected_grad = _value_and_grad(lambda a, b, o=options: ref_dice_loss(a, b, **o), x, target)
        torch.testing.assert_close(got, expected, **_tol(dtype))
        torch.testing.assert_close(got_grad, expected_grad, **_tol(dtype))
    if target_kind != "soft":  # a one-hot target gives the same loss as its label map
        torch.testing.assert_close(DiceLoss(backend=backend)(x, target), DiceLoss(backend=backend)(x, labels),
                                   **_tol(dtype))


@pytest.mark.parametrize("backend", BACKENDS)
def test_dice_loss_probabilities_input(backend):
    """softmax=False, sigmoid=False: the input is used as probabilities as is."""
    x = torch.softmax(_logits((2, 3, 6, 6)), 1)
    target = _labels((2, 6, 6), 3)
    options = {"softmax": False}
    got, got_grad = _value_and_grad(DiceLoss(backend=backend, **options), x, target)
    expected, expected_grad = _value_and_grad(lambda a, b: ref_dice_loss(a, b, **options), x, target)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got_grad, expected_grad)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ndim", [2, 3])
def test_sigmoid_binary_mask(ndim, backend):
    """sigmoid with C=1 and a {0, 1} label map (N, *spatial): the map is the foreground mask."""
    shape = (2, 1, *SHAPES[ndim][2:])
    x = _logits(shape)
    mask = _labels((2, *shape[2:]), 2, torch.uint8)
    module = DiceLoss(softmax=False, sigmoid=True, backend=backend)
    got, got_grad = _value_and_grad(module, x, mask)
    expected, expected_grad = _value_and_grad(lambda a, b: ref_dice_loss(a, b, softmax=False, sigmoid=True), x, mask)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got_grad, expected_grad)
    # explicit formula: p = sigmoid(x), t = mask
    p, t = torch.sigmoid(x)[:, 0].flatten(1).double(), mask.flatten(1).double()
    explicit = (1 - (2 * (p * t).sum(1) + 1e-5) / (p.sum(1) + t.sum(1) + 1e-5)).mean()
    torch.testing.assert_close(got.double(), explicit, rtol=1e-5, atol=1e-6)
    # and the same as an explicit (N, 1, *spatial) float mask
    torch.testing.assert_close(module(x, mask.unsqueeze(1).float()), got)


def test_known_answer():
    """Probabilities equal to the one-hot target: loss 0; complementary: loss 1 (up to smoothing)."""
    target = torch.tensor([[[0, 1], [1, 1]]])
    exact = F.one_hot(target, 2).movedim(-1, 1).double()
    loss = DiceLoss(softmax=False, smooth_nr=0.0, smooth_dr=0.0, reduction="none")
    torch.testing.assert_close(loss(exact, target), torch.zeros(1, 2, dtype=torch.float64))
    torch.testing.assert_close(loss(1 - exact, target), torch.ones(1, 2, dtype=torch.float64))
    half = torch.full((1, 2, 2, 2), 0.5, dtype=torch.float64)
    # class 0: inter 0.5, psum 2, tsum 1 -> 1 - 1/3; class 1: inter 1.5, psum 2, tsum 3 -> 1 - 3/5
    torch.testing.assert_close(loss(half, target), torch.tensor([[2 / 3, 2 / 5]], dtype=torch.float64))
    weighted = DiceLoss(softmax=False, smooth_nr=0.0, smooth_dr=0.0, weight=[1.0, 2.0], reduction="sum")
    torch.testing.assert_close(weighted(half, target), torch.tensor(2 / 3 + 4 / 5, dtype=torch.float64))


def test_smoothing_makes_an_empty_class_score_zero_loss():
    x = torch.full((1, 2, 3, 3), -20.0)
    x[:, 0] = 20.0  # background everywhere, class 1 absent from input and target
    target = torch.zeros(1, 3, 3, dtype=torch.int64)
    loss = DiceLoss(reduction="none")(x, target)
    assert torch.isfinite(loss).all()
    torch.testing.assert_close(loss, torch.zeros(1, 2), atol=1e-5, rtol=0)


def test_backends_agree_on_a_larger_input(cpu_isa):
    """The compiled kernels of every CPU instruction set (fixture from conftest) against the reference."""
    x = _logits((2, 4, 33, 65))
    target = _labels((2, 33, 65), 4, torch.uint8)
    a, ga = _value_and_grad(DiceLoss(backend="auto", reduction="none"), x, target)
    b, gb = _value_and_grad(DiceLoss(backend="torch", reduction="none"), x, target)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ga, gb)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input(dtype):
    x = _logits((2, 3, 9, 11), dtype)
    target = _labels((2, 9, 11), 3)
    a, ga = _value_and_grad(DiceLoss(backend="auto"), x, target)
    b, gb = _value_and_grad(DiceLoss(backend="torch"), x, target)
    assert ga.dtype == dtype
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ga, gb)
    c, gc = _value_and_grad(ref_dice_loss, x.float(), target)
    torch.testing.assert_close(a.float(), c, rtol=2e-2, atol=2e-3)
    torch.testing.assert_close(ga.float(), gc, rtol=5e-2, atol=2e-3)


def test_non_contiguous_input():
    base = _logits((2, 8, 8, 3))
    x = base.permute(0, 3, 1, 2)  # channels-last memory, (2, 3, 8, 8)
    assert not x.is_contiguous()
    target = _labels((2, 8, 8), 3)
    a, ga = _value_and_grad(DiceLoss(), x, target)
    b, gb = _value_and_grad(ref_dice_loss, x.contiguous(), target)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ga, gb)


# ----------------------------------------------------------------------------- DiceCELoss

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"ce_weight": [0.5, 1.0, 2.0]},
        {"label_smoothing": 0.1},
        {"lambda_dice": 0.3, "lambda_ce": 2.0},
        {"lambda_dice": 0.0, "lambda_ce": 1.0, "ce_weight": [1.0, 3.0, 0.5], "label_smoothing": 0.2},
        {"lambda_ce": 0.0},
        {"reduction": "sum", "include_background": False, "weight": [1.0, 2.0, 0.5]},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default",
)
def test_dice_ce_softmax(options, ndim, backend):
    shape = SHAPES[ndim]
    x = _logits(shape)
    labels = _labels((shape[0], *shape[2:]), shape[1], torch.uint8, seed=4)
    one_hot = F.one_hot(labels.long(), shape[1]).movedim(-1, 1).float()
    dice_keys = ("include_background", "weight", "reduction")
    dice_opts = {k: v for k, v in options.items() if k in dice_keys}
    lambda_dice, lambda_ce = options.get("lambda_dice", 1.0), options.get("lambda_ce", 1.0)
    ce_weight = options.get("ce_weight")
    ce_weight = None if ce_weight is None else torch.tensor(ce_weight)
    reduction = options.get("reduction", "mean")
    module = DiceCELoss(backend=backend, **options)

    for target, ce_target in ((labels, labels.long()), (one_hot, one_hot)):
        def reference(a, b, ce_target=ce_target):
            ce = F.cross_entropy(a, ce_target, weight=ce_weight, reduction=reduction,
                                 label_smoothing=options.get("label_smoothing", 0.0))
            return lambda_dice * ref_dice_loss(a, b, **dice_opts) + lambda_ce * ce

        got, got_grad = _value_and_grad(module, x, target)
        expected, expected_grad = _value_and_grad(reference, x, target)
        assert got.shape == ()
        torch.testing.assert_close(got, expected)
        torch.testing.assert_close(got_grad, expected_grad)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("target_kind", ["labels", "one-hot"])
@pytest.mark.parametrize("options", [{}, {"ce_weight": [2.0, 0.5, 1.0], "lambda_dice": 0.7, "lambda_ce": 1.5},
                                     {"reduction": "sum"}])
def test_dice_ce_sigmoid(options, target_kind, backend):
    shape = (2, 3, 5, 6)
    x = _logits(shape)
    labels = _labels((2, 5, 6), 3, seed=6)
    dense = F.one_hot(labels, 3).movedim(-1, 1).float()
    target = labels if target_kind == "labels" else dense
    lambda_dice, lambda_ce = options.get("lambda_dice", 1.0), options.get("lambda_ce", 1.0)
    reduction = options.get("reduction", "mean")
    ce_weight = options.get("ce_weight")
    pos = None if ce_weight is None else torch.tensor(ce_weight).view(1, 3, 1, 1)

    def reference(a, b):
        bce = F.binary_cross_entropy_with_logits(a, dense, weight=pos, reduction=reduction)
        dice = ref_dice_loss(a, b, softmax=False, sigmoid=True, reduction=reduction)
        return lambda_dice * dice + lambda_ce * bce

    module = DiceCELoss(softmax=False, sigmoid=True, backend=backend, **options)
    got, got_grad = _value_and_grad(module, x, target)
    expected, expected_grad = _value_and_grad(reference, x, target)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got_grad, expected_grad)


def test_dice_ce_sigmoid_binary_mask():
    x = _logits((2, 1, 6, 6))
    mask = _labels((2, 6, 6), 2, torch.uint8)

    def reference(a, b):
        bce = F.binary_cross_entropy_with_logits(a, b.unsqueeze(1).float())
        return ref_dice_loss(a, b, softmax=False, sigmoid=True) + bce

    got, got_grad = _value_and_grad(DiceCELoss(softmax=False, sigmoid=True), x, mask)
    expected, expected_grad = _value_and_grad(reference, x, mask)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got_grad, expected_grad)


def test_dice_ce_float64():
    x = _logits((2, 3, 4, 5, 3), torch.float64)
    labels = _labels((2, 4, 5, 3), 3, torch.int32)

    def reference(a, b):
        return ref_dice_loss(a, b) + F.cross_entropy(a, b.long())

    got, got_grad = _value_and_grad(DiceCELoss(), x, labels)
    expected, expected_grad = _value_and_grad(reference, x, labels)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, **_tol(torch.float64))
    torch.testing.assert_close(got_grad, expected_grad, **_tol(torch.float64))


# ----------------------------------------------------------------------------- training sanity

@pytest.mark.parametrize("backend", BACKENDS)
def test_overfits_a_fixed_target(backend):
    torch.manual_seed(0)
    target = _labels((2, 12, 12), 3, seed=8)
    logits = torch.zeros(2, 3, 12, 12, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.1)
    loss_fn = DiceLoss(backend=backend)
    first = None
    for _ in range(100):
        optimizer.zero_grad()
        loss = loss_fn(logits, target)
        loss.backward()
        optimizer.step()
        first = loss.item() if first is None else first
    final = loss_fn(logits, target).item()
    assert first > 0.5
    assert final < 0.05
    assert torch.equal(logits.argmax(1), target)


# ----------------------------------------------------------------------------- torch.compile

def test_torch_compile_matches_eager():
    torch._dynamo.reset()
    x = _logits((2, 3, 6, 6))
    target = _labels((2, 6, 6), 3, torch.uint8)
    module = DiceLoss(include_background=False, reduction="sum")

    def step(inp, tgt):
        return module(inp, tgt)

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    got, got_grad = _value_and_grad(compiled, x, target)
    expected, expected_grad = _value_and_grad(step, x, target)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got_grad, expected_grad)


# ----------------------------------------------------------------------------- bad input

def test_softmax_and_sigmoid_are_exclusive():
    with pytest.raises(ValueError, match="softmax and sigmoid"):
        DiceLoss(softmax=True, sigmoid=True)
    with pytest.raises(ValueError, match="softmax and sigmoid"):
        DiceCELoss(softmax=True, sigmoid=True)


@pytest.mark.parametrize("reduction", ["avg", "mean_batch", None])
def test_bad_reduction(reduction):
    with pytest.raises(ValueError, match="reduction"):
        DiceLoss(reduction=reduction)


def test_bad_backend():
    with pytest.raises(ValueError, match="backend"):
        DiceLoss(backend="cuda")


@pytest.mark.parametrize("loss_cls", [DiceLoss, DiceCELoss])
def test_integer_input(loss_cls):
    target = _labels((2, 4, 4), 3)
    with pytest.raises(TypeError, match="input"):
        loss_cls()(F.one_hot(target, 3).movedim(-1, 1), target)


@pytest.mark.parametrize("loss_cls", [DiceLoss, DiceCELoss])
def test_input_without_class_dim(loss_cls):
    with pytest.raises(ValueError, match="input"):
        loss_cls()(torch.randn(2, 4), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(TypeError, match="input"):
        loss_cls()(torch.randn(2, 3, 4).tolist(), torch.zeros(2, 4, dtype=torch.int64))


@pytest.mark.parametrize("include_background", [True, False])
def test_weight_of_wrong_length(include_background):
    x = _logits((2, 3, 4, 4))
    target = _labels((2, 4, 4), 3)
    with pytest.raises(ValueError, match=r"weight: expected 3 class weights, got 2"):
        DiceLoss(weight=[1.0, 2.0], include_background=include_background)(x, target)
    with pytest.raises(ValueError, match=r"weight: expected 3 class weights, got 4"):
        DiceLoss(weight=[1.0, 2.0, 3.0, 4.0], include_background=include_background)(x, target)


def test_no_background_with_single_channel():
    x = _logits((2, 1, 4, 4))
    mask = _labels((2, 4, 4), 2)
    with pytest.raises(ValueError, match="include_background"):
        DiceLoss(softmax=False, sigmoid=True, include_background=False)(x, mask)


def test_dice_ce_needs_logits():
    with pytest.raises(ValueError, match="softmax=True or sigmoid=True"):
        DiceCELoss(softmax=False)


@pytest.mark.parametrize(("lambda_dice", "lambda_ce"), [(-1.0, 1.0), (1.0, -0.5)])
def test_dice_ce_negative_lambda(lambda_dice, lambda_ce):
    with pytest.raises(ValueError, match="lambda_dice and lambda_ce"):
        DiceCELoss(lambda_dice=lambda_dice, lambda_ce=lambda_ce)


def test_dice_ce_reduction_none():
    with pytest.raises(ValueError, match="reduction"):
        DiceCELoss(reduction="none")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("bad", "dtype"), [(3, torch.int64), (-1, torch.int64), (-1, torch.int8), (255, torch.uint8)])
@pytest.mark.parametrize("loss_cls", [DiceLoss, DiceCELoss])
def test_label_out_of_range(loss_cls, bad, dtype, backend):
    x = _logits((2, 3, 4, 4))
    target = _labels((2, 4, 4), 3)
    target[1, 2, 3] = bad
    with pytest.raises(ValueError, match=r"labels outside \[0, 3\)"):
        loss_cls(backend=backend)(x, target.to(dtype))


@pytest.mark.parametrize("loss_cls", [DiceLoss, DiceCELoss])
@pytest.mark.parametrize(("bad", "dtype"), [(2, torch.int64), (-1, torch.int64), (255, torch.uint8)])
def test_binary_mask_out_of_range(bad, dtype, loss_cls):
    x = _logits((2, 1, 4, 4))
    mask = _labels((2, 4, 4), 2)
    mask[1, 2, 3] = bad
    with pytest.raises(ValueError, match="target"):
        loss_cls(softmax=False, sigmoid=True)(x, mask.to(dtype))


def test_target_shape_mismatch():
    x = _logits((2, 3, 4, 4))
    with pytest.raises(ValueError, match="target"):
        DiceLoss()(x, _labels((2, 4, 5), 3))
    with pytest.raises(ValueError, match="target"):
        DiceLoss()(x, torch.zeros(2, 2, 4, 4))
    with pytest.raises(ValueError, match="target"):
        DiceLoss()(x, torch.zeros(2, 4, dtype=torch.int64))

"""medimg.ops.conv2d against F.conv2d: forward and every gradient over the shapes of the CNN,
U-Net and GAN layers (1x1 to 7x7, strides, "same", dilation, groups, depthwise), on both CPU
instruction sets, plus gradcheck, opcheck, torch.compile and the errors of bad input.

Tolerance: a length-K dot product computed in floating point is off by at most
K * eps * sum|a_i * b_i| (the classical forward error bound of summation). Both medimg and
the reference obey it, so every element is compared within twice that bound, computed
per element from |input| and |weight| in float64 — it scales with the reduction length.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import needs_cpu_kernels, relayout
from torch import Tensor

from medimg.ops import conv2d


def _bound(x: Tensor, w: Tensor, gy: Tensor, kw: dict, reduction: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-element error bounds of (output, grad_input, grad_weight)."""
    eps = torch.finfo(x.dtype).eps
    xa = x.detach().abs().double().requires_grad_()
    wa = w.detach().abs().double().requires_grad_()
    out = F.conv2d(xa, wa, None, **kw)
    gx, gw = torch.autograd.grad(out, (xa, wa), gy.detach().abs().double())
    k_fwd = w.shape[1] * w.shape[2] * w.shape[3]
    k_gx = w.shape[0] // kw.get("groups", 1) * w.shape[2] * w.shape[3]
    # 2 for the two implementations, + 1 ulp of slack for the final rounding of each
    return ((2 * k_fwd + 1) * eps * out.detach() + 1e-30, (2 * k_gx + 1) * eps * gx + 1e-30,
            (2 * reduction + 1) * eps * gw + 1e-30)


def _assert_within(name: str, got: Tensor, want: Tensor, bound: Tensor) -> None:
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    excess = ((got.double() - want.double()).abs() - bound).max().item()
    assert excess <= 0, f"{name}: exceeds the error bound by {excess:.3g}"


def _check_against_reference(x: Tensor, w: Tensor, b: Tensor | None, kw: dict, activation: str | None = None
                             ) -> None:
    x, w = x.detach().requires_grad_(), w.detach().requires_grad_()
    b = b.detach().requires_grad_() if b is not None else None
    params = [t for t in (x, w, b) if t is not None]
    out = conv2d(x, w, b, **kw, activation=activation, backend="medimg")
    ref = F.conv2d(x, w, b, **kw)
    if activation == "relu":
        ref = F.relu(ref)
    gy = torch.randn_like(ref)
    got_grads = torch.autograd.grad(out, params, gy)
    want_grads = torch.autograd.grad(ref, params, gy)
    bound_out, bound_gx, bound_gw = _bound(x, w, gy if activation is None else gy * (ref > 0), kw,
                                           ref.shape[0] * ref.shape[2] * ref.shape[3])
    bias_bound = 0.0 if b is None else (ref.shape[0] * ref.shape[2] * ref.shape[3] + 1) * torch.finfo(x.dtype).eps
    _assert_within("output", out, ref, bound_out + (b.abs().double().view(-1, 1, 1) if b is not None else 0)
                   * 2 * torch.finfo(x.dtype).eps)
    _assert_within("grad_input", got_grads[0], want_grads[0], bound_gx)
    _assert_within("grad_weight", got_grads[1], want_grads[1], bound_gw)
    if b is not None:
        _assert_within("grad_bias", got_grads[2], want_grads[2], bias_bound * gy.abs().sum((0, 2, 3)).double())


# (in_channels, out_channels, kernel, stride, padding, dilation, groups, spatial H x W)
LAYERS = [
    (1, 32, 3, 1, 1, 1, 1, (17, 15)),        # first layer of a grayscale model
    (4, 8, 1, 1, 0, 1, 1, (9, 10)),          # 1x1
    (4, 6, 3, 2, 1, 1, 1, (13, 11)),         # stride 2
    (3, 5, 5, 1, "same", 1, 1, (12, 9)),     # 5x5 same
    (2, 4, 7, 2, 3, 1, 1, (19, 16)),         # 7x7 stride 2 (ResNet stem)
    (4, 6, 3, 1, 2, 2, 1, (11, 13)),         # dilation 2
    (4, 6, 3, 1, "same", 2, 2, (10, 7)),     # dilated same, groups 2
    (6, 6, 3, 1, 1, 1, 6, (9, 9)),           # depthwise
    (6, 12, 3, 2, 0, 1, 6, (12, 11)),        # depthwise multiplier 2, stride 2
    (8, 4, 2, (2, 3), (1, 0), (1, 2), 2, (11, 14)),  # even kernel, mixed pairs
    (3, 4, 4, 1, "same", 1, 1, (8, 8)),      # even "same": extra padding after
    (5, 7, 3, 1, "valid", 1, 1, (5, 6)),
    # 3x3 stride 1 with >= 16 channels each side: the Winograd F(2x2, 3x3) path. Widths whose
    # tile rows are not whole vectors of 8 tiles, odd heights, padding 0 / 1 / 2.
    (16, 16, 3, 1, 1, 1, 1, (9, 7)),
    (17, 20, 3, 1, 0, 1, 1, (11, 37)),
    (16, 18, 3, 1, 2, 1, 1, (5, 33)),
    (32, 16, 3, 1, "same", 1, 1, (20, 40)),
]


@needs_cpu_kernels
@pytest.mark.parametrize("layer", LAYERS, ids=str)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_matches_f_conv2d(cpu_isa, layer, bias):
    cin, cout, k, stride, padding, dilation, groups, (h, w) = layer
    gen = torch.Generator().manual_seed(hash((layer, bias)) % 2**31)
    x = torch.randn(2, cin, h, w, generator=gen)
    weight = torch.randn(cout, cin // groups, k, k, generator=gen)
    b = torch.randn(cout, generator=gen) if bias else None
    _check_against_reference(x, weight, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups))


@needs_cpu_kernels
@pytest.mark.parametrize("layout", ["strided", "channels_last", "permuted"])
@pytest.mark.parametrize("channels", [5, 16], ids=["implicit-gemm", "winograd"])
def test_non_contiguous_input(cpu_isa, layout, channels):
    gen = torch.Generator().manual_seed(3)
    x = relayout(torch.randn(3, channels, 12, 21, generator=gen), layout, perm=(0, 3, 1, 2))
    weight = relayout(torch.randn(channels, channels, 3, 3, generator=gen), "strided")
    _check_against_reference(x, weight, torch.randn(channels, generator=gen), dict(stride=1, padding=1))


@needs_cpu_kernels
@pytest.mark.parametrize("channels", [3, 16], ids=["implicit-gemm", "winograd"])
def test_batch_32_and_relu(cpu_isa, channels):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(32, channels, 9, 8, generator=gen)
    weight = torch.randn(16, channels, 3, 3, generator=gen)
    _check_against_reference(x, weight, torch.randn(16, generator=gen), dict(padding=1), activation="relu")


@needs_cpu_kernels
def test_batch_of_one_and_unbatched():
    gen = torch.Generator().manual_seed(7)
    x, weight = torch.randn(1, 2, 7, 7, generator=gen), torch.randn(3, 2, 3, 3, generator=gen)
    _check_against_reference(x, weight, None, dict(padding=1))
    out = conv2d(x[0], weight, padding=1, backend="medimg")
    torch.testing.assert_close(out, F.conv2d(x[0], weight, padding=1))


@needs_cpu_kernels
@pytest.mark.parametrize("backend", ["medimg", "torch"])
def test_empty_batch_gives_empty_output(backend):
    out = conv2d(torch.randn(0, 2, 8, 8), torch.randn(4, 2, 3, 3), padding=1, backend=backend)
    assert out.shape == (0, 4, 8, 8)


@needs_cpu_kernels
@pytest.mark.parametrize("channels", [1, 16], ids=["implicit-gemm", "winograd"])
@pytest.mark.parametrize("where", [(2, 3), (0, 0), (5, 4), (3, 3)], ids=str)
def test_nan_propagates_like_f_conv2d(channels, where):
    x = torch.randn(1, channels, 6, 6)
    x[0, 0, where[0], where[1]] = float("nan")
    weight = torch.randn(16, channels, 3, 3)
    got, want = conv2d(x, weight, padding=1, backend="medimg"), F.conv2d(x, weight, padding=1)
    assert torch.equal(got.isnan(), want.isnan())
    assert torch.equal(conv2d(x, weight, padding=1, activation="relu").isnan(), want.isnan())


@needs_cpu_kernels
@pytest.mark.parametrize(("stride", "padding", "dilation", "groups"),
                         [(1, 1, 1, 1), (2, 1, 1, 2), ((2, 3), (0, 2), (2, 1), 1), (3, 4, 1, 2)], ids=str)
def test_gradcheck_float64(stride, padding, dilation, groups):
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(2, 4, 7, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(4, 4 // groups, 3, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: conv2d(x, w, b, stride, padding, dilation, groups, backend="medimg"), (x, weight, b))


@needs_cpu_kernels
def test_gradcheck_fused_relu():
    gen = torch.Generator().manual_seed(13)
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: conv2d(x, w, padding=1, activation="relu"), (x, weight))


GEOMETRIES = [(1, 1, 1, 1), (2, 1, 1, 2), ((2, 3), (0, 2), (2, 1), 1), (3, 4, 1, 2), (1, "same", 2, 1),
              (1, "valid", 1, 2)]


@needs_cpu_kernels
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize(("stride", "padding", "dilation", "groups"), GEOMETRIES, ids=str)
def test_gradgradcheck_float64(stride, padding, dilation, groups, relu):
    """Second derivatives (gradient penalties): the backward's own derivatives are the kernels."""
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(2, 4, 7, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(4, 4 // groups, 3, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, generator=gen, requires_grad=True)
    activation = "relu" if relu else None
    assert torch.autograd.gradgradcheck(
        lambda x, w, b: conv2d(x, w, b, stride, padding, dilation, groups, activation=activation, backend="medimg"),
        (x, weight, b))


@needs_cpu_kernels
def test_third_derivatives():
    gen = torch.Generator().manual_seed(14)
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    probe = torch.randn(1, 3, 3, 3, dtype=torch.float64, generator=gen)

    def first_derivatives(x: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        out = conv2d(x, w, stride=2, padding=1, backend="medimg")
        return torch.autograd.grad((probe * out**3).sum(), (x, w), create_graph=True)

    assert torch.autograd.gradgradcheck(first_derivatives, (x, weight))


@needs_cpu_kernels
@pytest.mark.parametrize("channels", [3, 16], ids=["implicit-gemm", "winograd"])
def test_float32_second_derivatives_equal_f_conv2d(channels):
    """float32 on each CPU path (16 channels take the Winograd kernel), and unbatched input."""
    gen = torch.Generator().manual_seed(15)
    x = torch.randn(2, channels, 11, 12, generator=gen)
    weight = torch.randn(channels, channels, 3, 3, generator=gen) / channels
    probe = torch.randn(2, channels, 11, 12, generator=gen)
    grads = []
    for backend in ("medimg", "torch"):
        for sample in (x, x[0]):
            a, w = sample.clone().requires_grad_(), weight.clone().requires_grad_()
            out = conv2d(a, w, padding=1, backend=backend)
            weighting = probe if out.dim() == 4 else probe[0]
            (grad_a,) = torch.autograd.grad((weighting * out**2).sum(), a, create_graph=True)
            grad_a.pow(2).sum().backward()
            grads += [a.grad, w.grad]
    half = len(grads) // 2
    for got, want in zip(grads[:half], grads[half:], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def _gradient_penalty_grads(critic: torch.nn.Module, x: Tensor) -> list[Tensor]:
    """Gradients of a WGAN-GP penalty (|d critic / d x| - 1)^2 with respect to x and the weights."""
    x = x.clone().requires_grad_()
    (grad_x,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    penalty = (grad_x.flatten(1).norm(dim=1) - 1).pow(2).mean()
    wrt = [x, *critic.parameters()]
    grads = torch.autograd.grad(penalty, wrt, allow_unused=True)  # the last bias leaves d critic / d x alone
    return [torch.zeros_like(t) if g is None else g for t, g in zip(wrt, grads, strict=True)]


@pytest.mark.parametrize("device", [pytest.param("cpu", marks=needs_cpu_kernels),
                                    pytest.param("cuda", marks=pytest.mark.cuda)])
def test_gradient_penalty_through_a_discriminator_equals_torch(device, monkeypatch):
    """The GAN's PatchDiscriminator (no norm layer, as WGAN-GP wants) under a gradient penalty:
    every gradient as with F.conv2d's own double backward (cuDNN in full float32: its TF32
    default would be the less exact side of the comparison)."""
    from medimg.nn import PatchDiscriminator

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    torch.manual_seed(3)
    ours = PatchDiscriminator(in_channels=2, base=4, layers=2, norm=None, backend="medimg").to(device)
    theirs = PatchDiscriminator(in_channels=2, base=4, layers=2, norm=None, backend="torch").to(device)
    theirs.load_state_dict(ours.state_dict())
    x = torch.rand(3, 2, 32, 32, device=device)
    got, want = _gradient_penalty_grads(ours, x), _gradient_penalty_grads(theirs, x)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5 * float(w.abs().max()))


_OPCHECK = [  # (input shape, weight shape, stride, padding, dilation, groups, out size)
    ((2, 4, 9, 8), (6, 2, 3, 3), [1, 1], [1, 1], [1, 1], 2, [9, 8]),
    ((1, 3, 10, 7), (4, 3, 3, 2), [2, 1], [0, 1], [1, 2], 1, [4, 7]),
]


@needs_cpu_kernels
@pytest.mark.parametrize("case", _OPCHECK, ids=str)
@pytest.mark.parametrize("relu", [False, True])
def test_opcheck(case, relu):
    in_shape, w_shape, stride, padding, dilation, groups, out_size = case
    x = torch.randn(in_shape, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(w_shape, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(w_shape[0], dtype=torch.float64, requires_grad=True)
    geometry = (stride, padding, dilation, groups)
    torch.library.opcheck(torch.ops.medimg.conv2d.default, (x, weight, bias, *geometry, out_size, relu))
    torch.library.opcheck(torch.ops.medimg.conv2d.default, (x, weight, None, *geometry, out_size, relu))
    for needs_grad in (False, True):  # True: the backward ops' own autograd (double backward)
        gy = torch.randn(in_shape[0], w_shape[0], *out_size, dtype=torch.float64, requires_grad=needs_grad)
        torch.library.opcheck(torch.ops.medimg.conv2d_grad_input.default,
                              (gy, weight.detach().requires_grad_(needs_grad), list(in_shape[2:]), *geometry))
        torch.library.opcheck(torch.ops.medimg.conv2d_grad_weight.default,
                              (gy, x.detach().requires_grad_(needs_grad), list(w_shape), *geometry))


@needs_cpu_kernels
def test_torch_compile_matches_eager():
    gen = torch.Generator().manual_seed(17)
    x = torch.randn(2, 3, 12, 12, generator=gen, requires_grad=True)
    weight = torch.randn(8, 3, 3, 3, generator=gen, requires_grad=True)

    def step(x: Tensor, w: Tensor) -> Tensor:
        return conv2d(conv2d(x, w, padding=1, activation="relu"), w.new_ones(2, 8, 1, 1), stride=2).sum()

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    got, want = compiled(x, weight), step(x, weight)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(torch.autograd.grad(got, (x, weight)), torch.autograd.grad(want, (x, weight)))


@pytest.mark.parametrize("backend", [pytest.param("medimg", marks=needs_cpu_kernels), "torch"])
def test_float64_and_torch_backend_agree(backend):
    x, weight = torch.randn(2, 3, 8, 8, dtype=torch.float64), torch.randn(4, 3, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(conv2d(x, weight, padding=1, backend=backend), F.conv2d(x, weight, padding=1))


def test_auto_backend_falls_back_for_other_dtypes():
    x, weight = torch.randn(1, 2, 6, 6, dtype=torch.bfloat16), torch.randn(3, 2, 3, 3, dtype=torch.bfloat16)
    torch.testing.assert_close(conv2d(x, weight), F.conv2d(x, weight))


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(x=(1, 3, 8, 8), w=(4, 2, 3, 3)), ValueError, "weight: 2 input channels per group"),
    (dict(x=(1, 4, 8, 8), w=(6, 2, 3, 3), groups=4), ValueError, "weight: 2 input channels per group"),
    (dict(x=(1, 4, 8, 8), w=(6, 1, 3, 3), groups=4), ValueError, "not a positive multiple of groups"),
    (dict(x=(1, 2, 4, 4), w=(3, 2, 7, 7)), ValueError, "larger than the padded input"),
    (dict(x=(1, 2, 4, 4), w=(3, 2, 3, 3), dilation=3), ValueError, "larger than the padded input"),
    (dict(x=(1, 2, 8, 8), w=(3, 2, 3, 3), padding=-1), ValueError, "padding: expected values >= 0"),
    (dict(x=(1, 2, 8, 8), w=(3, 2, 3, 3), stride=0), ValueError, "stride: expected values >= 1"),
    (dict(x=(1, 2, 8, 8), w=(3, 2, 3, 3), padding="full"), ValueError, "padding: expected an int"),
    (dict(x=(1, 2, 8, 8), w=(3, 2, 3, 3), padding="same", stride=2), ValueError, "'same' needs stride 1"),
    (dict(x=(1, 2, 8, 8), w=(3, 2, 3, 3), stride=(1, 2, 3)), TypeError, "stride: expected an int or a pair"),
    (dict(x=(1, 2, 8, 8), w=(3, 2, 3, 3), groups=0), ValueError, "groups: expected a positive int"),
    (dict(x=(1, 2, 8, 8), w=(3, 2, 3, 3), activation="gelu"), ValueError, "activation: expected one of"),
    (dict(x=(2, 8, 8), w=(3, 2, 3)), ValueError, "weight: expected"),
    (dict(x=(8, 8), w=(3, 2, 3, 3)), ValueError, "input: expected"),
    (dict(x=(1, 2, 8, 8), w=(3, 2, 3, 3), bias=(4,)), ValueError, "bias: expected shape"),
], ids=lambda v: v if isinstance(v, str) else None)
@pytest.mark.parametrize("backend", [pytest.param("medimg", marks=needs_cpu_kernels), "torch"])
def test_bad_arguments_raise_clear_errors(kwargs, error, match, backend):
    kwargs = dict(kwargs)
    x, w = torch.randn(kwargs.pop("x")), torch.randn(kwargs.pop("w"))
    bias = torch.randn(kwargs.pop("bias")) if "bias" in kwargs else None
    with pytest.raises(error, match=match):
        conv2d(x, w, bias, **kwargs, backend=backend)


def test_bad_dtypes_and_devices():
    x, w = torch.randn(1, 2, 8, 8), torch.randn(3, 2, 3, 3)
    with pytest.raises(TypeError, match="input: expected a floating dtype"):
        conv2d(x.long(), w.long())
    with pytest.raises(TypeError, match=r"weight: dtype torch\.float64 differs"):
        conv2d(x, w.double())
    with pytest.raises(TypeError, match="bias: dtype"):
        conv2d(x, w, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="one device"):
        conv2d(x, w.to("meta"))
    with pytest.raises(TypeError, match=r"input: expected a torch\.Tensor"):
        conv2d(x.numpy(), w)
    with pytest.raises(ValueError, match="backend: expected one of"):
        conv2d(x, w, backend="cudnn")


@needs_cpu_kernels
def test_medimg_backend_rejects_unsupported_dtype():
    x, w = torch.randn(1, 2, 8, 8, dtype=torch.float16), torch.randn(3, 2, 3, 3, dtype=torch.float16)
    with pytest.raises(TypeError, match=r"input: torch\.float16 is not supported by medimg.s cpu conv2d"):
        conv2d(x, w, backend="medimg")

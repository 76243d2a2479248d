"""The Triton conv2d kernels (medimg/kernels/triton/conv2d.py) against F.conv2d and its autograd.

Without a CUDA device the kernels run on CPU tensors under TRITON_INTERPRET=1, so the shapes are
small. The variable is set only while this file imports triton and the kernel module (triton.jit
decides when it decorates) and while its tests run; the rest of the session never sees it.
The oracle is F.conv2d in float64 on the CPU, on the same (rounded) input values; top/left
padding with an explicit output size is expressed as F.pad (negative = crop) then padding 0.

Tolerances (atol scales with sqrt(K), K the reduction length, since values grow like sqrt(K)):
float32 rtol 1e-4, atol 1e-4*sqrt(K) (the interpreter's fp32 dot is exact fp32; on a GPU the
kernels use IEEE fp32 unless torch allows tf32); float16 rtol 2e-3, atol 2e-3*sqrt(K) (one
rounding of the fp32 accumulator to fp16, inputs identical); bfloat16 (GPU only: the
interpreter's bf16 dot is wrong) rtol 2e-2, atol 2e-2*sqrt(K).
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

CUDA = torch.cuda.is_available()
INTERPRET_ENV = {} if CUDA else {"TRITON_INTERPRET": "1"}


@contextlib.contextmanager
def _interpreter_env() -> Iterator[None]:
    """TRITON_INTERPRET=1 where there is no GPU, restored on exit so that the rest of the session
    (and its subprocesses) never see it."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in INTERPRET_ENV.items():
            patch.setenv(name, value)
        yield


def _import_kernels():
    """Import triton and the kernel module (skipping this file without triton) in interpreter mode
    when there is no GPU: triton.jit decides interpreted-or-compiled when it decorates."""
    with _interpreter_env():
        triton = pytest.importorskip("triton")
        from medimg.kernels.triton import conv2d

        interpret = os.environ.get("TRITON_INTERPRET") == "1"
        if interpret != conv2d.INTERPRET:
            conv2d = importlib.reload(conv2d)  # imported earlier in the other mode
        return triton, conv2d


triton, kernels = _import_kernels()


@pytest.fixture(scope="module", autouse=True)
def _interpreter_for_this_module() -> Iterator[None]:
    """The interpreter also reads TRITON_INTERPRET while it runs (its first launch imports more of triton)."""
    with _interpreter_env():
        yield


TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 2e-2}


@pytest.fixture
def device() -> str:
    """cuda where there is a GPU, else the CPU (the kernels run in the interpreter)."""
    return "cuda" if CUDA else "cpu"


@dataclass(frozen=True)
class Case:
    """One convolution: shapes, geometry (top/left padding) and epilogue."""

    n: int
    c: int
    h: int
    w: int
    oc: int
    k: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    out_size: tuple[int, int] | None = None  # None: symmetric padding, as F.conv2d
    bias: bool = True
    relu: bool = False

    def out(self) -> tuple[int, int]:
        if self.out_size is not None:
            return self.out_size
        return tuple((size + 2 * p - d * (k - 1) - 1) // s + 1 for size, p, d, k, s in
                     zip((self.h, self.w), self.padding, self.dilation, self.k, self.stride, strict=True))

    def geometry(self) -> tuple:
        return self.stride, self.padding, self.dilation, self.groups


CASES = {
    "1x1-stride2": Case(2, 3, 7, 6, 8, (1, 1), stride=(2, 2)),
    "3x3-pad1-relu": Case(3, 4, 9, 11, 8, (3, 3), padding=(1, 1), relu=True),
    "3x3-stride2-odd": Case(1, 2, 13, 11, 6, (3, 3), stride=(2, 2), padding=(1, 1), bias=False),
    "5x5-groups2": Case(2, 4, 10, 9, 6, (5, 5), padding=(2, 2), groups=2, relu=True),
    "depthwise-stride2": Case(2, 6, 11, 12, 6, (3, 3), stride=(2, 2), padding=(1, 1), groups=6),
    "depthwise-multiplier2": Case(1, 3, 8, 9, 6, (3, 3), padding=(1, 1), groups=3, bias=False),
    "dilation2": Case(1, 3, 12, 10, 5, (3, 3), padding=(2, 2), dilation=(2, 2)),
    "same-even-kernel": Case(2, 3, 9, 8, 4, (4, 2), padding=(1, 0), out_size=(9, 8), relu=True),
    "crop-negative-pad": Case(1, 2, 14, 13, 3, (3, 3), stride=(2, 2), padding=(-1, -2), out_size=(5, 4)),
    "1-to-8-channels-5x5": Case(3, 1, 15, 14, 8, (5, 5), stride=(2, 2), padding=(2, 2)),
    "rect-stride-dilation": Case(2, 2, 11, 13, 4, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
    "stride3-dilation2": Case(1, 4, 16, 14, 4, (3, 3), stride=(3, 3), padding=(1, 1), dilation=(2, 2), groups=2),
    # several tiles along every GEMM axis of all three kernels (in the interpreter's tile config too)
    "wide-multi-tile": Case(2, 16, 7, 7, 40, (3, 3), padding=(1, 1)),
    "wide-groups4": Case(1, 32, 6, 5, 72, (3, 3), stride=(1, 2), padding=(1, 1), groups=4, relu=True),
}
DTYPES = [torch.float32, torch.float16, pytest.param(torch.bfloat16, marks=pytest.mark.cuda)]


# ----------------------------------------------------------------------------- reference and helpers

def _make(case: Case, dtype: torch.dtype, device: str, seed: int = 0) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    """Random input, weight, bias (or None) and grad_out for `case`."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(case.n, case.c, case.h, case.w, generator=gen)
    w = torch.randn(case.oc, case.c // case.groups, *case.k, generator=gen)
    b = torch.randn(case.oc, generator=gen) if case.bias else None
    go = torch.randn(case.n, case.oc, *case.out(), generator=gen)
    return tuple(None if t is None else t.to(device=device, dtype=dtype) for t in (x, w, b, go))


def _reference(case: Case, x: Tensor, w: Tensor, b: Tensor | None, go: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """F.conv2d in float64 on the CPU: (output with bias/relu, grad_input, grad_weight of the bare conv)."""
    x, w, go = (t.detach().cpu().double().requires_grad_() for t in (x, w, go))
    pads = []
    for size, p, d, k, s, o in zip((case.w, case.h), case.padding[::-1], case.dilation[::-1], case.k[::-1],
                                   case.stride[::-1], case.out()[::-1], strict=True):
        pads += [p, (o - 1) * s + d * (k - 1) + 1 - size - p]  # before, after (negative = crop)
    conv = F.conv2d(F.pad(x, pads), w, None, case.stride, 0, case.dilation, case.groups)
    assert conv.shape[2:] == case.out()
    grad_x, grad_w = torch.autograd.grad(conv, (x, w), go)
    out = conv.detach() + (0 if b is None else b.cpu().double()[:, None, None])
    return (out.relu() if case.relu else out), grad_x, grad_w


def _assert_close(actual: Tensor, expected: Tensor, dtype: torch.dtype, reduction: int) -> None:
    assert actual.dtype == dtype
    assert actual.is_contiguous()
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(actual.cpu().double(), expected, rtol=tol, atol=tol * math.sqrt(reduction))


def _forward(case: Case, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    return kernels.conv2d_forward(x, w, b, *case.geometry(), case.out(), "relu" if case.relu else None)


def _check_all(case: Case, dtype: torch.dtype, device: str, layout=lambda t: t) -> None:
    """Forward, input gradient and weight gradient of `case` against the reference."""
    x, w, b, go = (None if t is None else layout(t) for t in _make(case, dtype, device))
    out, grad_x, grad_w = _reference(case, x, w, b, go)
    k_fwd = w.shape[1] * w.shape[2] * w.shape[3]
    _assert_close(_forward(case, x, w, b), out, dtype, k_fwd)
    gi = kernels.conv2d_grad_input(go, w, (case.h, case.w), *case.geometry())
    _assert_close(gi, grad_x, dtype, case.oc // case.groups * w.shape[2] * w.shape[3])
    gw = kernels.conv2d_grad_weight(go, x, tuple(w.shape), *case.geometry())
    _assert_close(gw, grad_w, dtype, go.numel() // case.oc)


# ----------------------------------------------------------------------------- reference equality

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", CASES)
def test_matches_torch(name: str, dtype: torch.dtype, device: str):
    _check_all(CASES[name], dtype, device)


def _scrambled(t: Tensor) -> Tensor:
    """Same values, non-contiguous: channels-last for 4-d tensors, every other element of a buffer for 1-d."""
    if t.dim() == 4:
        return t.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    return torch.stack([t, torch.zeros_like(t)], 1)[:, 0]


def _sliced(t: Tensor) -> Tensor:
    """Same values, read from the interior of a larger buffer with a step of 2 along the last dim."""
    big = torch.zeros(*[s + 2 for s in t.shape[:-1]], 2 * t.shape[-1], dtype=t.dtype, device=t.device)
    window = big[(*(slice(1, 1 + s) for s in t.shape[:-1]), slice(None, None, 2))]
    window.copy_(t)
    return window


@pytest.mark.parametrize("layout", [_scrambled, _sliced], ids=["channels_last", "sliced"])
def test_non_contiguous_operands(layout, device: str):
    case = CASES["5x5-groups2"]
    assert not layout(torch.zeros(2, 3, 4, 5)).is_contiguous()
    _check_all(case, torch.float32, device, layout)


def test_offsets_beyond_int32(device: str):
    """Element offsets past 2**31 (batch stride 2**30 + 7, three images): the kernels' int64 addressing.

    The input and grad_out live in one 4.3 GB float16 buffer of which only the viewed elements are
    touched (on the CPU the rest is never paged in).
    """
    case = Case(3, 3, 5, 6, 4, (3, 3), padding=(1, 1), bias=False)
    x, w, _, go = _make(case, torch.float16, device)
    stride = 2**30 + 7
    buffer = torch.empty(2 * stride + x[0].numel() + go[0].numel(), dtype=torch.float16, device=device)
    x_far = buffer.as_strided(x.shape, (stride, *x.stride()[1:]))
    go_far = buffer.as_strided(go.shape, (stride, *go.stride()[1:]), x[0].numel())
    x_far.copy_(x)
    go_far.copy_(go)
    out, grad_x, grad_w = _reference(case, x, w, None, go)
    _assert_close(_forward(case, x_far, w, None), out, torch.float16, 27)
    _assert_close(kernels.conv2d_grad_input(go_far, w, (case.h, case.w), *case.geometry()), grad_x,
                  torch.float16, 36)
    _assert_close(kernels.conv2d_grad_weight(go_far, x_far, tuple(w.shape), *case.geometry()), grad_w,
                  torch.float16, 90)


def test_weight_gradient_split_k(device: str):
    """The pixel reduction split in chunks, including more chunks than BLOCK_K tiles (empty splits)."""
    case = CASES["3x3-stride2-odd"]
    x, w, _, go = _make(case, torch.float32, device)
    _, _, grad_w = _reference(case, x, w, None, go)
    for split in (1, 3, 40):
        gw = kernels.conv2d_grad_weight(go, x, tuple(w.shape), *case.geometry(), split_k=split)
        _assert_close(gw, grad_w, torch.float32, go.numel() // case.oc)


# ----------------------------------------------------------------------------- edge cases and errors

def test_empty_batch(device: str):
    case = replace(CASES["3x3-pad1-relu"], n=0)
    x, w, b, go = _make(case, torch.float32, device)
    assert _forward(case, x, w, b).shape == (0, case.oc, *case.out())
    assert kernels.conv2d_grad_input(go, w, (case.h, case.w), *case.geometry()).shape == x.shape
    gw = kernels.conv2d_grad_weight(go, x, tuple(w.shape), *case.geometry())
    assert gw.shape == w.shape and not gw.any()


def test_unsupported_dtypes_raise_type_error(device: str):
    case = CASES["1x1-stride2"]
    x, w, b, go = _make(case, torch.float32, device)
    with pytest.raises(TypeError, match="input: Triton conv2d takes float16, bfloat16 or float32"):
        _forward(case, x.double(), w.double(), None)
    with pytest.raises(TypeError, match=r"weight: dtype torch\.float16 differs from input's torch\.float32"):
        _forward(case, x, w.half(), b)
    with pytest.raises(TypeError, match="grad_out: Triton conv2d takes"):
        kernels.conv2d_grad_input(go.to(torch.int32), w, (case.h, case.w), *case.geometry())
    with pytest.raises(TypeError, match=r"input: dtype torch\.float16 differs"):
        kernels.conv2d_grad_weight(go, x.half(), tuple(w.shape), *case.geometry())
    with pytest.raises(ValueError, match="activation"):
        kernels.conv2d_forward(x, w, b, *case.geometry(), case.out(), "gelu")


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("dilation", [1, 2, 3])
def test_phase_taps_match_brute_force(stride: int, dilation: int):
    """The taps reaching input row phase + stride*q, and their output rows, as the per-phase launch sees them."""
    for pad in range(-2, 4):
        for taps in range(1, 6):
            for phase in range(stride):
                first, count, step, shift, jump = kernels._phase_taps(phase, pad, dilation, stride, taps)
                reaching = [k for k in range(taps) if (phase + pad - k * dilation) % stride == 0]
                assert [first + step * j for j in range(count)] == reaching
                for q in range(3):
                    rows = [(phase + stride * q + pad - k * dilation) // stride for k in reaching]
                    assert rows == [q + shift - j * jump for j in range(count)]


def test_tf32_follows_torch_matmul_setting():
    """float32 uses tf32 exactly where torch allows it for CUDA matmuls (the new API where torch has it:
    reading the legacy flag raises once the new one is used)."""
    matmul = torch.backends.cuda.matmul
    flag, values = ("fp32_precision", ("tf32", "ieee")) if hasattr(matmul, "fp32_precision") else \
        ("allow_tf32", (True, False))
    previous = getattr(matmul, flag)
    try:
        setattr(matmul, flag, values[0])
        assert kernels._precision(torch.float32) == "tf32"
        assert kernels._precision(torch.float16) == "ieee"
        setattr(matmul, flag, values[1])
        assert kernels._precision(torch.float32) == "ieee"
    finally:
        setattr(matmul, flag, previous)


def test_autotune_pruning_keeps_fitting_tiles():
    configs = [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}) for bm, bn, bk, _, _ in
               kernels._CONV_TILES]
    kept = kernels._prune_tiles(configs, {"M": 10_000, "N": 8})
    assert kept and all(c.kwargs["BLOCK_N"] == 16 for c in kept)
    assert kernels._prune_tiles(configs, {"M": 1, "N": 1})  # never empty


def test_package_does_not_import_triton_eagerly():
    code = ("import sys, medimg.kernels.triton; "
            "assert 'medimg.kernels.triton.conv2d' not in sys.modules, 'conv2d imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True)

"""``medimg bench conv``: 2D convolution, forward and forward + backward, on CNN and U-Net layers.

Cases (float32 NCHW, seed 0, 3x3 convolutions with padding 1 unless named 1x1): batch 32 at
1->32 @128^2 (a grayscale CNN's first layer), 32->64 @64^2, 64->128 @32^2, 1x1 64->128 @64^2,
and a U-Net layer, batch 4 at 64->64 @256^2. Each case is timed forward only and forward +
backward (the gradients of input, weight and bias for a fixed random output gradient).

medimg.ops.conv2d(backend="medimg") runs against F.conv2d in the same run; the speed-up is
(row time) / (medimg time), so F.conv2d's row reads "reference time / medimg time". GFLOP/s
counts 2*N*OC*OH*OW*(C/groups)*KH*KW per forward and three times that forward + backward.
The first layer is memory-bound: its 64 MiB output is freshly allocated on every call and pays
first-touch page faults whoever allocates it, so it also reports the fraction of copy bandwidth.
With a CUDA device the same layers also run there in bfloat16 and float32 against F.conv2d
(cuDNN; its float32 may use TF32, per torch.backends.cudnn.allow_tf32).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medimg.bench.peers import import_peer
from medimg.bench.report import device_name, format_rows
from medimg.bench.suite import Implementations, measure_cases
from medimg.bench.timing import copy_bandwidth
from medimg.ops import conv2d

MEDIMG = "medimg.ops.conv2d (backend='medimg')"
Conv = Callable[..., Tensor]


@dataclass(frozen=True)
class Case:
    name: str
    batch: int
    in_channels: int
    out_channels: int
    kernel: int
    size: int
    backward: bool = False
    memory_bound: bool = False  # report bytes moved, for the fraction of copy bandwidth
    device: str = "cpu"
    dtype: torch.dtype = torch.float32

    @property
    def padding(self) -> int:
        return self.kernel // 2

    @property
    def flops(self) -> int:
        """2 * N * OC * OH * OW * C * KH * KW (stride 1, "same" padding), times 3 with backward."""
        forward = 2 * self.batch * self.out_channels * self.size**2 * self.in_channels * self.kernel**2
        return 3 * forward if self.backward else forward

    def tensors(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Seeded input, weight, bias and output gradient (leaves needing grad if `backward`)."""
        g = torch.Generator().manual_seed(0)
        n, c, oc, k, s = self.batch, self.in_channels, self.out_channels, self.kernel, self.size
        scale = (c * k * k) ** -0.5
        x = torch.randn(n, c, s, s, generator=g)
        w = torch.randn(oc, c, k, k, generator=g) * scale
        b = torch.randn(oc, generator=g) * scale
        grad = torch.randn(n, oc, s, s, generator=g)
        x, w, b, grad = (t.to(self.device, self.dtype) for t in (x, w, b, grad))
        return x.requires_grad_(self.backward), w.requires_grad_(self.backward), b.requires_grad_(self.backward), grad

    def min_bytes(self) -> int:
        """Bytes a call must at least read and write: x, w, b in and y out; with backward also
        the output gradient, x and w read again and the three gradients written."""
        x, w, b, y = (self.batch * self.in_channels * self.size**2, self.out_channels * self.in_channels
                      * self.kernel**2, self.out_channels, self.batch * self.out_channels * self.size**2)
        elements = x + w + b + y + ((y + x + w) + (x + w + b) if self.backward else 0)
        return elements * torch.finfo(self.dtype).bits // 8


LAYERS = (  # name, batch, in, out, kernel, size, memory-bound
    ("32x1->32 3x3 @128^2 (CNN first layer)", 32, 1, 32, 3, 128, True),
    ("32x32->64 3x3 @64^2", 32, 32, 64, 3, 64, False),
    ("32x64->128 3x3 @32^2", 32, 64, 128, 3, 32, False),
    ("4x64->64 3x3 @256^2 (U-Net)", 4, 64, 64, 3, 256, False),
    ("32x64->128 1x1 @64^2", 32, 64, 128, 1, 64, False),
)


def make_cases(device: str = "cpu", dtype: torch.dtype = torch.float32) -> tuple[Case, ...]:
    """Every layer forward, then forward + backward, on one device and dtype."""
    prefix = "" if device == "cpu" else f"{device} "
    dtype_name = str(dtype).removeprefix("torch.").replace("float", "f")
    return tuple(
        Case(f"{prefix}{'fwd+bwd' if backward else 'fwd'} {name} {dtype_name}", batch, cin, cout, k, size,
             backward, memory_bound and device == "cpu", device, dtype)
        for name, batch, cin, cout, k, size, memory_bound in LAYERS
        for backward in (False, True)
    )


DEVICES = ("cpu", "cuda")
CASES = make_cases()
CUDA_CASES = make_cases("cuda", torch.bfloat16) + make_cases("cuda", torch.float32)


def forward(conv: Conv, x: Tensor, w: Tensor, b: Tensor, padding: int) -> Callable[[], Tensor]:
    """One convolution."""
    return lambda: conv(x, w, b, padding=padding)


def forward_backward(conv: Conv, x: Tensor, w: Tensor, b: Tensor, grad: Tensor,
                     padding: int) -> Callable[[], tuple[Tensor, ...]]:
    """One convolution and the gradients of x, w and b (fresh tensors: nothing accumulates)."""
    return lambda: torch.autograd.grad(conv(x, w, b, padding=padding), (x, w, b), grad)


def opencv_filter2d(x: Tensor, w: Tensor, b: Tensor) -> Callable[[], np.ndarray] | None:
    """A 1-channel 'same' convolution as one cv2.filter2D (2D correlation + bias) per image and
    output channel, into a fresh (N, OC, H, W) array; None without OpenCV."""
    if (cv2 := import_peer("cv2")) is None:
        return None
    images, kernels, biases = x[:, 0].numpy(), w[:, 0].numpy(), b.tolist()
    n, out_channels = images.shape[0], kernels.shape[0]

    def run() -> np.ndarray:
        out = np.empty((n, out_channels, *images.shape[1:]), dtype=images.dtype)
        for i in range(n):
            for c in range(out_channels):
                cv2.filter2D(images[i], -1, kernels[c], dst=out[i, c], delta=biases[c],
                             borderType=cv2.BORDER_CONSTANT)
        return out

    return run


def implementations(case: Case) -> Implementations:
    """Name -> (callable, bytes it must move for memory-bound cases, else None) for one case."""
    x, w, b, grad = case.tensors()
    nbytes = case.min_bytes() if case.memory_bound else None
    convs: dict[str, Conv] = {
        MEDIMG: partial(conv2d, backend="medimg"),
        "F.conv2d (cuDNN)" if case.device == "cuda" else "F.conv2d": F.conv2d,
    }
    impls: Implementations = {
        name: (forward_backward(conv, x, w, b, grad, case.padding) if case.backward
               else forward(conv, x, w, b, case.padding), nbytes)
        for name, conv in convs.items()
    }
    if case.device == "cpu" and case.in_channels == 1 and not case.backward:
        peer = opencv_filter2d(x, w, b)
        if peer is not None:
            impls["OpenCV filter2D loop (one per image x OC)"] = (peer, nbytes)
    return impls


def run(min_run_time: float = 0.5, devices: tuple[str, ...] = ("cpu",)) -> str:
    """Run every case on each of `devices` ("cpu", "cuda") and return the report."""
    cases = (CASES if "cpu" in devices else ()) + (CUDA_CASES if "cuda" in devices else ())
    bandwidth = copy_bandwidth(min_run_time=min_run_time) if "cpu" in devices else None
    flops = {case.name: case.flops for case in cases}
    rows = [replace(row, flops=flops[row.case])
            for row in measure_cases(cases, implementations, min_run_time, items=lambda case: case.batch)]
    header = (f"conv2d (NCHW) on {' and '.join(map(device_name, devices))}; "
              f"{f'CPU copy bandwidth {bandwidth / 1e9:.1f} GB/s; ' if bandwidth else ''}"
              "GFLOP/s = 2*N*OC*OH*OW*C*KH*KW (x3 fwd+bwd) / time; items = images.\n"
              "The CPU first layer is memory-bound: its 64 MiB output is allocated per call and pays "
              "first-touch page faults whoever allocates it (not counted in the copy bandwidth).")
    return header + format_rows(rows, MEDIMG, bandwidth)

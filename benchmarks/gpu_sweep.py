"""GPU-only timings that `medimg bench` does not give: the bare warp kernel's fraction of copy
bandwidth (many calls between two CUDA events, no host waits), per angle, dtype and mode;
back-to-back calls on the issue's batch (host cost per call); and the kernel launches and
stream syncs one call makes (torch.profiler), for the warp and the intensity transforms.

    usage (on a CUDA machine with medimg built):
        python3 benchmarks/gpu_sweep.py [issue-batch] [bandwidth] [intensity]   (default: all)
"""

from __future__ import annotations

import math
import sys
import time

import torch
import torch.nn.functional as F

from medimg.ops import affine_grid_sample
from medimg.transforms import Normalize01, RandomAffine, RandomGamma, RandomGaussianNoise

CALLS, REPEATS = 20, 5


def pipelined_ms(fn) -> float:
    """Best of REPEATS, each the mean of CALLS calls between two events (no host wait inside)."""
    fn()
    torch.cuda.synchronize()
    best = math.inf
    for _ in range(REPEATS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(CALLS):
            fn()
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / CALLS)
    return best


def back_to_back_ms(fn, calls: int = 200) -> float:
    """Wall time per call over `calls` calls with one sync at the end (host cost included)."""
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / calls * 1e3


def rotation(n: int, degrees: float, device: str) -> torch.Tensor:
    a = math.radians(degrees)
    m = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]], dtype=torch.float64)
    return m.expand(n, 2, 3).contiguous().to(device, torch.float32)


def sweep_row(image: torch.Tensor, theta: torch.Tensor, mode: str) -> tuple[float, float]:
    """Pipelined ms of medimg's op and of affine_grid + grid_sample on one image batch."""
    ours = pipelined_ms(lambda: affine_grid_sample(image, theta, mode=mode, check_finite=False))
    ref = pipelined_ms(lambda: F.grid_sample(
        image, F.affine_grid(theta.to(image.dtype), list(image.shape), align_corners=False),
        mode=mode, align_corners=False))
    return ours, ref


def bandwidth_sweep() -> None:
    n, size = 512, 512
    image32 = torch.rand(n, 1, size, size, device="cuda")
    clone_ms = pipelined_ms(image32.clone)
    print(f"\nclone 512x1x512^2 f32: {clone_ms:.3f} ms = {2 * image32.nbytes / clone_ms / 1e6:.0f} GB/s read+write")
    print("| dtype | mode | degrees | medimg ms | % of clone | grid_sample ms | ratio |")
    print("|---|---|---|---|---|---|---|")
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        image = image32.to(dtype)
        clone_dtype_ms = pipelined_ms(image.clone)
        for mode in ("bilinear", "nearest"):
            for degrees in (0.0, 15.0, 90.0):
                ours, ref = sweep_row(image, rotation(n, degrees, "cuda"), mode)
                print(f"| {str(dtype)[6:]} | {mode} | {degrees:g} | {ours:.3f} | {100 * clone_dtype_ms / ours:.0f}% "
                      f"| {ref:.3f} | {ref / ours:.1f}x |")


def issue_cases(n: int, size: int) -> dict[str, object]:
    """Callables for one batch of n x 1 x size^2 float32 images with int64 masks."""
    g = torch.Generator().manual_seed(0)
    image = torch.rand(n, 1, size, size, generator=g).cuda()
    mask = torch.randint(0, 4, (n, size, size), generator=g).cuda()
    transform = RandomAffine(degrees=15, scale=(0.9, 1.1), hflip_p=0.5)
    generator = torch.Generator("cuda").manual_seed(1)
    theta = transform.sample_theta(n, (size, size), image.device, generator).float()
    labels = mask.unsqueeze(1)
    return {
        "RandomAffine image+int64 mask": lambda: transform(image, mask, generator=generator),
        "op fixed theta, check_finite=True": lambda: (
            affine_grid_sample(image, theta), affine_grid_sample(labels, theta, mode="nearest")),
        "op fixed theta, check_finite=False": lambda: (
            affine_grid_sample(image, theta, check_finite=False),
            affine_grid_sample(labels, theta, mode="nearest", check_finite=False)),
        "affine_grid + grid_sample (given theta)": lambda: (
            F.grid_sample(image, F.affine_grid(theta, list(image.shape), align_corners=False), align_corners=False),
            F.grid_sample(labels.double(), F.affine_grid(theta.double(), list(image.shape), align_corners=False),
                          mode="nearest", align_corners=False).long()),
    }


def launches_and_syncs(fn) -> tuple[int, int]:
    """CUDA kernels launched (copies and fills not counted) and host waits (stream or device
    syncs) in one call of `fn`, after a warm-up call."""
    fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                            torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
    events = prof.events()
    kernels = sum(1 for e in events if e.device_type == torch.autograd.DeviceType.CUDA
                  and not e.name.lower().startswith(("memcpy", "memset")))
    syncs = sum(1 for e in events if "Synchronize" in e.name)
    return kernels, syncs


def issue_batch() -> None:
    for n, size in ((32, 256), (128, 28), (1, 28)):
        cases = issue_cases(n, size)
        print(f"\nback to back, {n}x1x{size}^2 f32 + int64 mask (ms per call, 200 calls, one sync)")
        for name, fn in cases.items():
            kernels, syncs = launches_and_syncs(fn)
            print(f"  {name}: {back_to_back_ms(fn):.3f} ms; {kernels} kernels, {syncs} syncs per call")


def intensity_launches() -> None:
    """Launches, syncs and back-to-back time per call of each intensity transform on 32 x 1x256^2."""
    image = torch.rand(32, 1, 256, 256, generator=torch.Generator().manual_seed(0)).cuda()
    generator = torch.Generator("cuda").manual_seed(1)
    transforms = {"Normalize01(percentiles=(1, 99))": Normalize01(percentiles=(1, 99)),
                  "Normalize01(percentiles=(1, 99), check_finite=False)":
                      Normalize01(percentiles=(1, 99), check_finite=False),
                  "RandomGaussianNoise(0.05, p=1)": RandomGaussianNoise((0.05, 0.05), p=1.0),
                  "RandomGamma(p=1)": RandomGamma(p=1.0),
                  "RandomGamma(p=1, check_finite=False)": RandomGamma(p=1.0, check_finite=False)}
    print("\nintensity transforms, 32x1x256^2 f32 (ms per call back to back, 200 calls, one sync)")
    for name, transform in transforms.items():
        def call(transform=transform):
            return transform(image, generator=generator)
        kernels, syncs = launches_and_syncs(call)
        print(f"  {name}: {back_to_back_ms(call):.3f} ms; {kernels} kernels, {syncs} syncs per call")


SECTIONS = {"issue-batch": issue_batch, "bandwidth": bandwidth_sweep, "intensity": intensity_launches}

if __name__ == "__main__":
    print(torch.cuda.get_device_name(), torch.__version__)
    for section in sys.argv[1:] or SECTIONS:
        SECTIONS[section]()

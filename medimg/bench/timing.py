"""Timing with torch.utils.benchmark: median and interquartile range of blocked runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch
import torch.utils.benchmark as tbench


@dataclass(frozen=True)
class Timing:
    """Median and interquartile range of one callable, in seconds."""

    median: float
    iqr: float
    runs: int


@cache
def warm_memory(nbytes: int = 1 << 30) -> None:
    """Touch `nbytes` of fresh memory once per process, then free it. On a virtual machine
    whose memory the host backs lazily, the first touch of a physical page costs several
    times a normal page fault; without this, whichever implementation runs first pays it
    (measured here: a 64 MiB output 90 ms instead of 15 ms) and the ratios lie."""
    torch.ones(nbytes, dtype=torch.uint8)


def measure(fn: Callable[[], object], min_run_time: float = 0.5) -> Timing:
    """Time `fn` (after a warm-up call) until `min_run_time` seconds of measurements exist."""
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    # Timer runs single-threaded unless told otherwise: keep the caller's thread count.
    timer = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    measurement = timer.blocked_autorange(min_run_time=min_run_time)
    return Timing(median=measurement.median, iqr=measurement.iqr, runs=len(measurement.times))


def copy_bandwidth(nbytes: int = 256 << 20, device: str = "cpu", min_run_time: float = 0.5) -> float:
    """Measured memory-copy bandwidth in bytes/s: bytes copied (counted once) per second.

    Source and destination are touched before timing, so first-touch page faults are not
    counted; the fraction an op reaches is then (bytes it must read) / time / this number.
    """
    src = torch.ones(nbytes, dtype=torch.uint8, device=device)
    dst = torch.zeros_like(src)
    timing = measure(lambda: dst.copy_(src), min_run_time)
    return nbytes / timing.median

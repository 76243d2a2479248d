"""Timing with torch.utils.benchmark: median and interquartile range of blocked runs."""

from __future__ import annotations

import statistics
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
    return measure_interleaved({"fn": fn}, min_run_time, rounds=1)["fn"]


def measure_interleaved(fns: dict[str, Callable[[], object]], min_run_time: float = 0.5, rounds: int = 5,
                        on_error: Callable[[str, Exception], None] | None = None) -> dict[str, Timing]:
    """Time each of `fns` for `min_run_time` seconds in all, in `rounds` turns taken one after
    the other (A B C, A B C, ...), after one warm-up call each.

    On a shared machine whose speed drifts over seconds, timing A fully before B would put the
    drift into the ratio A / B; interleaved, each one sees the same mix of fast and slow phases.
    Median and IQR are over the runs of all rounds. Each round also sizes its blocks with a few
    untimed calls (torch.utils.benchmark's block-size estimate). A callable that raises is passed to
    `on_error` (name, error) and left out; without `on_error` the error propagates.
    """
    if rounds < 1:
        raise ValueError(f"rounds: expected at least 1, got {rounds}")
    times: dict[str, list[float]] = {}
    for name, fn in fns.items():
        try:
            fn()
            times[name] = []
        except Exception as error:
            if on_error is None:
                raise
            on_error(name, error)
    for _ in range(rounds):
        for name in list(times):
            try:
                times[name] += _blocked_runs(fns[name], min_run_time / rounds)
            except Exception as error:
                if on_error is None:
                    raise
                on_error(name, error)
                del times[name]
    return {name: _summary(runs) for name, runs in times.items()}


def _blocked_runs(fn: Callable[[], object], min_run_time: float) -> list[float]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    # Timer runs single-threaded unless told otherwise: keep the caller's thread count.
    timer = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return list(timer.blocked_autorange(min_run_time=min_run_time).times)


def _summary(runs: list[float]) -> Timing:
    if len(runs) == 1:
        return Timing(median=runs[0], iqr=0.0, runs=1)
    q1, median, q3 = statistics.quantiles(runs, n=4, method="inclusive")
    return Timing(median=median, iqr=q3 - q1, runs=len(runs))


def copy_bandwidth(nbytes: int = 256 << 20, device: str = "cpu", min_run_time: float = 0.5) -> float:
    """Measured memory-copy bandwidth in bytes/s: bytes copied (counted once) per second.

    Source and destination are touched before timing, so first-touch page faults are not
    counted; the fraction an op reaches is then (bytes it must read) / time / this number.
    """
    src = torch.ones(nbytes, dtype=torch.uint8, device=device)
    dst = torch.zeros_like(src)
    timing = measure(lambda: dst.copy_(src), min_run_time)
    return nbytes / timing.median

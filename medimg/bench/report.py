"""Plain-text tables for benchmark results."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medimg.bench.timing import Timing


def device_name(device: str) -> str:
    """Where a suite ran, for its header: the CPU with its thread count, or the GPU's name."""
    return f"the CPU, {torch.get_num_threads()} threads" if device == "cpu" else torch.cuda.get_device_name()


@dataclass(frozen=True)
class Row:
    """One implementation on one case; `bytes_read` is set for bandwidth-bound ops."""

    case: str
    name: str
    timing: Timing
    bytes_read: int | None = None
    items: int | None = None  # images or volumes per call, for a throughput column
    flops: float | None = None  # floating-point operations per call, for a GFLOP/s column


def format_rows(rows: list[Row], baseline: str, bandwidth: float | None) -> str:
    """A table per case: median and IQR in ms, items per second, medimg's speed-up over each
    row (row time / `baseline` time), and for rows that declare their bytes the GB/s and the
    fraction of copy bandwidth reached. A GFLOP/s column appears only if some row declares flops."""
    show_flops = any(r.flops is not None for r in rows)
    lines = []
    for case in dict.fromkeys(r.case for r in rows):
        group = [r for r in rows if r.case == case]
        ours = next((r for r in group if r.name == baseline), None)
        lines.append(f"\n{case}")
        flops_head = f"{'GFLOP/s':>9}" if show_flops else ""
        lines.append(f"  {'implementation':<44}{'median ms':>11}{'IQR ms':>9}{'items/s':>10}{flops_head}"
                     f"{'medimg speed-up':>17}{'GB/s':>8}{'% copy bw':>11}")
        for r in group:
            speedup = f"{r.timing.median / ours.timing.median:.1f}x" if ours else "-"
            gbs = pct = ""
            if r.bytes_read is not None:
                rate = r.bytes_read / r.timing.median
                gbs = f"{rate / 1e9:.1f}"
                pct = f"{100 * rate / bandwidth:.0f}%" if bandwidth else ""
            rate_items = f"{r.items / r.timing.median:.0f}" if r.items else ""
            gflops = f"{r.flops / r.timing.median / 1e9:.1f}" if r.flops is not None else ""
            flops_cell = f"{gflops:>9}" if show_flops else ""
            lines.append(f"  {r.name:<44}{r.timing.median * 1e3:>11.3f}{r.timing.iqr * 1e3:>9.3f}{rate_items:>10}"
                         f"{flops_cell}{speedup:>17}{gbs:>8}{pct:>11}")
    return "\n".join(lines)

"""Plain-text tables for benchmark results."""

from __future__ import annotations

from dataclasses import dataclass

from medimg.bench.timing import Timing


@dataclass(frozen=True)
class Row:
    """One implementation on one case; `bytes_read` is set for bandwidth-bound ops."""

    case: str
    name: str
    timing: Timing
    bytes_read: int | None = None


def format_rows(rows: list[Row], baseline: str, bandwidth: float | None) -> str:
    """A table per case: median and IQR in ms, speed-up of `baseline` over each row, and
    for the baseline the fraction of copy bandwidth reached."""
    lines = []
    for case in dict.fromkeys(r.case for r in rows):
        group = [r for r in rows if r.case == case]
        ours = next((r for r in group if r.name == baseline), None)
        lines.append(f"\n{case}")
        lines.append(f"  {'implementation':<34}{'median ms':>11}{'IQR ms':>9}{'medimg speed-up':>17}{'GB/s':>8}"
                     f"{'% copy bw':>11}")
        for r in group:
            speedup = f"{r.timing.median / ours.timing.median:.1f}x" if ours else "-"
            gbs = pct = ""
            if r.bytes_read is not None:
                rate = r.bytes_read / r.timing.median
                gbs = f"{rate / 1e9:.1f}"
                pct = f"{100 * rate / bandwidth:.0f}%" if bandwidth else ""
            lines.append(f"  {r.name:<34}{r.timing.median * 1e3:>11.3f}{r.timing.iqr * 1e3:>9.3f}{speedup:>17}"
                         f"{gbs:>8}{pct:>11}")
    return "\n".join(lines)

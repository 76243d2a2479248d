"""Running a benchmark suite: every implementation of every case, timed in one run."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from medimg.bench.report import Row, device_name, format_rows
from medimg.bench.timing import measure_interleaved, warm_memory

Implementations = dict[str, tuple[Callable[[], object], int | None]]


def measure_cases(cases: Iterable[Any], implementations: Callable[[Any], Implementations], min_run_time: float,
                  items: Callable[[Any], int | None] = lambda case: None) -> list[Row]:
    """Time each implementation of each case (cases have a ``name``), the implementations of a
    case interleaved (see measure_interleaved). A peer that raises is reported on stdout and
    left out, so one broken install does not sink the suite."""
    warm_memory()
    rows = []
    for case in cases:
        impls = implementations(case)

        def skip(name: str, error: Exception, case: Any = case) -> None:
            print(f"skipped {name} on {case.name}: {type(error).__name__}: {error}")

        timings = measure_interleaved({name: fn for name, (fn, _) in impls.items()}, min_run_time, on_error=skip)
        rows += [Row(case.name, name, timing, impls[name][1], items(case)) for name, timing in timings.items()]
    return rows


def reports_by_device(devices: Iterable[str], title: str, bandwidth_note: str, cases_on: Callable[[str], Iterable[Any]],
                      implementations: Callable[[Any], Implementations], baseline: str, min_run_time: float,
                      bandwidth_of: Callable[..., float], items: Callable[[Any], int | None] = lambda case: None
                      ) -> str:
    """One table per device: its copy bandwidth (`bandwidth_of(device=, min_run_time=)`), then
    every case of `cases_on(device)` measured, medimg's speed-ups against `baseline`."""
    reports = []
    for device in devices:
        bandwidth = bandwidth_of(device=device, min_run_time=min_run_time)
        rows = measure_cases(cases_on(device), implementations, min_run_time, items=items)
        header = f"{title} on {device_name(device)}; copy bandwidth {bandwidth / 1e9:.1f} GB/s{bandwidth_note}"
        reports.append(header + format_rows(rows, baseline, bandwidth))
    return "\n\n".join(reports)

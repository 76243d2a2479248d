"""Running a benchmark suite: every implementation of every case, timed in one run."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from medimg.bench.report import Row
from medimg.bench.timing import measure, warm_memory

Implementations = dict[str, tuple[Callable[[], object], int | None]]


def measure_cases(cases: Iterable[Any], implementations: Callable[[Any], Implementations], min_run_time: float,
                  items: Callable[[Any], int | None] = lambda case: None) -> list[Row]:
    """Time each implementation of each case (cases have a ``name``). A peer that raises is
    reported on stdout and left out, so one broken install does not sink the suite."""
    warm_memory()
    rows = []
    for case in cases:
        for name, (fn, nbytes) in implementations(case).items():
            try:
                rows.append(Row(case.name, name, measure(fn, min_run_time), nbytes, items(case)))
            except Exception as error:
                print(f"skipped {name} on {case.name}: {type(error).__name__}: {error}")
    return rows

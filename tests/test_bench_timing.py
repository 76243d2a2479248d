"""`medimg.bench.timing`: interleaved timing of several implementations, and its summaries."""

from __future__ import annotations

import itertools

import pytest

from medimg.bench.timing import measure, measure_interleaved


def test_interleaved_rounds_alternate_between_implementations():
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
    timings = measure_interleaved(fns, min_run_time=0.002, rounds=3)
    assert set(timings) == {"a", "b"}
    runs = [name for name, _ in itertools.groupby(calls)]  # a, b (warm-ups), then a, b per round
    assert runs == ["a", "b"] * 4
    for timing in timings.values():
        assert timing.runs >= 3 and timing.median > 0 and timing.iqr >= 0


def test_interleaved_leaves_out_what_raises():
    errors = []
    count = iter(range(10**9))

    def breaks_after_warm_up() -> None:
        if next(count) > 0:
            raise RuntimeError("broken peer")

    timings = measure_interleaved({"ok": lambda: None, "peer": breaks_after_warm_up, "bad": lambda: 1 / 0},
                                  min_run_time=0.002, on_error=lambda name, error: errors.append((name, error)))
    assert set(timings) == {"ok"}
    assert [(name, type(error)) for name, error in errors] == [("bad", ZeroDivisionError), ("peer", RuntimeError)]
    with pytest.raises(ZeroDivisionError):
        measure_interleaved({"bad": lambda: 1 / 0}, min_run_time=0.002)
    with pytest.raises(ValueError, match=r"^rounds: "):
        measure_interleaved({"ok": lambda: None}, min_run_time=0.002, rounds=0)


def test_measure_one_callable():
    timing = measure(lambda: sum(range(100)), min_run_time=0.002)
    assert timing.runs >= 1 and timing.median > 0

"""medimg.ops.order_statistics: per-row order statistics by bucket selection (the CPU kernel
behind Normalize01's percentiles), checked against torch.sort: the values at the returned
positions are the sorted row's, for awkward values (ties, a constant row, huge ranges, NaN,
infinities), strides and sizes."""

from __future__ import annotations

import pytest
import torch
from helpers import needs_cpu_kernels
from torch import Tensor

from medimg.ops.order_statistics import order_statistics

pytestmark = needs_cpu_kernels


def _check(values: Tensor, ks: list[int]) -> None:
    indices = order_statistics(values, ks)
    assert indices.dtype == torch.int64 and indices.shape == (values.shape[0], len(ks))
    expected = values.gather(1, order_statistics(values, ks, backend="torch"))  # a stable sort
    torch.testing.assert_close(values.gather(1, indices), expected, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(expected, values.sort(dim=1).values[:, ks], rtol=0, atol=0, equal_nan=True)


def _rows(kind: str, dtype: torch.dtype, gen: torch.Generator) -> Tensor:
    shape = (5, 301)
    if kind == "uniform":
        return torch.rand(shape, generator=gen, dtype=dtype)
    if kind == "normal":
        return torch.randn(shape, generator=gen, dtype=dtype) * 1e3
    if kind == "ties":  # few distinct values: whole buckets of equal values
        return torch.randint(0, 4, shape, generator=gen).to(dtype)
    if kind == "constant":
        return torch.full(shape, 2.5, dtype=dtype)
    if kind == "hot pixel":  # one value far above the rest squeezes them into one bucket
        rows = torch.rand(shape, generator=gen, dtype=dtype)
        rows[:, 7] = 1e30
        return rows
    if kind == "full range":  # max - min overflows: one bucket for everything
        rows = torch.randn(shape, generator=gen, dtype=dtype)
        rows[:, 0], rows[:, 1] = torch.finfo(dtype).max, torch.finfo(dtype).min
        return rows
    if kind == "infinities":
        rows = torch.randn(shape, generator=gen, dtype=dtype)
        rows[:, 3], rows[:, 4] = float("inf"), float("-inf")
        return rows
    if kind == "nan":  # NaN after every number, as torch.sort puts it
        rows = torch.randn(shape, generator=gen, dtype=dtype)
        rows[:, ::7] = float("nan")
        rows[2] = float("nan")
        return rows
    if kind == "signed zeros":
        return torch.tensor([0.0, -0.0, 1.0, -1.0] * 75 + [0.0], dtype=dtype).repeat(5, 1)
    raise AssertionError(kind)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["uniform", "normal", "ties", "constant", "hot pixel", "full range", "infinities",
                                  "nan", "signed zeros"])
def test_values_at_the_positions_are_the_sorted_rows(kind, dtype):
    values = _rows(kind, dtype, torch.Generator().manual_seed(70))
    _check(values, [0, 1, 3, 150, 297, 299, 300])
    _check(values, [42])


@pytest.mark.parametrize("layout", ["transposed", "strided", "expanded"])
def test_any_strides(layout):
    gen = torch.Generator().manual_seed(71)
    base = torch.randn(40, 6, generator=gen)
    values = {"transposed": base.t(), "strided": torch.randn(6, 80, generator=gen)[:, ::2],
              "expanded": base[:, :1].t().expand(6, 40)}[layout]
    assert not values.is_contiguous()
    _check(values, [0, 5, 20, 39])


@pytest.mark.parametrize("length", [1, 2, 4097, 70000])
def test_lengths(length):
    values = torch.randn(3, length, generator=torch.Generator().manual_seed(72))
    _check(values, sorted({0, length // 3, length - 1}))


def test_more_threads_than_rows_and_one_thread():
    values = torch.randn(2, 999, generator=torch.Generator().manual_seed(73))
    previous = torch.get_num_threads()
    try:
        for threads in (1, 8):
            torch.set_num_threads(threads)
            _check(values, [10, 500, 998])
    finally:
        torch.set_num_threads(previous)


def test_opcheck():
    values = torch.randn(4, 50, generator=torch.Generator().manual_seed(74))
    torch.library.opcheck(torch.ops.medimg.order_statistics.default, (values, [0, 25, 49]))


@pytest.mark.parametrize(("values", "ks", "error", "match"), [
    (torch.zeros(2, 5), [5], ValueError, r"^ks: .*\[0, 5\)"),
    (torch.zeros(2, 5), [-1], ValueError, "^ks: "),
    (torch.zeros(2, 5), [3, 1], ValueError, "^ks: .*ascending"),
    (torch.zeros(2, 5), [2, 2], ValueError, "^ks: .*distinct"),
    (torch.zeros(2, 5, dtype=torch.int64), [1], ValueError, "^values: .*int64"),
    (torch.zeros(10), [1], ValueError, r"^values: .*\(10,\)"),
    (torch.zeros(2, 5), 3, TypeError, "^ks: "),
    (torch.zeros(2, 5), [1.5], TypeError, "^ks: "),
    ([[1.0, 2.0]], [0], TypeError, "^values: expected a torch.Tensor"),
])
def test_bad_input(values, ks, error, match):
    with pytest.raises(error, match=match):
        order_statistics(values, ks)


def test_off_the_cpu_takes_the_reference_or_says_so():
    values = torch.zeros(2, 5, device="meta")
    assert order_statistics(values, [1]).shape == (2, 1)  # "auto": the reference
    with pytest.raises(ValueError, match=r"^values: the selection kernel runs on the CPU"):
        order_statistics(values, [1], backend="medimg")

"""The compiled modules and their boundary: errors from C++ arrive as Python exceptions,
kernels for every instruction set agree, and a missing module is reported clearly."""

import pytest
import torch

from medimg import _extension
from medimg.ops._boundary import view

cpu = pytest.importorskip("medimg._C")


def test_cpu_module_reports_its_paths():
    assert cpu.cpu_isa() in cpu.supported_isas()
    assert "baseline" in cpu.supported_isas()
    assert cpu.openmp_max_threads() >= 1


def test_select_unknown_isa_raises_value_error():
    with pytest.raises(ValueError, match="isa: 'sse9'"):
        cpu.select_isa("sse9")
    assert cpu.cpu_isa() in cpu.supported_isas()


def test_kernel_argument_errors_are_python_exceptions():
    pred = torch.zeros(2, 1, 4, dtype=torch.uint8)
    target = torch.zeros(2, 1, 4, dtype=torch.int64)
    out = torch.zeros(2, 3, 3, dtype=torch.int64)
    with pytest.raises(ValueError, match="share one dtype"):
        cpu.seg_stats(view(pred), view(target), view(out), 3, None, 1)
    with pytest.raises(ValueError, match="3-d view"):
        cpu.seg_stats(view(pred[0]), view(target[0]), view(out), 3, None, 1)
    with pytest.raises(ValueError, match="unknown dtype code"):
        cpu.seg_stats((pred.data_ptr(), 42, (2, 1, 4), (4, 4, 1), -1, pred), view(pred), view(out), 3, None, 1)
    with pytest.raises(ValueError, match="more than 8 dimensions"):
        big = torch.zeros([1] * 9, dtype=torch.uint8)
        cpu.seg_stats(view(big), view(big), view(out), 3, None, 1)


def test_malformed_views_are_python_exceptions():
    """The view tuple is read field by field: a wrong type or value names what is wrong."""
    pred = torch.zeros(2, 1, 4, dtype=torch.uint8)
    out = torch.zeros(2, 3, 3, dtype=torch.int64)
    ptr = pred.data_ptr()
    with pytest.raises(ValueError, match="sizes must be a tuple"):
        cpu.seg_stats((ptr, 0, [2, 1, 4], (4, 4, 1), -1, pred), view(pred), view(out), 3, None, 1)
    with pytest.raises(ValueError, match="sizes and strides differ"):
        cpu.seg_stats((ptr, 0, (2, 1, 4), (4, 1), -1, pred), view(pred), view(out), 3, None, 1)
    with pytest.raises(ValueError, match="negative size"):
        cpu.seg_stats((ptr, 0, (2, -1, 4), (4, 4, 1), -1, pred), view(pred), view(out), 3, None, 1)
    with pytest.raises(ValueError, match="null data pointer"):
        cpu.seg_stats((0, 0, (2, 1, 4), (4, 4, 1), -1, pred), view(pred), view(out), 3, None, 1)
    with pytest.raises(TypeError):
        cpu.seg_stats((ptr, 0, (2, "1", 4), (4, 4, 1), -1, pred), view(pred), view(out), 3, None, 1)
    with pytest.raises(OverflowError):
        cpu.seg_stats((ptr, 0, (2, 1, 2**70), (4, 4, 1), -1, pred), view(pred), view(out), 3, None, 1)
    with pytest.raises(TypeError):  # not a view tuple at all: pybind finds no matching signature
        cpu.seg_stats((ptr, 0, (2, 1, 4)), view(pred), view(out), 3, None, 1)


def test_soft_kernel_rejects_integer_probs():
    probs = torch.zeros(1, 2, 4, dtype=torch.int32)
    labels = torch.zeros(1, 4, dtype=torch.int64)
    out = torch.zeros(1, 2, 3)
    with pytest.raises(ValueError, match="probs: expected a floating dtype"):
        cpu.soft_dice_stats(view(probs), view(labels), True, view(out), 1)


def test_require_names_the_missing_module():
    with pytest.raises(RuntimeError, match=r"segmentation_stats on CUDA.*backend='torch'"):
        _extension.require(None, "No module named 'medimg._C_cuda'", "segmentation_stats on CUDA")


def test_cuda_module_imports_without_a_gpu():
    if _extension.cuda is None:
        pytest.skip(f"_C_cuda not built here: {_extension.cuda_error}")
    assert _extension.cuda_device_count() >= 0
    assert _extension.cuda.runtime_version().count(".") == 1

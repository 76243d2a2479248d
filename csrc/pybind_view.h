// pybind11 conversion of a Python tuple (ptr, dtype_code, sizes, strides, device, owner) into a
// TensorView. medimg/ops/_boundary.py builds those tuples from checked tensors; `owner` (the
// tensor) is not read here: holding it in the argument tuple keeps the memory alive for the call.
// Read with the C API straight into the view's arrays: through std::vector casts, each view
// cost about 0.5 us, a tenth of a warp of one small image.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "common/tensor_view.h"

namespace medimg::pybind_view {

// The integer at item i of a tuple; a Python error (not an int, out of range) propagates.
template <class Int>
Int item_as(PyObject* tuple, Py_ssize_t i) {
  PyObject* item = PyTuple_GET_ITEM(tuple, i);
  const auto value = std::is_unsigned_v<Int> ? Int(PyLong_AsUnsignedLongLong(item)) : Int(PyLong_AsLongLong(item));
  if (value == Int(-1) && PyErr_Occurred()) throw pybind11::error_already_set();
  return value;
}

// Items of a tuple of ints (sizes or strides) into out[0 .. count); returns count.
inline int read_dims(PyObject* dims, const char* what, int64_t* out) {
  MEDIMG_CHECK_ARG(PyTuple_Check(dims), std::string("view: ") + what + " must be a tuple");
  const Py_ssize_t count = PyTuple_GET_SIZE(dims);
  MEDIMG_CHECK_ARG(count <= kMaxDims, "view: more than 8 dimensions");
  for (Py_ssize_t d = 0; d < count; ++d) out[d] = item_as<int64_t>(dims, d);
  return int(count);
}

inline TensorView make_view(PyObject* t) {
  TensorView v;
  v.data = reinterpret_cast<void*>(item_as<uintptr_t>(t, 0));
  const int64_t dtype = item_as<int64_t>(t, 1);
  MEDIMG_CHECK_ARG(dtype >= 0 && dtype <= int(DType::Float64), "view: unknown dtype code " + std::to_string(dtype));
  v.dtype = DType(dtype);
  v.ndim = read_dims(PyTuple_GET_ITEM(t, 2), "sizes", v.sizes);
  MEDIMG_CHECK_ARG(read_dims(PyTuple_GET_ITEM(t, 3), "strides", v.strides) == v.ndim,
                   "view: sizes and strides differ in length");
  const int64_t device = item_as<int64_t>(t, 4);
  MEDIMG_CHECK_ARG(device >= -1 && device <= INT32_MAX, "view: device must be -1 (CPU) or a CUDA ordinal");
  v.device = int32_t(device);
  for (int d = 0; d < v.ndim; ++d) MEDIMG_CHECK_ARG(v.sizes[d] >= 0, "view: negative size");
  MEDIMG_CHECK_ARG(v.data != nullptr || v.numel() == 0, "view: null data pointer");
  return v;
}

}  // namespace medimg::pybind_view

namespace pybind11::detail {

template <>
struct type_caster<medimg::TensorView> {
  PYBIND11_TYPE_CASTER(medimg::TensorView, const_name("TensorView"));

  bool load(handle src, bool) {
    if (!PyTuple_Check(src.ptr()) || PyTuple_GET_SIZE(src.ptr()) != 6) return false;
    value = medimg::pybind_view::make_view(src.ptr());
    return true;
  }
};

}  // namespace pybind11::detail

// pybind11 conversion of a Python tuple (ptr, dtype_code, sizes, strides, device, owner) into a
// TensorView. medimg/ops/_boundary.py builds those tuples from checked tensors; `owner` (the
// tensor) is not read here: holding it in the argument tuple keeps the memory alive for the call.
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "common/tensor_view.h"

namespace medimg {

inline TensorView make_view(uintptr_t ptr, int dtype, const std::vector<int64_t>& sizes,
                            const std::vector<int64_t>& strides, int device) {
  MEDIMG_CHECK_ARG(dtype >= 0 && dtype <= int(DType::Float64), "view: unknown dtype code " + std::to_string(dtype));
  MEDIMG_CHECK_ARG(sizes.size() == strides.size(), "view: sizes and strides differ in length");
  MEDIMG_CHECK_ARG(sizes.size() <= size_t(kMaxDims), "view: more than 8 dimensions");
  TensorView v;
  v.data = reinterpret_cast<void*>(ptr);
  v.dtype = DType(dtype);
  v.ndim = int32_t(sizes.size());
  v.device = device;
  for (int d = 0; d < v.ndim; ++d) {
    MEDIMG_CHECK_ARG(sizes[d] >= 0, "view: negative size");
    v.sizes[d] = sizes[d];
    v.strides[d] = strides[d];
  }
  MEDIMG_CHECK_ARG(v.data != nullptr || v.numel() == 0, "view: null data pointer");
  return v;
}

}  // namespace medimg

namespace pybind11::detail {

template <>
struct type_caster<medimg::TensorView> {
  PYBIND11_TYPE_CASTER(medimg::TensorView, const_name("TensorView"));

  bool load(handle src, bool) {
    if (!isinstance<tuple>(src)) return false;
    const auto t = reinterpret_borrow<tuple>(src);
    if (t.size() != 6) return false;
    value = medimg::make_view(t[0].cast<uintptr_t>(), t[1].cast<int>(),
                              t[2].cast<std::vector<int64_t>>(), t[3].cast<std::vector<int64_t>>(),
                              t[4].cast<int>());
    return true;
  }
};

}  // namespace pybind11::detail

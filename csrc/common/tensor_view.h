// The one view type through which tensors cross into C++.
//
// Python (medimg/ops/_boundary.py) validates every tensor, allocates every output with
// torch and passes pointer, dtype code, sizes and strides (in elements) as integers.
// C++ never owns tensor memory and never includes a torch header, so the extension
// builds without torch and loads beside any torch version. The struct is trivially
// copyable, so it is also passed by value into CUDA kernels.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/macros.h"

namespace medimg {

// Codes must match medimg/ops/_boundary.py::_DTYPE_CODES.
enum class DType : int32_t {
  UInt8 = 0,
  Int8 = 1,
  Int16 = 2,
  Int32 = 3,
  Int64 = 4,
  Float16 = 5,
  BFloat16 = 6,
  Float32 = 7,
  Float64 = 8,
};

constexpr int kMaxDims = 8;
constexpr int kCpuDevice = -1;

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::Float32;
  int32_t ndim = 0;
  int32_t device = kCpuDevice;  // -1: CPU; >= 0: CUDA ordinal
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};

  template <class T>
  MEDIMG_HD T* ptr() const {
    return static_cast<T*>(data);
  }
  MEDIMG_HD int64_t numel() const {
    int64_t n = 1;
    for (int d = 0; d < ndim; ++d) n *= sizes[d];
    return n;
  }
};

// Raised as ValueError in Python (pybind11 maps std::invalid_argument to ValueError).
[[noreturn]] inline void fail_argument(const std::string& message) { throw std::invalid_argument(message); }

#define MEDIMG_CHECK_ARG(cond, message) \
  do {                                  \
    if (!(cond)) ::medimg::fail_argument(message); \
  } while (0)

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::UInt8: return "uint8";
    case DType::Int8: return "int8";
    case DType::Int16: return "int16";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
  }
  return "unknown";
}

// Row-major contiguous (sizes of 1 may have any stride).
inline bool is_contiguous(const TensorView& v) {
  int64_t expected = 1;
  for (int d = v.ndim - 1; d >= 0; --d) {
    if (v.sizes[d] != 1 && v.strides[d] != expected) return false;
    expected *= v.sizes[d];
  }
  return true;
}

// A view of memory that does not come from Python: C++ scratch (a few numbers, never a tensor
// an op returns) or a test's buffers. Sizes and strides in elements, ndim <= kMaxDims.
inline TensorView view_of(void* data, DType dtype, int32_t ndim, const int64_t* sizes, const int64_t* strides,
                          int32_t device = kCpuDevice) {
  TensorView v;
  v.data = data;
  v.dtype = dtype;
  v.ndim = ndim;
  v.device = device;
  for (int d = 0; d < ndim; ++d) {
    v.sizes[d] = sizes[d];
    v.strides[d] = strides[d];
  }
  return v;
}

inline void check_view(const TensorView& v, const char* name, int ndim) {
  MEDIMG_CHECK_ARG(v.ndim == ndim, std::string(name) + ": expected a " + std::to_string(ndim) +
                                       "-d view, got " + std::to_string(v.ndim) + "-d");
}

}  // namespace medimg

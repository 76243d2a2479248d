// The CUDA forward affine-warp kernel (csrc/cuda/affine_warp_forward.cuh), compiled as host C++
// with stand-ins for the CUDA built-ins and run block by block, thread by thread, as the launch
// <<<forward_grid, (kTileW, kTileH)>>> would. tests/test_cuda_host_emulation.py builds it and
// checks the kernel's index arithmetic on machines without a GPU: every output pixel written,
// nothing written outside the output, values as the CPU kernels'.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cuda_stand_ins.h"

#include "common/dispatch.h"
#include "cuda/affine_warp_forward.cuh"

namespace {

using namespace medimg;

template <class T>
struct Launch {
  const TensorView& input;
  const double* coeffs;
  T* out;
  bool align;
  unsigned max_grid_yz;
  template <int kDims, Interp kInterp, Padding kPad>
  void run() const {
    if constexpr (!std::is_integral_v<T> || kInterp == Interp::Nearest) {
      const WarpGeometry g = warp_geometry<kDims>(input);
      dim3 grid = cuda::forward_grid<kDims>(g);
      grid.y = std::min(grid.y, max_grid_yz);
      grid.z = std::min(grid.z, max_grid_yz);
      gridDim = grid;
      blockDim = dim3(cuda::kTileW, cuda::kTileH);
      for (unsigned z = 0; z < grid.z; ++z) {
        for (unsigned y = 0; y < grid.y; ++y) {
          for (unsigned x = 0; x < grid.x; ++x) {
            blockIdx = dim3(x, y, z);
            for (unsigned ty = 0; ty < blockDim.y; ++ty) {
              for (unsigned tx = 0; tx < blockDim.x; ++tx) {
                threadIdx = dim3(tx, ty, 0);
                cuda::forward_kernel<T, kDims, kInterp, kPad>(input, coeffs, out, align, g);
              }
            }
          }
        }
      }
    }
  }
};

template <class T>
void emulate(const TensorView& input, const double* coeffs, void* out, int32_t interp, int32_t padding, bool align,
             unsigned max_grid_yz) {
  visit_warp_modes(input.ndim - 2, interp, padding,
                   Launch<T>{input, coeffs, static_cast<T*>(out), align, max_grid_yz});
}

}  // namespace

// input: dtype code (tensor_view.h), ndim 4 or 5, sizes and strides in elements; coeffs: the
// float64 (N, k, k + 1) pixel matrices; out: contiguous, input's shape and dtype. The grid's y
// and z sizes are capped at max_grid_yz (1 or 2 exercise the kernel's loops over rows and
// slices). Returns 0, or 1 for a dtype this build does not emulate.
extern "C" int emulate_affine_forward(void* data, int32_t dtype, int32_t ndim, const int64_t* sizes,
                                      const int64_t* strides, const double* coeffs, void* out, int32_t interp,
                                      int32_t padding, int32_t align, uint32_t max_grid_yz) {
  const TensorView input = view_of(data, DType(dtype), ndim, sizes, strides, 0);  // device 0: CUDA's
  switch (input.dtype) {
    case DType::Float32: emulate<float>(input, coeffs, out, interp, padding, align != 0, max_grid_yz); return 0;
    case DType::Float64: emulate<double>(input, coeffs, out, interp, padding, align != 0, max_grid_yz); return 0;
    case DType::Float16: emulate<Half>(input, coeffs, out, interp, padding, align != 0, max_grid_yz); return 0;
    case DType::BFloat16: emulate<BFloat16>(input, coeffs, out, interp, padding, align != 0, max_grid_yz); return 0;
    case DType::Int64: emulate<int64_t>(input, coeffs, out, interp, padding, align != 0, max_grid_yz); return 0;
    case DType::UInt8: emulate<uint8_t>(input, coeffs, out, interp, padding, align != 0, max_grid_yz); return 0;
    default: return 1;
  }
}

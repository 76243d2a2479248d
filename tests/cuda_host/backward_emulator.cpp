// The CUDA backward affine-warp kernel (csrc/cuda/affine_warp_backward.cuh), compiled as host
// C++ with stand-ins for the CUDA built-ins and run block by block, thread by thread, in chunks
// of samples as affine_warp.cu launches it. tests/test_cuda_host_emulation.py builds it and
// checks the kernel's indexing against the CPU backward on machines without a GPU.
#include <cstdint>
#include <type_traits>

#include "cuda_stand_ins.h"

// Atomics of one thread at a time are plain additions.
template <class T>
void atomicAdd(T* address, T value) {
  *address += value;
}

namespace medimg::cuda {
namespace {
double block_sums[64];  // one running sum per block_sum call of a thread
int block_sum_calls = 0;
}  // namespace

// The emulator runs a block's threads from the last down to thread 0: each adds its value to the
// running sum of this call, and thread 0, last, receives the block's total, as the real
// block_sum (cuda/check.cuh) gives it; other threads get 0 (the real one gives them partial sums
// that the kernel ignores).
template <class T>
T block_sum(T value, T* /*scratch*/) {
  double& sum = block_sums[block_sum_calls++];
  sum += double(value);
  if (threadIdx.x != 0) return T(0);
  const T total = T(sum);
  sum = 0.0;
  return total;
}

}  // namespace medimg::cuda

#include "common/dispatch.h"
#include "cuda/affine_warp_backward.cuh"

namespace {

using namespace medimg;

template <class T>
struct Launch {
  using G = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const TensorView& grad_out;
  const TensorView& input;
  const double* coeffs;
  G* grad_input;
  double* grad_coeffs;
  bool align;
  int64_t chunk;
  template <int kDims, Interp kInterp, Padding kPad>
  void run() const {
    const WarpGeometry g = warp_geometry<kDims>(input);
    for (int64_t n_first = 0; n_first < g.n; n_first += chunk) {
      dim3 grid = cuda::backward_grid(g, n_first);
      grid.y = unsigned(std::min<int64_t>(grid.y, chunk));
      gridDim = grid;
      blockDim = dim3(cuda::kBackwardThreads);
      for (unsigned y = 0; y < grid.y; ++y) {
        for (unsigned x = 0; x < grid.x; ++x) {
          blockIdx = dim3(x, y);
          for (int t = int(blockDim.x) - 1; t >= 0; --t) {
            threadIdx = dim3(unsigned(t));
            cuda::block_sum_calls = 0;
            cuda::backward_kernel<T, G, kDims, kInterp, kPad>(grad_out, input, coeffs, grad_input, grad_coeffs,
                                                              align, g, n_first);
          }
        }
      }
    }
  }
};

}  // namespace

// grad_out: contiguous, input's shape and dtype (float32 or float64); input: any strides;
// coeffs: float64 (N, k, k + 1); grad_input: contiguous zeroed float32 (float64 for float64
// input) or null; grad_coeffs: float64 (N, C, k, k + 1) zeroed, filled in channel slot 0, or
// null. Samples are launched `chunk` at a time. Returns 0, or 1 for a dtype not emulated.
extern "C" int emulate_affine_backward(void* grad_out, void* input, int32_t dtype, int32_t ndim, const int64_t* sizes,
                                       const int64_t* contiguous_strides, const int64_t* input_strides,
                                       const double* coeffs, void* grad_input, double* grad_coeffs, int32_t interp,
                                       int32_t padding, int32_t align, int64_t chunk) {
  const TensorView gout = view_of(grad_out, DType(dtype), ndim, sizes, contiguous_strides, 0);  // device 0: CUDA's
  const TensorView in = view_of(input, DType(dtype), ndim, sizes, input_strides, 0);
  switch (DType(dtype)) {
    case DType::Float32:
      visit_warp_modes(ndim - 2, interp, padding,
                       Launch<float>{gout, in, coeffs, static_cast<float*>(grad_input), grad_coeffs, align != 0,
                                     chunk});
      return 0;
    case DType::Float64:
      visit_warp_modes(ndim - 2, interp, padding,
                       Launch<double>{gout, in, coeffs, static_cast<double*>(grad_input), grad_coeffs, align != 0,
                                      chunk});
      return 0;
    default: return 1;
  }
}

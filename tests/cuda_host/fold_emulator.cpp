// The CUDA kernel that folds theta into the warp's pixel coefficients
// (csrc/cuda/pixel_coefficients_kernel.cuh), compiled as host C++ with stand-ins for the CUDA
// built-ins and run block by block, thread by thread, as its launch <<<fold_blocks(n),
// kFoldThreads>>> would. Built without FMA contraction, as the kernel rounds every product and
// sum on its own: tests/test_cuda_host_emulation.py expects the CPU's bits.
#include <cstdint>

#include "cuda_stand_ins.h"

#include "common/tensor_view.h"
#include "cuda/pixel_coefficients_kernel.cuh"

using namespace medimg;

// theta: (n, k, k + 1) float32 (dtype 7) or float64 (8) with `strides` in elements; constants:
// contiguous (k, k + 2, k + 1) float64; coeffs: contiguous (n, k, k + 1) float64. Returns 0, or 1
// for another dtype or k.
extern "C" int emulate_fold_theta(const void* theta, int32_t dtype, int64_t n, int32_t k, const int64_t* strides,
                                  const double* constants, double* coeffs) {
  const int64_t sizes[3] = {n, k, k + 1};
  const TensorView view = view_of(const_cast<void*>(theta), DType(dtype), 3, sizes, strides);
  auto run = [&](auto kernel) {
    gridDim = dim3(cuda::fold_blocks(n));
    blockDim = dim3(cuda::kFoldThreads);
    for (unsigned b = 0; b < gridDim.x; ++b) {
      blockIdx = dim3(b);
      for (unsigned t = 0; t < blockDim.x; ++t) {
        threadIdx = dim3(t);
        kernel(view, constants, coeffs);
      }
    }
    return 0;
  };
  const bool f64 = DType(dtype) == DType::Float64;
  if (!f64 && DType(dtype) != DType::Float32) return 1;
  if (k == 2) return f64 ? run(cuda::fold_theta_kernel<double, 2>) : run(cuda::fold_theta_kernel<float, 2>);
  if (k == 3) return f64 ? run(cuda::fold_theta_kernel<double, 3>) : run(cuda::fold_theta_kernel<float, 3>);
  return 1;
}

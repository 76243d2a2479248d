// pixel_coefficients (medimg/ops/affine.py) on the GPU, one thread per sample: theta folded
// into the warp's coefficients on the device, so a fixed-theta affine_grid_sample call on CUDA
// launches this and the warp, not the torch ops of the fold. common/pixel_coefficients.h rounds
// every product and sum on its own, so the coefficients have the CPU's bits. Apart from the
// launch code, so that tests/cuda_host/ can run it as host C++.
#pragma once

#include <cstdint>

#include "common/pixel_coefficients.h"
#include "common/tensor_view.h"

namespace medimg::cuda {

constexpr int kFoldThreads = 128;

// theta: (N, K, K + 1) of T (float or double), any strides; constants: contiguous
// (K, K + 2, K + 1) float64; coeffs: contiguous (N, K, K + 1) float64.
template <class T, int K>
__global__ void __launch_bounds__(kFoldThreads) fold_theta_kernel(TensorView theta, const double* constants,
                                                                  double* coeffs) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < theta.sizes[0]) fold_sample<T, K>(theta, i, constants, coeffs + i * (K * (K + 1)));
}

inline unsigned fold_blocks(int64_t n) { return unsigned((n + kFoldThreads - 1) / kFoldThreads); }

}  // namespace medimg::cuda

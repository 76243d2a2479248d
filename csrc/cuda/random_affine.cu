// RandomAffine's matrices on the GPU, one thread per sample: a single launch replaces the
// score of small elementwise kernels that composing them with torch ops costs on the host.
// Arithmetic is common/random_affine.h, as on the CPU (rounded products and sums, no FMA).
#include <cuda_runtime.h>

#include "common/random_affine.h"
#include "cuda/check.cuh"
#include "cuda/launch.h"

namespace medimg::cuda {
namespace {

constexpr int kThreads = 128;

template <int K>
__global__ void __launch_bounds__(kThreads) random_affine_kernel(const double* uniform, const double* spec,
                                                                 double* theta, double* coeffs, int64_t n,
                                                                 int64_t cols, bool shear, bool translate,
                                                                 bool round_to_float) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  constexpr int kPerSample = K * (K + 1);
  random_affine_sample<K>(uniform + i * cols, spec, shear, translate, round_to_float, theta + i * kPerSample,
                          coeffs + i * kPerSample);
}

}  // namespace

void random_affine(const TensorView& uniform, const TensorView& spec, const TensorView& theta,
                   const TensorView& coeffs, bool shear, bool translate, bool round_to_float, uintptr_t stream) {
  const int k = check_random_affine_views(uniform, spec, theta, coeffs, shear, translate);
  MEDIMG_CHECK_ARG(theta.device >= 0, "random_affine: the CUDA kernel needs CUDA tensors");
  const int64_t n = theta.sizes[0];
  if (n == 0) return;
  DeviceGuard guard(theta.device);
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  const unsigned blocks = unsigned((n + kThreads - 1) / kThreads);
  const auto* u = uniform.ptr<const double>();
  const auto* p = spec.ptr<const double>();
  if (k == 2) {
    random_affine_kernel<2><<<blocks, kThreads, 0, s>>>(u, p, theta.ptr<double>(), coeffs.ptr<double>(), n,
                                                        uniform.sizes[1], shear, translate, round_to_float);
  } else {
    random_affine_kernel<3><<<blocks, kThreads, 0, s>>>(u, p, theta.ptr<double>(), coeffs.ptr<double>(), n,
                                                        uniform.sizes[1], shear, translate, round_to_float);
  }
  MEDIMG_CUDA_CHECK(cudaGetLastError());
}

}  // namespace medimg::cuda

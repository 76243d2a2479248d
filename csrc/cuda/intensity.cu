// Launchers of the GPU intensity kernels (cuda/intensity_kernels.cuh): Gaussian noise on the
// CPU kernel's Philox stream, and the gamma curve, one pass each over contiguous (N, ...) views.
#include <cuda_runtime.h>

#include <string>

#include "common/dispatch.h"
#include "common/per_sample_views.h"
#include "cuda/check.cuh"
#include "cuda/intensity_kernels.cuh"
#include "cuda/launch.h"

namespace medimg::cuda {

namespace {

// The noise launch; sigma nullptr: each sample's sigma drawn from the seed with (low, high, p).
void launch_noise(const char* name, const TensorView& image, const TensorView* sigma, const TensorView& seed,
                  const TensorView& out, uintptr_t stream, double low, double high, double p) {
  const int64_t len = per_sample_length(image, out, name);
  MEDIMG_CHECK_ARG(image.device >= 0, std::string(name) + ": the CUDA kernel needs CUDA tensors");
  if (sigma != nullptr) check_per_sample_vector(*sigma, image, name, "sigma");
  MEDIMG_CHECK_ARG(seed.ndim == 0 && seed.dtype == DType::Int64 && seed.device == image.device,
                   std::string(name) + ": seed must be an int64 scalar on image's device");
  const int64_t n = image.sizes[0];
  if (len == 0) return;
  DeviceGuard guard(image.device);
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  visit_float_dtype<false>(image.dtype, "image", [&](auto tag) {
    using T = decltype(tag);
    noise_kernel<T><<<intensity_grid((len + 3) / 4, n), kIntensityThreads, 0, s>>>(
        image.ptr<const T>(), sigma != nullptr ? sigma->ptr<const T>() : nullptr, seed.ptr<const int64_t>(),
        out.ptr<T>(), n, len, low, high, p);
  });
  MEDIMG_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void gaussian_noise(const TensorView& image, const TensorView& sigma, const TensorView& seed, const TensorView& out,
                    uintptr_t stream) {
  launch_noise("gaussian_noise", image, &sigma, seed, out, stream, 0.0, 0.0, 0.0);
}

void random_gaussian_noise(const TensorView& image, const TensorView& seed, double low, double high, double p,
                           const TensorView& out, uintptr_t stream) {
  check_noise_sigma_args(low, high, p);
  launch_noise("random_gaussian_noise", image, nullptr, seed, out, stream, low, high, p);
}

void gamma_curve(const TensorView& image, const TensorView& gamma, const TensorView& low, const TensorView& extent,
                 const TensorView& out, uintptr_t stream) {
  const int64_t len = per_sample_length(image, out, "gamma_curve");
  MEDIMG_CHECK_ARG(image.device >= 0, "gamma_curve: the CUDA kernel needs CUDA tensors");
  check_per_sample_vector(gamma, image, "gamma_curve", "gamma");
  check_per_sample_vector(low, image, "gamma_curve", "low");
  check_per_sample_vector(extent, image, "gamma_curve", "extent");
  const int64_t n = image.sizes[0];
  if (len == 0) return;
  DeviceGuard guard(image.device);
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  visit_float_dtype<true>(image.dtype, "image", [&](auto tag) {
    using T = decltype(tag);
    gamma_kernel<T><<<intensity_grid(len, n), kIntensityThreads, 0, s>>>(
        image.ptr<const T>(), gamma.ptr<const T>(), low.ptr<const T>(), extent.ptr<const T>(), out.ptr<T>(), n, len);
  });
  MEDIMG_CUDA_CHECK(cudaGetLastError());
}

}  // namespace medimg::cuda

// Launchers of the GPU intensity kernels (cuda/intensity_kernels.cuh): Gaussian noise on the
// CPU kernel's Philox stream, and the gamma curve, one pass each over contiguous (N, ...) views.
#include <cuda_runtime.h>

#include "common/dispatch.h"
#include "common/tensor_view.h"
#include "cuda/check.cuh"
#include "cuda/intensity_kernels.cuh"
#include "cuda/launch.h"

namespace medimg::cuda {
namespace {

// Elements per sample of an (N, ...) image that `out` matches (0 for an empty batch); checks the
// shared rules, contiguity of non-empty views among them.
int64_t sample_length(const TensorView& image, const TensorView& out, const char* op) {
  const std::string name(op);
  MEDIMG_CHECK_ARG(image.ndim >= 1 && out.ndim == image.ndim, name + ": image and out must be (N, ...)");
  for (int d = 0; d < image.ndim; ++d) {
    MEDIMG_CHECK_ARG(out.sizes[d] == image.sizes[d], name + ": out must have image's shape");
  }
  MEDIMG_CHECK_ARG(out.dtype == image.dtype, name + ": out must have image's dtype");
  MEDIMG_CHECK_ARG(image.device >= 0 && out.device == image.device, name + ": the CUDA kernel needs CUDA tensors");
  if (image.numel() == 0) return 0;
  MEDIMG_CHECK_ARG(is_contiguous(image) && is_contiguous(out), name + ": image and out must be contiguous");
  return image.numel() / image.sizes[0];
}

void check_per_sample(const TensorView& v, const TensorView& image, const char* what) {
  MEDIMG_CHECK_ARG(v.ndim == 1 && v.sizes[0] == image.sizes[0] && is_contiguous(v) && v.dtype == image.dtype &&
                       v.device == image.device,
                   std::string(what) + " must be (N,), contiguous, with image's dtype and device");
}

}  // namespace

void gaussian_noise(const TensorView& image, const TensorView& sigma, const TensorView& seed, const TensorView& out,
                    uintptr_t stream) {
  const int64_t len = sample_length(image, out, "gaussian_noise");
  check_per_sample(sigma, image, "gaussian_noise: sigma");
  MEDIMG_CHECK_ARG(seed.ndim == 0 && seed.dtype == DType::Int64 && seed.device == image.device,
                   "gaussian_noise: seed must be an int64 scalar on image's device");
  const int64_t n = image.sizes[0];
  if (len == 0) return;
  DeviceGuard guard(image.device);
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  visit_float_dtype<false>(image.dtype, "image", [&](auto tag) {
    using T = decltype(tag);
    noise_kernel<T><<<intensity_grid((len + 3) / 4, n), kIntensityThreads, 0, s>>>(
        image.ptr<const T>(), sigma.ptr<const T>(), seed.ptr<const int64_t>(), out.ptr<T>(), n, len);
  });
  MEDIMG_CUDA_CHECK(cudaGetLastError());
}

void gamma_curve(const TensorView& image, const TensorView& gamma, const TensorView& low, const TensorView& extent,
                 const TensorView& out, uintptr_t stream) {
  const int64_t len = sample_length(image, out, "gamma_curve");
  check_per_sample(gamma, image, "gamma_curve: gamma");
  check_per_sample(low, image, "gamma_curve: low");
  check_per_sample(extent, image, "gamma_curve: extent");
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

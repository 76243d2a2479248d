// Affine warp on the GPU: a thread computes the coordinates and taps of each of its output
// pixels once and serves every channel; a warp's stores cover 32 consecutive pixels of one row,
// so writes are coalesced.
// Index arithmetic is 32-bit within a channel plane (the host checks that plane offsets fit):
// 64-bit division and multiplication would cost more instructions than the sampling itself.
// Backward: atomics scatter into a float32/float64 grad_input, and d(loss)/d(M) is reduced per
// block then added atomically. Coordinate, padding and tap arithmetic is
// common/affine_sample.h, as on the CPU.
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <type_traits>
#include <vector>

#include "common/affine_sample.h"
#include "common/dispatch.h"
#include "common/float_types.h"
#include "cuda/check.cuh"  // block_sum, before the backward kernel that calls it
#include "cuda/affine_warp_backward.cuh"
#include "cuda/affine_warp_forward.cuh"
#include "cuda/launch.h"
#include "cuda/pixel_coefficients_kernel.cuh"

namespace medimg::cuda {
namespace {

// Largest element offset within one channel plane of input, and the plane's element count.
int64_t max_plane_offset(const TensorView& input) {
  int64_t offset = 0;
  for (int d = 2; d < input.ndim; ++d) offset += (input.sizes[d] - 1) * input.strides[d];
  return offset;
}

int64_t plane_elements(const TensorView& input) {
  int64_t count = 1;
  for (int d = 2; d < input.ndim; ++d) count *= input.sizes[d];
  return count;
}

template <class T>
struct ForwardLaunch {
  const TensorView& input;
  const TensorView& coeffs;
  const TensorView& out;
  bool align;
  cudaStream_t stream;
  template <int kDims, Interp kInterp, Padding kPad>
  void run() const {
    if constexpr (!std::is_floating_point_v<T> && !std::is_same_v<T, Half> && !std::is_same_v<T, BFloat16> &&
                  kInterp == Interp::Bilinear) {
      fail_argument("input: bilinear sampling needs a floating dtype");
    } else {
      const WarpGeometry g = warp_geometry<kDims>(input);
      if (g.n == 0 || g.c == 0 || g.plane() == 0) return;
      forward_kernel<T, kDims, kInterp, kPad><<<forward_grid<kDims>(g), dim3(kTileW, kTileH), 0, stream>>>(
          input, coeffs.ptr<const double>(), out.ptr<T>(), align, g);
      MEDIMG_CUDA_CHECK(cudaGetLastError());
    }
  }
};

template <class T, class G>
struct BackwardLaunch {
  const TensorView& grad_out;
  const TensorView& input;
  const TensorView& coeffs;
  G* grad_input;
  double* grad_coeffs;
  bool align;
  cudaStream_t stream;
  template <int kDims, Interp kInterp, Padding kPad>
  void run() const {
    const WarpGeometry g = warp_geometry<kDims>(input);
    if (g.n == 0 || g.c == 0 || g.plane() == 0) return;
    for (int64_t n_first = 0; n_first < g.n; n_first += kMaxGridYZ) {
      backward_kernel<T, G, kDims, kInterp, kPad><<<backward_grid(g, n_first), kBackwardThreads, 0, stream>>>(
          grad_out, input, coeffs.ptr<const double>(), grad_input, grad_coeffs, align, g, n_first);
      MEDIMG_CUDA_CHECK(cudaGetLastError());
    }
  }
};

// What the forward kernel needs of its views (32-bit plane offsets, grid limits), checked
// before anything is launched.
void check_forward_views(const TensorView& input, const TensorView& coeffs, const TensorView& out) {
  check_warp_views(input, coeffs, out, "out");
  MEDIMG_CHECK_ARG(out.dtype == input.dtype, "out must have the dtype of input");
  MEDIMG_CHECK_ARG(coeffs.dtype == DType::Float64, "coeffs must be float64");
  MEDIMG_CHECK_ARG(max_plane_offset(input) <= INT32_MAX && plane_elements(input) <= INT32_MAX,
                   "input: one channel plane must hold and span fewer than 2^31 elements on CUDA");
  MEDIMG_CHECK_ARG(input.sizes[0] * (input.ndim == 5 ? input.sizes[2] : 1) <= INT32_MAX,
                   "input: N * D must be below 2^31 on CUDA");
}

}  // namespace

void affine_warp(const TensorView& input, const TensorView& coeffs, const TensorView& out, int32_t interp,
                 int32_t padding, bool align_corners, uintptr_t stream) {
  check_forward_views(input, coeffs, out);
  DeviceGuard guard(input.device);
  const int dims = input.ndim - 2;
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  visit_value_dtype<true>(input.dtype, "input", [&](auto tag) {
    visit_warp_modes(dims, interp, padding, ForwardLaunch<decltype(tag)>{input, coeffs, out, align_corners, s});
  });
}

bool affine_warp_theta(const TensorView& input, const TensorView& theta, const TensorView& constants,
                       const TensorView& coeffs, const TensorView& out, int32_t interp, int32_t padding,
                       bool align_corners, bool check_finite, uintptr_t stream) {
  const int k = check_fold_views(theta, constants);
  MEDIMG_CHECK_ARG(input.ndim == k + 2 && theta.sizes[0] == input.sizes[0],
                   "theta: expected (N, k, k + 1) for input's N and k spatial dimensions");
  MEDIMG_CHECK_ARG(theta.device == input.device && input.device >= 0, "theta: must be on input's CUDA device");
  check_forward_views(input, coeffs, out);  // before the fold and the wait, not after
  const int64_t n = theta.sizes[0];
  if (n > 0) {
    DeviceGuard guard(input.device);
    const auto s = reinterpret_cast<cudaStream_t>(stream);
    const auto launch = [&](auto tag) {
      using T = decltype(tag);
      if (k == 2) {
        fold_theta_kernel<T, 2><<<fold_blocks(n), kFoldThreads, 0, s>>>(theta, constants.ptr<const double>(),
                                                                         coeffs.ptr<double>());
      } else {
        fold_theta_kernel<T, 3><<<fold_blocks(n), kFoldThreads, 0, s>>>(theta, constants.ptr<const double>(),
                                                                         coeffs.ptr<double>());
      }
    };
    if (theta.dtype == DType::Float64) launch(double{}); else launch(float{});
    MEDIMG_CUDA_CHECK(cudaGetLastError());
    if (check_finite) {  // a few numbers per sample: read back and checked here, one wait for the stream
      std::vector<double> host(size_t(coeffs.numel()));
      MEDIMG_CUDA_CHECK(cudaMemcpyAsync(host.data(), coeffs.data, host.size() * sizeof(double),
                                        cudaMemcpyDeviceToHost, s));
      MEDIMG_CUDA_CHECK(cudaStreamSynchronize(s));
      if (!std::all_of(host.begin(), host.end(), [](double v) { return std::isfinite(v); })) return false;
    }
  }
  affine_warp(input, coeffs, out, interp, padding, align_corners, stream);
  return true;
}

void affine_warp_backward(const TensorView& grad_out, const TensorView& input, const TensorView& coeffs,
                          const TensorView& grad_input, const TensorView& grad_coeffs, bool need_input,
                          bool need_coeffs, int32_t interp, int32_t padding, bool align_corners, uintptr_t stream) {
  check_warp_views(input, coeffs, grad_out, "grad_out");
  // Scattered in float32 (float64 for float64 input): atomics on 16-bit floats lose too much.
  const DType accumulate = input.dtype == DType::Float64 ? DType::Float64 : DType::Float32;
  if (need_input) MEDIMG_CHECK_ARG(same_shape(grad_input, input) && is_contiguous(grad_input) &&
                                   grad_input.device == input.device && grad_input.dtype == accumulate,
                                   "grad_input: expected a contiguous tensor shaped like input on its device, "
                                   "float64 for float64 input, else float32");
  if (need_coeffs) check_grad_coeffs_view(input, grad_coeffs);
  MEDIMG_CHECK_ARG(grad_out.dtype == input.dtype, "grad_out must have the dtype of input");
  DeviceGuard guard(input.device);
  const int dims = input.ndim - 2;
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  double* gm = need_coeffs ? grad_coeffs.ptr<double>() : nullptr;
  visit_float_dtype<true>(input.dtype, "input", [&](auto tag) {
    using T = decltype(tag);
    using G = std::conditional_t<std::is_same_v<T, double>, double, float>;
    G* gin = need_input ? grad_input.ptr<G>() : nullptr;
    visit_warp_modes(dims, interp, padding, BackwardLaunch<T, G>{grad_out, input, coeffs, gin, gm, align_corners, s});
  });
}

}  // namespace medimg::cuda

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
#include <type_traits>

#include "common/affine_sample.h"
#include "common/dispatch.h"
#include "common/float_types.h"
#include "cuda/affine_warp_forward.cuh"
#include "cuda/check.cuh"
#include "cuda/launch.h"

namespace medimg::cuda {
namespace {

constexpr int kThreads = 256;

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

template <class T, class G, int kDims, Interp kInterp, Padding kPad>
__global__ void __launch_bounds__(kThreads) backward_kernel(TensorView grad_out, TensorView input,
                                                            const double* coeffs, G* grad_input,
                                                            double* grad_coeffs, bool align, WarpGeometry g,
                                                            int64_t n_first) {
  using F = coord_t<T>;
  constexpr int kCoeffs = kDims * (kDims + 1);
  __shared__ double scratch[kThreads / 32];
  const int64_t plane = g.plane();
  const int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t n = n_first + blockIdx.y;
  double gm[kCoeffs] = {};
  if (p < plane) {
    const int64_t w = p % g.size[0], h = (p / g.size[0]) % g.size[1], d = p / (g.size[0] * g.size[1]);
    F coord[kDims], coord_grad[kDims], dcoord[kDims] = {};
    // The forward's coordinates: its segment's start in float64, then the kernel's float type.
    const int64_t segment = w / kRowSegment * kRowSegment;
    F base[kDims], step[kDims];
    row_coordinates<F, kDims>(row_line<kDims>(coeffs + n * kCoeffs, segment, h, d), base, step);
    segment_point<F, kDims>(base, step, int32_t(w - segment), coord);
#pragma unroll
    for (int r = 0; r < kDims; ++r) {
      coord_grad[r] = padded_coordinate_grad<kPad>(coord[r], g.size[r], align);
      coord[r] = padded_coordinate<kPad>(coord[r], g.size[r], align);
    }
    const T* src = input.ptr<const T>() + n * g.sample_stride;
    const T* gout = grad_out.ptr<const T>() + n * g.c * plane + p;
    G* gin = grad_input ? grad_input + n * g.c * plane : nullptr;
    if constexpr (kInterp == Interp::Nearest) {
      bool ok = true;
      int64_t po = 0, pitch = 1;
#pragma unroll
      for (int r = 0; r < kDims; ++r) {
        const int64_t q = nearest_index<int64_t>(coord[r]);
        ok = ok && in_bounds(q, g.size[r]);
        po += q * pitch;
        pitch *= g.size[r];
      }
      if (ok && gin) {
        for (int64_t c = 0; c < g.c; ++c) atomicAdd(gin + c * plane + po, G(load_as<F>(gout[c * plane])));
      }
    } else {
      int64_t lo[kDims];
      F frac[kDims];
      lower_corner<F, kDims>(coord, lo, frac);
#pragma unroll
      for (int k = 0; k < (1 << kDims); ++k) {
        bool ok = true;
        int64_t o = 0, po = 0, pitch = 1;
#pragma unroll
        for (int r = 0; r < kDims; ++r) {
          const int64_t q = lo[r] + ((k >> r) & 1);
          ok = ok && in_bounds(q, g.size[r]);
          o += q * g.stride[r];
          po += q * pitch;
          pitch *= g.size[r];
        }
        if (!ok) continue;
        const F weight = tap_weight<F, kDims>(k, frac, -1);
        F dweight[kDims];
#pragma unroll
        for (int r = 0; r < kDims; ++r) dweight[r] = tap_weight<F, kDims>(k, frac, r);
        for (int64_t c = 0; c < g.c; ++c) {
          const F go = load_as<F>(gout[c * plane]);
          if (gin) atomicAdd(gin + c * plane + po, G(weight * go));
          const F v = load_as<F>(src[c * g.channel_stride + o]);
#pragma unroll
          for (int r = 0; r < kDims; ++r) dcoord[r] += dweight[r] * v * go;
        }
      }
    }
#pragma unroll
    for (int r = 0; r < kDims; ++r) {
      const double gr = double(dcoord[r] * coord_grad[r]);
      gm[r * (kDims + 1) + 0] = gr * double(w);
      gm[r * (kDims + 1) + 1] = gr * double(h);
      if (kDims == 3) gm[r * (kDims + 1) + 2] = gr * double(d);
      gm[r * (kDims + 1) + kDims] = gr;
    }
  }
  if (grad_coeffs != nullptr) {  // uniform across the block, so the reductions are safe
#pragma unroll
    for (int i = 0; i < kCoeffs; ++i) {
      const double total = block_sum(gm[i], scratch);
      if (threadIdx.x == 0) atomicAdd(grad_coeffs + n * g.c * kCoeffs + i, total);
    }
  }
}

// Blocks for samples n_first .. n_first + gridDim.y - 1 (at most 65535 per launch).
dim3 grid_for(const WarpGeometry& g, int64_t n_first) {
  const int64_t samples = std::min<int64_t>(g.n - n_first, kMaxGridYZ);
  return dim3(unsigned((g.plane() + kThreads - 1) / kThreads), unsigned(samples));
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
      backward_kernel<T, G, kDims, kInterp, kPad><<<grid_for(g, n_first), kThreads, 0, stream>>>(
          grad_out, input, coeffs.ptr<const double>(), grad_input, grad_coeffs, align, g, n_first);
      MEDIMG_CUDA_CHECK(cudaGetLastError());
    }
  }
};

}  // namespace

void affine_warp(const TensorView& input, const TensorView& coeffs, const TensorView& out, int32_t interp,
                 int32_t padding, bool align_corners, uintptr_t stream) {
  check_warp_views(input, coeffs, out, "out");
  MEDIMG_CHECK_ARG(out.dtype == input.dtype, "out must have the dtype of input");
  MEDIMG_CHECK_ARG(coeffs.dtype == DType::Float64, "coeffs must be float64");
  MEDIMG_CHECK_ARG(max_plane_offset(input) <= INT32_MAX && plane_elements(input) <= INT32_MAX,
                   "input: one channel plane must hold and span fewer than 2^31 elements on CUDA");
  MEDIMG_CHECK_ARG(input.sizes[0] * (input.ndim == 5 ? input.sizes[2] : 1) <= INT32_MAX,
                   "input: N * D must be below 2^31 on CUDA");
  DeviceGuard guard(input.device);
  const int dims = input.ndim - 2;
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  visit_value_dtype<true>(input.dtype, "input", [&](auto tag) {
    visit_warp_modes(dims, interp, padding, ForwardLaunch<decltype(tag)>{input, coeffs, out, align_corners, s});
  });
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

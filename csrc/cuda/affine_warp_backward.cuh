// The backward affine-warp kernel and its launch grid, apart from the launch code so that a host
// C++ build with stand-ins for the CUDA built-ins (tests/cuda_host/) can run it on the CPU and
// check it against the CPU backward. One thread per output pixel: it scatters its gradient to
// the input taps with atomics and adds d(loss)/d(M) of its pixel into a block-wide sum, which
// thread 0 adds atomically. block_sum (cuda/check.cuh, or the stand-in) and atomicAdd must be
// declared before this header.
#pragma once

#include <algorithm>
#include <cstdint>

#include "common/affine_sample.h"
#include "common/float_types.h"
#include "cuda/affine_warp_forward.cuh"

namespace medimg::cuda {

constexpr int kBackwardThreads = 256;

template <class T, class G, int kDims, Interp kInterp, Padding kPad>
__global__ void __launch_bounds__(kBackwardThreads) backward_kernel(TensorView grad_out, TensorView input,
                                                            const double* coeffs, G* grad_input,
                                                            double* grad_coeffs, bool align, WarpGeometry g,
                                                            int64_t n_first) {
  using F = coord_t<T>;
  constexpr int kCoeffs = kDims * (kDims + 1);
  __shared__ double scratch[kBackwardThreads / 32];
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
inline dim3 backward_grid(const WarpGeometry& g, int64_t n_first) {
  const int64_t samples = std::min<int64_t>(g.n - n_first, kMaxGridYZ);
  return dim3(unsigned((g.plane() + kBackwardThreads - 1) / kBackwardThreads), unsigned(samples));
}

}  // namespace medimg::cuda

// The forward affine-warp kernel and its launch grid, apart from the launch code so that a host
// C++ build with stand-ins for the CUDA built-ins (tests/cuda_host/) can run it on the CPU and
// check its indexing: every output pixel written, nothing outside the output, values as the
// CPU's. dim3 and the built-ins come from the CUDA runtime, or from those stand-ins.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "common/affine_sample.h"
#include "common/float_types.h"

namespace medimg::cuda {

template <class T>
using coord_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// Forward: a block of 32 x 4 threads covers 4 rows of one (sample, depth) slice; a thread takes
// kPixels pixels of a row, 32 apart (a warp's store writes 32 consecutive pixels). A thread
// computes its row's float64 start once, its pixels' coordinates as base + step * i in F (as
// the CPU kernels: both sample at the same coordinates) and their taps, then issues the reads
// of its pixels before blending. 3D pixels have twice the taps, so a thread takes half as many.
// The y and z grid axes stride over rows and slices, so any height and batch fit the grid's
// 65535 limit; the y axis has a block for every kRowsPerThread tiles of rows, so that a
// thread's fixed work (indices, pointers, the sample's matrix) is shared by four rows.
// Latency bounds the kernel, not instruction issue: Nsight Compute on an H100 (512 x 1x512²
// f32, bilinear, 15 degrees, the former 32 x 8 blocks at 79 registers: 3 blocks, 24 warps per
// multiprocessor) saw 2.1 of 4 instructions issued per cycle and one eligible warp per
// scheduler. Blocks of 32 x 4 held to 64 registers (8 blocks, 32 warps, no spill) and four
// rows per thread took it from 0.74 to 0.55 ms (48% -> 65% of a copy's bandwidth).
constexpr int kTileW = 32, kTileH = 4, kRowsPerThread = 4;
constexpr unsigned kMaxGridYZ = 65535;

template <int kDims>
constexpr int pixels_per_thread() {
  return kDims == 2 ? 4 : 2;
}

// Blocks per multiprocessor the compiler must fit, so its register budget (65536 / (128 * 8) =
// 64 per thread for 2D pixels of up to 4 bytes). 3D and 8-byte kernels need more registers
// than that and get the compiler's own choice.
template <class T, int kDims>
constexpr int forward_min_blocks() {
  return kDims == 2 && sizeof(T) <= 4 ? 8 : 1;
}

template <int kDims>
constexpr int block_width() {
  return kTileW * pixels_per_thread<kDims>();
}
static_assert(kRowSegment % block_width<2>() == 0 && kRowSegment % block_width<3>() == 0,
              "a block's pixels must lie in one row segment");

// x itself (a pointer or a 64-bit integer), as a value the compiler cannot take apart. Left
// alone, nvcc folds a channel's base pointer back into 64-bit element arithmetic from the
// kernel's arguments: five instructions per tap address (sign extension, a 64-bit add, a 64-bit
// shift-add). With the channel's read pointer opaque, a tap address is one shift-add pair. (The
// store pointer stays visible: an opaque one would make each store a generic ST, not STG.)
template <class X>
__device__ __forceinline__ X opaque(X x) {
  static_assert(sizeof(X) == 8, "a 64-bit value");
#if defined(__CUDA_ARCH__)
  asm("mov.b64 %0, %0;" : "+l"(x));
#endif
  return x;
}

template <class T, int kDims, Interp kInterp, Padding kPad>
__global__ void __launch_bounds__(kTileW * kTileH, forward_min_blocks<T, kDims>())
    forward_kernel(TensorView input, const double* coeffs, T* out, bool align, WarpGeometry g) {
  using F = coord_t<T>;
  using Taps = PointTaps<F, kDims, kInterp, int32_t>;
  constexpr int kPixels = pixels_per_thread<kDims>();
  const uint32_t first = blockIdx.x * block_width<kDims>() + threadIdx.x;
  const uint32_t width = uint32_t(g.size[0]), height = uint32_t(g.size[1]), depth = uint32_t(g.size[2]);
  if (first >= width) return;
  const uint32_t segment = first / uint32_t(kRowSegment) * uint32_t(kRowSegment);
  const uint32_t slices = uint32_t(g.n) * depth;
  const int64_t plane = g.plane();
  for (uint32_t z = blockIdx.z; z < slices; z += gridDim.z) {
    const uint32_t n = kDims == 2 ? z : z / depth, d = z - n * depth;  // no division in 2D
    const double* m = coeffs + int64_t(n) * (kDims * (kDims + 1));
    const T* src = input.ptr<const T>() + int64_t(n) * g.sample_stride;
    T* dst = out + int64_t(n) * g.c * plane + int64_t(d) * height * width;
    for (uint32_t h = blockIdx.y * kTileH + threadIdx.y; h < height; h += gridDim.y * kTileH) {
      F base[kDims], step[kDims];
      row_coordinates<F, kDims>(row_line<kDims>(m, segment, h, d), base, step);
      // Pixels past the row's end get taps too (inside the plane, so safe to read); they are
      // not stored.
      Taps taps[kPixels];
#pragma unroll
      for (int j = 0; j < kPixels; ++j) {
        F raw[kDims];
        segment_point<F, kDims>(base, step, int32_t(first + j * kTileW - segment), raw);
        taps[j] = point_taps<F, kDims, kInterp, kPad, int32_t>(raw, g, align);
      }
      const T* channel = src;
      T* to = dst + int64_t(h) * width + first;  // this thread's first pixel; the others at fixed offsets
      for (int64_t c = 0; c < g.c; ++c, channel += g.channel_stride, to += plane) {
        const T* s = opaque(channel);
        // Every tap of every pixel is read before any is used, with no branch between the reads
        // (a tap outside the image is read inside the plane and not used), so they are in flight
        // together. (ptxas still moves the second pixel's reads behind its store's bounds test;
        // predicated stores, which stop that, took more registers and were slower on an H100.)
        T values[kPixels][Taps::kCount];
#pragma unroll
        for (int j = 0; j < kPixels; ++j) {
#pragma unroll
          for (int k = 0; k < Taps::kCount; ++k) values[j][k] = read_input(s + taps[j].offset[k]);
        }
#pragma unroll
        for (int j = 0; j < kPixels; ++j) {
          if (first + j * kTileW < width) to[j * kTileW] = blend_taps<T>(taps[j], [&](int k) { return values[j][k]; });
        }
      }
    }
  }
}

template <int kDims>
dim3 forward_grid(const WarpGeometry& g) {
  const auto tiles = [](int64_t size, int tile) { return unsigned((size + tile - 1) / tile); };
  return dim3(tiles(g.size[0], block_width<kDims>()),
              std::min(tiles(g.size[1], kTileH * kRowsPerThread), kMaxGridYZ),
              unsigned(std::min<int64_t>(g.n * g.size[2], kMaxGridYZ)));
}

}  // namespace medimg::cuda

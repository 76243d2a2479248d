// Affine warp (grid_sample of an affine grid, without the grid) and its backward.
//
// Forward: threads take output rows (sample, [depth,] row), split in float64 into windows:
// pixels with no tap inside a zero-padded image (written as 0), interior pixels whose taps
// are all inside (AVX2 kernels, no masks), and the few border pixels between them (one point
// at a time, common/affine_sample.h). Without AVX2, or with border/reflection padding, the
// coordinates and taps of a row segment are computed once in a vectorised loop and every
// channel is a vectorised gather over those taps. Outputs of 8 MiB and more are assembled a row
// at a time and streamed out with non-temporal stores (kStreamMinBytes).
// Backward: threads own (sample, channel) planes, so the scatter into grad_input needs no
// atomics; each plane also sums its part of d(loss)/d(M), reduced over channels in Python.
#include <omp.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "common/affine_sample.h"
#include "common/dispatch.h"
#include "common/tensor_view.h"
#include "cpu/kernels.h"

namespace medimg::cpu::MEDIMG_ISA_NS {
namespace {

constexpr int64_t kPointRun = 16;  // border runs up to this long take the per-point path

// Whether float32 holds every pixel index of every axis exactly (sizes up to 2^24): the float32
// kernels clamp cell corners to size - 2 in float, which must not round up past the image.
inline bool sizes_exact_in_float(const WarpGeometry& g) {
  return std::max({g.size[0], g.size[1], g.size[2]}) <= (int64_t(1) << 24);
}

template <int kDims, Interp kInterp>
constexpr int tap_count() {
  return kInterp == Interp::Bilinear ? (1 << kDims) : 1;
}

// Per-axis source positions of pixels first .. first + len - 1 of a row segment whose pixel i
// sits at base + step * i: the lower neighbour and the fraction towards the upper one
// (bilinear), or the nearest pixel (nearest), stored from index 0.
template <class F, int kDims, Interp kInterp, Padding kPad>
void axis_positions(const F* base, const F* step, int64_t first, int64_t len, const WarpGeometry& g, bool align,
                    int32_t (*lower)[kRowSegment], F (*frac)[kRowSegment]) {
  for (int r = 0; r < kDims; ++r) {
    const F b = base[r], s = step[r];
    const int64_t size = g.size[r];
    int32_t* lo = lower[r];
    F* fr = frac[r];
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) {
      const F coord = padded_coordinate<kPad>(b + s * F(int32_t(first + i)), size, align);  // < kRowSegment
      if constexpr (kInterp == Interp::Nearest) {
        lo[i] = nearest_index<int32_t>(coord);
      } else {
        const F fl = std::floor(coord);
        lo[i] = int32_t(fl);
        fr[i] = coord - fl;
      }
    }
  }
}

// Taps of pixels [begin, begin + len) of a segment: off[k * len + i], wt[k * len + i] for tap k.
// Each loop is flat over pixels (axes and taps outside), so it vectorises.
template <class F, int kDims, Interp kInterp>
void combine_taps(const int32_t (*lower)[kRowSegment], const F (*frac)[kRowSegment], int64_t begin, int64_t len,
                  const WarpGeometry& g, int32_t* off, F* wt) {
  for (int k = 0; k < tap_count<kDims, kInterp>(); ++k) {
    int32_t* __restrict o = off + k * len;
    F* __restrict w = wt + k * len;
    for (int64_t i = 0; i < len; ++i) {
      o[i] = 0;
      w[i] = F(1);
    }
    for (int r = 0; r < kDims; ++r) {
      const int32_t upper = (k >> r) & 1, size = int32_t(g.size[r]), stride = int32_t(g.stride[r]);
      // Weight along r: frac for the upper neighbour, 1 - frac for the lower (bilinear).
      const F w_const = upper ? F(0) : F(1), w_slope = upper ? F(1) : F(-1);
      const int32_t* __restrict lo = lower[r] + begin;
      const F* __restrict fr = frac[r] + begin;
#pragma omp simd
      for (int32_t i = 0; i < int32_t(len); ++i) {
        const int32_t q = lo[i] + upper;
        const int32_t inside = int32_t(q >= 0) & int32_t(q < size);
        o[i] = (o[i] + q * stride) * inside;
        if constexpr (kInterp == Interp::Nearest) {
          w[i] *= F(inside);
        } else {
          w[i] *= (w_const + w_slope * fr[i]) * F(inside);
        }
      }
    }
  }
}

template <class T, class F, int kTaps>
void gather_row(const T* src, const int32_t* off, const F* wt, int64_t len, T* dst) {
  if constexpr (std::is_floating_point_v<T>) {
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) {
      F acc = F(0);
      for (int k = 0; k < kTaps; ++k) {  // a tap outside the image adds 0, even next to inf/NaN pixels
        const F w = wt[k * len + i], v = F(src[off[k * len + i]]);
        acc += w != F(0) ? w * v : F(0);
      }
      dst[i] = T(acc);
    }
  } else {  // labels, nearest only: copy the value, or 0 outside a zero-padded image (off is 0 there)
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) {
      const T v = src[off[i]];
      dst[i] = wt[i] != F(0) ? v : T(0);
    }
  }
}

// Pixels [begin, end) of a row segment.
struct Window {
  int64_t begin, end;
};

// Pixel indices i in [*first, *last] (reals) whose coordinate b + s * i lies in [lo, hi]:
// narrows the range to that of one axis. A closed range (lo > hi: the slack exceeds the room,
// as for bilinear along an axis of one pixel) empties it.
inline void narrow_to(double b, double s, double inverse_s, double lo, double hi, double* first, double* last) {
  if (!(lo <= hi)) {
    *last = -1.0;
    return;
  }
  if (std::abs(s) < DBL_MIN) {  // constant along the row, up to a drift far below the slack
    if (!(b >= lo && b <= hi)) *last = -1.0;
    return;
  }
  // Where the coordinate crosses lo and hi. The product by 1 / s (finite here; computed once per
  // sample, or per plane in the backward) is within 2 ulp of the quotient, far inside the slack.
  const double a1 = (lo - b) * inverse_s, a2 = (hi - b) * inverse_s;
  *first = std::max(*first, std::min(a1, a2));
  *last = std::min(*last, std::max(a1, a2));
}

// The pixels [begin, end) of a segment of len pixels in the real range [first, last].
inline Window window_of(double first, double last, int64_t len) {
  // Clamp in float64 first: a tiny step puts the crossings far beyond int64's range.
  const int64_t begin = int64_t(std::ceil(std::clamp(first, 0.0, double(len))));
  return {begin, std::max(begin, int64_t(std::floor(std::clamp(last, -1.0, double(len - 1)))) + 1)};
}

// The two windows of a row segment (pixel i at line.base + line.step * i):
// - reach: the pixels that may have a tap inside the image. Outside it every tap is outside
//   (bilinear: coordinate <= -1 or >= size along some axis; nearest: it rounds outside), so
//   zero padding makes them 0.
// - interior (within reach): the pixels whose taps are all inside, so padding leaves them
//   unchanged and no tap needs a mask. Bilinear: coordinates in [0, size - 1], the lower corner
//   of their cells in [0, size - 2] (none along an axis of one pixel). Nearest: coordinates in
//   [-0.5, size - 0.5], which round into the image; there every padding is the identity too.
// Decided in float64, the interior's bounds moved inwards and reach's outwards by a bound on the
// error of the kernels' coordinates: those are base + step * i with base and step rounded to the
// kernel's float type, each rounding within 2^-24 of the magnitudes involved, which the slack
// exceeds 5-fold (its size term covers underflow). So the float32 coordinates of interior pixels
// are inside too (the ties at the ends of the nearest range stay out), and those of pixels
// outside reach are outside. A non-finite coefficient empties the interior and leaves reach
// unbounded along its axis: those pixels take the general path.
template <int kDims, Interp kInterp>
[[gnu::always_inline]] inline void row_windows(const RowLine<kDims>& line, const double* inverse_step, int64_t len,
                                               const WarpGeometry& g, Window* reach, Window* interior) {
  constexpr double kInside = kInterp == Interp::Nearest ? 0.5 : 0.0;  // interior: [-kInside, size - 1 + kInside]
  constexpr double kReach = kInterp == Interp::Nearest ? 0.5 : 1.0;   // reach: [-kReach, size - 1 + kReach]
  double first = 0.0, last = double(len - 1), reach_first = 0.0, reach_last = double(len - 1);
  for (int r = 0; r < kDims; ++r) {
    const double b = line.base[r], s = line.step[r];
    if (!std::isfinite(b) || !std::isfinite(s)) {
      last = -1.0;
      continue;
    }
    const double slack = (std::abs(b) + std::abs(s) * double(len) + double(g.size[r])) * 0x1p-20;
    const double top = double(g.size[r] - 1);
    narrow_to(b, s, inverse_step[r], -kInside + slack, top + kInside - slack, &first, &last);
    narrow_to(b, s, inverse_step[r], -kReach - slack, top + kReach + slack, &reach_first, &reach_last);
  }
  *reach = window_of(reach_first, reach_last, len);
  const Window inside = window_of(first, last, len);
  interior->begin = std::clamp(inside.begin, reach->begin, reach->end);
  interior->end = std::clamp(inside.end, interior->begin, reach->end);
}

#if defined(__AVX2__)
// Both interior kernels run in two passes over a row segment: first the coordinates of every
// pixel, 8 at a time in registers, into small buffers (the offset of its first tap, and the
// fractions); then, per channel, the loads and stores from those buffers. Fused into one loop,
// each group's loads waited on a long chain of coordinate arithmetic, and the offsets of all 8
// pixels stayed live across the channel loop and spilled: the two passes are 1.3x faster for
// bilinear and 1.1x for nearest (measured on the Zen 4 here, one thread, 32 x 256^2).
// Groups of 8, the last one overlapping if need be; buffers hold pixel i at [i - begin].

// Calls visit(i, coord) for each 8-pixel group i .. i + 7 of [begin, end) (at least 8 pixels;
// the last group overlaps the one before if need be), coord[r] holding the group's source
// coordinates along axis r.
// Visitors store through __m256i pointers, which may alias anything: loop invariants they read
// from memory would be loaded again for every group, so they take them from local registers
// (as base and step here). Always inlined: called out of line, the visitor reads its captures
// through references on every group.
template <int kDims, class Visit>
[[gnu::always_inline]] inline void for_each_group(const float* base, const float* step, int64_t begin, int64_t end,
                                                  Visit visit) {
  const __m256 lanes = _mm256_setr_ps(0.f, 1.f, 2.f, 3.f, 4.f, 5.f, 6.f, 7.f);
  __m256 base_v[kDims], step_v[kDims];
  for (int r = 0; r < kDims; ++r) {
    base_v[r] = _mm256_set1_ps(base[r]);
    step_v[r] = _mm256_set1_ps(step[r]);
  }
  for (int64_t next = begin; next < end; next += 8) {
    const int64_t i = std::min(next, end - 8);
    const __m256 index = _mm256_add_ps(_mm256_set1_ps(float(int32_t(i))), lanes);
    __m256 coord[kDims];
    for (int r = 0; r < kDims; ++r) coord[r] = _mm256_fmadd_ps(step_v[r], index, base_v[r]);
    visit(i, coord);
  }
}

// Per axis, broadcast once per call (see for_each_group): the largest index a kernel's clamp
// allows, size - back, and the stride.
template <int kDims>
struct AxisVectors {
  __m256 last[kDims];
  __m256i stride[kDims];
  AxisVectors(const WarpGeometry& g, int64_t back) {
    for (int r = 0; r < kDims; ++r) {
      last[r] = _mm256_set1_ps(float(g.size[r] - back));
      stride[r] = _mm256_set1_epi32(int32_t(g.stride[r]));
    }
  }
};

// Offsets (elements) of the lower corner of the cells of pixels [begin, end), and their
// fractions along each axis. The lower corner lies in [0, size - 2]: every tap is inside.
template <int kDims>
void linear_cells_avx2(const float* base, const float* step, int64_t begin, int64_t end, const WarpGeometry& g,
                       int32_t* offsets, float (*fractions)[kRowSegment]) {
  const AxisVectors<kDims> axes(g, 2);  // row_windows keeps the cells inside; the clamp is a second guard
  for_each_group<kDims>(base, step, begin, end, [&](int64_t i, const __m256* coord) {
    __m256i offset = _mm256_setzero_si256();
    for (int r = 0; r < kDims; ++r) {
      const __m256 low = _mm256_min_ps(_mm256_max_ps(_mm256_floor_ps(coord[r]), _mm256_setzero_ps()), axes.last[r]);
      _mm256_storeu_ps(fractions[r] + (i - begin), _mm256_sub_ps(coord[r], low));
      const __m256i q = _mm256_cvttps_epi32(low);
      offset = _mm256_add_epi32(offset, r == 0 ? q : _mm256_mullo_epi32(q, axes.stride[r]));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(offsets + (i - begin)), offset);
  });
}

// Pairs (v[o], v[o + 1]) for 8 offsets o (in floats), split into the left and right values.
// Each pair is one 64-bit load: as fast as hardware gathers for 2D and a quarter faster for
// trilinear 3D (measured on the Zen 4 here). Pairs 0,1 | 4,5 and 2,3 | 6,7 share a register
// so that one shuffle per side puts all 8 lanes in order.
inline void load_pairs_avx2(const float* plane, const int32_t* o, __m256* left, __m256* right) {
  auto pairs = [plane, o](int j) {
    const __m128i low = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(plane + o[j]));
    return _mm_loadh_pd(_mm_castsi128_pd(low), reinterpret_cast<const double*>(plane + o[j + 1]));
  };
  const __m256 a = _mm256_castpd_ps(_mm256_insertf128_pd(_mm256_castpd128_pd256(pairs(0)), pairs(4), 1));
  const __m256 b = _mm256_castpd_ps(_mm256_insertf128_pd(_mm256_castpd128_pd256(pairs(2)), pairs(6), 1));
  *left = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
  *right = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
}

// Bi/trilinear float32 with unit x-stride, interior pixels only (see row_windows): the two
// taps along x are adjacent, so each of the 2 (2D) or 4 (3D) source rows is one 64-bit load
// per pixel, and the interpolation is a chain of lerps. Rotated reads defeat the hardware
// prefetcher, so each group also prefetches where the same pixels kPrefetchRows output rows
// below will read (prefetch_delta elements further). Returns where it stopped (begin when
// fewer than 8 pixels).
template <int kDims>
int64_t linear_interior_avx2(const float* base, const float* step, int64_t begin, int64_t end, const WarpGeometry& g,
                             const float* src, float* dst, int64_t plane, int64_t prefetch_delta, int32_t* offsets,
                             float (*fractions)[kRowSegment]) {
  constexpr int kRows = 1 << (kDims - 1);
  if (end - begin < 8) return begin;
  linear_cells_avx2<kDims>(base, step, begin, end, g, offsets, fractions);
  int64_t row_offset[kRows];  // source row k of a cell: k & 1 one row down, k & 2 one slice deeper
  for (int k = 0; k < kRows; ++k) row_offset[k] = (k & 1 ? g.stride[1] : 0) + (k & 2 ? g.stride[2] : 0);
  for (int64_t c = 0; c < g.c; ++c) {
    const float* s = src + c * g.channel_stride;
    float* out = dst + c * plane;
    for (int64_t next = begin; next < end; next += 8) {
      const int64_t i = std::min(next, end - 8), b = i - begin;
      // 2D: one prefetch per group, for the cell's upper row; more cost more instructions than
      // they save in misses. 3D: the cell's four rows lie in two slices, and a rotation about x
      // or y puts the rows of one output row in many slices, which the hardware prefetcher does
      // not follow: one prefetch per row (RandomAffine of 2 x 1x128^3: 0.74-0.89x the time).
      for (int k = 0; k < (kDims == 3 ? kRows : 1); ++k) {
        _mm_prefetch(reinterpret_cast<const char*>(s + prefetch_delta + offsets[b] + row_offset[k]), _MM_HINT_T0);
      }
      const __m256 fx = _mm256_loadu_ps(fractions[0] + b), fy = _mm256_loadu_ps(fractions[1] + b);
      __m256 along_x[kRows];
      for (int k = 0; k < kRows; ++k) {
        __m256 left, right;
        load_pairs_avx2(s + row_offset[k], offsets + b, &left, &right);
        along_x[k] = _mm256_fmadd_ps(fx, _mm256_sub_ps(right, left), left);
      }
      __m256 along_y[2];
      for (int k = 0; k < kRows / 2; ++k) {
        along_y[k] = _mm256_fmadd_ps(fy, _mm256_sub_ps(along_x[2 * k + 1], along_x[2 * k]), along_x[2 * k]);
      }
      __m256 value = along_y[0];
      if constexpr (kDims == 3) {
        const __m256 fz = _mm256_loadu_ps(fractions[2] + b);
        value = _mm256_fmadd_ps(fz, _mm256_sub_ps(along_y[1], along_y[0]), along_y[0]);
      }
      _mm256_storeu_ps(out + i, value);
    }
  }
  return end;
}

// Nearest sampling of any value type (label maps of every integer width, float32), interior
// pixels only, any strides: coordinates round half to even in registers into the offsets
// buffer, then each value is one scalar load and store (cheaper than a hardware gather, and it
// serves 1- and 2-byte labels too). Reflection about -0.5 (align_corners=False) leaves interior
// coordinates in place but computes them as (x + 0.5) - 0.5 in float, as torch and
// sample_point do: with reflect_about_half the kernel rounds that value too, so that a
// coordinate one ulp from a tie rounds the same way. Returns where it stopped (begin when fewer
// than 8 pixels).
template <class T, int kDims>
int64_t nearest_interior_avx2(const float* base, const float* step, int64_t begin, int64_t end,
                              const WarpGeometry& g, bool reflect_about_half, const T* src, T* dst, int64_t plane,
                              int64_t prefetch_delta, int32_t* offsets) {
  if (end - begin < 8) return begin;
  const __m256 half = _mm256_set1_ps(0.5f);
  const AxisVectors<kDims> axes(g, 1);  // clamp as in linear_cells_avx2
  for_each_group<kDims>(base, step, begin, end, [&](int64_t i, const __m256* coord) {
    __m256i offset = _mm256_setzero_si256();
    for (int r = 0; r < kDims; ++r) {
      __m256 x = coord[r];
      if (reflect_about_half) x = _mm256_sub_ps(_mm256_add_ps(x, half), half);
      const __m256 nearest = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m256i q = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(nearest, _mm256_setzero_ps()), axes.last[r]));
      offset = _mm256_add_epi32(offset, _mm256_mullo_epi32(q, axes.stride[r]));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(offsets + (i - begin)), offset);
  });
  for (int64_t c = 0; c < g.c; ++c) {
    const T* s = src + c * g.channel_stride;
    T* out = dst + c * plane;
    for (int64_t next = begin; next < end; next += 8) {
      const int64_t i = std::min(next, end - 8);
      const int32_t* o = offsets + (i - begin);
      _mm_prefetch(reinterpret_cast<const char*>(s + prefetch_delta + o[0]), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(s + prefetch_delta + o[7]), _MM_HINT_T0);
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) out[i + j] = s[o[j]];
    }
  }
  return end;
}
#endif

// Offset (elements, for the given x, y[, z] strides) between the source position of a pixel and
// that of the same pixel kPrefetchRows output rows below (2D), clamped so that a prefetch
// address stays near the plane. Four rows ahead hide a DRAM
// miss; two were enough only while the source stayed in L3. Measured on RandomAffine's image +
// int64 mask batch (32 x 256^2, whose 48 MiB evict each other from the 32 MiB L3): 5.3-6.2 ms
// with 2 rows, 3.9-4.1 ms with 4 or 6; 6 made 3D volumes 20% slower, 4 left them unchanged.
constexpr int64_t kPrefetchRows = 4;
template <int kDims>
int64_t prefetch_delta(const double* m, const WarpGeometry& g, const int64_t* strides) {
  int64_t delta = 0;
  for (int r = 0; r < kDims; ++r) {  // column 1 of M: the source step per output row
    const double limit = double(g.size[r]);
    // fmin/fmax, not clamp: a NaN coefficient becomes a bound (a NaN cast to int64 is undefined).
    delta += int64_t(std::nearbyint(std::fmin(std::fmax(m[r * (kDims + 1) + 1] * kPrefetchRows, -limit), limit))) *
             strides[r];
  }
  return delta;
}

// 1 / step along a row per axis (column 0 of M), for row_windows: the same for every row of a
// sample, so computed once per sample. 0 where the step is not finite or counts as constant.
template <int kDims>
void inverse_steps(const double* m, double* inverse_step) {
  for (int r = 0; r < kDims; ++r) {
    const double s = m[r * (kDims + 1)];
    inverse_step[r] = std::isfinite(s) && std::abs(s) >= DBL_MIN ? 1.0 / s : 0.0;
  }
}

// What stays the same for every row of a sample in the forward pass.
template <int kDims>
struct SampleConstants {
  int64_t ahead;  // the interior kernels' prefetch distance
  double inverse_step[kDims];
};

// SampleConstants of every sample, from the matrices M (N, kDims, kDims + 1).
template <int kDims>
std::vector<SampleConstants<kDims>> sample_constants(const double* m_all, const WarpGeometry& g) {
  std::vector<SampleConstants<kDims>> constants(size_t(g.n));
  for (int64_t n = 0; n < g.n; ++n) {
    const double* m = m_all + n * kDims * (kDims + 1);
    constants[size_t(n)].ahead = prefetch_delta<kDims>(m, g, g.stride);
    inverse_steps<kDims>(m, constants[size_t(n)].inverse_step);
  }
  return constants;
}

// Outputs of at least kStreamMinBytes are written with non-temporal stores (AVX2 builds): with
// their inputs they outgrow the L3 share of a core complex (32 MiB on the Zen 4 here) anyway,
// and streaming skips reading each output line before writing it and leaves the input cached.
// Each output row is assembled in a per-thread buffer (at most kStagedMaxBytes, so in L2),
// then streamed out. Measured on the 2-core Zen 4 here, A/B interleaved in one run: the int64
// mask of 32 x 256^2 (16 MiB) 2.0 ms vs 2.6 ms; RandomAffine of it with its float32 image
// (8 MiB) 5.3 vs 5.9 ms; nearest of 4 x 3x512^2 float32 2.1 vs 2.6 ms; bilinear images and
// 3D volumes unchanged (bound by their arithmetic and reads, not by their writes).
constexpr int64_t kStreamMinBytes = int64_t(8) << 20;
constexpr int64_t kStagedMaxBytes = int64_t(256) << 10;

// Copies count values from a staged row to dst: non-temporal 32-byte stores where dst is
// aligned, plain stores for the ends.
template <class T>
void stream_row(const T* from, T* to, int64_t count) {
  const char* s = reinterpret_cast<const char*>(from);
  char* d = reinterpret_cast<char*>(to);
  int64_t bytes = count * int64_t(sizeof(T));
  const int64_t head = std::min<int64_t>(bytes, int64_t((32 - (reinterpret_cast<uintptr_t>(d) & 31)) & 31));
  std::memcpy(d, s, size_t(head));
  s += head, d += head, bytes -= head;
#if defined(__AVX2__)
  for (; bytes >= 32; s += 32, d += 32, bytes -= 32) {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s)));
  }
#endif
  std::memcpy(d, s, size_t(bytes));
}

// Whether forward_typed streams an output of out_bytes whose rows, over all channels, take
// staged_bytes.
inline bool stream_output(int64_t out_bytes, int64_t staged_bytes) {
#if defined(__AVX2__)
  return out_bytes >= kStreamMinBytes && staged_bytes <= kStagedMaxBytes;
#else
  (void)out_bytes, (void)staged_bytes;
  return false;
#endif
}

template <class T, class F, int kDims, Interp kInterp, Padding kPad>
void forward_typed(const TensorView& input, const TensorView& coeffs, const TensorView& out, bool align,
                   int num_threads) {
  constexpr int kTaps = tap_count<kDims, kInterp>();
  const WarpGeometry g = warp_geometry<kDims>(input);
  const int64_t width = g.size[0], height = g.size[1], depth = g.size[2];
  const int64_t rows = g.n * depth * height;
  const int64_t plane = g.plane();
  const double* m_all = coeffs.ptr<const double>();
  const int threads = rows * width * g.c >= (int64_t(1) << 14) ? std::max(1, num_threads) : 1;
  [[maybe_unused]] const bool exact_in_float = sizes_exact_in_float(g);  // for the AVX2 kernels
  const std::vector<SampleConstants<kDims>> per_sample = sample_constants<kDims>(m_all, g);
  // Where rows are written first: the output, or a staged row per channel (stream_output).
  const bool stream = stream_output(g.n * g.c * plane * int64_t(sizeof(T)), g.c * width * int64_t(sizeof(T)));
  const int64_t row_plane = stream ? width : plane;

#pragma omp parallel num_threads(threads)
  {
    std::vector<T> staged(stream ? size_t(g.c * width) : 0);
    std::vector<int32_t> off(size_t(kTaps * kRowSegment));
    std::vector<F> wt(size_t(kTaps * kRowSegment));
    int32_t lower[kDims][kRowSegment];
    F frac[kDims][kRowSegment];
    // Guided: long runs of consecutive rows (what the prefetch and the caches want), shrinking
    // at the end so that no thread waits. Rows differ in cost (zero-filled ends of rotated
    // rows, border pixels), and with a static split the threads of RandomAffine's 32 x 256^2
    // batch spent 15% of their time at the closing barrier (guided: 10%, and 18% less CPU time).
    int64_t previous = -2, h = 0, slice = 0;  // output row (h) and (sample, depth) slice of the last row
#pragma omp for schedule(guided)
    for (int64_t row = 0; row < rows; ++row) {
      if (row == previous + 1) {  // the next row of a chunk: no division (in 2D; 3D still splits slice)
        if (++h == height) h = 0, ++slice;
      } else {
        h = row % height, slice = row / height;
      }
      previous = row;
      const int64_t n = depth == 1 ? slice : slice / depth, d = depth == 1 ? 0 : slice % depth;
      const double* m = m_all + n * kDims * (kDims + 1);
      const T* src = input.ptr<const T>() + n * g.sample_stride;
      T* const out_row = out.ptr<T>() + n * g.c * plane + (d * height + h) * width;
      T* const dst = stream ? staged.data() : out_row;
      for (int64_t w0 = 0; w0 < width; w0 += kRowSegment) {
        const int64_t len = std::min(kRowSegment, width - w0);
        F base[kDims], step[kDims];
        const RowLine<kDims> line = row_line<kDims>(m, w0, h, d);
        row_coordinates<F, kDims>(line, base, step);
        // Pixels [first, first + count) of the segment through the general path: one point at a
        // time for the few pixels next to a border, vectorised over pixels for longer runs.
        auto general = [&](int64_t first, int64_t count) {
          if (count <= 0) return;
          if (count <= kPointRun) {
            for (int64_t i = first; i < first + count; ++i) {
              F raw[kDims];
              segment_point<F, kDims>(base, step, int32_t(i), raw);
              sample_point<T, F, kDims, kInterp, kPad>(src, raw, g, align, dst + w0 + i, row_plane);
            }
            return;
          }
          axis_positions<F, kDims, kInterp, kPad>(base, step, first, count, g, align, lower, frac);
          combine_taps<F, kDims, kInterp>(lower, frac, 0, count, g, off.data(), wt.data());
          for (int64_t c = 0; c < g.c; ++c) {
            gather_row<T, F, kTaps>(src + c * g.channel_stride, off.data(), wt.data(), count,
                                    dst + c * row_plane + w0 + first);
          }
        };
        Window reach, interior;
        row_windows<kDims, kInterp>(line, per_sample[size_t(n)].inverse_step, len, g, &reach, &interior);
        if constexpr (kPad == Padding::Zeros) {  // pixels with no tap inside the image are 0, whatever the mode
          for (int64_t c = 0; c < g.c; ++c) {
            T* segment_out = dst + c * row_plane + w0;
            std::fill(segment_out, segment_out + reach.begin, T(0));
            std::fill(segment_out + reach.end, segment_out + len, T(0));
          }
        } else {
          reach = {0, len};
        }
        int64_t begin = reach.begin, end = reach.begin;  // what the vectorised interior kernels did
#if defined(__AVX2__)
        if constexpr (std::is_same_v<T, float> && kInterp == Interp::Bilinear) {
          if (g.stride[0] == 1 && exact_in_float) {
            begin = interior.begin;
            end = linear_interior_avx2<kDims>(base, step, begin, interior.end, g, src, dst + w0, row_plane,
                                              per_sample[size_t(n)].ahead, lower[0], frac);
          }
        }
        if constexpr (std::is_same_v<F, float> && kInterp == Interp::Nearest) {
          if (exact_in_float) {
            begin = interior.begin;
            end = nearest_interior_avx2<T, kDims>(base, step, begin, interior.end, g,
                                                  kPad == Padding::Reflection && !align, src, dst + w0, row_plane,
                                                  per_sample[size_t(n)].ahead, lower[0]);
          }
        }
#endif
        general(reach.begin, begin - reach.begin);
        general(end, reach.end - end);
      }
      if (stream) {
        for (int64_t c = 0; c < g.c; ++c) stream_row(dst + c * row_plane, out_row + c * plane, width);
      }
    }
#if defined(__AVX2__)
    if (stream) _mm_sfence();
#endif
  }
}

// Backward of the interior pixels [begin, end) of the row segment starting at pixel w0 of one
// output row, bilinear (see backward_plane for the window): pixel i sits at base + step * i,
// every tap lies inside and the padding's derivative is 1, so there are no bounds checks, and
// d(loss)/d(M) is summed over the segment in float64 (the coordinate gradients, plain and times
// i) and added once: 2.2x the per-pixel loop below. Even pixels go
// first, then odd ones: neighbours share taps, and a read-modify-write of grad_in that waits on
// the previous pixel's store to the same element would serialise the loop. Rotated reads and
// writes defeat the hardware prefetcher: each pixel prefetches what the same pixel
// kPrefetchRows rows below touches, src_ahead and grad_ahead elements further in src and
// grad_in (32 x 1x256^2: 1.7x).
template <class T, int kDims>
void linear_interior_backward(const T* src, const T* grad_out_segment, const T* base, const T* step, int64_t begin,
                              int64_t end, const WarpGeometry& g, const int64_t* plane_stride, int64_t src_ahead,
                              int64_t grad_ahead, int64_t w0, int64_t h, int64_t d, T* grad_in, double* grad_m) {
  constexpr int kTaps = 1 << kDims;
  if (begin >= end) return;
  int64_t tap_src[kTaps], tap_grad[kTaps];  // tap k relative to the lower corner, in src and grad_in
  for (int k = 0; k < kTaps; ++k) {
    tap_src[k] = tap_grad[k] = 0;
    for (int r = 0; r < kDims; ++r) {
      tap_src[k] += ((k >> r) & 1) * g.stride[r];
      tap_grad[k] += ((k >> r) & 1) * plane_stride[r];
    }
  }
  double sum[kDims] = {}, weighted[kDims] = {};
  for (int64_t parity = 0; parity < 2; ++parity) {
    for (int64_t w = begin + parity; w < end; w += 2) {
      const T go = grad_out_segment[w];
      T coord[kDims], frac[kDims];
      segment_point<T, kDims>(base, step, int32_t(w), coord);  // inside: padding is the identity
      int64_t o = 0, po = 0;
      for (int r = 0; r < kDims; ++r) {
        // row_windows keeps the cells inside; the clamp is a second guard.
        const T low = std::clamp(std::floor(coord[r]), T(0), T(g.size[r] - 2));
        frac[r] = coord[r] - low;
        o += int64_t(low) * g.stride[r];
        po += int64_t(low) * plane_stride[r];
      }
      if (grad_in) {
        __builtin_prefetch(grad_in + po + grad_ahead, 1);
        for (int k = 0; k < kTaps; ++k) grad_in[po + tap_grad[k]] += tap_weight<T, kDims>(k, frac, -1) * go;
      }
      if (grad_m) {
        __builtin_prefetch(src + o + src_ahead);
        T v[kTaps];
        for (int k = 0; k < kTaps; ++k) v[k] = src[o + tap_src[k]];
        for (int r = 0; r < kDims; ++r) {
          T dcoord = T(0);
          for (int k = 0; k < kTaps; ++k) dcoord += tap_weight<T, kDims>(k, frac, r) * v[k];
          const double gr = double(dcoord * go);
          sum[r] += gr;
          weighted[r] += gr * double(w);
        }
      }
    }
  }
  if (grad_m) {
    for (int r = 0; r < kDims; ++r) {
      double* row = grad_m + r * (kDims + 1);
      row[0] += weighted[r] + sum[r] * double(w0);
      row[1] += sum[r] * double(h);
      if (kDims == 3) row[2] += sum[r] * double(d);
      row[kDims] += sum[r];
    }
  }
}

// d(loss)/d(input) and d(loss)/d(M) for one (sample, channel) plane: interior pixels through
// linear_interior_backward where it applies, every other pixel one at a time here.
template <class T, int kDims, Interp kInterp, Padding kPad>
void backward_plane(const TensorView& grad_out, const TensorView& input, const double* m, const WarpGeometry& g,
                    int64_t n, int64_t c, bool align, T* grad_in, double* grad_m) {
  using F = T;
  const int64_t width = g.size[0], height = g.size[1], depth = g.size[2];
  const T* src = input.ptr<const T>() + n * g.sample_stride + c * g.channel_stride;
  const T* gout = grad_out.ptr<const T>() + (n * g.c + c) * g.plane();
  const int64_t plane_stride[3] = {1, width, width * height};  // grad_in is contiguous
  const bool fast_path = kInterp == Interp::Bilinear && (std::is_same_v<T, double> || sizes_exact_in_float(g));
  // Once per plane, as the forward keeps them per sample (SampleConstants): 1 / step per axis
  // and the prefetch distances in src and grad_in.
  double inverse_step[kDims];
  inverse_steps<kDims>(m, inverse_step);
  const int64_t src_ahead = prefetch_delta<kDims>(m, g, g.stride);
  const int64_t grad_ahead = prefetch_delta<kDims>(m, g, plane_stride);
  // Rows are cut into segments as in the forward, so that every pixel has the coordinates the
  // forward sampled it at (the same nearest pixel at a tie, the same cell).
  for (int64_t d = 0; d < depth; ++d) {
    for (int64_t h = 0; h < height; ++h) {
      for (int64_t w0 = 0; w0 < width; w0 += kRowSegment) {
        const int64_t len = std::min(kRowSegment, width - w0);
        F base[kDims], step[kDims];
        const RowLine<kDims> line = row_line<kDims>(m, w0, h, d);
        row_coordinates<F, kDims>(line, base, step);
        const T* gout_segment = gout + (d * height + h) * width + w0;
        auto pixel = [&](int64_t i) {
          const int64_t w = w0 + i;
          const F go = gout_segment[i];
          F raw[kDims], coord[kDims], coord_grad[kDims];
          segment_point<F, kDims>(base, step, int32_t(i), raw);
          for (int r = 0; r < kDims; ++r) {
            coord[r] = padded_coordinate<kPad>(raw[r], g.size[r], align);
            coord_grad[r] = padded_coordinate_grad<kPad>(raw[r], g.size[r], align);
          }
          F dcoord[kDims] = {};
          if constexpr (kInterp == Interp::Nearest) {
            bool ok = true;
            int64_t po = 0;
            for (int r = 0; r < kDims; ++r) {
              const int64_t q = nearest_index<int64_t>(coord[r]);
              ok = ok && in_bounds(q, g.size[r]);
              po += q * plane_stride[r];
            }
            if (ok && grad_in) grad_in[po] += go;
          } else {
            int64_t lo[kDims];
            F frac[kDims];
            lower_corner<F, kDims>(coord, lo, frac);
            for (int k = 0; k < (1 << kDims); ++k) {
              bool ok = true;
              int64_t o = 0, po = 0;
              const F weight = tap_weight<F, kDims>(k, frac, -1);
              for (int r = 0; r < kDims; ++r) {
                const int64_t q = lo[r] + ((k >> r) & 1);
                ok = ok && in_bounds(q, g.size[r]);
                o += q * g.stride[r];
                po += q * plane_stride[r];
              }
              if (!ok) continue;
              if (grad_in) grad_in[po] += weight * go;
              const F v = src[o];
              for (int r = 0; r < kDims; ++r) dcoord[r] += tap_weight<F, kDims>(k, frac, r) * v * go;
            }
          }
          if (grad_m) {
            for (int r = 0; r < kDims; ++r) {
              const double gr = double(dcoord[r] * coord_grad[r]);
              double* row = grad_m + r * (kDims + 1);
              row[0] += gr * double(w);
              row[1] += gr * double(h);
              if (kDims == 3) row[2] += gr * double(d);
              row[kDims] += gr;
            }
          }
        };
        // Zero padding: pixels with no tap inside contribute nothing. Interior pixels take the fast
        // path: there every padding is the identity with derivative 1 (border and reflection have
        // derivative 0 at coordinates 0 and size - 1, as torch; the interior's slack keeps both out).
        Window reach, interior;
        row_windows<kDims, kInterp>(line, inverse_step, len, g, &reach, &interior);
        if constexpr (kPad != Padding::Zeros) reach = {0, len};
        if (!fast_path) interior = {reach.end, reach.end};  // all general
        for (int64_t i = reach.begin; i < interior.begin; ++i) pixel(i);
        linear_interior_backward<T, kDims>(src, gout_segment, base, step, interior.begin, interior.end, g, plane_stride,
                                           src_ahead, grad_ahead, w0, h, d, grad_in, grad_m);
        for (int64_t i = interior.end; i < reach.end; ++i) pixel(i);
      }
    }
  }
}

template <class T, int kDims, Interp kInterp, Padding kPad>
void backward_typed(const TensorView& grad_out, const TensorView& input, const TensorView& coeffs,
                    const TensorView& grad_input, const TensorView& grad_coeffs, bool need_input,
                    bool need_coeffs, bool align, int num_threads) {
  const WarpGeometry g = warp_geometry<kDims>(input);
  const int64_t planes = g.n * g.c;
  const int threads = planes > 1 ? std::max(1, num_threads) : 1;
  constexpr int64_t kCoeffs = kDims * (kDims + 1);
#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t n = p / g.c, c = p % g.c;
    T* gin = need_input ? grad_input.ptr<T>() + p * g.plane() : nullptr;
    double* gm = need_coeffs ? grad_coeffs.ptr<double>() + p * kCoeffs : nullptr;
    backward_plane<T, kDims, kInterp, kPad>(grad_out, input, coeffs.ptr<const double>() + n * kCoeffs, g, n, c,
                                            align, gin, gm);
  }
}

template <class T>
struct ForwardKernel {
  const TensorView& input;
  const TensorView& coeffs;
  const TensorView& out;
  bool align;
  int num_threads;
  template <int kDims, Interp kInterp, Padding kPad>
  void run() const {
    using F = std::conditional_t<std::is_same_v<T, double>, double, float>;
    forward_typed<T, F, kDims, kInterp, kPad>(input, coeffs, out, align, num_threads);
  }
};

template <class T>
struct BackwardKernel {
  const TensorView& grad_out;
  const TensorView& input;
  const TensorView& coeffs;
  const TensorView& grad_input;
  const TensorView& grad_coeffs;
  bool need_input, need_coeffs, align;
  int num_threads;
  template <int kDims, Interp kInterp, Padding kPad>
  void run() const {
    backward_typed<T, kDims, kInterp, kPad>(grad_out, input, coeffs, grad_input, grad_coeffs, need_input,
                                            need_coeffs, align, num_threads);
  }
};

}  // namespace

void affine_warp(const TensorView& input, const TensorView& coeffs, const TensorView& out, int32_t interp,
                 int32_t padding, bool align_corners, int num_threads) {
  check_warp_views(input, coeffs, out, "out");
  const int dims = input.ndim - 2;
  MEDIMG_CHECK_ARG(out.dtype == input.dtype, "out must have the dtype of input");
  MEDIMG_CHECK_ARG(coeffs.dtype == DType::Float64, "coeffs must be float64");
  const bool floating = input.dtype == DType::Float32 || input.dtype == DType::Float64;
  MEDIMG_CHECK_ARG(floating || Interp(interp) == Interp::Nearest,
                   std::string("input: bilinear sampling needs float32/float64, got ") + dtype_name(input.dtype));
  visit_value_dtype<false>(input.dtype, "input", [&](auto tag) {
    visit_warp_modes(dims, interp, padding,
                     ForwardKernel<decltype(tag)>{input, coeffs, out, align_corners, num_threads});
  });
}

void affine_warp_backward(const TensorView& grad_out, const TensorView& input, const TensorView& coeffs,
                          const TensorView& grad_input, const TensorView& grad_coeffs, bool need_input,
                          bool need_coeffs, int32_t interp, int32_t padding, bool align_corners, int num_threads) {
  check_warp_views(input, coeffs, grad_out, "grad_out");
  if (need_input) {
    check_warp_views(input, coeffs, grad_input, "grad_input");
    MEDIMG_CHECK_ARG(grad_input.dtype == input.dtype, "grad_input must have the dtype of input");
  }
  const int dims = input.ndim - 2;
  MEDIMG_CHECK_ARG(grad_out.dtype == input.dtype, "grad_out must have the dtype of input");
  if (need_coeffs) check_grad_coeffs_view(input, grad_coeffs);
  visit_float_dtype<false>(input.dtype, "input", [&](auto tag) {
    visit_warp_modes(dims, interp, padding,
                     BackwardKernel<decltype(tag)>{grad_out, input, coeffs, grad_input, grad_coeffs, need_input,
                                                   need_coeffs, align_corners, num_threads});
  });
}

}  // namespace medimg::cpu::MEDIMG_ISA_NS

// Coordinate arithmetic of the affine warp, shared by the CPU and CUDA kernels.
//
// The warp samples input at coordinates that are an affine map of the output pixel index:
// (ix, iy[, iz]) = M · (w, h[, d], 1). medimg/ops/affine.py folds theta, affine_grid's
// normalised base grid and grid_sample's unnormalisation into M (float64), so kernels never
// materialise a grid. Padding and interpolation follow F.grid_sample exactly.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "common/float_types.h"
#include "common/macros.h"
#include "common/tensor_view.h"

namespace medimg {

enum class Interp : int32_t { Bilinear = 0, Nearest = 1 };
enum class Padding : int32_t { Zeros = 0, Border = 1, Reflection = 2 };

// Coordinate values are computed with min/max/floor/fabs arithmetic only (no branches), so the
// CPU compiler vectorises the loops that call them and the GPU runs them without divergence;
// the derivatives, needed by the backward only, are separate functions.

template <class F>
MEDIMG_HD F min_of(F a, F b) {
  return b < a ? b : a;
}
template <class F>
MEDIMG_HD F max_of(F a, F b) {
  return a < b ? b : a;
}

// Keeps far-away coordinates finite and castable to int32 (they only ever read zeros).
template <class F>
MEDIMG_HD F bound_coordinate(F x) {
  return min_of(max_of(x, F(-(1 << 30))), F(1 << 30));
}

// min(size - 1, max(x, 0)).
template <class F>
MEDIMG_HD F clip_coordinate(F x, int64_t size) {
  return min_of(max_of(x, F(0)), F(size - 1));
}

// d clip_coordinate / dx: 0 where clipped (and at the ends), as grid_sample's backward.
template <class F>
MEDIMG_HD F clip_coordinate_grad(F x, int64_t size) {
  return F((x > F(0)) & (x < F(size - 1)));
}

// Reflection bounds (twice the low and high ends) of grid_sample for one axis.
MEDIMG_HD void reflection_bounds(int64_t size, bool align_corners, int64_t* twice_low, int64_t* twice_high) {
  *twice_low = align_corners ? 0 : -1;
  *twice_high = align_corners ? 2 * (size - 1) : 2 * size - 1;
}

// Number of reflections (its parity matters) and the distance past the last one.
template <class F>
MEDIMG_HD F reflection_parity(F x, int64_t twice_low, int64_t twice_high, F* extra) {
  const F lo = F(twice_low) / F(2);
  // A degenerate span (one pixel, align_corners) gives a value that the clip then maps to 0.
  const F span = max_of(F(twice_high - twice_low) / F(2), F(0.5));
  const F distance = fabs(x - lo);
  const F flips = floor(distance / span);
  *extra = distance - span * flips;  // fmod(distance, span)
  return flips - F(2) * floor(flips * F(0.5));  // 1 if odd
}

// x reflected into [twice_low / 2, twice_high / 2], grid_sample's reflect_coordinates.
template <class F>
MEDIMG_HD F reflect_coordinate(F x, int64_t twice_low, int64_t twice_high) {
  F extra;
  const F odd = reflection_parity(x, twice_low, twice_high, &extra);
  const F span = max_of(F(twice_high - twice_low) / F(2), F(0.5));
  return F(twice_low) / F(2) + extra + odd * (span - F(2) * extra);
}

// d reflect_coordinate / dx: +1 or -1 (0 for a degenerate span).
template <class F>
MEDIMG_HD F reflect_coordinate_grad(F x, int64_t twice_low, int64_t twice_high) {
  if (twice_low == twice_high) return F(0);
  F extra;
  const F odd = reflection_parity(x, twice_low, twice_high, &extra);
  const F sign = x - F(twice_low) / F(2) < F(0) ? F(-1) : F(1);
  return sign * (F(1) - F(2) * odd);
}

// Source coordinate after padding along one axis of `size` pixels.
template <Padding kPad, class F>
MEDIMG_HD F padded_coordinate(F x, int64_t size, bool align_corners) {
  x = bound_coordinate(x);
  if constexpr (kPad == Padding::Zeros) {
    return x;
  } else if constexpr (kPad == Padding::Border) {
    return clip_coordinate(x, size);
  } else {
    int64_t twice_low, twice_high;
    reflection_bounds(size, align_corners, &twice_low, &twice_high);
    return clip_coordinate(reflect_coordinate(x, twice_low, twice_high), size);
  }
}

// d padded_coordinate / dx.
template <Padding kPad, class F>
MEDIMG_HD F padded_coordinate_grad(F x, int64_t size, bool align_corners) {
  x = bound_coordinate(x);
  if constexpr (kPad == Padding::Zeros) {
    return F(1);
  } else if constexpr (kPad == Padding::Border) {
    return clip_coordinate_grad(x, size);
  } else {
    int64_t twice_low, twice_high;
    reflection_bounds(size, align_corners, &twice_low, &twice_high);
    return reflect_coordinate_grad(x, twice_low, twice_high) *
           clip_coordinate_grad(reflect_coordinate(x, twice_low, twice_high), size);
  }
}

// Spatial geometry of a warp input (N, C, [D,] H, W): axis 0 = x (W), 1 = y (H), 2 = z (D).
struct WarpGeometry {
  int64_t n = 0, c = 0;
  int64_t size[3] = {1, 1, 1};
  int64_t stride[3] = {0, 0, 0};  // input strides along x, y, z, in elements
  int64_t sample_stride = 0, channel_stride = 0;
  MEDIMG_HD int64_t plane() const { return size[0] * size[1] * size[2]; }
};

template <int kDims>
MEDIMG_HD WarpGeometry warp_geometry(const TensorView& input) {
  WarpGeometry g;
  g.n = input.sizes[0];
  g.c = input.sizes[1];
  g.sample_stride = input.strides[0];
  g.channel_stride = input.strides[1];
  for (int r = 0; r < kDims; ++r) {
    g.size[r] = input.sizes[input.ndim - 1 - r];
    g.stride[r] = input.strides[input.ndim - 1 - r];
  }
  return g;
}

// Kernels compute coordinates along a row segment by segment: from the segment's first pixel
// w0 in float64 (row_line), then base + step * i in the kernel's float type for its pixels
// w0 + i, i < kRowSegment (segment_point). The CPU and CUDA kernels, forward and backward,
// segment alike, so all sample a pixel at the same coordinates, provided base + step * i rounds
// alike: one FMA in the AVX2 build (-ffp-contract=fast) and in nvcc's (--fmad=true, its
// default); the baseline x86-64 build has no FMA and rounds twice, consistently within itself.
constexpr int64_t kRowSegment = 512;

// Source coordinates of the pixels w0 + i of output row (h, d) through the kDims x (kDims + 1)
// matrix m, in float64: base[r] + step[r] * i along axis r.
template <int kDims>
struct RowLine {
  double base[kDims], step[kDims];
};

template <int kDims>
MEDIMG_HD RowLine<kDims> row_line(const double* m, int64_t w0, int64_t h, int64_t d) {
  RowLine<kDims> line;
  for (int r = 0; r < kDims; ++r) {
    const double* row = m + r * (kDims + 1);
    line.base[r] = row[0] * double(w0) + row[1] * double(h);
    if constexpr (kDims == 3) line.base[r] += row[2] * double(d);  // in 2D, not even + 0.0
    line.base[r] += row[kDims];
    line.step[r] = row[0];
  }
  return line;
}

// A row segment's base and step in F.
template <class F, int kDims>
MEDIMG_HD void row_coordinates(const RowLine<kDims>& line, F* base, F* step) {
  for (int r = 0; r < kDims; ++r) {
    base[r] = F(line.base[r]);
    step[r] = F(line.step[r]);
  }
}

// Raw source coordinates of pixel i of a row segment.
template <class F, int kDims>
MEDIMG_HD void segment_point(const F* base, const F* step, int32_t i, F* raw) {
  for (int r = 0; r < kDims; ++r) raw[r] = base[r] + step[r] * F(i);
}

// Weight of tap k (bit r of k: upper neighbour along axis r) and its derivative along axis `axis`
// (axis = -1: no derivative), from the fractional parts of the coordinates.
template <class F, int kDims>
MEDIMG_HD F tap_weight(int k, const F* frac, int axis) {
  F w = F(1);
  for (int r = 0; r < kDims; ++r) {
    const bool upper = (k >> r) & 1;
    if (r == axis) w *= upper ? F(1) : F(-1);
    else w *= upper ? frac[r] : F(1) - frac[r];
  }
  return w;
}

// Lower corner of the interpolation cell around a point, and the fractions towards the upper one.
// I: the index type (int64 on the CPU; int32 on CUDA, where 64-bit integer arithmetic costs
// several instructions per operation).
template <class F, int kDims, class I = int64_t>
MEDIMG_HD void lower_corner(const F* coord, I* lower, F* frac) {
  for (int r = 0; r < kDims; ++r) {
    const F fl = floor(coord[r]);
    lower[r] = I(fl);
    frac[r] = coord[r] - fl;
  }
}

// 0 <= i < size, as one unsigned comparison in I's width: for a 32-bit I the caller guarantees
// size < 2^31 (the CUDA forward's plane offsets fit in int32), so that the comparison takes one
// instruction there instead of three (a 64-bit compare of the sign-extended index).
template <class I>
MEDIMG_HD bool in_bounds(I i, int64_t size) {
  using U = std::make_unsigned_t<I>;
  return U(i) < U(size);
}

// Index of the nearest pixel: round half to even, as grid_sample (nearbyint). Coordinates
// are bounded to 2^30, so I may be int32 (which vectorises on the CPU).
template <class I, class F>
MEDIMG_HD I nearest_index(F x) {
  return I(nearbyint(x));
}

// The taps of one output pixel: where F.grid_sample reads (offsets within a channel plane) and
// with what weights, from the pixel's raw (unpadded) source coordinates, after padding. A tap
// outside the image weighs 0 and points inside the plane (reading it is safe; it adds nothing).
// I indexes within one channel plane, so the caller guarantees plane offsets fit in I. Offsets
// are summed in unsigned arithmetic (wrapping, never overflowing) and kept unsigned: they lie in
// [0, largest plane offset] (torch strides are never negative), and a 32-bit unsigned offset
// extends to a pointer's width with no instruction.
template <class F, int kDims, Interp kInterp, class I>
struct PointTaps {
  static constexpr int kCount = kInterp == Interp::Bilinear ? 1 << kDims : 1;
  std::make_unsigned_t<I> offset[kCount];
  F weight[kCount];  // nearest: 1 inside the image, 0 outside
};

template <class F, int kDims, Interp kInterp, Padding kPad, class I = int64_t>
MEDIMG_HD PointTaps<F, kDims, kInterp, I> point_taps(const F* raw, const WarpGeometry& g, bool align) {
  using U = std::make_unsigned_t<I>;
  PointTaps<F, kDims, kInterp, I> taps;
  F coord[kDims];
  for (int r = 0; r < kDims; ++r) coord[r] = padded_coordinate<kPad>(raw[r], g.size[r], align);
  if constexpr (kInterp == Interp::Nearest) {
    bool ok = true;
    U o = 0;
    for (int r = 0; r < kDims; ++r) {
      const I q = nearest_index<I>(coord[r]);
      ok = ok && in_bounds(q, g.size[r]);
      o += U(q) * U(g.stride[r]);
    }
    taps.offset[0] = ok ? o : U(0);
    taps.weight[0] = ok ? F(1) : F(0);
  } else {
    I lo[kDims];
    F frac[kDims];
    lower_corner<F, kDims, I>(coord, lo, frac);
    // Per axis, the lower and upper neighbour: offset and weight, both 0 outside the image. A tap
    // sums and multiplies those of its axes, so one outside axis gives it weight 0 (and an offset
    // inside the plane). Checking each axis once, not once per tap, halves the instructions.
    U axis_offset[kDims][2];
    F axis_weight[kDims][2];
    for (int r = 0; r < kDims; ++r) {
      for (int upper = 0; upper < 2; ++upper) {
        const I q = lo[r] + I(upper);
        const bool inside = in_bounds(q, g.size[r]);
        axis_offset[r][upper] = inside ? U(q) * U(g.stride[r]) : U(0);
        axis_weight[r][upper] = inside ? (upper ? frac[r] : F(1) - frac[r]) : F(0);
      }
    }
    for (int k = 0; k < (1 << kDims); ++k) {  // the products in tap_weight's order: equal weights
      U o = 0;
      F w = F(1);
      for (int r = 0; r < kDims; ++r) {
        o += axis_offset[r][(k >> r) & 1];
        w *= axis_weight[r][(k >> r) & 1];
      }
      taps.offset[k] = o;
      taps.weight[k] = w;
    }
  }
  return taps;
}

// The output value at a point from its taps, tap k's value given by value(k): bilinear
// interpolation through load_as / store_as, or the nearest value copied (0 outside a zero-padded
// image). A tap outside the image is not asked for, so it adds 0 even next to inf/NaN pixels.
// The CPU reads each value there (value(k) reads memory); the GPU reads them all first.
template <class T, class F, int kDims, Interp kInterp, class I, class Value>
MEDIMG_HD T blend_taps(const PointTaps<F, kDims, kInterp, I>& taps, const Value& value) {
  if constexpr (kInterp == Interp::Nearest) {
    return taps.weight[0] != F(0) ? value(0) : T{};
  } else {
    F acc = F(0);
    for (int k = 0; k < taps.kCount; ++k) {
      if (taps.weight[k] != F(0)) acc += taps.weight[k] * load_as<F>(value(k));
    }
    return store_as<T>(acc);
  }
}

// One output pixel, every channel, from its raw source coordinates: padding, taps and
// interpolation of F.grid_sample at one point. The CPU kernels run it on the few pixels per row
// next to the image border. src: the sample's channel 0; dst: the pixel in channel 0, channels
// `plane` elements apart.
template <class T, class F, int kDims, Interp kInterp, Padding kPad, class I = int64_t>
MEDIMG_HD void sample_point(const T* src, const F* raw, const WarpGeometry& g, bool align, T* dst, int64_t plane) {
  const auto taps = point_taps<F, kDims, kInterp, kPad, I>(raw, g, align);
  for (int64_t c = 0; c < g.c; ++c) {
    const T* s = src + c * g.channel_stride;
    dst[c * plane] = blend_taps<T>(taps, [&](int k) { return read_input(s + taps.offset[k]); });
  }
}

// Shapes, layouts and devices a warp kernel relies on (host code): coeffs (N, k, k + 1)
// contiguous, out contiguous like input, everything on input's device.
inline bool same_shape(const TensorView& a, const TensorView& b) {
  if (a.ndim != b.ndim) return false;
  for (int d = 0; d < a.ndim; ++d) {
    if (a.sizes[d] != b.sizes[d]) return false;
  }
  return true;
}

inline void check_warp_views(const TensorView& input, const TensorView& coeffs, const TensorView& out,
                             const char* out_name) {
  const int dims = input.ndim - 2;
  MEDIMG_CHECK_ARG(input.ndim == 4 || input.ndim == 5, "input: expected 4-d (N, C, H, W) or 5-d (N, C, D, H, W)");
  MEDIMG_CHECK_ARG(coeffs.ndim == 3 && coeffs.sizes[0] == input.sizes[0] && coeffs.sizes[1] == dims &&
                       coeffs.sizes[2] == dims + 1 && is_contiguous(coeffs),
                   "coeffs: expected a contiguous (N, k, k + 1) matrix per sample of input");
  MEDIMG_CHECK_ARG(same_shape(out, input) && is_contiguous(out),
                   std::string(out_name) + ": expected a contiguous tensor shaped like input");
  MEDIMG_CHECK_ARG(coeffs.device == input.device && out.device == input.device,
                   std::string("coeffs and ") + out_name + " must be on input's device");
}

// The backward's d(loss)/d(M) buffer: contiguous float64 (N, C, k, k + 1) on input's device,
// one matrix per (sample, channel) plane, summed over channels by the caller.
inline void check_grad_coeffs_view(const TensorView& input, const TensorView& grad_coeffs) {
  const int dims = input.ndim - 2;
  MEDIMG_CHECK_ARG(grad_coeffs.ndim == 4 && grad_coeffs.sizes[0] == input.sizes[0] &&
                       grad_coeffs.sizes[1] == input.sizes[1] && grad_coeffs.sizes[2] == dims &&
                       grad_coeffs.sizes[3] == dims + 1 && is_contiguous(grad_coeffs) &&
                       grad_coeffs.dtype == DType::Float64 && grad_coeffs.device == input.device,
                   "grad_coeffs: expected contiguous float64 (N, C, k, k + 1) on input's device");
}

}  // namespace medimg

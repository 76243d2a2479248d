// conv2d on the CPU: an implicit GEMM over packed panels, forward and weight gradient.
//
// Forward, per (sample, group): out[oc][p] = sum_k W[oc][k] * X[k][p], with p an output pixel
// and k = (ic, kh, kw); X is never materialised (no im2col buffer): one K block at a time, a
// chunk of strips of kNR output pixels is packed into L1-sized strip panels (together in L2),
// and the micro-kernel (gemm_micro.h) runs every kMR-row weight micro-panel (kept in L1) over
// all of them, so the weights stream once per chunk, not once per strip. For 1x1 stride-1
// layers the packing is a plain panel copy, i.e. the layer runs as a GEMM.
// Weight gradient: gW[oc][k] = sum_p dY[oc][p] * X[k][p] with the roles turned around: panels
// of dY (rows) and of X^T (columns) over chunks of pixels, per-thread accumulators, one
// reduction at the end. The input gradient is a forward convolution of dY with the flipped,
// transposed weights per stride phase, assembled in Python (medimg/ops/conv2d.py).
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "common/tensor_view.h"
#include "cpu/conv_dims.h"
#include "cpu/gemm_micro.h"
#include "cpu/winograd.h"
#include "cpu/kernels.h"

namespace medimg::cpu::MEDIMG_ISA_NS {
namespace {

constexpr int64_t kPanelBytes = 16 * 1024;  // one packed B strip: stays in L1 beside the A micro-panel
constexpr int64_t kStripsPerChunk = 16;      // strips per work unit: their panels (~256 KiB) stay in L2
constexpr int64_t kPixelChunk = 256;         // pixels per weight-gradient panel

// The t in [0, len) whose input column base + t * step lies in [0, size): [lo, hi).
inline void valid_span(int64_t base, int64_t step, int64_t size, int64_t len, int64_t* lo, int64_t* hi) {
  int64_t first = base >= 0 ? 0 : ceil_div(-base, step);
  int64_t last = size - 1 - base >= 0 ? (size - 1 - base) / step + 1 : 0;
  *lo = std::min(first, len);
  *hi = std::max(*lo, std::min(last, len));
}

// dst[t * dst_step] = row[(base + t * step) * col_stride] where that column exists, else 0.
template <class T>
inline void copy_row(const T* row, int64_t col_stride, int64_t base, int64_t step, int64_t size, int64_t len, T* dst,
                     int64_t dst_step) {
  int64_t lo, hi;
  valid_span(base, step, size, len, &lo, &hi);
  for (int64_t t = 0; t < lo; ++t) dst[t * dst_step] = T(0);
  const int64_t src_step = step * col_stride;
  const T* src = row + (base + lo * step) * col_stride;
  if (src_step == 1 && dst_step == 1) {
    std::copy(src, src + (hi - lo), dst + lo);
  } else {
    for (int64_t t = lo; t < hi; ++t) dst[t * dst_step] = src[(t - lo) * src_step];
  }
  for (int64_t t = hi; t < len; ++t) dst[t * dst_step] = T(0);
}

// B panel of the forward GEMM: dst[k - k0][j] = X[k][p0 + j] for k in [k0, k1), the kNR pixels
// of one strip (zero past the last pixel). x points at channel 0 of the (sample, group).
template <class T>
void pack_input_strip(const T* x, const ConvDims& d, int64_t p0, int64_t k0, int64_t k1, T* dst) {
  constexpr int64_t NR = kNR<T>;
  const int64_t taps = d.kh * d.kw;
  for (int64_t j = 0; j < NR;) {
    const int64_t p = p0 + j;
    if (p >= d.pixels()) {
      for (int64_t k = k0; k < k1; ++k) std::fill(dst + (k - k0) * NR + j, dst + (k - k0) * NR + NR, T(0));
      break;
    }
    const int64_t oh = p / d.ow, ow = p % d.ow;
    const int64_t len = std::min(NR - j, d.ow - ow);  // pixels of this strip in output row oh
    const int64_t ih0 = oh * d.stride_h - d.pad_h, iw0 = ow * d.stride_w - d.pad_w;
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t ic = k / taps, r = k % taps, ky = r / d.kw, kx = r % d.kw;
      T* out = dst + (k - k0) * NR + j;
      const int64_t ih = ih0 + ky * d.dil_h;
      if (ih < 0 || ih >= d.h) {
        std::fill(out, out + len, T(0));
      } else {
        copy_row(x + ic * d.sc + ih * d.sh_, d.sw_, iw0 + kx * d.dil_w, d.stride_w, d.w, len, out, 1);
      }
    }
    j += len;
  }
}

// B panel of the weight-gradient GEMM: dst[t][j] = X[c0 + j][p0 + t] for the len pixels of a
// chunk and the kNR columns k = c0 + j (zero past the last column).
template <class T>
void pack_input_columns(const T* x, const ConvDims& d, int64_t p0, int64_t len, int64_t c0, T* dst) {
  constexpr int64_t NR = kNR<T>;
  const int64_t taps = d.kh * d.kw;
  for (int64_t j = 0; j < NR; ++j) {
    const int64_t k = c0 + j;
    if (k >= d.k()) {
      for (int64_t t = 0; t < len; ++t) dst[t * NR + j] = T(0);
      continue;
    }
    const int64_t ic = k / taps, r = k % taps, ky = r / d.kw, kx = r % d.kw;
    for (int64_t t = 0; t < len;) {
      const int64_t p = p0 + t, oh = p / d.ow, ow = p % d.ow;
      const int64_t seg = std::min(len - t, d.ow - ow);
      const int64_t ih = oh * d.stride_h - d.pad_h + ky * d.dil_h;
      T* out = dst + t * NR + j;
      if (ih < 0 || ih >= d.h) {
        for (int64_t s = 0; s < seg; ++s) out[s * NR] = T(0);
      } else {
        copy_row(x + ic * d.sc + ih * d.sh_, d.sw_, ow * d.stride_w - d.pad_w + kx * d.dil_w, d.stride_w, d.w, seg,
                 out, NR);
      }
      t += seg;
    }
  }
}

// Weights as A panels: [group][row block][k][kMR], rows past the group's channels zero.
template <class T>
std::vector<T> pack_weights(const TensorView& weight, const ConvDims& d) {
  const int64_t ocg = d.ocg(), blocks = ceil_div(ocg, kMR), K = d.k();
  std::vector<T> packed(size_t(d.groups * blocks * K * kMR), T(0));
  const T* w = weight.ptr<const T>();
  for (int64_t g = 0; g < d.groups; ++g)
    for (int64_t o = 0; o < ocg; ++o) {
      const int64_t oc = g * ocg + o;
      T* dst = packed.data() + ((g * blocks + o / kMR) * K) * kMR + o % kMR;
      for (int64_t ic = 0; ic < d.icg; ++ic)
        for (int64_t ky = 0; ky < d.kh; ++ky)
          for (int64_t kx = 0; kx < d.kw; ++kx) {
            const int64_t k = (ic * d.kh + ky) * d.kw + kx;
            dst[k * kMR] = w[oc * weight.strides[0] + ic * weight.strides[1] + ky * weight.strides[2] +
                             kx * weight.strides[3]];
          }
    }
  return packed;
}

// Bias per group padded to whole row blocks (empty when there is none).
template <class T>
std::vector<T> pack_bias(const TensorView& bias, bool has_bias, const ConvDims& d) {
  if (!has_bias) return {};
  const int64_t ocg = d.ocg(), padded = ceil_div(ocg, kMR) * kMR;
  std::vector<T> packed(size_t(d.groups * padded), T(0));
  for (int64_t g = 0; g < d.groups; ++g)
    for (int64_t o = 0; o < ocg; ++o) packed[g * padded + o] = bias.ptr<const T>()[(g * ocg + o) * bias.strides[0]];
  return packed;
}

template <class T>
void forward_typed(const TensorView& input, const TensorView& weight, const TensorView& bias, bool has_bias,
                   const TensorView& out, const ConvGeometry& geometry, bool relu, int num_threads) {
  constexpr int64_t NR = kNR<T>;
  const ConvDims d = make_dims(input, weight, out.sizes[2], out.sizes[3], geometry);
  const int64_t K = d.k(), P = d.pixels(), ocg = d.ocg(), blocks = ceil_div(ocg, kMR);
  const int64_t k_blocks = ceil_div(K, kPanelBytes / int64_t(NR * sizeof(T)));
  const int64_t kc_max = ceil_div(K, k_blocks);  // balanced K blocks
  const int64_t strips = ceil_div(P, NR), chunks = ceil_div(strips, kStripsPerChunk);
  const int64_t units = d.n * d.groups * chunks;
  const std::vector<T> b_rows = pack_bias<T>(bias, has_bias, d);
  const T* x = input.ptr<const T>();
  T* y = out.ptr<T>();
  if constexpr (std::is_same_v<T, float>) {
    if (winograd_suits(d)) {
      winograd_forward(x, weight, has_bias ? b_rows.data() : nullptr, y, d, relu, num_threads);
      return;
    }
  }
  const std::vector<T> a = pack_weights<T>(weight, d);

#pragma omp parallel num_threads(threads_for(d.n * d.oc * P * K, num_threads))
  {
    std::vector<T> panel(size_t(kStripsPerChunk * kc_max * NR));
#pragma omp for schedule(static)
    for (int64_t u = 0; u < units; ++u) {
      const int64_t n = u / (d.groups * chunks), g = (u / chunks) % d.groups, s0 = (u % chunks) * kStripsPerChunk;
      const int64_t s1 = std::min(strips, s0 + kStripsPerChunk);
      const T* xg = x + n * d.sn + g * d.icg * d.sc;
      T* yg = y + (n * d.oc + g * ocg) * P;
      for (int64_t k0 = 0; k0 < K; k0 += kc_max) {
        const int64_t k1 = std::min(K, k0 + kc_max), kc = k1 - k0;
        for (int64_t s = s0; s < s1; ++s) pack_input_strip(xg, d, s * NR, k0, k1, panel.data() + (s - s0) * kc * NR);
        TileEpilogue<T> e;
        e.load_c = k0 > 0;
        e.relu = relu && k1 == K;
        for (int64_t mb = 0; mb < blocks; ++mb) {  // the A micro-panel stays in L1 across the strips
          e.bias = (k0 == 0 && has_bias) ? b_rows.data() + g * blocks * kMR + mb * kMR : nullptr;
          const int rows = int(std::min<int64_t>(kMR, ocg - mb * kMR));
          for (int64_t s = s0; s < s1; ++s)
            micro_tile(kc, a.data() + ((g * blocks + mb) * K + k0) * kMR, panel.data() + (s - s0) * kc * NR,
                       yg + mb * kMR * P + s * NR, P, rows, int(std::min(NR, P - s * NR)), e);
        }
      }
    }
  }
}

template <class T>
void grad_weight_typed(const TensorView& grad_out, const TensorView& input, const TensorView& grad_weight,
                       const ConvGeometry& geometry, int num_threads) {
  constexpr int64_t NR = kNR<T>;
  check_view(grad_out, "grad_out", 4);
  const ConvDims d = make_dims(input, grad_weight, grad_out.sizes[2], grad_out.sizes[3], geometry);
  const int64_t K = d.k(), P = d.pixels(), ocg = d.ocg(), blocks = ceil_div(ocg, kMR);
  const int64_t col_strips = ceil_div(K, NR), k_padded = col_strips * NR, rows_padded = blocks * kMR;
  const int64_t chunks = ceil_div(P, kPixelChunk), units = d.n * d.groups * chunks;
  const int64_t gs_n = grad_out.strides[0], gs_c = grad_out.strides[1], gs_h = grad_out.strides[2],
                gs_w = grad_out.strides[3];
  const T* x = input.ptr<const T>();
  const T* dy = grad_out.ptr<const T>();
  std::vector<T> total(size_t(d.groups * rows_padded * k_padded), T(0));

#pragma omp parallel num_threads(threads_for(d.n * d.oc * P * K, num_threads))
  {
    std::vector<T> acc(total.size(), T(0));
    std::vector<T> a_panel(size_t(blocks * kPixelChunk * kMR)), b_panel(size_t(kPixelChunk * NR));
#pragma omp for schedule(static)
    for (int64_t u = 0; u < units; ++u) {
      const int64_t n = u / (d.groups * chunks), g = (u / chunks) % d.groups, p0 = (u % chunks) * kPixelChunk;
      const int64_t len = std::min(kPixelChunk, P - p0);
      for (int64_t o = 0; o < rows_padded; ++o) {  // A panels: dY rows of this chunk, kMR at a time
        T* dst = a_panel.data() + (o / kMR) * kPixelChunk * kMR + o % kMR;
        if (o >= ocg) {
          for (int64_t t = 0; t < len; ++t) dst[t * kMR] = T(0);
          continue;
        }
        const T* src = dy + n * gs_n + (g * ocg + o) * gs_c;
        if (gs_h == d.ow * gs_w) {  // rows of dY follow each other: pixels are one stride apart
          for (int64_t t = 0; t < len; ++t) dst[t * kMR] = src[(p0 + t) * gs_w];
          continue;
        }
        for (int64_t t = 0; t < len; ++t) {
          const int64_t p = p0 + t;
          dst[t * kMR] = src[(p / d.ow) * gs_h + (p % d.ow) * gs_w];
        }
      }
      const T* xg = x + n * d.sn + g * d.icg * d.sc;
      T* acc_g = acc.data() + g * rows_padded * k_padded;
      for (int64_t cs = 0; cs < col_strips; ++cs) {
        pack_input_columns(xg, d, p0, len, cs * NR, b_panel.data());
        TileEpilogue<T> e;
        e.load_c = true;
        for (int64_t mb = 0; mb < blocks; ++mb)
          micro_tile(len, a_panel.data() + mb * kPixelChunk * kMR, b_panel.data(),
                     acc_g + mb * kMR * k_padded + cs * NR, k_padded, kMR, int(NR), e);
      }
    }
#pragma omp critical
    for (size_t i = 0; i < total.size(); ++i) total[i] += acc[i];
  }

  T* gw = grad_weight.ptr<T>();
  for (int64_t g = 0; g < d.groups; ++g)
    for (int64_t o = 0; o < ocg; ++o)
      for (int64_t k = 0; k < K; ++k) gw[(g * ocg + o) * K + k] = total[(g * rows_padded + o) * k_padded + k];
}

void check_float_views(const TensorView& a, const TensorView& b, const TensorView& c) {
  MEDIMG_CHECK_ARG(a.dtype == DType::Float32 || a.dtype == DType::Float64,
                   std::string("conv2d: expected float32 or float64, got ") + dtype_name(a.dtype));
  MEDIMG_CHECK_ARG(b.dtype == a.dtype && c.dtype == a.dtype, "conv2d: tensors must share one dtype");
}

}  // namespace

void conv2d_forward(const TensorView& input, const TensorView& weight, const TensorView& bias, bool has_bias,
                    const TensorView& out, const ConvGeometry& geometry, bool relu, int num_threads) {
  check_float_views(input, weight, out);
  check_view(out, "out", 4);
  MEDIMG_CHECK_ARG(out.strides[3] == 1 && out.strides[2] == out.sizes[3] && out.strides[1] == out.sizes[2] * out.sizes[3] &&
                       out.strides[0] == out.sizes[1] * out.strides[1],
                   "conv2d: out must be contiguous");
  if (input.dtype == DType::Float32) {
    forward_typed<float>(input, weight, bias, has_bias, out, geometry, relu, num_threads);
  } else {
    forward_typed<double>(input, weight, bias, has_bias, out, geometry, relu, num_threads);
  }
}

void conv2d_grad_weight(const TensorView& grad_out, const TensorView& input, const TensorView& grad_weight,
                        const ConvGeometry& geometry, int num_threads) {
  check_float_views(input, grad_out, grad_weight);
  check_view(grad_weight, "grad_weight", 4);
  MEDIMG_CHECK_ARG(grad_weight.strides[3] == 1 && grad_weight.strides[2] == grad_weight.sizes[3] &&
                       grad_weight.strides[1] == grad_weight.sizes[2] * grad_weight.sizes[3] &&
                       grad_weight.strides[0] == grad_weight.sizes[1] * grad_weight.strides[1],
                   "conv2d: grad_weight must be contiguous");
  if (input.dtype == DType::Float32) {
    grad_weight_typed<float>(grad_out, input, grad_weight, geometry, num_threads);
  } else {
    grad_weight_typed<double>(grad_out, input, grad_weight, geometry, num_threads);
  }
}

}  // namespace medimg::cpu::MEDIMG_ISA_NS

// Sizes of one conv2d call as the CPU kernels read them (csrc/cpu/conv2d.cpp, winograd.cpp).
#pragma once

#include <algorithm>
#include <cstdint>

#include "common/tensor_view.h"
#include "cpu/kernels.h"

namespace medimg::cpu::MEDIMG_ISA_NS {

constexpr int64_t kParallelWork = int64_t(1) << 18;  // multiply-adds below which one thread is faster

inline int threads_for(int64_t work, int num_threads) { return work >= kParallelWork ? std::max(1, num_threads) : 1; }

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Sizes and strides of one convolution; input may have any strides.
struct ConvDims {
  int64_t n, c, h, w;                // input
  int64_t sn, sc, sh_, sw_;          // input strides
  int64_t oc, icg, kh, kw, groups;   // weight (OC, C / groups, KH, KW)
  int64_t oh, ow;                    // output
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  int64_t ocg() const { return oc / groups; }
  int64_t k() const { return icg * kh * kw; }
  int64_t pixels() const { return oh * ow; }
};

inline ConvDims make_dims(const TensorView& input, const TensorView& weight, int64_t out_h, int64_t out_w,
                          const ConvGeometry& g) {
  check_view(input, "input", 4);
  check_view(weight, "weight", 4);
  ConvDims d{};
  d.n = input.sizes[0], d.c = input.sizes[1], d.h = input.sizes[2], d.w = input.sizes[3];
  d.sn = input.strides[0], d.sc = input.strides[1], d.sh_ = input.strides[2], d.sw_ = input.strides[3];
  d.oc = weight.sizes[0], d.icg = weight.sizes[1], d.kh = weight.sizes[2], d.kw = weight.sizes[3];
  d.groups = g.groups;
  d.oh = out_h, d.ow = out_w;
  d.stride_h = g.stride[0], d.stride_w = g.stride[1], d.pad_h = g.pad[0], d.pad_w = g.pad[1];
  d.dil_h = g.dilation[0], d.dil_w = g.dilation[1];
  MEDIMG_CHECK_ARG(d.groups >= 1 && d.c == d.icg * d.groups && d.oc % d.groups == 0,
                   "conv2d: channels do not match groups");
  MEDIMG_CHECK_ARG(d.stride_h >= 1 && d.stride_w >= 1 && d.dil_h >= 1 && d.dil_w >= 1,
                   "conv2d: stride and dilation must be >= 1");
  return d;
}

}  // namespace medimg::cpu::MEDIMG_ISA_NS

// CPU kernel entry points. Each kernel file is compiled once per instruction set into
// medimg::cpu::<isa>; dispatch.cpp picks the table for the running CPU.
#pragma once

#include <cstdint>

#include "common/label_stats.h"
#include "common/tensor_view.h"

namespace medimg::cpu {

// conv2d geometry as F.conv2d's, except that the padding is the top/left one only (may be
// negative: a crop); the output size comes from the output view, reads past the input are 0.
struct ConvGeometry {
  int64_t stride[2];
  int64_t pad[2];
  int64_t dilation[2];
  int64_t groups;
};

// seg_stats: pred, target (N, R, L) integer views of one dtype; out (N, K, 3) int64, zeroed;
//   returns the first invalid label met (which == kNoError when there is none).
// soft_dice_stats: probs (N, C, S); target (N, S) labels or (N, C, S); out (N, C, 3) float32/64;
//   returns the number of labels outside [0, C).
// affine_warp: input (N, C, [D,] H, W) any strides, plane offsets < 2^31; coeffs (N, k, k + 1)
//   float64 mapping output pixel (w, h[, d], 1) to input coordinates; out contiguous.
// affine_warp_backward: grad_input contiguous zeroed like input; grad_coeffs (N, C, k, k + 1)
//   float64 zeroed (summed over C by the caller).
// conv2d_forward: input (N, C, H, W) any strides; weight (OC, C / groups, KH, KW); bias (OC,)
//   when has_bias; out (N, OC, OH, OW) contiguous; float32 or float64 throughout.
// conv2d_grad_weight: grad_out (N, OC, OH, OW), input as above; grad_weight contiguous.
// gaussian_noise: out = image + sigma[n] * z, image and out contiguous (N, ...), sigma (N,), one
//   float dtype; z from Philox4x32-10 under `seed` (cpu/gaussian_noise.cpp).
// gamma_curve: out = clamp((image - low[n]) / extent[n], 0, 1) ^ gamma[n] * extent[n] + low[n],
//   image and out contiguous float32 (N, ...), the rest float32 (N,) (cpu/gamma_curve.cpp).
#define MEDIMG_CPU_KERNEL_DECLS                                                                 \
  LabelError seg_stats(const TensorView& pred, const TensorView& target, const TensorView& out, \
                       int64_t num_classes, bool has_ignore, int64_t ignore_index, int num_threads); \
  int64_t soft_dice_stats(const TensorView& probs, const TensorView& target, bool target_is_labels, \
                          const TensorView& out, int num_threads);                              \
  void soft_dice_backward(const TensorView& grad_stats, const TensorView& target,               \
                          bool target_is_labels, const TensorView& grad_probs, int num_threads);        \
  void affine_warp(const TensorView& input, const TensorView& coeffs, const TensorView& out, int32_t interp,  \
                   int32_t padding, bool align_corners, int num_threads);                                   \
  void affine_warp_backward(const TensorView& grad_out, const TensorView& input, const TensorView& coeffs,    \
                            const TensorView& grad_input, const TensorView& grad_coeffs, bool need_input,    \
                            bool need_coeffs, int32_t interp, int32_t padding, bool align_corners,           \
                            int num_threads);                                                 \
  void conv2d_forward(const TensorView& input, const TensorView& weight, const TensorView& bias, bool has_bias, \
                      const TensorView& out, const ConvGeometry& geometry, bool relu, int num_threads);        \
  void conv2d_grad_weight(const TensorView& grad_out, const TensorView& input, const TensorView& grad_weight,   \
                          const ConvGeometry& geometry, int num_threads);                                     \
  void gaussian_noise(const TensorView& image, const TensorView& sigma, uint64_t seed, const TensorView& out,   \
                      int num_threads);                                                                          \
  void gamma_curve(const TensorView& image, const TensorView& gamma, const TensorView& low,                     \
                   const TensorView& extent, const TensorView& out, int num_threads);

namespace baseline {
MEDIMG_CPU_KERNEL_DECLS
}
namespace avx2 {
MEDIMG_CPU_KERNEL_DECLS
}

// One instruction set's kernels.
struct KernelTable {
  const char* isa;
  decltype(&baseline::seg_stats) seg_stats;
  decltype(&baseline::soft_dice_stats) soft_dice_stats;
  decltype(&baseline::soft_dice_backward) soft_dice_backward;
  decltype(&baseline::affine_warp) affine_warp;
  decltype(&baseline::affine_warp_backward) affine_warp_backward;
  decltype(&baseline::conv2d_forward) conv2d_forward;
  decltype(&baseline::conv2d_grad_weight) conv2d_grad_weight;
  decltype(&baseline::gaussian_noise) gaussian_noise;
  decltype(&baseline::gamma_curve) gamma_curve;
};

const KernelTable& active_kernels();
// Names of the instruction sets built into this module that the running CPU supports.
const char* const* supported_isas(int* count);
// Selects an instruction set by name ("auto" picks the best); throws if unsupported.
void select_isa(const char* name);

}  // namespace medimg::cpu

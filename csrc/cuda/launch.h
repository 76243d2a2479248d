// Host-callable CUDA launchers (plain C++ signatures, so the pybind11 binding compiles with
// the host compiler and only kernels go through nvcc). Views carry device pointers.
#pragma once

#include <cstdint>
#include <string>

#include "common/label_stats.h"
#include "common/tensor_view.h"

namespace medimg::cuda {

// Visible CUDA devices; 0 (not an error) when there is no driver or no device.
int device_count();
std::string runtime_version();

// pred, target: (N, R, L) integer views; out: (N, K, 3) int64 zeroed; error: int64[5] holding
// -1 first, set to (which, sample, row, col, value) of an invalid label.
void seg_stats(const TensorView& pred, const TensorView& target, const TensorView& out, int64_t num_classes,
               bool has_ignore, int64_t ignore_index, const TensorView& error, uintptr_t stream);

// probs: (N, C, S); target: (N, S) labels or (N, C, S) soft; out: (N, C, 3) float64 zeroed;
// invalid: int64[1] zeroed, incremented per label outside [0, C).
void soft_dice_stats(const TensorView& probs, const TensorView& target, bool target_is_labels,
                     const TensorView& out, const TensorView& invalid, uintptr_t stream);

void soft_dice_backward(const TensorView& grad_stats, const TensorView& target, bool target_is_labels,
                        const TensorView& grad_probs, uintptr_t stream);

// input (N, C, [D,] H, W) any strides; coeffs (N, k, k + 1) float64; out contiguous like input.
void affine_warp(const TensorView& input, const TensorView& coeffs, const TensorView& out, int32_t interp,
                 int32_t padding, bool align_corners, uintptr_t stream);

// affine_grid_sample's fixed-theta call: coeffs (contiguous (N, k, k + 1) float64, on the
// device) = pixel_coefficients(theta (N, k, k + 1) float32/float64, any strides; constants as
// common/pixel_coefficients.h, on the device), then affine_warp. With check_finite, waits for
// the stream to read coeffs back, and returns false, warping nothing, if one is not finite.
bool affine_warp_theta(const TensorView& input, const TensorView& theta, const TensorView& constants,
                       const TensorView& coeffs, const TensorView& out, int32_t interp, int32_t padding,
                       bool align_corners, bool check_finite, uintptr_t stream);

// grad_input: contiguous zeroed, float32 (float64 for float64 input); grad_coeffs: (N, C, k, k + 1)
// float64 zeroed, filled in channel slot 0 (the caller sums over C).
void affine_warp_backward(const TensorView& grad_out, const TensorView& input, const TensorView& coeffs,
                          const TensorView& grad_input, const TensorView& grad_coeffs, bool need_input,
                          bool need_coeffs, int32_t interp, int32_t padding, bool align_corners, uintptr_t stream);

// RandomAffine's matrices, one thread per sample; views as common/random_affine.h.
void random_affine(const TensorView& uniform, const TensorView& spec, const TensorView& theta,
                   const TensorView& coeffs, bool shear, bool translate, bool round_to_float, uintptr_t stream);

// image, out: contiguous (N, ...) float32/float64; sigma: (N,) image's dtype; seed: int64 scalar
// on the device. out = image + sigma[n] * z, z the CPU kernel's Philox normals.
void gaussian_noise(const TensorView& image, const TensorView& sigma, const TensorView& seed, const TensorView& out,
                    uintptr_t stream);

// gaussian_noise with sample n's sigma drawn from the seed on the device (common/noise_sigma.h):
// with probability p, uniform on [low, high]; else 0.
void random_gaussian_noise(const TensorView& image, const TensorView& seed, double low, double high, double p,
                           const TensorView& out, uintptr_t stream);

// image, out: contiguous (N, ...) floating (16-bit included); gamma, low, extent: (N,) image's
// dtype. out = clamp((image - low) / extent, 0, 1) ^ gamma * extent + low per sample.
void gamma_curve(const TensorView& image, const TensorView& gamma, const TensorView& low, const TensorView& extent,
                 const TensorView& out, uintptr_t stream);

}  // namespace medimg::cuda

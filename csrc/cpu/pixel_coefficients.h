// pixel_coefficients on the CPU, for affine_grid_sample's eager path (not per ISA: a few numbers
// per sample, compiled once).
#pragma once

#include "common/tensor_view.h"

namespace medimg::cpu {

// coeffs[n] (N x k x (k + 1), contiguous float64, caller's memory) of theta (N, k, k + 1),
// float32 or float64 with any strides, and constants (k, k + 2, k + 1) float64 contiguous
// (common/pixel_coefficients.h). Returns whether every coefficient is finite.
bool pixel_coefficients(const TensorView& theta, const TensorView& constants, double* coeffs);

}  // namespace medimg::cpu

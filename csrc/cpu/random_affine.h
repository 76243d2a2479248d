// RandomAffine's matrices on the CPU (not per ISA: a few hundred samples at most, compiled once).
#pragma once

#include "common/tensor_view.h"

namespace medimg::cpu {

// uniform (N, columns), spec, theta and coeffs (N, k, k + 1): float64, contiguous, on the CPU;
// see common/random_affine.h.
void random_affine(const TensorView& uniform, const TensorView& spec, const TensorView& theta,
                   const TensorView& coeffs, bool shear, bool translate, bool round_to_float);

}  // namespace medimg::cpu

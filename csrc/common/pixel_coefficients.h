// pixel_coefficients (medimg/ops/affine.py) for one sample, shared by the CPU and CUDA kernels:
// theta (F.affine_grid's convention) folded with affine_grid's base grid and grid_sample's
// unnormalisation into M, input pixel coordinate = M · (w, h[, d], 1).
//
// The Python formula's operations in its order, each product and sum rounded on its own (no
// fused multiply-add), so the same bits: on the host, files that include this header are
// compiled with -ffp-contract=off; on the device, mul_rn and add_rn (common/rounding.h) round
// explicitly.
#pragma once

#include "common/macros.h"
#include "common/rounding.h"
#include "common/tensor_view.h"

namespace medimg {

// coeffs (K x (K + 1), row-major) of one sample's theta (K x (K + 1), row-major, float64) and
// the constants (K x (K + 2) x (K + 1), coefficient_constants in medimg/ops/affine.py): row r
// of M is row r of theta times constants[r][0 .. K], plus constants[r][K + 1].
template <int K>
MEDIMG_HD void fold_theta(const double* theta, const double* constants, double* coeffs) {
  for (int r = 0; r < K; ++r) {
    const double* c = constants + r * (K + 2) * (K + 1);
    const double* row = theta + r * (K + 1);
    for (int a = 0; a <= K; ++a) {
      double sum = mul_rn(row[0], c[a]);
      for (int j = 1; j <= K; ++j) sum = add_rn(sum, mul_rn(row[j], c[j * (K + 1) + a]));
      coeffs[r * (K + 1) + a] = add_rn(sum, c[(K + 1) * (K + 1) + a]);
    }
  }
}

// fold_theta of sample i of theta (N, K, K + 1) of T (float or double), any strides, into
// coeffs (K x (K + 1)): the CPU loop's and the CUDA kernel's one step.
template <class T, int K>
MEDIMG_HD void fold_sample(const TensorView& theta, int64_t i, const double* constants, double* coeffs) {
  const T* t = theta.ptr<const T>() + i * theta.strides[0];
  double values[K * (K + 1)];
  for (int r = 0; r < K; ++r) {
    for (int j = 0; j <= K; ++j) values[r * (K + 1) + j] = double(t[r * theta.strides[1] + j * theta.strides[2]]);
  }
  fold_theta<K>(values, constants, coeffs);
}

// The views fold_theta reads, checked on the host: theta (N, k, k + 1) float32 or float64 with
// any strides, constants contiguous float64 (k, k + 2, k + 1) on theta's device. Returns k.
inline int check_fold_views(const TensorView& theta, const TensorView& constants) {
  check_view(theta, "theta", 3);
  check_view(constants, "constants", 3);
  const int64_t k = theta.sizes[1];
  MEDIMG_CHECK_ARG((k == 2 || k == 3) && theta.sizes[2] == k + 1, "theta: must be (N, 2, 3) or (N, 3, 4)");
  MEDIMG_CHECK_ARG(theta.dtype == DType::Float32 || theta.dtype == DType::Float64, "theta: must be float32 or float64");
  MEDIMG_CHECK_ARG(constants.dtype == DType::Float64 && is_contiguous(constants) && constants.sizes[0] == k &&
                       constants.sizes[1] == k + 2 && constants.sizes[2] == k + 1 &&
                       constants.device == theta.device,
                   "constants: must be contiguous float64 (k, k + 2, k + 1) on theta's device");
  return int(k);
}

}  // namespace medimg

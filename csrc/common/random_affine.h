// RandomAffine's per-sample matrices from its uniform draws, shared by the CPU and CUDA ops.
//
// One sample: uniforms -> theta (F.affine_grid's convention) -> the warp's pixel coefficients,
// the arithmetic of the Python reference (_compose_theta in medimg/transforms/affine.py, then
// pixel_coefficients in medimg/ops/affine.py) in the same order, operation by operation, so
// the same bits but for sin, cos and tan. Products and sums are rounded one at a time (no
// fused multiply-add), as NumPy's and torch's elementwise ops round them; on the host the file
// that includes this header is compiled with -ffp-contract=off.
//
// spec (float64), built by _kernel_spec in medimg/transforms/affine.py: low[cols], span[cols]
// (column c's range is low + span * u), probabilities[k + 1] (a flip per axis, then "transform
// this sample"), ratio[k][k + 1] (centred pixel units to normalised ones), fold[k][k + 2][k + 1]
// (pixel_coefficients' constants). Columns: k flip events, the apply event, the zoom, the
// rotation angles (1 in 2D; z, y, x in 3D), the shear angle if any, the k translations if any.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/macros.h"
#include "common/pixel_coefficients.h"
#include "common/tensor_view.h"

namespace medimg {

MEDIMG_HD int random_affine_columns(int k, bool shear, bool translate) {
  return k + 2 + (k == 2 ? 1 : 3) + (shear ? 1 : 0) + (translate ? k : 0);
}

MEDIMG_HD int random_affine_spec_size(int k, bool shear, bool translate) {
  return 2 * random_affine_columns(k, shear, translate) + (k + 1) + k * (k + 1) + k * (k + 2) * (k + 1);
}

// out = a · b for 3 x 3 matrices, each entry summed in index order (ordered_matmul).
MEDIMG_HD void ordered_product3(const double a[3][3], const double b[3][3], double out[3][3]) {
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      double sum = mul_rn(a[i][0], b[0][j]);
      for (int m = 1; m < 3; ++m) sum = add_rn(sum, mul_rn(a[i][m], b[m][j]));
      out[i][j] = sum;
    }
  }
}

// The identity, with cos/sin of one angle in the plane of axes i < j: [i][i] = cos,
// [i][j] = -sin, [j][i] = sin, [j][j] = cos.
MEDIMG_HD void plane_rotation(double cos_a, double sin_a, int i, int j, double r[3][3]) {
  for (int a = 0; a < 3; ++a) {
    for (int b = 0; b < 3; ++b) r[a][b] = a == b ? 1.0 : 0.0;
  }
  r[i][i] = cos_a;
  r[i][j] = -sin_a;
  r[j][i] = sin_a;
  r[j][j] = cos_a;
}

// R^-1 = R^T (k x k, row stride 3) of the angles: 2D one angle; 3D R = Rz Ry Rx.
template <int K>
MEDIMG_HD void inverse_rotation(const double* angles, double inverse[3][3]) {
  if constexpr (K == 2) {
    const double c = cos(angles[0]), s = sin(angles[0]);
    inverse[0][0] = c;
    inverse[0][1] = s;
    inverse[1][0] = -s;
    inverse[1][1] = c;
  } else {
    double rz[3][3], ry[3][3], rx[3][3], zy[3][3], r[3][3];
    plane_rotation(cos(angles[0]), sin(angles[0]), 0, 1, rz);
    plane_rotation(cos(angles[1]), sin(angles[1]), 0, 2, ry);
    plane_rotation(cos(angles[2]), sin(angles[2]), 1, 2, rx);
    ordered_product3(rz, ry, zy);
    ordered_product3(zy, rx, r);
    for (int i = 0; i < 3; ++i) {
      for (int j = 0; j < 3; ++j) inverse[i][j] = r[j][i];
    }
  }
}

// One sample: theta (K x (K + 1), row-major, float64) and, from theta rounded to float32
// when `round_to_float` (as RandomAffine casts it for float32 images), the coefficients.
template <int K>
MEDIMG_HD void random_affine_sample(const double* uniform, const double* spec, bool shear, bool translate,
                                    bool round_to_float, double* theta, double* coeffs) {
  constexpr int kMaxColumns = K + 2 + 3 + 1 + K;
  const int cols = random_affine_columns(K, shear, translate);
  const double* low = spec;
  const double* span = low + cols;
  const double* probabilities = span + cols;
  const double* ratio = probabilities + K + 1;
  const double* fold = ratio + K * (K + 1);

  double draws[kMaxColumns];
  for (int c = 0; c < cols; ++c) draws[c] = add_rn(low[c], mul_rn(uniform[c], span[c]));
  const int angles = K + 2, angle_count = K == 2 ? 1 : 3;

  double inverse[3][3];
  inverse_rotation<K>(draws + angles, inverse);
  if (shear) {  // S^-1 = I - tan(a) e_x e_y^T: row 0 minus tan(a) times row 1
    const double t = tan(draws[angles + angle_count]);
    for (int j = 0; j < K; ++j) inverse[0][j] = inverse[0][j] - mul_rn(t, inverse[1][j]);
  }
  for (int r = 0; r < K; ++r) {  // D^-1: flips and 1 / zoom scale the rows
    const double row_scale = (draws[r] < probabilities[r] ? -1.0 : 1.0) / draws[K + 1];
    for (int j = 0; j < K; ++j) inverse[r][j] = mul_rn(inverse[r][j], row_scale);
  }
  const bool apply = draws[K] < probabilities[K];
  const double* shift_draws = draws + angles + angle_count + (shear ? 1 : 0);
  for (int r = 0; r < K; ++r) {
    double shift = 0.0;
    if (translate) {
      double sum = mul_rn(inverse[r][0], shift_draws[0]);
      for (int j = 1; j < K; ++j) sum = add_rn(sum, mul_rn(inverse[r][j], shift_draws[j]));
      shift = -sum;
    }
    for (int j = 0; j <= K; ++j) {
      const double value = j < K ? inverse[r][j] : shift;
      theta[r * (K + 1) + j] = apply ? mul_rn(value, ratio[r * (K + 1) + j]) : (r == j ? 1.0 : 0.0);
    }
  }

  double rounded[K * (K + 1)];  // pixel_coefficients of theta as the warp gets it
  for (int i = 0; i < K * (K + 1); ++i) rounded[i] = round_to_float ? double(float(theta[i])) : theta[i];
  fold_theta<K>(rounded, fold, coeffs);
}

// The op's views, checked on the host before either backend runs: uniform (N, columns),
// spec (size), theta and coeffs (N, k, k + 1), all float64 and contiguous; k 2 or 3.
inline int check_random_affine_views(const TensorView& uniform, const TensorView& spec, const TensorView& theta,
                                     const TensorView& coeffs, bool shear, bool translate) {
  check_view(theta, "theta", 3);
  check_view(coeffs, "coeffs", 3);
  check_view(uniform, "uniform", 2);
  check_view(spec, "spec", 1);
  const int k = int(theta.sizes[1]);
  MEDIMG_CHECK_ARG(k == 2 || k == 3, "random_affine: theta must be (N, 2, 3) or (N, 3, 4)");
  const int64_t n = theta.sizes[0];
  MEDIMG_CHECK_ARG(theta.sizes[2] == k + 1 && coeffs.sizes[0] == n && coeffs.sizes[1] == k &&
                       coeffs.sizes[2] == k + 1,
                   "random_affine: theta and coeffs must both be (N, k, k + 1)");
  MEDIMG_CHECK_ARG(uniform.sizes[0] == n && uniform.sizes[1] == random_affine_columns(k, shear, translate),
                   "random_affine: uniform must be (N, columns of the draw layout)");
  MEDIMG_CHECK_ARG(spec.sizes[0] == random_affine_spec_size(k, shear, translate),
                   "random_affine: spec has the wrong length for the draw layout");
  for (const TensorView* v : {&uniform, &spec, &theta, &coeffs}) {
    MEDIMG_CHECK_ARG(v->dtype == DType::Float64, "random_affine: views must be float64");
    MEDIMG_CHECK_ARG(v->device == theta.device, "random_affine: views must be on one device");
    MEDIMG_CHECK_ARG(is_contiguous(*v), "random_affine: views must be contiguous");
  }
  return k;
}

}  // namespace medimg

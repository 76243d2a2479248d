// pixel_coefficients on the CPU. Compiled with -ffp-contract=off (see CMakeLists.txt), so every
// product and sum rounds on its own, as common/pixel_coefficients.h requires.
#include "cpu/pixel_coefficients.h"

#include <cmath>

#include "common/pixel_coefficients.h"

namespace medimg::cpu {

bool pixel_coefficients(const TensorView& theta, const TensorView& constants, double* coeffs) {
  const int64_t k = check_fold_views(theta, constants);
  MEDIMG_CHECK_ARG(theta.device == kCpuDevice, "theta: must be on the CPU");
  const int64_t n = theta.sizes[0];
  const int64_t per_sample = k * (k + 1);
  bool finite = true;
  for (int64_t i = 0; i < n; ++i) {
    double values[12];  // theta of sample i as float64, row-major
    for (int64_t r = 0; r < k; ++r) {
      for (int64_t j = 0; j <= k; ++j) {
        const int64_t at = i * theta.strides[0] + r * theta.strides[1] + j * theta.strides[2];
        values[r * (k + 1) + j] = theta.dtype == DType::Float64 ? theta.ptr<const double>()[at]
                                                                 : double(theta.ptr<const float>()[at]);
      }
    }
    double* out = coeffs + i * per_sample;
    if (k == 2) {
      fold_theta<2>(values, constants.ptr<const double>(), out);
    } else {
      fold_theta<3>(values, constants.ptr<const double>(), out);
    }
    for (int64_t c = 0; c < per_sample; ++c) finite = finite && std::isfinite(out[c]);
  }
  return finite;
}

}  // namespace medimg::cpu

// pixel_coefficients on the CPU. Compiled with -ffp-contract=off (see CMakeLists.txt), so every
// product and sum rounds on its own, as common/pixel_coefficients.h requires.
#include "cpu/pixel_coefficients.h"

#include <algorithm>
#include <cmath>

#include "common/pixel_coefficients.h"

namespace medimg::cpu {

bool pixel_coefficients(const TensorView& theta, const TensorView& constants, double* coeffs) {
  const int64_t k = check_fold_views(theta, constants);
  MEDIMG_CHECK_ARG(theta.device == kCpuDevice, "theta: must be on the CPU");
  const int64_t n = theta.sizes[0];
  const int64_t per_sample = k * (k + 1);
  const double* c = constants.ptr<const double>();
  const auto fold_all = [&](auto tag) {
    using T = decltype(tag);
    for (int64_t i = 0; i < n; ++i) {
      if (k == 2) {
        fold_sample<T, 2>(theta, i, c, coeffs + i * per_sample);
      } else {
        fold_sample<T, 3>(theta, i, c, coeffs + i * per_sample);
      }
    }
  };
  if (theta.dtype == DType::Float64) {
    fold_all(double{});
  } else {
    fold_all(float{});
  }
  return std::all_of(coeffs, coeffs + n * per_sample, [](double v) { return std::isfinite(v); });
}

}  // namespace medimg::cpu

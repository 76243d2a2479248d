// RandomAffine's matrices on the CPU: one pass over the samples (tens to hundreds: no threads).
// Compiled once, outside the per-ISA kernels, with -ffp-contract=off (see CMakeLists.txt), so
// every product and sum rounds on its own as common/random_affine.h requires.
#include "common/random_affine.h"

#include "cpu/random_affine.h"

namespace medimg::cpu {

void random_affine(const TensorView& uniform, const TensorView& spec, const TensorView& theta,
                   const TensorView& coeffs, bool shear, bool translate, bool round_to_float) {
  const int k = check_random_affine_views(uniform, spec, theta, coeffs, shear, translate);
  MEDIMG_CHECK_ARG(theta.device == kCpuDevice, "random_affine: the CPU kernel needs CPU tensors");
  const int64_t cols = uniform.sizes[1], n = theta.sizes[0], per_sample = k * (k + 1);
  const double* u = uniform.ptr<double>();
  double *t = theta.ptr<double>(), *m = coeffs.ptr<double>();
  for (int64_t i = 0; i < n; ++i) {
    if (k == 2) {
      random_affine_sample<2>(u + i * cols, spec.ptr<double>(), shear, translate, round_to_float,
                              t + i * per_sample, m + i * per_sample);
    } else {
      random_affine_sample<3>(u + i * cols, spec.ptr<double>(), shear, translate, round_to_float,
                              t + i * per_sample, m + i * per_sample);
    }
  }
}

}  // namespace medimg::cpu

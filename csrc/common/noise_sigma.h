// Per-sample standard deviation of RandomGaussianNoise, drawn from the noise seed itself, so that
// the whole transform is one kernel after the seed: sample n is noised with probability p, with a
// sigma uniform on [low, high]. Philox4x32-10 under the seed, counter (n, n >> 32, 0, 1): the
// fourth word 1 keeps it apart from the noise's own counters (block, block >> 32, sample, 0).
// Host and device code alike; medimg/ops/_reference.py draws the same values in torch ops.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/macros.h"
#include "common/philox.h"
#include "common/rounding.h"
#include "common/tensor_view.h"

namespace medimg {

// Word 0 decides (applied where its uniform on [0, 1) is below p), word 1 places sigma in
// [low, high]: low + (high - low) * u, each operation rounded on its own (float64; rounding can
// reach high), or 0.
MEDIMG_HD double noise_sigma(uint64_t seed, int64_t sample, double low, double high, double p) {
  const uint64_t n = uint64_t(sample);
  const Philox4 r = philox4x32_10({{uint32_t(n), uint32_t(n >> 32), 0u, 1u}}, uint32_t(seed), uint32_t(seed >> 32));
  constexpr double kUnit = 1.0 / 4294967296.0;
  if (!(double(r.v[0]) * kUnit < p)) return 0.0;
  return add_rn(low, mul_rn(high - low, double(r.v[1]) * kUnit));
}

// The draw's arguments, checked on the host by each entry point (CPU and CUDA) before drawing.
inline void check_noise_sigma_args(double low, double high, double p) {
  MEDIMG_CHECK_ARG(0.0 <= low && low <= high && std::isfinite(high) && 0.0 <= p && p <= 1.0,
                   "random_gaussian_noise: expected finite 0 <= low <= high and p in [0, 1]");
}

}  // namespace medimg

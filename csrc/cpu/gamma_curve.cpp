// Gamma curve of each sample on its own intensity range, float32:
// out = clamp((x - low[n]) / extent[n], 0, 1) ^ gamma[n] * extent[n] + low[n].
//
// The power is e^(gamma ln b) from cpu/unit_math.h, vectorised: torch.pow calls libm's powf one
// element at a time (8 ms for 32 x 1x256^2 here). A sample whose gamma is 1 skips it and comes
// out exactly as the formula in torch ops gives it. Compiled with -ffp-contract=off
// (CMakeLists.txt): every product and sum rounds on its own, as torch's elementwise ops do.
#include <omp.h>

#include <algorithm>
#include <cfloat>
#include <cstdint>

#include "common/per_sample_views.h"
#include "cpu/kernels.h"
#include "cpu/unit_math.h"

namespace medimg::cpu::MEDIMG_ISA_NS {
namespace {

constexpr int64_t kSpan = int64_t(1) << 14;  // elements per task: threads share a sample's pixels
constexpr float kLn2Times24 = 16.635532333438687f;

// Elements [0, count) of one sample. A subnormal base is scaled by 2^24 into the normal range
// before its logarithm; a power below e^-87.5 comes out as 0; a base of 1 gives 1 whatever
// gamma (also an infinite one, as pow); NaN stays NaN, as in clamp and pow.
void curve_span(const float* in, float* out, int64_t count, float gamma, float low, float extent) {
  if (gamma == 1.0f) {
#pragma omp simd
    for (int64_t i = 0; i < count; ++i) {
      const float b = (in[i] - low) / extent;
      out[i] = (b < 0.0f ? 0.0f : b > 1.0f ? 1.0f : b) * extent + low;
    }
    return;
  }
#pragma omp simd
  for (int64_t i = 0; i < count; ++i) {
    float b = (in[i] - low) / extent;
    b = b < 0.0f ? 0.0f : b > 1.0f ? 1.0f : b;
    const bool subnormal = b < FLT_MIN;
    const float ln_b = log_unit(subnormal ? b * 0x1p24f : b) - (subnormal ? kLn2Times24 : 0.0f);
    const float power = exp_nonpositive(gamma * ln_b);
    out[i] = (b >= 1.0f ? 1.0f : b > 0.0f ? power : b == b ? 0.0f : b) * extent + low;
  }
}

}  // namespace

void gamma_curve(const TensorView& image, const TensorView& gamma, const TensorView& low, const TensorView& extent,
                 const TensorView& out, int num_threads) {
  const int64_t len = per_sample_length(image, out, "gamma_curve"), n = image.sizes[0];
  MEDIMG_CHECK_ARG(image.dtype == DType::Float32 && image.device == kCpuDevice,
                   "gamma_curve: the CPU kernel takes float32 CPU tensors");
  check_per_sample_vector(gamma, image, "gamma_curve", "gamma");
  check_per_sample_vector(low, image, "gamma_curve", "low");
  check_per_sample_vector(extent, image, "gamma_curve", "extent");
  const int64_t spans = (len + kSpan - 1) / kSpan;
  const float *in = image.ptr<const float>(), *g = gamma.ptr<const float>();
  const float *lo = low.ptr<const float>(), *e = extent.ptr<const float>();
  float* to = out.ptr<float>();
  const int threads = n * len >= (int64_t(1) << 15) ? std::max(1, num_threads) : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t task = 0; task < n * spans; ++task) {
    const int64_t sample = task / spans, first = task % spans * kSpan;
    const int64_t offset = sample * len + first;
    curve_span(in + offset, to + offset, std::min(kSpan, len - first), g[sample], lo[sample], e[sample]);
  }
}

}  // namespace medimg::cpu::MEDIMG_ISA_NS

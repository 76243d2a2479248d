// Soft Dice statistics [sum p*t, sum p, sum t] per (sample, class), and their backward.
//
// probs: (N, C, S) float view (any strides); target: (N, S) integer labels or (N, C, S)
// soft target of the probs' dtype. Units are (sample, chunk of kChunk pixels); inside a unit
// each class is one vectorised reduction over the chunk (the label chunk stays in L1 while
// the classes go by). Partial sums are taken in float (double for float64) per block of kBlock
// pixels and merged in double, so the result does not drift with image size or layout.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "common/dispatch.h"
#include "common/float_types.h"
#include "common/tensor_view.h"
#include "cpu/kernels.h"

namespace medimg::cpu::MEDIMG_ISA_NS {
namespace {

constexpr int64_t kChunk = 4096;
// Float partial sums span at most kBlock pixels before they are added in double: a strided view
// that does not vectorise sums in one lane, whose rounding grows with its length (4096 equal
// values: 2.4e-5 relative; 128: under 4e-6, as the vector lanes' sums).
constexpr int64_t kBlock = 128;
constexpr int64_t kParallelElements = int64_t(1) << 15;

int threads_for(int64_t elements, int num_threads) {
  return elements >= kParallelElements ? std::max(1, num_threads) : 1;
}

// Target value of class c at pixel s as the accumulator type.
template <class P, class L, bool kLabels>
inline acc_t<P> target_at(const L* t, int64_t s, int64_t ts, int64_t c, int64_t tc) {
  if constexpr (kLabels) {
    return static_cast<int64_t>(t[s * ts]) == c ? acc_t<P>(1) : acc_t<P>(0);
  } else {
    return to_acc(t[c * tc + s * ts]);
  }
}

// Returns the number of label pixels outside [0, C) (0 for a soft target).
template <class P, class L, bool kLabels>
int64_t stats_typed(const TensorView& probs, const TensorView& target, const TensorView& out, int num_threads) {
  using Acc = acc_t<P>;
  const int64_t n = probs.sizes[0], classes = probs.sizes[1], pixels = probs.sizes[2];
  const int64_t chunks = (pixels + kChunk - 1) / kChunk;
  const int64_t ps = probs.strides[2], pc = probs.strides[1];
  const int64_t ts = kLabels ? target.strides[1] : target.strides[2];
  const int64_t tc = kLabels ? 0 : target.strides[1];
  std::vector<double> total(size_t(n * classes * 3), 0.0);

#pragma omp parallel num_threads(threads_for(n * classes * pixels, num_threads))
  {
    std::vector<double> local(total.size(), 0.0);
#pragma omp for schedule(static)
    for (int64_t u = 0; u < n * chunks; ++u) {
      const int64_t sample = u / chunks, s0 = (u % chunks) * kChunk;
      const int64_t len = std::min(kChunk, pixels - s0);
      const P* p0 = probs.ptr<const P>() + sample * probs.strides[0] + s0 * ps;
      const L* t0 = target.ptr<const L>() + sample * target.strides[0] + s0 * ts;
      for (int64_t c = 0; c < classes; ++c) {
        const P* p = p0 + c * pc;
        double* o = local.data() + (sample * classes + c) * 3;
        for (int64_t b0 = 0; b0 < len; b0 += kBlock) {
          const int64_t b1 = std::min(len, b0 + kBlock);
          Acc inter = 0, psum = 0, tsum = 0;
#pragma omp simd reduction(+ : inter, psum, tsum)
          for (int64_t s = b0; s < b1; ++s) {
            const Acc pv = to_acc(p[s * ps]);
            const Acc tv = target_at<P, L, kLabels>(t0, s, ts, c, tc);
            inter += pv * tv;
            psum += pv;
            tsum += tv;
          }
          o[0] += inter;
          o[1] += psum;
          o[2] += tsum;
        }
      }
    }
#pragma omp critical(medimg_soft_dice_merge)
    for (size_t i = 0; i < total.size(); ++i) total[i] += local[i];
  }

  int64_t invalid = 0;
  for (int64_t i = 0; i < n; ++i) {
    double counted = 0;
    for (int64_t c = 0; c < classes; ++c) counted += total[size_t((i * classes + c) * 3 + 2)];
    if (kLabels) invalid += pixels - int64_t(counted);
  }
  for (size_t i = 0; i < total.size(); ++i) {
    if (out.dtype == DType::Float64) out.ptr<double>()[i] = total[i];
    else out.ptr<float>()[i] = float(total[i]);
  }
  return invalid;
}

// grad_probs[n, c, s] = g_inter[n, c] * t[n, c, s] + g_psum[n, c]   (sum t does not depend on p)
template <class P, class L, bool kLabels>
void backward_typed(const TensorView& grad_stats, const TensorView& target, const TensorView& grad, int num_threads) {
  using Acc = acc_t<P>;
  using G = std::conditional_t<std::is_same_v<P, double>, double, float>;
  const int64_t n = grad.sizes[0], classes = grad.sizes[1], pixels = grad.sizes[2];
  const int64_t ts = kLabels ? target.strides[1] : target.strides[2];
  const int64_t tc = kLabels ? 0 : target.strides[1];
  const G* g = grad_stats.ptr<const G>();
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads_for(n * classes * pixels, num_threads))
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t c = 0; c < classes; ++c) {
      const Acc g_inter = Acc(g[(i * classes + c) * 3 + 0]);
      const Acc g_psum = Acc(g[(i * classes + c) * 3 + 1]);
      const L* t = target.ptr<const L>() + i * target.strides[0];
      P* out = grad.ptr<P>() + i * grad.strides[0] + c * grad.strides[1];
#pragma omp simd
      for (int64_t s = 0; s < pixels; ++s) {
        out[s * grad.strides[2]] = from_acc<P>(g_inter * target_at<P, L, kLabels>(t, s, ts, c, tc) + g_psum);
      }
    }
  }
}

struct StatsKernel {
  const TensorView& probs;
  const TensorView& target;
  const TensorView& out;
  int num_threads;
  template <class P, class L, bool kLabels>
  int64_t run() const {
    return stats_typed<P, L, kLabels>(probs, target, out, num_threads);
  }
};

struct BackwardKernel {
  const TensorView& grad_stats;
  const TensorView& target;
  const TensorView& grad_probs;
  int num_threads;
  template <class P, class L, bool kLabels>
  int64_t run() const {
    backward_typed<P, L, kLabels>(grad_stats, target, grad_probs, num_threads);
    return 0;
  }
};

}  // namespace

int64_t soft_dice_stats(const TensorView& probs, const TensorView& target, bool target_is_labels,
                        const TensorView& out, int num_threads) {
  check_view(probs, "probs", 3);
  check_view(target, "target", target_is_labels ? 2 : 3);
  check_view(out, "out", 3);
  return visit_soft_dice_types<true>(probs.dtype, target.dtype, target_is_labels,
                                     StatsKernel{probs, target, out, num_threads});
}

void soft_dice_backward(const TensorView& grad_stats, const TensorView& target, bool target_is_labels,
                        const TensorView& grad_probs, int num_threads) {
  check_view(grad_stats, "grad_stats", 3);
  check_view(target, "target", target_is_labels ? 2 : 3);
  check_view(grad_probs, "grad_probs", 3);
  visit_soft_dice_types<true>(grad_probs.dtype, target.dtype, target_is_labels,
                              BackwardKernel{grad_stats, target, grad_probs, num_threads});
}

}  // namespace medimg::cpu::MEDIMG_ISA_NS

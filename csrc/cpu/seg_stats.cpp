// Segmentation statistics [tp, fp, fn] per (sample, class) in one read of both label maps.
//
// Work is cut into units of at most kUnitPixels pixels of one row; threads take units,
// count into private per-sample counters and merge once at the end. Contiguous rows with
// few classes take the vector path: for each block of up to 255 vectors (L1-resident),
// every class is counted by compare-and-subtract into 8..64-bit lane counters. Labels are
// validated for free: if the per-class counts of a block do not add up to its pixel count,
// some label lies outside [0, K), and only that cached block is rescanned to name it.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

#include "common/dispatch.h"
#include "common/label_stats.h"
#include "common/tensor_view.h"
#include "cpu/kernels.h"
#include "cpu/simd.h"

namespace medimg::cpu::MEDIMG_ISA_NS {
namespace {

constexpr int64_t kUnitPixels = int64_t(1) << 15;
// Below this many pixels the OpenMP fork costs more than it saves.
constexpr int64_t kParallelPixels = int64_t(1) << 16;

// The vector path costs about 6 operations per vector per class; beyond these class
// counts one scalar scatter per pixel is cheaper.
template <class T>
constexpr int64_t max_vector_classes() {
  return sizeof(T) >= 4 ? 8 : 16;
}

// Offset of the first invalid (non-ignored) pixel of a run, or -1; sets `which`.
template <class T, bool kIgnore>
int64_t find_invalid(const T* p, int64_t sp, const T* t, int64_t st, int64_t len, int64_t k,
                     T ignore, int32_t* which) {
  for (int64_t i = 0; i < len; ++i) {
    const T tv = t[i * st];
    if (kIgnore && tv == ignore) continue;
    const int32_t source = invalid_label_source(p[i * sp], tv, k);
    if (source != kNoError) {
      *which = source;
      return i;
    }
  }
  return -1;
}

// Any stride, any class count: one scatter per pixel. Returns the first invalid offset or -1.
template <class T, bool kIgnore>
int64_t count_scalar(const T* p, int64_t sp, const T* t, int64_t st, int64_t len, int64_t k,
                     T ignore, int64_t* counts, int32_t* which) {
  for (int64_t i = 0; i < len; ++i) {
    const T tv = t[i * st];
    if (kIgnore && tv == ignore) continue;
    const T pv = p[i * sp];
    const int32_t source = invalid_label_source(pv, tv, k);
    if (source != kNoError) {
      *which = source;
      return i;
    }
    accumulate_pixel(pv, tv, counts);
  }
  return -1;
}

// Contiguous run, k <= max_vector_classes<T>(). Returns the first invalid offset or -1.
template <class T, bool kIgnore>
int64_t count_vector(const T* p, const T* t, int64_t len, int64_t k, T ignore, int64_t* counts,
                     int32_t* which) {
  using V = simd::IntVec<T>;
  constexpr int64_t kLanes = V::kLanes;
  const auto ign = V::set1(ignore);
  int64_t i = 0;
  while (len - i >= kLanes) {
    const int64_t vectors = std::min<int64_t>(simd::kMaxBlockVectors, (len - i) / kLanes);
    const T* pb = p + i;
    const T* tb = t + i;
    int64_t valid = vectors * kLanes;
    if constexpr (kIgnore) {
      auto ignored = V::zero();
      for (int64_t v = 0; v < vectors; ++v) ignored = V::sub(ignored, V::cmpeq(V::load(tb + v * kLanes), ign));
      valid -= V::hsum(ignored);
    }
    int64_t pred_total = 0, target_total = 0;
    for (int64_t c = 0; c < k; ++c) {
      const auto cls = V::set1(T(c));
      auto both = V::zero(), in_pred = V::zero(), in_target = V::zero();
      for (int64_t v = 0; v < vectors; ++v) {
        const auto tv = V::load(tb + v * kLanes);
        auto ep = V::cmpeq(V::load(pb + v * kLanes), cls);
        auto et = V::cmpeq(tv, cls);
        if constexpr (kIgnore) {
          const auto ig = V::cmpeq(tv, ign);
          ep = V::andnot(ig, ep);
          et = V::andnot(ig, et);
        }
        both = V::sub(both, V::and_(ep, et));
        in_pred = V::sub(in_pred, ep);
        in_target = V::sub(in_target, et);
      }
      const int64_t tp = V::hsum(both), np = V::hsum(in_pred), nt = V::hsum(in_target);
      counts[c * kStatSlots + kTruePositive] += tp;
      counts[c * kStatSlots + kFalsePositive] += np - tp;
      counts[c * kStatSlots + kFalseNegative] += nt - tp;
      pred_total += np;
      target_total += nt;
    }
    if (pred_total != valid || target_total != valid) {
      return i + find_invalid<T, kIgnore>(pb, 1, tb, 1, vectors * kLanes, k, ignore, which);
    }
    i += vectors * kLanes;
  }
  const int64_t bad = count_scalar<T, kIgnore>(p + i, 1, t + i, 1, len - i, k, ignore, counts, which);
  return bad < 0 ? -1 : i + bad;
}

template <class T, bool kIgnore>
LabelError seg_stats_typed(const TensorView& pred, const TensorView& target, const TensorView& out,
                           int64_t k, T ignore, int num_threads) {
  const int64_t n_samples = pred.sizes[0], rows = pred.sizes[1], len = pred.sizes[2];
  const int64_t units_per_row = (len + kUnitPixels - 1) / kUnitPixels;
  const int64_t units = n_samples * rows * units_per_row;
  const int64_t per_sample = k * kStatSlots;
  const bool vector_path = pred.strides[2] == 1 && target.strides[2] == 1 && k <= max_vector_classes<T>();
  const int threads = (n_samples * rows * len >= kParallelPixels) ? std::max(1, num_threads) : 1;

  int64_t* total = out.ptr<int64_t>();
  std::atomic<bool> failed{false};
  LabelError error;

#pragma omp parallel num_threads(threads)
  {
    std::vector<int64_t> counts(size_t(n_samples * per_sample), 0);
#pragma omp for schedule(static)
    for (int64_t u = 0; u < units; ++u) {
      if (failed.load(std::memory_order_relaxed)) continue;
      const int64_t sample = u / (rows * units_per_row);
      const int64_t row = (u / units_per_row) % rows;
      const int64_t col = (u % units_per_row) * kUnitPixels;
      const int64_t run = std::min(kUnitPixels, len - col);
      const T* p = pred.ptr<const T>() + sample * pred.strides[0] + row * pred.strides[1] + col * pred.strides[2];
      const T* t = target.ptr<const T>() + sample * target.strides[0] + row * target.strides[1] + col * target.strides[2];
      int64_t* c = counts.data() + sample * per_sample;
      int32_t which = kNoError;
      const int64_t bad = vector_path
          ? count_vector<T, kIgnore>(p, t, run, k, ignore, c, &which)
          : count_scalar<T, kIgnore>(p, pred.strides[2], t, target.strides[2], run, k, ignore, c, &which);
      if (bad >= 0) {
#pragma omp critical(medimg_seg_stats_error)
        if (!failed.load()) {
          error.which = which;
          error.sample = sample;
          error.row = row;
          error.col = col + bad;
          error.value = int64_t(which == kPred ? p[bad * pred.strides[2]] : t[bad * target.strides[2]]);
          failed.store(true);
        }
      }
    }
#pragma omp critical(medimg_seg_stats_merge)
    for (size_t i = 0; i < counts.size(); ++i) total[i] += counts[i];
  }
  return error;
}

template <class T>
LabelError seg_stats_dispatch_ignore(const TensorView& pred, const TensorView& target,
                                     const TensorView& out, int64_t k, bool has_ignore,
                                     int64_t ignore_index, int num_threads) {
  if (has_ignore) return seg_stats_typed<T, true>(pred, target, out, k, T(ignore_index), num_threads);
  return seg_stats_typed<T, false>(pred, target, out, k, T(0), num_threads);
}

}  // namespace

LabelError seg_stats(const TensorView& pred, const TensorView& target, const TensorView& out,
                     int64_t num_classes, bool has_ignore, int64_t ignore_index, int num_threads) {
  check_view(pred, "pred", 3);
  check_view(target, "target", 3);
  check_view(out, "out", 3);
  MEDIMG_CHECK_ARG(pred.dtype == target.dtype, "pred and target must share one dtype");
  MEDIMG_CHECK_ARG(out.dtype == DType::Int64, "out must be int64");
  MEDIMG_CHECK_ARG(num_classes >= 1, "num_classes must be >= 1");
  return visit_integer_dtype(pred.dtype, "pred", [&](auto tag) {
    return seg_stats_dispatch_ignore<decltype(tag)>(pred, target, out, num_classes, has_ignore, ignore_index,
                                                    num_threads);
  });
}

}  // namespace medimg::cpu::MEDIMG_ISA_NS

// Arithmetic shared by the CPU and CUDA segmentation-statistics kernels.
#pragma once

#include <cstdint>

#include "common/macros.h"

namespace medimg {

// Layout of one (sample, class) entry of the (N, K, 3) int64 output.
enum StatSlot : int { kTruePositive = 0, kFalsePositive = 1, kFalseNegative = 2, kStatSlots = 3 };

// The first out-of-range label a kernel met; `which` is -1 when every label was valid.
// Positions are in the (N, R, L) row view the kernel was given.
struct LabelError {
  int32_t which = -1;  // 0: pred, 1: target
  int64_t sample = 0;
  int64_t row = 0;
  int64_t col = 0;
  int64_t value = 0;
};

enum LabelSource : int32_t { kNoError = -1, kPred = 0, kTarget = 1 };

// True when 0 <= v < num_classes, for signed and unsigned label types alike.
template <class T>
MEDIMG_HD bool label_in_range(T v, int64_t num_classes) {
  return static_cast<int64_t>(v) >= 0 && static_cast<int64_t>(v) < num_classes;
}

// Which input holds an offending label at one pixel (kNoError if both are valid).
// A pixel whose target equals the ignore value is never inspected.
template <class T>
MEDIMG_HD int32_t invalid_label_source(T p, T t, int64_t num_classes) {
  if (!label_in_range(t, num_classes)) return kTarget;
  if (!label_in_range(p, num_classes)) return kPred;
  return kNoError;
}

// Scatter of one valid pixel into [tp, fp, fn] counters laid out as counts[class * 3 + slot].
template <class T, class Count>
MEDIMG_HD void accumulate_pixel(T p, T t, Count* counts) {
  if (p == t) {
    counts[int64_t(p) * kStatSlots + kTruePositive] += 1;
  } else {
    counts[int64_t(p) * kStatSlots + kFalsePositive] += 1;
    counts[int64_t(t) * kStatSlots + kFalseNegative] += 1;
  }
}

}  // namespace medimg

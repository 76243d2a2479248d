// Per-row order statistics on the CPU, for Normalize01's percentiles (not per ISA: comparisons,
// compiled once).
#pragma once

#include <cstdint>

#include "common/tensor_view.h"

namespace medimg::cpu {

// indices (N, K) int64 contiguous: for each row n of values (N, L), float32 or float64 with any
// strides, and each ks[j] (ascending, in [0, L)), the position in the row of its ks[j]-th
// smallest value (from 0; NaN counts as larger than everything). Rows run in parallel.
void order_statistics(const TensorView& values, const int64_t* ks, int64_t count, const TensorView& indices,
                      int num_threads);

}  // namespace medimg::cpu

// Per-row order statistics by bucket selection: one pass for the row's range, one to count its
// values into kBuckets equal-width buckets, one to collect the values (with their positions) of
// the buckets that hold a wanted statistic, then std::nth_element on those few. The bucket of
// x, floor((x - min) * kBuckets / (max - min)) in float64, never decreases as x grows, so the
// k-th smallest value lies in the bucket where the counts pass k: exact, with NaN after every
// number (as torch sorts). Normalize01's four order statistics of 32 rows of 256^2, two threads
// here: 3.9 ms, against 19 ms for std::nth_element on copies of the rows and 43 ms for
// torch.kthvalue.
#include "cpu/order_statistics.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "common/dispatch.h"

namespace medimg::cpu {
namespace {

constexpr int64_t kBuckets = 4096;

// One thread's buffers, reused row after row.
template <class T>
struct Workspace {
  std::vector<int64_t> counts = std::vector<int64_t>(kBuckets + 1);  // last: NaN
  std::vector<int> slot = std::vector<int>(kBuckets, -1);  // where a wanted bucket's values go
  std::vector<std::vector<std::pair<T, int64_t>>> candidates;
  std::vector<std::pair<int64_t, int64_t>> where;
  explicit Workspace(int64_t count) : where(static_cast<size_t>(count)) {}
};

template <class T>
void select_row(const T* row, int64_t step, int64_t len, const int64_t* ks, int64_t count, int64_t* out,
                Workspace<T>& ws) {
  // The range, in kLanes independent running minima and maxima: with one pair, each element
  // waited for the previous one's min and max (3x slower). Selects, not jumps: x < lo is false
  // for NaN, which is left out of the range and counted.
  constexpr int kLanes = 8;
  T lane_lo[kLanes], lane_hi[kLanes];
  int64_t lane_nans[kLanes] = {};
  std::fill(lane_lo, lane_lo + kLanes, T(INFINITY));
  std::fill(lane_hi, lane_hi + kLanes, T(-INFINITY));
  for (int64_t i0 = 0; i0 < len; i0 += kLanes) {
    const int64_t lanes = std::min<int64_t>(kLanes, len - i0);
    for (int64_t j = 0; j < lanes; ++j) {
      const T x = row[(i0 + j) * step];
      lane_lo[j] = x < lane_lo[j] ? x : lane_lo[j];
      lane_hi[j] = x > lane_hi[j] ? x : lane_hi[j];
      lane_nans[j] += x != x;
    }
  }
  double lo = INFINITY, hi = -INFINITY;
  int64_t nans = 0;
  for (int j = 0; j < kLanes; ++j) {
    lo = std::min(lo, double(lane_lo[j]));
    hi = std::max(hi, double(lane_hi[j]));
    nans += lane_nans[j];
  }
  int64_t first_nan = -1;
  for (int64_t i = 0; nans > 0 && first_nan < 0; ++i) {
    if (row[i * step] != row[i * step]) first_nan = i;
  }
  // Equal-width buckets over [lo, hi]. A range that is not finite (an infinity, or a width past
  // float64's), too narrow for its reciprocal, or empty puts every value in bucket 0. The
  // position is clamped before the conversion to an integer (NaN or out of range would be UB):
  // max(0, NaN) is 0.
  const double width = hi - lo, inverse = double(kBuckets) / width;
  const double scale = width > 0.0 && std::isfinite(width) && std::isfinite(inverse) ? inverse : 0.0;
  auto bucket = [lo, scale](double x) -> int64_t {
    const double at = (x - lo) * scale;
    return int64_t(std::min(double(kBuckets - 1), 0.0 < at ? at : 0.0));
  };
  std::fill(ws.counts.begin(), ws.counts.end(), 0);
  for (int64_t i = 0; i < len; ++i) {
    const double x = double(row[i * step]);
    const int64_t b = bucket(x);
    ++ws.counts[size_t(x != x ? kBuckets : b)];
  }
  // For each k: its bucket and its rank there; NaN statistics point at the first NaN.
  auto& where = ws.where;  // (bucket, rank); bucket -1: NaN
  int64_t below = 0, b = 0, wanted = 0;
  for (int64_t j = 0; j < count; ++j) {
    const int64_t k = ks[j];  // ascending
    while (b < kBuckets && below + ws.counts[size_t(b)] <= k) below += ws.counts[size_t(b++)];
    if (b == kBuckets) {
      where[size_t(j)] = {-1, 0};
      continue;
    }
    where[size_t(j)] = {b, k - below};
    if (ws.slot[size_t(b)] < 0) ws.slot[size_t(b)] = int(wanted++);
  }
  if (ws.candidates.size() < size_t(wanted)) ws.candidates.resize(size_t(wanted));
  for (int64_t w = 0; w < wanted; ++w) ws.candidates[size_t(w)].clear();
  if (wanted > 0) {
    for (int64_t i = 0; i < len; ++i) {
      const T v = row[i * step];
      if (v != v) continue;
      const int s = ws.slot[size_t(bucket(double(v)))];
      if (s >= 0) ws.candidates[size_t(s)].emplace_back(v, i);
    }
  }
  for (int64_t j = 0; j < count; ++j) {
    const auto [bucket_of_k, rank] = where[size_t(j)];
    if (bucket_of_k < 0) {
      out[j] = first_nan;
      continue;
    }
    auto& values = ws.candidates[size_t(ws.slot[size_t(bucket_of_k)])];
    std::nth_element(values.begin(), values.begin() + rank, values.end(),
                     [](const std::pair<T, int64_t>& a, const std::pair<T, int64_t>& c) { return a.first < c.first; });
    out[j] = values[size_t(rank)].second;
  }
  for (int64_t j = 0; j < count; ++j) {
    if (where[size_t(j)].first >= 0) ws.slot[size_t(where[size_t(j)].first)] = -1;
  }
}

template <class T>
void select_rows(const TensorView& values, const int64_t* ks, int64_t count, const TensorView& indices,
                 int num_threads) {
  const int64_t rows = values.sizes[0], len = values.sizes[1];
  const int threads = int(std::max<int64_t>(1, std::min<int64_t>(num_threads, rows)));
  // Buffers allocated here and in select_row may throw (bad_alloc); an exception must not leave
  // an OpenMP region, so the first one is kept and thrown after it.
  std::vector<Workspace<T>> workspaces(static_cast<size_t>(threads), Workspace<T>(count));
  std::exception_ptr failure;
#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (int64_t n = 0; n < rows; ++n) {
    try {
      select_row<T>(values.ptr<const T>() + n * values.strides[0], values.strides[1], len, ks, count,
                    indices.ptr<int64_t>() + n * count, workspaces[size_t(omp_get_thread_num())]);
    } catch (...) {
#pragma omp critical(medimg_order_statistics_failure)
      if (!failure) failure = std::current_exception();
    }
  }
  if (failure) std::rethrow_exception(failure);
}

}  // namespace

void order_statistics(const TensorView& values, const int64_t* ks, int64_t count, const TensorView& indices,
                      int num_threads) {
  check_view(values, "values", 2);
  check_view(indices, "indices", 2);
  const int64_t rows = values.sizes[0], len = values.sizes[1];
  MEDIMG_CHECK_ARG(values.device == kCpuDevice && indices.device == kCpuDevice,
                   "order_statistics: the CPU kernel needs CPU tensors");
  MEDIMG_CHECK_ARG(indices.dtype == DType::Int64 && is_contiguous(indices) && indices.sizes[0] == rows &&
                       indices.sizes[1] == count,
                   "indices: must be contiguous int64 (N, K)");
  for (int64_t j = 0; j < count; ++j) {
    MEDIMG_CHECK_ARG(ks[j] >= 0 && ks[j] < len && (j == 0 || ks[j] > ks[j - 1]),
                     "ks: must be ascending, distinct and in [0, " + std::to_string(len) + ")");
  }
  visit_float_dtype<false>(values.dtype, "values", [&](auto tag) {
    select_rows<decltype(tag)>(values, ks, count, indices, num_threads);
  });
}

}  // namespace medimg::cpu

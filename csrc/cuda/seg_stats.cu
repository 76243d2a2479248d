// Segmentation statistics on the GPU: one block per tile of one sample's pixels; per-block
// counters (registers then warp shuffles for few classes, shared-memory atomics otherwise),
// one global merge per block. Index and validation arithmetic comes from common/label_stats.h,
// the same functions the CPU kernels run.
#include <cuda_runtime.h>

#include <algorithm>

#include "common/dispatch.h"
#include "common/label_stats.h"
#include "cuda/check.cuh"
#include "cuda/launch.h"

namespace medimg::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kTilePixels = kThreads * 16;
constexpr int kRegisterClasses = 8;
constexpr int64_t kMaxSharedClasses = (48 * 1024) / (3 * sizeof(unsigned int));

enum CounterMode { kRegisters, kShared, kGlobal };

template <class T>
__device__ void report_error(long long* error, int32_t which, int64_t sample, int64_t row, int64_t col, T value) {
  auto* flag = reinterpret_cast<unsigned long long*>(error);
  if (atomicCAS(flag, ~0ull, static_cast<unsigned long long>(which)) == ~0ull) {
    error[1] = sample;
    error[2] = row;
    error[3] = col;
    error[4] = static_cast<long long>(value);
  }
}

// accumulate_pixel of common/label_stats.h, with atomics for counters shared by threads.
template <class T, class Count>
__device__ __forceinline__ void atomic_accumulate_pixel(T p, T t, Count* counts) {
  if (p == t) {
    atomicAdd(&counts[int64_t(p) * kStatSlots + kTruePositive], Count(1));
  } else {
    atomicAdd(&counts[int64_t(p) * kStatSlots + kFalsePositive], Count(1));
    atomicAdd(&counts[int64_t(t) * kStatSlots + kFalseNegative], Count(1));
  }
}

template <class T, bool kIgnore, int kMode>
__global__ void __launch_bounds__(kThreads) seg_stats_kernel(TensorView pred, TensorView target, long long* out,
                                                             int64_t k, T ignore, long long* error,
                                                             int64_t tiles_per_sample) {
  extern __shared__ unsigned int shared_counts[];
  const int64_t sample = blockIdx.x / tiles_per_sample;
  const int64_t len = pred.sizes[2];
  const int64_t pixels = pred.sizes[1] * len;
  const int64_t begin = (blockIdx.x % tiles_per_sample) * kTilePixels;
  const int64_t end = min(begin + kTilePixels, pixels);
  unsigned long long* global_counts = reinterpret_cast<unsigned long long*>(out) + sample * k * kStatSlots;
  if (kMode != kGlobal) {
    for (int64_t i = threadIdx.x; i < k * kStatSlots; i += blockDim.x) shared_counts[i] = 0;
    __syncthreads();
  }
  unsigned int tp[kRegisterClasses] = {}, in_pred[kRegisterClasses] = {}, in_target[kRegisterClasses] = {};
  const T* p = pred.ptr<const T>() + sample * pred.strides[0];
  const T* t = target.ptr<const T>() + sample * target.strides[0];

  for (int64_t e = begin + threadIdx.x; e < end; e += blockDim.x) {
    const int64_t row = e / len, col = e - row * len;
    const T tv = t[row * target.strides[1] + col * target.strides[2]];
    if (kIgnore && tv == ignore) continue;
    const T pv = p[row * pred.strides[1] + col * pred.strides[2]];
    const int32_t source = invalid_label_source(pv, tv, k);
    if (source != kNoError) {
      report_error(error, source, sample, row, col, source == kPred ? pv : tv);
      continue;
    }
    if constexpr (kMode == kRegisters) {
#pragma unroll
      for (int c = 0; c < kRegisterClasses; ++c) {
        const bool ep = int64_t(pv) == c, et = int64_t(tv) == c;
        tp[c] += ep && et;
        in_pred[c] += ep;
        in_target[c] += et;
      }
    } else if constexpr (kMode == kShared) {
      atomic_accumulate_pixel(pv, tv, shared_counts);
    } else {
      atomic_accumulate_pixel(pv, tv, global_counts);
    }
  }

  if constexpr (kMode == kRegisters) {
#pragma unroll
    for (int c = 0; c < kRegisterClasses; ++c) {
      const unsigned int both = warp_sum(tp[c]), np = warp_sum(in_pred[c]), nt = warp_sum(in_target[c]);
      if ((threadIdx.x & 31) == 0 && c < k) {
        atomicAdd(&shared_counts[c * kStatSlots + kTruePositive], both);
        atomicAdd(&shared_counts[c * kStatSlots + kFalsePositive], np - both);
        atomicAdd(&shared_counts[c * kStatSlots + kFalseNegative], nt - both);
      }
    }
  }
  if (kMode != kGlobal) {
    __syncthreads();
    for (int64_t i = threadIdx.x; i < k * kStatSlots; i += blockDim.x) {
      if (shared_counts[i] != 0) atomicAdd(&global_counts[i], static_cast<unsigned long long>(shared_counts[i]));
    }
  }
}

template <class T, bool kIgnore>
void launch_typed(const TensorView& pred, const TensorView& target, const TensorView& out, int64_t k,
                  int64_t ignore_index, const TensorView& error, cudaStream_t stream) {
  const int64_t pixels = pred.sizes[1] * pred.sizes[2];
  const int64_t tiles = std::max<int64_t>(1, (pixels + kTilePixels - 1) / kTilePixels);
  const int64_t blocks = pred.sizes[0] * tiles;
  if (blocks == 0 || pixels == 0) return;
  long long* o = out.ptr<long long>();
  long long* err = error.ptr<long long>();
  const T ign = T(ignore_index);
  if (k <= kRegisterClasses) {
    seg_stats_kernel<T, kIgnore, kRegisters><<<blocks, kThreads, k * kStatSlots * sizeof(unsigned int), stream>>>(
        pred, target, o, k, ign, err, tiles);
  } else if (k <= kMaxSharedClasses) {
    seg_stats_kernel<T, kIgnore, kShared><<<blocks, kThreads, k * kStatSlots * sizeof(unsigned int), stream>>>(
        pred, target, o, k, ign, err, tiles);
  } else {
    seg_stats_kernel<T, kIgnore, kGlobal><<<blocks, kThreads, 0, stream>>>(pred, target, o, k, ign, err, tiles);
  }
  MEDIMG_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_ignore(const TensorView& pred, const TensorView& target, const TensorView& out, int64_t k,
                   bool has_ignore, int64_t ignore_index, const TensorView& error, cudaStream_t stream) {
  if (has_ignore) launch_typed<T, true>(pred, target, out, k, ignore_index, error, stream);
  else launch_typed<T, false>(pred, target, out, k, ignore_index, error, stream);
}

}  // namespace

void seg_stats(const TensorView& pred, const TensorView& target, const TensorView& out, int64_t num_classes,
               bool has_ignore, int64_t ignore_index, const TensorView& error, uintptr_t stream) {
  check_view(pred, "pred", 3);
  check_view(target, "target", 3);
  MEDIMG_CHECK_ARG(pred.dtype == target.dtype, "pred and target must share one dtype");
  DeviceGuard guard(pred.device);
  auto s = reinterpret_cast<cudaStream_t>(stream);
  visit_integer_dtype(pred.dtype, "pred", [&](auto tag) {
    launch_ignore<decltype(tag)>(pred, target, out, num_classes, has_ignore, ignore_index, error, s);
  });
}

}  // namespace medimg::cuda

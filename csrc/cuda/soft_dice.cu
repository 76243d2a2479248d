// Soft Dice statistics and their backward on the GPU. Stats: one block per
// (sample, class, chunk of pixels), float accumulation, block reduction, one atomicAdd per
// statistic per block. Backward: one thread per output element. 16-bit floats are read and
// written through common/float_types.h, the conversions the CPU kernels use.
#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "common/dispatch.h"
#include "common/float_types.h"
#include "cuda/check.cuh"
#include "cuda/launch.h"

namespace medimg::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunk = kThreads * 8;

template <class P, class L, bool kLabels>
__device__ __forceinline__ acc_t<P> target_at(const L* t, int64_t s, int64_t ts, int64_t c, int64_t tc) {
  if constexpr (kLabels) {
    return static_cast<int64_t>(t[s * ts]) == c ? acc_t<P>(1) : acc_t<P>(0);
  } else {
    return to_acc(t[c * tc + s * ts]);
  }
}

template <class P, class L, bool kLabels>
__global__ void __launch_bounds__(kThreads) stats_kernel(TensorView probs, TensorView target, double* out,
                                                         long long* invalid, int64_t chunks) {
  using Acc = acc_t<P>;
  __shared__ Acc scratch[kThreads / 32];
  const int64_t classes = probs.sizes[1], pixels = probs.sizes[2];
  const int64_t chunk = blockIdx.x % chunks;
  const int64_t c = (blockIdx.x / chunks) % classes;
  const int64_t sample = blockIdx.x / (chunks * classes);
  const int64_t ts = kLabels ? target.strides[1] : target.strides[2];
  const int64_t tc = kLabels ? 0 : target.strides[1];
  const P* p = probs.ptr<const P>() + sample * probs.strides[0] + c * probs.strides[1];
  const L* t = target.ptr<const L>() + sample * target.strides[0];
  Acc inter = 0, psum = 0, tsum = 0;
  long long bad = 0;
  const int64_t end = min(pixels, (chunk + 1) * kChunk);
  for (int64_t s = chunk * kChunk + threadIdx.x; s < end; s += blockDim.x) {
    const Acc pv = to_acc(p[s * probs.strides[2]]);
    const Acc tv = target_at<P, L, kLabels>(t, s, ts, c, tc);
    inter += pv * tv;
    psum += pv;
    tsum += tv;
    if constexpr (kLabels) {
      if (c == 0 && (static_cast<int64_t>(t[s * ts]) < 0 || static_cast<int64_t>(t[s * ts]) >= classes)) ++bad;
    }
  }
  inter = block_sum(inter, scratch);
  psum = block_sum(psum, scratch);
  tsum = block_sum(tsum, scratch);
  if (threadIdx.x == 0) {  // chunks are summed in float64, as on the CPU
    double* o = out + (sample * classes + c) * 3;
    atomicAdd(o + 0, double(inter));
    atomicAdd(o + 1, double(psum));
    atomicAdd(o + 2, double(tsum));
  }
  if constexpr (kLabels) {
    if (bad) atomicAdd(reinterpret_cast<unsigned long long*>(invalid), static_cast<unsigned long long>(bad));
  }
}

template <class P, class L, bool kLabels>
__global__ void __launch_bounds__(kThreads) backward_kernel(TensorView grad_stats, TensorView target,
                                                            TensorView grad) {
  using Acc = acc_t<P>;
  const int64_t classes = grad.sizes[1], pixels = grad.sizes[2];
  const int64_t total = grad.sizes[0] * classes * pixels;
  const int64_t ts = kLabels ? target.strides[1] : target.strides[2];
  const int64_t tc = kLabels ? 0 : target.strides[1];
  const Acc* g = grad_stats.ptr<const Acc>();
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t s = e % pixels, c = (e / pixels) % classes, sample = e / (pixels * classes);
    const L* t = target.ptr<const L>() + sample * target.strides[0];
    const Acc value = g[(sample * classes + c) * 3] * target_at<P, L, kLabels>(t, s, ts, c, tc) +
                      g[(sample * classes + c) * 3 + 1];
    grad.ptr<P>()[sample * grad.strides[0] + c * grad.strides[1] + s * grad.strides[2]] = from_acc<P>(value);
  }
}

struct StatsLaunch {
  const TensorView& probs;
  const TensorView& target;
  const TensorView& out;
  const TensorView& invalid;
  cudaStream_t stream;
  template <class P, class L, bool kLabels>
  void run() const {
    const int64_t chunks = std::max<int64_t>(1, (probs.sizes[2] + kChunk - 1) / kChunk);
    const int64_t blocks = probs.sizes[0] * probs.sizes[1] * chunks;
    if (blocks == 0 || probs.sizes[2] == 0) return;
    MEDIMG_CHECK_ARG(out.dtype == DType::Float64, "out: expected a float64 accumulator");
    stats_kernel<P, L, kLabels><<<blocks, kThreads, 0, stream>>>(probs, target, out.ptr<double>(),
                                                                 invalid.ptr<long long>(), chunks);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
  }
};

struct BackwardLaunch {
  const TensorView& grad_stats;
  const TensorView& target;
  const TensorView& grad;
  cudaStream_t stream;
  template <class P, class L, bool kLabels>
  void run() const {
    const int64_t total = grad.numel();
    if (total == 0) return;
    const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t(1) << 20);
    backward_kernel<P, L, kLabels><<<blocks, kThreads, 0, stream>>>(grad_stats, target, grad);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
  }
};

}  // namespace

void soft_dice_stats(const TensorView& probs, const TensorView& target, bool target_is_labels, const TensorView& out,
                     const TensorView& invalid, uintptr_t stream) {
  check_view(probs, "probs", 3);
  check_view(target, "target", target_is_labels ? 2 : 3);
  DeviceGuard guard(probs.device);
  visit_soft_dice_types<true>(probs.dtype, target.dtype, target_is_labels,
                              StatsLaunch{probs, target, out, invalid, reinterpret_cast<cudaStream_t>(stream)});
}

void soft_dice_backward(const TensorView& grad_stats, const TensorView& target, bool target_is_labels,
                        const TensorView& grad_probs, uintptr_t stream) {
  check_view(grad_probs, "grad_probs", 3);
  DeviceGuard guard(grad_probs.device);
  visit_soft_dice_types<true>(grad_probs.dtype, target.dtype, target_is_labels,
                              BackwardLaunch{grad_stats, target, grad_probs, reinterpret_cast<cudaStream_t>(stream)});
}

}  // namespace medimg::cuda

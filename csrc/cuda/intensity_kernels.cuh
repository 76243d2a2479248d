// Elementwise intensity kernels on the GPU: Gaussian noise from the CPU kernel's Philox stream
// (the same seed gives the same noise on both devices, up to float rounding) and the gamma
// curve, each one pass over the batch. Apart from their launch code so that a host C++ build
// with stand-ins for the CUDA built-ins (tests/cuda_host/) can run them block by block and
// check their indexing and values without a GPU.
//
// Grid: x strides over a sample's elements (or Philox blocks), y over samples, so any batch and
// sample length fit the grid's limits; a warp touches consecutive elements of one sample.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "common/float_types.h"
#include "common/noise_sigma.h"
#include "common/philox.h"
#include "common/rounding.h"

namespace medimg::cuda {

constexpr int kIntensityThreads = 256;
constexpr unsigned kMaxIntensityGridX = 1u << 16, kMaxIntensityGridY = 65535;

// `items` per sample (elements, or Philox blocks of four) over `samples`.
inline dim3 intensity_grid(int64_t items, int64_t samples) {
  const int64_t x = (items + kIntensityThreads - 1) / kIntensityThreads;
  return dim3(unsigned(std::clamp<int64_t>(x, 1, kMaxIntensityGridX)),
              unsigned(std::clamp<int64_t>(samples, 1, kMaxIntensityGridY)));
}

template <class T>
using intensity_acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// The final product and sum rounded one at a time (common/rounding.h), as torch's separate
// elementwise ops round them, so a gamma of 1 gives the formula's bits.

// cos and sin of 2 pi t, t in [0, 1).
template <class F>
MEDIMG_HD void turn_cos_sin(F t, F* cos_out, F* sin_out) {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<F, float>) sincospif(2.0f * t, sin_out, cos_out);
  else sincospi(2.0 * t, sin_out, cos_out);
#else
  constexpr F kTwoPi = F(6.283185307179586);
  *cos_out = std::cos(kTwoPi * t);
  *sin_out = std::sin(kTwoPi * t);
#endif
}

// Box-Muller on two 32-bit words as the CPU kernel (cpu/gaussian_noise.cpp): uniforms in (0, 1]
// and [0, 1) of 24 bits for float, 32 bits for double.
template <class F>
MEDIMG_HD void box_muller(uint32_t a, uint32_t b, F* z0, F* z1) {
  F u1, u2;
  if constexpr (std::is_same_v<F, float>) {
    u1 = F((a >> 8) + 1) * F(1.0 / 16777216.0);
    u2 = F(b >> 8) * F(1.0 / 16777216.0);
  } else {
    u1 = (F(a) + F(1)) * F(1.0 / 4294967296.0);
    u2 = F(b) * F(1.0 / 4294967296.0);
  }
  const F radius = std::sqrt(F(-2) * std::log(u1));  // CUDA's float overloads on the device
  F c, s;
  turn_cos_sin(u2, &c, &s);
  *z0 = radius * c;
  *z1 = radius * s;
}

// out = image + sigma[n] * z over (N, len) contiguous float32/float64; z of element 4b + k of
// sample n is normal k of Philox block (b, n) under the seed (read on the device: drawing it
// needs no host sync). Without a sigma array (nullptr), each sample's sigma is drawn from the
// seed (common/noise_sigma.h: probability p, uniform on [low, high]), so the transform needs no
// launches of its own for its per-sample draw.
template <class T>
__global__ void __launch_bounds__(kIntensityThreads)
    noise_kernel(const T* image, const T* sigma, const int64_t* seed, T* out, int64_t n, int64_t len,
                 double low = 0.0, double high = 0.0, double p = 0.0) {
  using F = intensity_acc_t<T>;
  const uint64_t key = uint64_t(read_input(seed));
  const uint32_t key0 = uint32_t(key), key1 = uint32_t(key >> 32);
  const int64_t blocks = (len + 3) / 4;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t sample = blockIdx.y; sample < n; sample += gridDim.y) {
    const F s = sigma != nullptr ? F(read_input(sigma + sample)) : F(noise_sigma(key, sample, low, high, p));
    const T* in = image + sample * len;
    T* to = out + sample * len;
    for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < blocks; b += stride) {
      const Philox4 r = philox4x32_10({{uint32_t(b), uint32_t(uint64_t(b) >> 32), uint32_t(sample), 0u}}, key0, key1);
      F z[4];
      box_muller(r.v[0], r.v[1], &z[0], &z[1]);
      box_muller(r.v[2], r.v[3], &z[2], &z[3]);
      const int64_t first = 4 * b, count = std::min<int64_t>(4, len - first);
      for (int k = 0; k < count; ++k) to[first + k] = T(F(read_input(in + first + k)) + s * z[k]);
    }
  }
}

// out = clamp((x - low[n]) / extent[n], 0, 1) ^ gamma[n] * extent[n] + low[n] over (N, len)
// contiguous, in float (double for double), rounded once to T. pow as pow gives it: a base of 1
// gives 1 whatever gamma, NaN stays NaN.
template <class T>
__global__ void __launch_bounds__(kIntensityThreads)
    gamma_kernel(const T* image, const T* gamma, const T* low, const T* extent, T* out, int64_t n, int64_t len) {
  using F = intensity_acc_t<T>;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t sample = blockIdx.y; sample < n; sample += gridDim.y) {
    const F g = load_as<F>(read_input(gamma + sample)), lo = load_as<F>(read_input(low + sample));
    const F e = load_as<F>(read_input(extent + sample));
    const T* in = image + sample * len;
    T* to = out + sample * len;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < len; i += stride) {
      F b = (load_as<F>(read_input(in + i)) - lo) / e;
      b = b < F(0) ? F(0) : b > F(1) ? F(1) : b;
      const F power = b >= F(1) ? F(1) : g == F(1) ? b : std::pow(b, g);
      to[i] = store_as<T>(add_rn(mul_rn(power, e), lo));
    }
  }
}

}  // namespace medimg::cuda

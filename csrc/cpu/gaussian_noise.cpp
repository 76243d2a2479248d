// Gaussian noise added to an image batch: out = image + sigma[n] * z, z ~ N(0, 1) per element.
//
// z comes from Philox4x32-10 (common/philox.h), counter (block, sample, 0, 0) under the 64-bit
// seed, each block's four words giving four normals by Box-Muller: element j of sample n has
// the same z whatever the thread count or instruction set (up to the last bits of the float
// arithmetic, which FMA contraction may change). The generator and the transcendental functions
// are written as plain loops over a chunk of blocks that the compiler vectorises: torch's CPU
// normal_ draws one value at a time from one Mersenne Twister (7 ms for 32 x 1x256^2 here).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "common/dispatch.h"
#include "common/philox.h"
#include "common/per_sample_views.h"
#include "cpu/kernels.h"
#include "cpu/unit_math.h"

namespace medimg::cpu::MEDIMG_ISA_NS {
namespace {

constexpr int64_t kChunk = 256;  // Philox blocks (4 elements each) per pass of the loops below

// cos and sin of 2 pi t for t in [0, 1): the quarter turn q nearest 4t, then Taylor series of
// the rest x in [-pi/4, pi/4] (to x^12 and x^11: truncation below 1e-11).
template <class F>
[[gnu::always_inline]] inline void turn_cos_sin(F t, F* cos_out, F* sin_out) {
  const F quarters = F(4) * t, q = std::nearbyint(quarters);
  const F x = (quarters - q) * F(1.5707963267948966), z = x * x;
  const F c = F(1) - z * (F(1) / 2 - z * (F(1) / 24 - z * (F(1) / 720 - z * (F(1) / 40320 - z * (F(1) / 3628800 -
                                                                                                 z / 479001600)))));
  const F s = x * (F(1) - z * (F(1) / 6 - z * (F(1) / 120 - z * (F(1) / 5040 - z * (F(1) / 362880 -
                                                                                     z / 39916800)))));
  const int quadrant = int(q) & 3;  // cos(x + q pi/2), sin(x + q pi/2)
  *cos_out = quadrant == 0 ? c : quadrant == 1 ? -s : quadrant == 2 ? -c : s;
  *sin_out = quadrant == 0 ? s : quadrant == 1 ? c : quadrant == 2 ? -s : -c;
}

// Box-Muller: two normals from two 32-bit words (uniforms in (0, 1] and [0, 1)).
template <class F>
[[gnu::always_inline]] inline void box_muller(uint32_t a, uint32_t b, F* z0, F* z1) {
  constexpr F kUnit = F(1) / F(4294967296.0);
  const F u1 = std::is_same_v<F, float> ? F((a >> 8) + 1) * F(1.0 / 16777216.0) : (F(a) + F(1)) * kUnit;
  const F u2 = std::is_same_v<F, float> ? F(b >> 8) * F(1.0 / 16777216.0) : F(b) * kUnit;
  const F radius = std::sqrt(F(-2) * log_unit(u1));
  F c, s;
  turn_cos_sin(u2, &c, &s);
  *z0 = radius * c;
  *z1 = radius * s;
}

// Philox4x32-10 words of blocks first, first + 1, ... (counter (block, sample, 0, 0)) into
// words[w][i] for i in [0, count). With AVX2, 8 blocks at a time by hand: the compiler's
// vectorisation of the 32x32 -> 64-bit products shuffled between layouts, and the generator was
// 60% of the kernel (2.6 ms for 32 x 1x256^2 here; by hand 1.7 ms, the same bits).
void philox_words(int64_t first, int64_t count, uint32_t sample, uint32_t key0, uint32_t key1,
                  uint32_t (*words)[kChunk]) {
  int64_t i = 0;
#if defined(__AVX2__)
  const __m256i mul0 = _mm256_set1_epi32(int32_t(kPhiloxMultiplier0));
  const __m256i mul1 = _mm256_set1_epi32(int32_t(kPhiloxMultiplier1));
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  // High and low words of a * m, lane by lane: even lanes from one 32x32 -> 64 product, odd
  // lanes (shifted down) from another.
  auto multiply = [](__m256i a, __m256i m, __m256i* high, __m256i* low) {
    const __m256i even = _mm256_mul_epu32(a, m), odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
    *low = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    *high = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  };
  for (; i + 8 <= count; i += 8) {
    const uint64_t block = uint64_t(first + i);  // the 8 blocks share the high word unless they straddle 2^32
    if (uint32_t(block) > 0xFFFFFFF7u) break;
    __m256i c0 = _mm256_add_epi32(_mm256_set1_epi32(int32_t(uint32_t(block))), lanes);
    __m256i c1 = _mm256_set1_epi32(int32_t(uint32_t(block >> 32)));
    __m256i c2 = _mm256_set1_epi32(int32_t(sample)), c3 = _mm256_setzero_si256();
    uint32_t k0 = key0, k1 = key1;
    for (int round = 0; round < 10; ++round) {
      __m256i high0, low0, high1, low1;
      multiply(c0, mul0, &high0, &low0);
      multiply(c2, mul1, &high1, &low1);
      c0 = _mm256_xor_si256(_mm256_xor_si256(high1, c1), _mm256_set1_epi32(int32_t(k0)));
      c2 = _mm256_xor_si256(_mm256_xor_si256(high0, c3), _mm256_set1_epi32(int32_t(k1)));
      c1 = low1;
      c3 = low0;
      k0 += kPhiloxBump0;
      k1 += kPhiloxBump1;
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(words[0] + i), c0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(words[1] + i), c1);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(words[2] + i), c2);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(words[3] + i), c3);
  }
#endif
#pragma omp simd
  for (int64_t j = i; j < count; ++j) {
    const uint64_t block = uint64_t(first + j);
    const Philox4 r = philox4x32_10({{uint32_t(block), uint32_t(block >> 32), sample, 0u}}, key0, key1);
    words[0][j] = r.v[0];
    words[1][j] = r.v[1];
    words[2][j] = r.v[2];
    words[3][j] = r.v[3];
  }
}

// out[j] = image[j] + sigma * z(sample, j) for j in [first_block * 4, min(len, end_block * 4)).
template <class T>
void noise_span(const T* image, T* out, T sigma, int64_t len, int64_t sample, int64_t first_block,
                int64_t end_block, uint32_t key0, uint32_t key1) {
  using F = std::conditional_t<std::is_same_v<T, double>, double, float>;
  uint32_t words[4][kChunk];
  F normals[4][kChunk];
  for (int64_t b0 = first_block; b0 < end_block; b0 += kChunk) {
    const int64_t blocks = std::min(kChunk, end_block - b0);
    philox_words(b0, blocks, uint32_t(sample), key0, key1, words);
#pragma omp simd
    for (int64_t i = 0; i < blocks; ++i) {
      box_muller<F>(words[0][i], words[1][i], &normals[0][i], &normals[1][i]);
      box_muller<F>(words[2][i], words[3][i], &normals[2][i], &normals[3][i]);
    }
    const int64_t first = b0 * 4, whole = std::min(blocks, (len - first) / 4);  // blocks inside the row
    const T* in = image + first;
    T* to = out + first;
#pragma omp simd
    for (int64_t i = 0; i < whole; ++i) {
      for (int k = 0; k < 4; ++k) to[4 * i + k] = T(F(in[4 * i + k]) + F(sigma) * normals[k][i]);
    }
    for (int64_t e = whole * 4; e < std::min(blocks * 4, len - first); ++e) {  // the row's last, partial block
      to[e] = T(F(in[e]) + F(sigma) * normals[e & 3][e >> 2]);
    }
  }
}

template <class T>
void noise_typed(const TensorView& image, const TensorView& sigma, uint64_t seed, const TensorView& out,
                 int num_threads) {
  const int64_t n = image.sizes[0], len = image.numel() / std::max<int64_t>(n, 1);
  const int64_t blocks = (len + 3) / 4, spans = (blocks + kChunk - 1) / kChunk;
  const uint32_t key0 = uint32_t(seed), key1 = uint32_t(seed >> 32);
  const int threads = n * len >= (int64_t(1) << 15) ? std::max(1, num_threads) : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t task = 0; task < n * spans; ++task) {
    const int64_t sample = task / spans, span = task % spans;
    noise_span<T>(image.ptr<const T>() + sample * len, out.ptr<T>() + sample * len, sigma.ptr<const T>()[sample],
                  len, sample, span * kChunk, std::min(blocks, (span + 1) * kChunk), key0, key1);
  }
}

}  // namespace

void gaussian_noise(const TensorView& image, const TensorView& sigma, uint64_t seed, const TensorView& out,
                    int num_threads) {
  per_sample_length(image, out, "gaussian_noise");
  MEDIMG_CHECK_ARG(image.device == kCpuDevice, "gaussian_noise: the CPU kernel needs CPU tensors");
  check_per_sample_vector(sigma, image, "gaussian_noise", "sigma");
  visit_float_dtype<false>(image.dtype, "image", [&](auto tag) {
    noise_typed<decltype(tag)>(image, sigma, seed, out, num_threads);
  });
}

}  // namespace medimg::cpu::MEDIMG_ISA_NS

// The register-blocked GEMM micro-kernel under conv2d: C[kMR][kNR] (+)= A-panel · B-panel.
//
// A panel: kc steps of kMR values (rows of C), B panel: kc steps of kNR values (columns of C),
// both packed contiguously by the caller so that the loop reads them with unit stride. The
// tile lives in kMR x 3 vector registers (12 accumulators: 4 x 24 floats or 4 x 12 doubles);
// each step does 3 loads, 4 broadcasts and 12 FMAs. Written with GCC vector extensions:
// the AVX2 build turns them into 256-bit FMAs, the baseline build into SSE pairs.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace medimg::cpu::MEDIMG_ISA_NS {

template <class T>
struct Simd {
  static constexpr int kWidth = 32 / int(sizeof(T));
  typedef T Vec __attribute__((vector_size(32)));
  // Lane indices for __builtin_shuffle: integers of T's width.
  typedef std::conditional_t<sizeof(T) == 4, int32_t, int64_t> Lane;
  typedef Lane Index __attribute__((vector_size(32)));
};

constexpr int kMR = 4;  // rows of C per tile
template <class T>
constexpr int kNR = 3 * Simd<T>::kWidth;  // columns of C per tile: 24 floats, 12 doubles

template <class T>
inline typename Simd<T>::Vec load_vec(const T* p) {
  typename Simd<T>::Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <class T>
inline void store_vec(T* p, typename Simd<T>::Vec v) {
  std::memcpy(p, &v, sizeof v);
}

// Every lane = v. (Not Vec{} + v: without -ffast-math the compiler must keep that addition,
// since -0.0 + 0.0 is +0.0, and it then costs a scalar add before each broadcast.)
template <class T>
inline typename Simd<T>::Vec broadcast_vec(T v) {
#if defined(__AVX__)
  if constexpr (std::is_same_v<T, float>) {
    return (typename Simd<T>::Vec)_mm256_set1_ps(v);  // one vbroadcastss from memory
  } else {
    return (typename Simd<T>::Vec)_mm256_set1_pd(v);
  }
#endif
  typename Simd<T>::Vec r{};
  r[0] = v;
  return __builtin_shuffle(r, typename Simd<T>::Index{});  // every lane takes lane 0
}

// How a tile starts and ends: from C (accumulate over K blocks), or from the bias
// (first K block; bias may be null = zero); ReLU after the last K block.
template <class T>
struct TileEpilogue {
  bool load_c = false;
  const T* bias = nullptr;  // kMR values, one per row
  bool relu = false;
};

// C[r][j] for r < rows, j < cols (row stride ldc) gets the tile; rows/cols below the full
// size go through a stack buffer so that the loop itself never branches.
template <class T>
void micro_tile(int64_t kc, const T* __restrict a, const T* __restrict b, T* c, int64_t ldc, int rows, int cols,
                const TileEpilogue<T>& e) {
  using Vec = typename Simd<T>::Vec;
  constexpr int W = Simd<T>::kWidth, NR = kNR<T>;
  const bool full = rows == kMR && cols == NR;
  alignas(32) T staged[kMR * NR];
  T* out = c;
  int64_t ld = ldc;
  if (!full) {
    std::fill(staged, staged + kMR * NR, T(0));
    if (e.load_c)
      for (int r = 0; r < rows; ++r) std::copy(c + r * ldc, c + r * ldc + cols, staged + r * NR);
    out = staged;
    ld = NR;
  }
  Vec acc[kMR][3];
#pragma GCC unroll 4
  for (int r = 0; r < kMR; ++r) {
#pragma GCC unroll 3
    for (int v = 0; v < 3; ++v) {
      if (e.load_c) {
        acc[r][v] = load_vec(out + r * ld + v * W);
      } else {
        acc[r][v] = broadcast_vec(e.bias ? e.bias[r] : T(0));
      }
    }
  }
  for (int64_t k = 0; k < kc; ++k) {
    const Vec b0 = load_vec(b), b1 = load_vec(b + W), b2 = load_vec(b + 2 * W);
#pragma GCC unroll 4
    for (int r = 0; r < kMR; ++r) {
      const Vec ar = broadcast_vec(a[r]);
      acc[r][0] += ar * b0;
      acc[r][1] += ar * b1;
      acc[r][2] += ar * b2;
    }
    a += kMR;
    b += NR;
  }
#pragma GCC unroll 4
  for (int r = 0; r < kMR; ++r) {
#pragma GCC unroll 3
    for (int v = 0; v < 3; ++v) {
      Vec x = acc[r][v];
      if (e.relu) x = x < Vec{} ? Vec{} : x;  // keeps NaN, as torch.relu
      store_vec(out + r * ld + v * W, x);
    }
  }
  if (!full)
    for (int r = 0; r < rows; ++r) std::copy(staged + r * NR, staged + r * NR + cols, c + r * ldc);
}

}  // namespace medimg::cpu::MEDIMG_ISA_NS

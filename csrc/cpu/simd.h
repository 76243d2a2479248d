// A minimal integer SIMD vector over lanes of T, for the label-counting kernels.
//
// The same kernel source is compiled once per instruction set (see CMakeLists.txt):
// with -mavx2 it gets 256-bit registers, on plain x86-64 the SSE2 baseline
// (128-bit), elsewhere a one-lane scalar stand-in. Lanes are compared bitwise;
// `hsum` reads lanes as small unsigned counts (at most 255 per lane, see kMaxBlockVectors).
#pragma once

#include <cstdint>
#include <type_traits>

#if defined(__AVX2__) || defined(__SSE2__)
#include <immintrin.h>
#endif

namespace medimg::simd {

// Count lanes are 8 bits wide for 1-byte labels: flush them every 255 vector steps.
constexpr int kMaxBlockVectors = 255;

#if defined(__AVX2__)

template <class T>
struct IntVec {
  using Reg = __m256i;
  static constexpr int kLanes = 32 / int(sizeof(T));

  static Reg load(const T* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static Reg zero() { return _mm256_setzero_si256(); }
  static Reg and_(Reg a, Reg b) { return _mm256_and_si256(a, b); }
  static Reg andnot(Reg a, Reg b) { return _mm256_andnot_si256(a, b); }  // ~a & b
  static Reg set1(T v) {
    if constexpr (sizeof(T) == 1) return _mm256_set1_epi8(char(v));
    else if constexpr (sizeof(T) == 2) return _mm256_set1_epi16(short(v));
    else if constexpr (sizeof(T) == 4) return _mm256_set1_epi32(int(v));
    else return _mm256_set1_epi64x((long long)v);
  }
  static Reg cmpeq(Reg a, Reg b) {
    if constexpr (sizeof(T) == 1) return _mm256_cmpeq_epi8(a, b);
    else if constexpr (sizeof(T) == 2) return _mm256_cmpeq_epi16(a, b);
    else if constexpr (sizeof(T) == 4) return _mm256_cmpeq_epi32(a, b);
    else return _mm256_cmpeq_epi64(a, b);
  }
  static Reg sub(Reg a, Reg b) {
    if constexpr (sizeof(T) == 1) return _mm256_sub_epi8(a, b);
    else if constexpr (sizeof(T) == 2) return _mm256_sub_epi16(a, b);
    else if constexpr (sizeof(T) == 4) return _mm256_sub_epi32(a, b);
    else return _mm256_sub_epi64(a, b);
  }
  static int64_t hsum(Reg v) {
    if constexpr (sizeof(T) == 1) v = _mm256_sad_epu8(v, _mm256_setzero_si256());
    else if constexpr (sizeof(T) == 2) v = _mm256_madd_epi16(v, _mm256_set1_epi16(1));
    const __m128i s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    if constexpr (sizeof(T) == 1 || sizeof(T) == 8) {
      return _mm_cvtsi128_si64(s) + _mm_extract_epi64(s, 1);
    } else {
      const __m128i s2 = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
      return uint32_t(_mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, _MM_SHUFFLE(2, 3, 0, 1)))));
    }
  }
};

#elif defined(__SSE2__)

template <class T>
struct IntVec {
  using Reg = __m128i;
  static constexpr int kLanes = 16 / int(sizeof(T));

  static Reg load(const T* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
  static Reg zero() { return _mm_setzero_si128(); }
  static Reg and_(Reg a, Reg b) { return _mm_and_si128(a, b); }
  static Reg andnot(Reg a, Reg b) { return _mm_andnot_si128(a, b); }  // ~a & b
  static Reg set1(T v) {
    if constexpr (sizeof(T) == 1) return _mm_set1_epi8(char(v));
    else if constexpr (sizeof(T) == 2) return _mm_set1_epi16(short(v));
    else if constexpr (sizeof(T) == 4) return _mm_set1_epi32(int(v));
    else return _mm_set1_epi64x((long long)v);
  }
  static Reg cmpeq(Reg a, Reg b) {
    if constexpr (sizeof(T) == 1) return _mm_cmpeq_epi8(a, b);
    else if constexpr (sizeof(T) == 2) return _mm_cmpeq_epi16(a, b);
    else if constexpr (sizeof(T) == 4) return _mm_cmpeq_epi32(a, b);
    else {  // SSE2 has no 64-bit compare: both 32-bit halves must match.
      const __m128i eq32 = _mm_cmpeq_epi32(a, b);
      return _mm_and_si128(eq32, _mm_shuffle_epi32(eq32, _MM_SHUFFLE(2, 3, 0, 1)));
    }
  }
  static Reg sub(Reg a, Reg b) {
    if constexpr (sizeof(T) == 1) return _mm_sub_epi8(a, b);
    else if constexpr (sizeof(T) == 2) return _mm_sub_epi16(a, b);
    else if constexpr (sizeof(T) == 4) return _mm_sub_epi32(a, b);
    else return _mm_sub_epi64(a, b);
  }
  static int64_t hsum(Reg v) {
    if constexpr (sizeof(T) == 1) v = _mm_sad_epu8(v, _mm_setzero_si128());
    else if constexpr (sizeof(T) == 2) v = _mm_madd_epi16(v, _mm_set1_epi16(1));
    if constexpr (sizeof(T) == 1 || sizeof(T) == 8) {
      return _mm_cvtsi128_si64(v) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(v, v));
    } else {
      const __m128i s = _mm_add_epi32(v, _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 0, 3, 2)));
      return uint32_t(_mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)))));
    }
  }
};

#else  // one-lane stand-in for architectures without a vector path here

template <class T>
struct IntVec {
  using U = std::make_unsigned_t<T>;
  using Reg = U;
  static constexpr int kLanes = 1;

  static Reg load(const T* p) { return U(*p); }
  static Reg zero() { return 0; }
  static Reg and_(Reg a, Reg b) { return U(a & b); }
  static Reg andnot(Reg a, Reg b) { return U(~a & b); }
  static Reg set1(T v) { return U(v); }
  static Reg cmpeq(Reg a, Reg b) { return a == b ? U(~U(0)) : U(0); }
  static Reg sub(Reg a, Reg b) { return U(a - b); }
  static int64_t hsum(Reg v) { return int64_t(v); }
};

#endif

}  // namespace medimg::simd

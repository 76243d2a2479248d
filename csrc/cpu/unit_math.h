// Elementary functions on the unit interval, written as plain arithmetic that the compiler
// vectorises inside `#pragma omp simd` loops (no libm calls, which would stay scalar): what the
// noise and gamma kernels need, no more. Included by per-instruction-set kernel files only, so
// each copy lives in that set's namespace (medimg::cpu::<isa>).
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace medimg::cpu::MEDIMG_ISA_NS {

// a * b + c, in one rounding where the instruction set has FMA: the polynomials below get it
// in files compiled with -ffp-contract=off too.
template <class F>
[[gnu::always_inline]] inline F mul_add(F a, F b, F c) {
#if defined(__FMA__)
  if constexpr (std::is_same_v<F, float>) {
    return __builtin_fmaf(a, b, c);
  } else {
    return __builtin_fma(a, b, c);
  }
#else
  return a * b + c;
#endif
}

// ln(u) for u in (0, 1]: u = m 2^e with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(s) with
// s = (m - 1) / (m + 1), |s| <= 0.1716, by its series to s^11 (truncation below 2e-11).
template <class F>
[[gnu::always_inline]] inline F log_unit(F u) {
  using Bits = std::conditional_t<std::is_same_v<F, float>, uint32_t, uint64_t>;
  constexpr int kMantissa = std::is_same_v<F, float> ? 23 : 52;
  constexpr Bits kExponentOne = std::is_same_v<F, float> ? Bits(127) : Bits(1023);
  using Signed = std::conditional_t<std::is_same_v<F, float>, int32_t, int64_t>;  // int32 vectorises for float
  Bits bits;
  std::memcpy(&bits, &u, sizeof(F));
  F exponent = F(Signed(bits >> kMantissa) - Signed(kExponentOne));
  const Bits mantissa_bits = (bits & ((Bits(1) << kMantissa) - 1)) | (kExponentOne << kMantissa);
  F m;
  std::memcpy(&m, &mantissa_bits, sizeof(F));  // in [1, 2)
  const bool high = m > F(1.4142135623730951);
  m = high ? m * F(0.5) : m;
  exponent = high ? exponent + F(1) : exponent;
  const F s = (m - F(1)) / (m + F(1)), s2 = s * s;
  F series = mul_add(s2, F(1) / 11, F(1) / 9);
  series = mul_add(s2, series, F(1) / 7);
  series = mul_add(s2, series, F(1) / 5);
  series = mul_add(s2, series, F(1) / 3);
  series = mul_add(s2, series, F(1));
  return mul_add(exponent, F(0.6931471805599453), F(2) * s * series);
}

// e^y for y <= 0 in float32: y = n ln 2 + r with |r| <= ln(2) / 2 (Cody-Waite: ln 2 in two
// parts, the first exact times any n here), e^r by its Taylor series to r^7 (truncation below
// 1e-8, a sixth of an ulp), times 2^n built from its bits (n >= -126 from y >= -87.5: results
// just below 2^-126 come out subnormal). 0 below -87.5, and for -inf or NaN. n is rounded by
// adding and subtracting 1.5 * 2^23 (exact for |t| < 2^22, ties to even as nearbyint), which
// stays vectorised where nearbyint would be a libm call without SSE4.1.
[[gnu::always_inline]] inline float exp_nonpositive(float y) {
  constexpr float kLog2e = 1.44269504088896341f, kLn2High = 0.693359375f, kLn2Low = -2.12194440054690583e-4f;
  const bool normal = y >= -87.5f;
  const float x = normal ? y : 0.0f;  // keeps n in int32's range
  constexpr float kRoundingShift = 0x1.8p23f;
  const float n = (x * kLog2e + kRoundingShift) - kRoundingShift;
  const float r = mul_add(-n, kLn2Low, x - n * kLn2High);  // n * kLn2High is exact
  float series = mul_add(r, 1.0f / 5040, 1.0f / 720);
  series = mul_add(r, series, 1.0f / 120);
  series = mul_add(r, series, 1.0f / 24);
  series = mul_add(r, series, 1.0f / 6);
  series = mul_add(r, series, 0.5f);
  series = mul_add(r, series, 1.0f);
  series = mul_add(r, series, 1.0f);
  const uint32_t bits = uint32_t(int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return normal ? series * scale : 0.0f;
}

}  // namespace medimg::cpu::MEDIMG_ISA_NS

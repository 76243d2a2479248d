// Tag types for 16-bit floats stored as raw bits, with loads/stores through float, shared by
// the CPU and CUDA kernels (the CUDA kernels read the same bits the CPU kernels do).
#pragma once

#include <cstdint>
#include <type_traits>

#include "common/macros.h"
#include "common/scalar_convert.h"

namespace medimg {

struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

// Accumulator type of a stored float type: double for double, float otherwise.
template <class P>
struct AccumulatorOf {
  using type = float;
};
template <>
struct AccumulatorOf<double> {
  using type = double;
};
template <class P>
using acc_t = typename AccumulatorOf<P>::type;

MEDIMG_HD float to_acc(float v) { return v; }
MEDIMG_HD double to_acc(double v) { return v; }
MEDIMG_HD float to_acc(Half v) { return half_to_float(v.bits); }
MEDIMG_HD float to_acc(BFloat16 v) { return bf16_to_float(v.bits); }

template <class P>
MEDIMG_HD P from_acc(acc_t<P> v);
template <>
MEDIMG_HD float from_acc<float>(float v) { return v; }
template <>
MEDIMG_HD double from_acc<double>(double v) { return v; }
template <>
MEDIMG_HD Half from_acc<Half>(float v) { return Half{float_to_half(v)}; }
template <>
MEDIMG_HD BFloat16 from_acc<BFloat16>(float v) { return BFloat16{float_to_bf16(v)}; }

// Any stored value as accumulator F and back: 16-bit floats through their bits, the rest by cast.
template <class T>
inline constexpr bool is_float16_v = std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;

template <class F, class T>
MEDIMG_HD F load_as(T v) {
  if constexpr (is_float16_v<T>) return F(to_acc(v));
  else return F(v);
}

// A value of a kernel's read-only input. On the GPU through the read-only data path
// (ld.global.nc): the compiler may then move a read ahead of the kernel's earlier stores, which
// cannot touch it. A plain read on the CPU.
template <class T>
MEDIMG_HD T read_input(const T* p) {
#if defined(__CUDA_ARCH__)
  if constexpr (is_float16_v<T>) return T{__ldg(reinterpret_cast<const unsigned short*>(p))};
  else return __ldg(p);
#else
  return *p;
#endif
}

template <class T, class F>
MEDIMG_HD T store_as(F v) {
  if constexpr (is_float16_v<T>) return from_acc<T>(float(v));
  else return T(v);
}

}  // namespace medimg

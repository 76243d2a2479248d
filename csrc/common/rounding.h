// A product or a sum rounded on its own, never fused into a multiply-add: nvcc fuses a * b + c
// by default, so device code rounds through the _rn intrinsics; host code that relies on these
// is compiled with -ffp-contract=off. Kernels use them where their bits must equal another
// computation's (the CPU's pixel coefficients, torch's separate elementwise ops).
#pragma once

#include <type_traits>

#include "common/macros.h"

namespace medimg {

template <class F>
MEDIMG_HD F mul_rn(F a, F b) {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<F, float>) return __fmul_rn(a, b);
  else return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

template <class F>
MEDIMG_HD F add_rn(F a, F b) {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<F, float>) return __fadd_rn(a, b);
  else return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

}  // namespace medimg

// Run-time choice of the CPU kernel table by CPUID (overridable with MEDIMG_CPU_ISA).
#include <cstdlib>
#include <cstring>
#include <string>

#include "cpu/kernels.h"

namespace medimg::cpu {
namespace {

constexpr KernelTable kBaseline{"baseline",          &baseline::seg_stats,   &baseline::soft_dice_stats,
                                &baseline::soft_dice_backward, &baseline::affine_warp, &baseline::affine_warp_backward,
                                &baseline::conv2d_forward, &baseline::conv2d_grad_weight, &baseline::gaussian_noise,
                                &baseline::gamma_curve};
#if defined(MEDIMG_HAVE_AVX2)
constexpr KernelTable kAvx2{"avx2",          &avx2::seg_stats,   &avx2::soft_dice_stats,
                            &avx2::soft_dice_backward, &avx2::affine_warp, &avx2::affine_warp_backward,
                            &avx2::conv2d_forward, &avx2::conv2d_grad_weight, &avx2::gaussian_noise,
                            &avx2::gamma_curve};

bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}
#endif

const KernelTable* table_for(const std::string& name) {
  if (name == "baseline") return &kBaseline;
#if defined(MEDIMG_HAVE_AVX2)
  if (name == "avx2") return cpu_has_avx2() ? &kAvx2 : nullptr;
  if (name == "auto") return cpu_has_avx2() ? &kAvx2 : &kBaseline;
#else
  if (name == "auto") return &kBaseline;
#endif
  return nullptr;
}

const KernelTable* initial_table() {
  const char* env = std::getenv("MEDIMG_CPU_ISA");
  const KernelTable* t = table_for(env && *env ? env : "auto");
  return t ? t : table_for("auto");
}

const KernelTable* g_active = initial_table();

}  // namespace

const KernelTable& active_kernels() { return *g_active; }

const char* const* supported_isas(int* count) {
  static const char* names[2];
  int n = 0;
  names[n++] = "baseline";
#if defined(MEDIMG_HAVE_AVX2)
  if (cpu_has_avx2()) names[n++] = "avx2";
#endif
  *count = n;
  return names;
}

void select_isa(const char* name) {
  const KernelTable* t = table_for(name);
  MEDIMG_CHECK_ARG(t != nullptr, std::string("isa: '") + name +
                                     "' is not built into this module or not supported by this CPU");
  g_active = t;
}

}  // namespace medimg::cpu

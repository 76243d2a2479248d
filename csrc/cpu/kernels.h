// CPU kernel entry points. Each kernel file is compiled once per instruction set into
// medimg::cpu::<isa>; dispatch.cpp picks the table for the running CPU.
#pragma once

#include <cstdint>

#include "common/label_stats.h"
#include "common/tensor_view.h"

namespace medimg::cpu {

// pred, target: (N, R, L) integer views of one dtype; out: (N, K, 3) int64, zeroed.
// Returns the first invalid label met (which == kNoError when there is none).
#define MEDIMG_CPU_KERNEL_DECLS                                                                 \
  LabelError seg_stats(const TensorView& pred, const TensorView& target, const TensorView& out, \
                       int64_t num_classes, bool has_ignore, int64_t ignore_index, int num_threads); \
  int64_t soft_dice_stats(const TensorView& probs, const TensorView& target, bool target_is_labels, \
                          const TensorView& out, int num_threads);                              \
  void soft_dice_backward(const TensorView& grad_stats, const TensorView& target,               \
                          bool target_is_labels, const TensorView& grad_probs, int num_threads);

namespace baseline {
MEDIMG_CPU_KERNEL_DECLS
}
namespace avx2 {
MEDIMG_CPU_KERNEL_DECLS
}

// One instruction set's kernels.
struct KernelTable {
  const char* isa;
  decltype(&baseline::seg_stats) seg_stats;
  decltype(&baseline::soft_dice_stats) soft_dice_stats;
  decltype(&baseline::soft_dice_backward) soft_dice_backward;
};

const KernelTable& active_kernels();
// Names of the instruction sets built into this module that the running CPU supports.
const char* const* supported_isas(int* count);
// Selects an instruction set by name ("auto" picks the best); throws if unsupported.
void select_isa(const char* name);

}  // namespace medimg::cpu

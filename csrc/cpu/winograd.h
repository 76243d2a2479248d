// Winograd F(2x2, 3x3) forward convolution for float32 3x3 stride-1 layers (csrc/cpu/winograd.cpp).
#pragma once

#include "cpu/conv_dims.h"

namespace medimg::cpu::MEDIMG_ISA_NS {

// Whether the Winograd path serves this layer: 3x3, stride 1, dilation 1, one group, and
// enough channels on both sides for the GEMMs to outweigh the tile transforms.
bool winograd_suits(const ConvDims& d);

// out (N, OC, OH, OW) contiguous = conv(x) + bias (null: none), then ReLU if relu.
void winograd_forward(const float* x, const TensorView& weight, const float* bias, float* out, const ConvDims& d,
                      bool relu, int num_threads);

}  // namespace medimg::cpu::MEDIMG_ISA_NS

// Run-time choices (dtype, interpolation, padding, dimensions) turned into template
// instantiations. Host code, shared by the CPU and CUDA translation units.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "common/affine_sample.h"
#include "common/float_types.h"
#include "common/tensor_view.h"

namespace medimg {

// fn(T{}) for the integer label dtypes; anything else is a ValueError naming `name`.
template <class Fn>
decltype(auto) visit_integer_dtype(DType dtype, const char* name, Fn&& fn) {
  switch (dtype) {
    case DType::UInt8: return fn(uint8_t{});
    case DType::Int8: return fn(int8_t{});
    case DType::Int16: return fn(int16_t{});
    case DType::Int32: return fn(int32_t{});
    case DType::Int64: return fn(int64_t{});
    default: fail_argument(std::string(name) + ": expected an integer dtype, got " + dtype_name(dtype));
  }
}

// fn(T{}) for the floating dtypes; 16-bit floats (Half, BFloat16 tags) only with kHalf.
template <bool kHalf, class Fn>
decltype(auto) visit_float_dtype(DType dtype, const char* name, Fn&& fn) {
  if constexpr (kHalf) {
    if (dtype == DType::Float16) return fn(Half{});
    if (dtype == DType::BFloat16) return fn(BFloat16{});
  }
  switch (dtype) {
    case DType::Float32: return fn(float{});
    case DType::Float64: return fn(double{});
    default:
      fail_argument(std::string(name) + ": expected " + (kHalf ? "a floating" : "a float32/float64") +
                    " dtype, got " + dtype_name(dtype));
  }
}

// fn(T{}) for floating (see visit_float_dtype) and integer dtypes alike.
template <bool kHalf, class Fn>
decltype(auto) visit_value_dtype(DType dtype, const char* name, Fn&& fn) {
  const bool integer = dtype == DType::UInt8 || dtype == DType::Int8 || dtype == DType::Int16 ||
                       dtype == DType::Int32 || dtype == DType::Int64;
  if (integer) return visit_integer_dtype(dtype, name, fn);
  return visit_float_dtype<kHalf>(dtype, name, fn);
}

// Soft-Dice kernels: fn.template run<P, L, kLabels>() for probs dtype P and target type L
// (integer labels, or the probs dtype for a soft target).
template <bool kHalf, class Fn>
decltype(auto) visit_soft_dice_types(DType prob_dtype, DType target_dtype, bool labels, const Fn& fn) {
  return visit_float_dtype<kHalf>(prob_dtype, "probs", [&](auto prob_tag) {
    using P = decltype(prob_tag);
    if (!labels) {
      MEDIMG_CHECK_ARG(target_dtype == prob_dtype, "target: a soft target must have the dtype of probs");
      return fn.template run<P, P, false>();
    }
    return visit_integer_dtype(target_dtype, "target", [&](auto label_tag) {
      return fn.template run<P, decltype(label_tag), true>();
    });
  });
}

// Warp kernels: fn.template run<kDims, kInterp, kPad>() for the run-time choices.
template <class Fn>
void visit_warp_modes(int dims, int32_t interp, int32_t padding, const Fn& fn) {
  MEDIMG_CHECK_ARG(dims == 2 || dims == 3, "input: expected 4-d (N, C, H, W) or 5-d (N, C, D, H, W)");
  MEDIMG_CHECK_ARG(interp == 0 || interp == 1, "mode: expected bilinear (0) or nearest (1)");
  MEDIMG_CHECK_ARG(padding >= 0 && padding <= 2, "padding_mode: expected zeros (0), border (1), reflection (2)");
  auto with_pad = [&](auto dims_tag, auto interp_tag) {
    constexpr int kDims = decltype(dims_tag)::value;
    constexpr Interp kInterp = decltype(interp_tag)::value;
    if (padding == 0) fn.template run<kDims, kInterp, Padding::Zeros>();
    else if (padding == 1) fn.template run<kDims, kInterp, Padding::Border>();
    else fn.template run<kDims, kInterp, Padding::Reflection>();
  };
  auto with_interp = [&](auto dims_tag) {
    if (interp == 0) with_pad(dims_tag, std::integral_constant<Interp, Interp::Bilinear>{});
    else with_pad(dims_tag, std::integral_constant<Interp, Interp::Nearest>{});
  };
  if (dims == 2) with_interp(std::integral_constant<int, 2>{});
  else with_interp(std::integral_constant<int, 3>{});
}

}  // namespace medimg

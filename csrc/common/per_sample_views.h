// Checks shared by the per-sample elementwise kernels (Gaussian noise, gamma curve; CPU and
// CUDA): an (N, ...) image, an output of its shape, dtype and device, and (N,) per-sample
// parameters. Host code; the caller checks which device and dtypes its kernel takes.
#pragma once

#include <cstdint>
#include <string>

#include "common/tensor_view.h"

namespace medimg {

// Elements per sample of `image` (0 for an empty batch), after checking that `out` matches it
// and that both are contiguous where they hold any element.
inline int64_t per_sample_length(const TensorView& image, const TensorView& out, const char* op) {
  const std::string name(op);
  MEDIMG_CHECK_ARG(image.ndim >= 1 && out.ndim == image.ndim, name + ": image and out must be (N, ...)");
  for (int d = 0; d < image.ndim; ++d) {
    MEDIMG_CHECK_ARG(out.sizes[d] == image.sizes[d], name + ": out must have image's shape");
  }
  MEDIMG_CHECK_ARG(out.dtype == image.dtype && out.device == image.device,
                   name + ": out must have image's dtype and device");
  if (image.numel() == 0) return 0;
  MEDIMG_CHECK_ARG(is_contiguous(image) && is_contiguous(out), name + ": image and out must be contiguous");
  return image.numel() / image.sizes[0];
}

// A per-sample parameter: (N,), contiguous, image's dtype and device.
inline void check_per_sample_vector(const TensorView& v, const TensorView& image, const char* op, const char* name) {
  MEDIMG_CHECK_ARG(v.ndim == 1 && v.sizes[0] == image.sizes[0] && is_contiguous(v) && v.dtype == image.dtype &&
                       v.device == image.device,
                   std::string(op) + ": " + name + " must be (N,), contiguous, with image's dtype and device");
}

}  // namespace medimg

// pybind11 module medimg._C_cuda: the CUDA launchers. Built only where nvcc is found;
// imports on a machine without a GPU (static cudart), where device_count() is 0.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "common/affine_sample.h"
#include "cuda/launch.h"
#include "pybind_view.h"

namespace py = pybind11;
using medimg::TensorView;

PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "medimg CUDA kernels";
  m.def("device_count", &medimg::cuda::device_count);
  m.def("runtime_version", &medimg::cuda::runtime_version);
  m.def(
      "seg_stats",
      [](const TensorView& pred, const TensorView& target, const TensorView& out, int64_t num_classes,
         std::optional<int64_t> ignore_index, const TensorView& error, uintptr_t stream) {
        py::gil_scoped_release released;
        medimg::cuda::seg_stats(pred, target, out, num_classes, ignore_index.has_value(), ignore_index.value_or(0),
                                error, stream);
      },
      py::arg("pred"), py::arg("target"), py::arg("out"), py::arg("num_classes"), py::arg("ignore_index"),
      py::arg("error"), py::arg("stream"));
  m.def(
      "soft_dice_stats",
      [](const TensorView& probs, const TensorView& target, bool target_is_labels, const TensorView& out,
         const TensorView& invalid, uintptr_t stream) {
        py::gil_scoped_release released;
        medimg::cuda::soft_dice_stats(probs, target, target_is_labels, out, invalid, stream);
      },
      py::arg("probs"), py::arg("target"), py::arg("target_is_labels"), py::arg("out"), py::arg("invalid"),
      py::arg("stream"));
  m.def(
      "soft_dice_backward",
      [](const TensorView& grad_stats, const TensorView& target, bool target_is_labels, const TensorView& grad_probs,
         uintptr_t stream) {
        py::gil_scoped_release released;
        medimg::cuda::soft_dice_backward(grad_stats, target, target_is_labels, grad_probs, stream);
      },
      py::arg("grad_stats"), py::arg("target"), py::arg("target_is_labels"), py::arg("grad_probs"),
      py::arg("stream"));
  m.def(
      "affine_warp",
      [](const TensorView& input, const TensorView& coeffs, const TensorView& out, int32_t interp, int32_t padding,
         bool align_corners, uintptr_t stream) {
        py::gil_scoped_release released;
        medimg::cuda::affine_warp(input, coeffs, out, interp, padding, align_corners, stream);
      },
      py::arg("input"), py::arg("coeffs"), py::arg("out"), py::arg("interp"), py::arg("padding"),
      py::arg("align_corners"), py::arg("stream"));
  m.def(
      "affine_warp_theta",
      [](const TensorView& input, const TensorView& theta, const TensorView& constants, const TensorView& coeffs,
         const TensorView& out, int32_t interp, int32_t padding, bool align_corners, bool check_finite,
         uintptr_t stream) {
        py::gil_scoped_release released;
        return medimg::cuda::affine_warp_theta(input, theta, constants, coeffs, out, interp, padding, align_corners,
                                               check_finite, stream);
      },
      py::arg("input"), py::arg("theta"), py::arg("constants"), py::arg("coeffs"), py::arg("out"), py::arg("interp"),
      py::arg("padding"), py::arg("align_corners"), py::arg("check_finite"), py::arg("stream"));
  m.def(
      "affine_warp_backward",
      [](const TensorView& grad_out, const TensorView& input, const TensorView& coeffs, const TensorView& grad_input,
         const TensorView& grad_coeffs, bool need_input, bool need_coeffs, int32_t interp, int32_t padding,
         bool align_corners, uintptr_t stream) {
        py::gil_scoped_release released;
        medimg::cuda::affine_warp_backward(grad_out, input, coeffs, grad_input, grad_coeffs, need_input, need_coeffs,
                                           interp, padding, align_corners, stream);
      },
      py::arg("grad_out"), py::arg("input"), py::arg("coeffs"), py::arg("grad_input"), py::arg("grad_coeffs"),
      py::arg("need_input"), py::arg("need_coeffs"), py::arg("interp"), py::arg("padding"), py::arg("align_corners"),
      py::arg("stream"));
  m.def(
      "gaussian_noise",
      [](const TensorView& image, const TensorView& sigma, const TensorView& seed, const TensorView& out,
         uintptr_t stream) {
        py::gil_scoped_release released;
        medimg::cuda::gaussian_noise(image, sigma, seed, out, stream);
      },
      py::arg("image"), py::arg("sigma"), py::arg("seed"), py::arg("out"), py::arg("stream"));
  m.def(
      "random_gaussian_noise",
      [](const TensorView& image, const TensorView& seed, double low, double high, double p, const TensorView& out,
         uintptr_t stream) {
        py::gil_scoped_release released;
        medimg::cuda::random_gaussian_noise(image, seed, low, high, p, out, stream);
      },
      py::arg("image"), py::arg("seed"), py::arg("low"), py::arg("high"), py::arg("p"), py::arg("out"),
      py::arg("stream"));
  m.def(
      "gamma_curve",
      [](const TensorView& image, const TensorView& gamma, const TensorView& low, const TensorView& extent,
         const TensorView& out, uintptr_t stream) {
        py::gil_scoped_release released;
        medimg::cuda::gamma_curve(image, gamma, low, extent, out, stream);
      },
      py::arg("image"), py::arg("gamma"), py::arg("low"), py::arg("extent"), py::arg("out"), py::arg("stream"));
  m.def(
      "random_affine",
      [](const TensorView& uniform, const TensorView& spec, const TensorView& theta, const TensorView& coeffs,
         bool shear, bool translate, bool round_to_float, uintptr_t stream) {
        py::gil_scoped_release released;
        medimg::cuda::random_affine(uniform, spec, theta, coeffs, shear, translate, round_to_float, stream);
      },
      py::arg("uniform"), py::arg("spec"), py::arg("theta"), py::arg("coeffs"), py::arg("shear"),
      py::arg("translate"), py::arg("round_to_float"), py::arg("stream"));
  // RandomAffine's eager batch in one call: random_affine, then the image warp and (when given)
  // the labels' nearest warp by its coeffs, all on one stream: one crossing from Python, not three.
  m.def(
      "random_affine_warp",
      [](const TensorView& uniform, const TensorView& spec, const TensorView& theta, const TensorView& coeffs,
         bool shear, bool translate, bool round_to_float, const TensorView& image, const TensorView& image_out,
         int32_t interp, std::optional<TensorView> labels, std::optional<TensorView> labels_out, int32_t padding,
         bool align_corners, uintptr_t stream) {
        MEDIMG_CHECK_ARG(labels.has_value() == labels_out.has_value(), "random_affine_warp: labels need labels_out");
        py::gil_scoped_release released;
        medimg::cuda::random_affine(uniform, spec, theta, coeffs, shear, translate, round_to_float, stream);
        medimg::cuda::affine_warp(image, coeffs, image_out, interp, padding, align_corners, stream);
        if (labels) {
          medimg::cuda::affine_warp(*labels, coeffs, *labels_out, int32_t(medimg::Interp::Nearest), padding,
                                    align_corners, stream);
        }
      },
      py::arg("uniform"), py::arg("spec"), py::arg("theta"), py::arg("coeffs"), py::arg("shear"),
      py::arg("translate"), py::arg("round_to_float"), py::arg("image"), py::arg("image_out"), py::arg("interp"),
      py::arg("labels"), py::arg("labels_out"), py::arg("padding"), py::arg("align_corners"), py::arg("stream"));
}

// pybind11 module medimg._C: the CPU kernels, called with TensorView tuples built by
// medimg/ops/_boundary.py. The GIL is released around every kernel; the thread count
// comes from the caller (torch.get_num_threads()).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <omp.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <optional>
#include <string>
#include <vector>

#include "common/affine_sample.h"
#include "common/noise_sigma.h"
#include "cpu/kernels.h"
#include "cpu/order_statistics.h"
#include "cpu/pixel_coefficients.h"
#include "cpu/random_affine.h"
#include "pybind_view.h"

namespace py = pybind11;
using medimg::LabelError;
using medimg::TensorView;

namespace {

py::tuple seg_stats(const TensorView& pred, const TensorView& target, const TensorView& out,
                    int64_t num_classes, std::optional<int64_t> ignore_index, int num_threads) {
  LabelError e;
  {
    py::gil_scoped_release released;
    e = medimg::cpu::active_kernels().seg_stats(pred, target, out, num_classes, ignore_index.has_value(),
                                                ignore_index.value_or(0), num_threads);
  }
  return py::make_tuple(e.which, e.sample, e.row, e.col, e.value);
}

int64_t soft_dice_stats(const TensorView& probs, const TensorView& target, bool target_is_labels,
                        const TensorView& out, int num_threads) {
  py::gil_scoped_release released;
  return medimg::cpu::active_kernels().soft_dice_stats(probs, target, target_is_labels, out, num_threads);
}

void soft_dice_backward(const TensorView& grad_stats, const TensorView& target, bool target_is_labels,
                        const TensorView& grad_probs, int num_threads) {
  py::gil_scoped_release released;
  medimg::cpu::active_kernels().soft_dice_backward(grad_stats, target, target_is_labels, grad_probs, num_threads);
}

void affine_warp(const TensorView& input, const TensorView& coeffs, const TensorView& out, int32_t interp,
                 int32_t padding, bool align_corners, int num_threads) {
  py::gil_scoped_release released;
  medimg::cpu::active_kernels().affine_warp(input, coeffs, out, interp, padding, align_corners, num_threads);
}

void affine_warp_backward(const TensorView& grad_out, const TensorView& input, const TensorView& coeffs,
                          const TensorView& grad_input, const TensorView& grad_coeffs, bool need_input,
                          bool need_coeffs, int32_t interp, int32_t padding, bool align_corners, int num_threads) {
  py::gil_scoped_release released;
  medimg::cpu::active_kernels().affine_warp_backward(grad_out, input, coeffs, grad_input, grad_coeffs, need_input,
                                                     need_coeffs, interp, padding, align_corners, num_threads);
}

void random_affine(const TensorView& uniform, const TensorView& spec, const TensorView& theta,
                   const TensorView& coeffs, bool shear, bool translate, bool round_to_float) {
  py::gil_scoped_release released;
  medimg::cpu::random_affine(uniform, spec, theta, coeffs, shear, translate, round_to_float);
}

// affine_grid_sample's eager path in one call: the pixel coefficients of theta (on the stack
// or the heap here: a few numbers per sample), then the warp. Returns false, warping nothing,
// when check_finite and a coefficient is not finite (theta holds NaN/inf or overflows).
bool affine_warp_theta(const TensorView& input, const TensorView& theta, const TensorView& constants,
                       const TensorView& out, int32_t interp, int32_t padding, bool align_corners, bool check_finite,
                       int num_threads) {
  MEDIMG_CHECK_ARG(theta.ndim == 3 && (theta.sizes[1] == 2 || theta.sizes[1] == 3),
                   "theta: must be (N, 2, 3) or (N, 3, 4)");
  py::gil_scoped_release released;
  const int64_t n = theta.sizes[0], k = theta.sizes[1];
  std::vector<double> buffer(size_t(n * k * (k + 1)));
  const bool finite = medimg::cpu::pixel_coefficients(theta, constants, buffer.data());
  if (check_finite && !finite) return false;
  const int64_t sizes[3] = {n, k, k + 1}, strides[3] = {k * (k + 1), k + 1, 1};
  const TensorView coeffs = medimg::view_of(buffer.data(), medimg::DType::Float64, 3, sizes, strides);
  medimg::cpu::active_kernels().affine_warp(input, coeffs, out, interp, padding, align_corners, num_threads);
  return true;
}

// RandomAffine's eager batch in one call: its matrices, then the image warp and (when given)
// the nearest warp of its labels by the same coefficients. The same kernels as the three ops,
// with one crossing from Python instead of three.
void random_affine_warp(const TensorView& uniform, const TensorView& spec, const TensorView& theta,
                        const TensorView& coeffs, bool shear, bool translate, bool round_to_float,
                        const TensorView& image, const TensorView& image_out, int32_t interp,
                        std::optional<TensorView> labels, std::optional<TensorView> labels_out, int32_t padding,
                        bool align_corners, int num_threads) {
  MEDIMG_CHECK_ARG(labels.has_value() == labels_out.has_value(), "random_affine_warp: labels need labels_out");
  py::gil_scoped_release released;
  medimg::cpu::random_affine(uniform, spec, theta, coeffs, shear, translate, round_to_float);
  const auto& kernels = medimg::cpu::active_kernels();
  kernels.affine_warp(image, coeffs, image_out, interp, padding, align_corners, num_threads);
  if (labels) {
    kernels.affine_warp(*labels, coeffs, *labels_out, int32_t(medimg::Interp::Nearest), padding, align_corners,
                        num_threads);
  }
}

void gaussian_noise(const TensorView& image, const TensorView& sigma, uint64_t seed, const TensorView& out,
                    int num_threads) {
  py::gil_scoped_release released;
  medimg::cpu::active_kernels().gaussian_noise(image, sigma, seed, out, num_threads);
}

// gaussian_noise with each sample's sigma drawn from the seed (common/noise_sigma.h): this file
// is built with -ffp-contract=off (CMakeLists.txt), so each draw rounds as the torch reference's
// separate operations.
void random_gaussian_noise(const TensorView& image, uint64_t seed, double low, double high, double p,
                           const TensorView& out, int num_threads) {
  MEDIMG_CHECK_ARG(image.ndim >= 1 && (image.dtype == medimg::DType::Float32 || image.dtype == medimg::DType::Float64),
                   "random_gaussian_noise: image must be float32 or float64 (N, ...)");
  medimg::check_noise_sigma_args(low, high, p);
  const auto draw_and_add = [&](auto tag) {  // the sigmas in image's dtype, then gaussian_noise
    using T = decltype(tag);
    std::vector<T> sigmas(static_cast<size_t>(image.sizes[0]));
    for (size_t i = 0; i < sigmas.size(); ++i) sigmas[i] = T(medimg::noise_sigma(seed, int64_t(i), low, high, p));
    const int64_t unit_stride = 1;
    gaussian_noise(image, medimg::view_of(sigmas.data(), image.dtype, 1, image.sizes, &unit_stride), seed, out,
                   num_threads);
  };
  if (image.dtype == medimg::DType::Float32) {
    draw_and_add(float{});
  } else {
    draw_and_add(double{});
  }
}

void gamma_curve(const TensorView& image, const TensorView& gamma, const TensorView& low, const TensorView& extent,
                 const TensorView& out, int num_threads) {
  py::gil_scoped_release released;
  medimg::cpu::active_kernels().gamma_curve(image, gamma, low, extent, out, num_threads);
}

void order_statistics(const TensorView& values, const std::vector<int64_t>& ks, const TensorView& indices,
                      int num_threads) {
  py::gil_scoped_release released;
  medimg::cpu::order_statistics(values, ks.data(), int64_t(ks.size()), indices, num_threads);
}

medimg::cpu::ConvGeometry conv_geometry(const std::vector<int64_t>& stride, const std::vector<int64_t>& pad,
                                        const std::vector<int64_t>& dilation, int64_t groups) {
  MEDIMG_CHECK_ARG(stride.size() == 2 && pad.size() == 2 && dilation.size() == 2,
                   "conv2d: stride, padding and dilation must be pairs");
  return {{stride[0], stride[1]}, {pad[0], pad[1]}, {dilation[0], dilation[1]}, groups};
}

void conv2d_forward(const TensorView& input, const TensorView& weight, std::optional<TensorView> bias,
                    const TensorView& out, const std::vector<int64_t>& stride, const std::vector<int64_t>& pad,
                    const std::vector<int64_t>& dilation, int64_t groups, bool relu, int num_threads) {
  const auto geometry = conv_geometry(stride, pad, dilation, groups);
  py::gil_scoped_release released;
  medimg::cpu::active_kernels().conv2d_forward(input, weight, bias.value_or(TensorView{}), bias.has_value(), out,
                                               geometry, relu, num_threads);
}

void conv2d_grad_weight(const TensorView& grad_out, const TensorView& input, const TensorView& grad_weight,
                        const std::vector<int64_t>& stride, const std::vector<int64_t>& pad,
                        const std::vector<int64_t>& dilation, int64_t groups, int num_threads) {
  const auto geometry = conv_geometry(stride, pad, dilation, groups);
  py::gil_scoped_release released;
  medimg::cpu::active_kernels().conv2d_grad_weight(grad_out, input, grad_weight, geometry, num_threads);
}

// Populate the page tables of a fresh output buffer, each thread its own slice, before a kernel
// writes it. glibc maps large buffers fresh on every call; faulting them in 4 KiB at a time
// from the kernel's inner loops costs more than the kernel itself (64 MiB: 25 ms on one core
// here, 10 ms populated by two threads). Huge pages would be cheaper per fault but make the
// kernel compact memory first, which measured far slower once memory is in use. Best effort:
// returns false where the system has no MADV_POPULATE_WRITE (Linux < 5.14).
bool populate_pages(uintptr_t ptr, uint64_t bytes, int num_threads) {
#if defined(__linux__)
  constexpr int kPopulateWrite = 23;  // MADV_POPULATE_WRITE, named by newer headers only
  constexpr uintptr_t kPage = 4096;
  const uintptr_t begin = ptr & ~(kPage - 1), end = (ptr + bytes + kPage - 1) & ~(kPage - 1);
  const uintptr_t pages = (end - begin) / kPage;
  bool ok = true;
  py::gil_scoped_release released;
#pragma omp parallel num_threads(num_threads) reduction(&& : ok)
  {
    const uintptr_t threads = omp_get_num_threads(), t = omp_get_thread_num();
    const uintptr_t first = begin + pages * t / threads * kPage, last = begin + pages * (t + 1) / threads * kPage;
    if (last > first) ok = madvise(reinterpret_cast<void*>(first), last - first, kPopulateWrite) == 0;
  }
  return ok;
#else
  (void)ptr, (void)bytes, (void)num_threads;
  return false;
#endif
}

std::vector<std::string> supported_isas() {
  int count = 0;
  const char* const* names = medimg::cpu::supported_isas(&count);
  return {names, names + count};
}

std::string compiler() {
#if defined(__clang__)
  return "clang " __clang_version__;
#elif defined(__GNUC__)
  return "gcc " __VERSION__;
#else
  return "unknown";
#endif
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "medimg CPU kernels (C++17, OpenMP, run-time ISA dispatch)";
  m.def("seg_stats", &seg_stats, py::arg("pred"), py::arg("target"), py::arg("out"), py::arg("num_classes"),
        py::arg("ignore_index"), py::arg("num_threads"),
        "Fill out (N, K, 3) int64 with [tp, fp, fn]; returns (which, sample, row, col, value) of the "
        "first invalid label, which == -1 when all are valid.");
  m.def("soft_dice_stats", &soft_dice_stats, py::arg("probs"), py::arg("target"), py::arg("target_is_labels"),
        py::arg("out"), py::arg("num_threads"),
        "Fill out (N, C, 3) with [sum p*t, sum p, sum t]; returns the count of labels outside [0, C).");
  m.def("soft_dice_backward", &soft_dice_backward, py::arg("grad_stats"), py::arg("target"),
        py::arg("target_is_labels"), py::arg("grad_probs"), py::arg("num_threads"));
  m.def("affine_warp", &affine_warp, py::arg("input"), py::arg("coeffs"), py::arg("out"), py::arg("interp"),
        py::arg("padding"), py::arg("align_corners"), py::arg("num_threads"),
        "Sample input at coeffs . (w, h[, d], 1) for every output pixel into out.");
  m.def("affine_warp_backward", &affine_warp_backward, py::arg("grad_out"), py::arg("input"), py::arg("coeffs"),
        py::arg("grad_input"), py::arg("grad_coeffs"), py::arg("need_input"), py::arg("need_coeffs"),
        py::arg("interp"), py::arg("padding"), py::arg("align_corners"), py::arg("num_threads"));
  m.def("random_affine", &random_affine, py::arg("uniform"), py::arg("spec"), py::arg("theta"), py::arg("coeffs"),
        py::arg("shear"), py::arg("translate"), py::arg("round_to_float"),
        "Fill theta and coeffs (N, k, k + 1) with RandomAffine's matrices for the uniform draws.");
  m.def("affine_warp_theta", &affine_warp_theta, py::arg("input"), py::arg("theta"), py::arg("constants"),
        py::arg("out"), py::arg("interp"), py::arg("padding"), py::arg("align_corners"), py::arg("check_finite"),
        py::arg("num_threads"),
        "pixel_coefficients of theta, then affine_warp into out; false (nothing warped) when check_finite and "
        "a coefficient is not finite.");
  m.def("random_affine_warp", &random_affine_warp, py::arg("uniform"), py::arg("spec"), py::arg("theta"),
        py::arg("coeffs"), py::arg("shear"), py::arg("translate"), py::arg("round_to_float"), py::arg("image"),
        py::arg("image_out"), py::arg("interp"), py::arg("labels"), py::arg("labels_out"), py::arg("padding"),
        py::arg("align_corners"), py::arg("num_threads"),
        "random_affine, then image -> image_out (interp) and labels -> labels_out (nearest) by its coeffs.");
  m.def("gaussian_noise", &gaussian_noise, py::arg("image"), py::arg("sigma"), py::arg("seed"), py::arg("out"),
        py::arg("num_threads"), "out = image + sigma[n] * N(0, 1) noise from Philox4x32-10 under seed.");
  m.def("random_gaussian_noise", &random_gaussian_noise, py::arg("image"), py::arg("seed"), py::arg("low"),
        py::arg("high"), py::arg("p"), py::arg("out"), py::arg("num_threads"),
        "gaussian_noise with sample n's sigma drawn from seed: with probability p, uniform on [low, high]; else 0.");
  m.def("gamma_curve", &gamma_curve, py::arg("image"), py::arg("gamma"), py::arg("low"), py::arg("extent"),
        py::arg("out"), py::arg("num_threads"),
        "out = clamp((image - low[n]) / extent[n], 0, 1) ** gamma[n] * extent[n] + low[n], float32.");
  m.def("order_statistics", &order_statistics, py::arg("values"), py::arg("ks"), py::arg("indices"),
        py::arg("num_threads"),
        "indices (N, K) int64: per row of values (N, L), where its ks[j]-th smallest value lies (NaN last).");
  m.def("conv2d_forward", &conv2d_forward, py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("out"),
        py::arg("stride"), py::arg("pad"), py::arg("dilation"), py::arg("groups"), py::arg("relu"),
        py::arg("num_threads"),
        "out (N, OC, OH, OW) = conv2d(input, weight) + bias, optionally ReLU; pad is the top/left padding.");
  m.def("conv2d_grad_weight", &conv2d_grad_weight, py::arg("grad_out"), py::arg("input"), py::arg("grad_weight"),
        py::arg("stride"), py::arg("pad"), py::arg("dilation"), py::arg("groups"), py::arg("num_threads"),
        "grad_weight (OC, C / groups, KH, KW) = d conv2d / d weight contracted with grad_out.");
  m.def("populate_pages", &populate_pages, py::arg("ptr"), py::arg("bytes"), py::arg("num_threads"),
        "Fault in a fresh buffer's pages in parallel; returns whether the system could.");
  m.def("cpu_isa", [] { return std::string(medimg::cpu::active_kernels().isa); },
        "The instruction set whose kernels are active.");
  m.def("supported_isas", &supported_isas, "Instruction sets built here that this CPU runs.");
  m.def("select_isa", [](const std::string& name) { medimg::cpu::select_isa(name.c_str()); }, py::arg("name"),
        "Switch kernels to an instruction set ('auto', 'baseline', 'avx2'); for tests and benchmarks.");
  m.def("openmp_max_threads", [] { return omp_get_max_threads(); });
  m.def("compiler", &compiler);
}

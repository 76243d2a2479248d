// The CUDA intensity kernels (csrc/cuda/intensity_kernels.cuh), compiled as host C++ with
// stand-ins for the CUDA built-ins and run block by block, thread by thread, as their launches
// would, with the grid optionally capped (small caps exercise the kernels' strides over
// elements and samples). tests/test_cuda_intensity_emulation.py checks every element written,
// nothing outside the output, and values as the CPU kernels' (threads run one after another:
// a race between two writes of the same value would pass).
#include <algorithm>
#include <cstdint>

#include "cuda_stand_ins.h"

#include "common/tensor_view.h"
#include "cuda/intensity_kernels.cuh"

using namespace medimg;

namespace {

// Runs `thread()` over the launch <<<grid, kIntensityThreads>>> for `items` per sample.
template <class Thread>
void launch(int64_t items, int64_t samples, uint32_t max_grid_x, uint32_t max_grid_y, const Thread& thread) {
  dim3 grid = cuda::intensity_grid(items, samples);
  grid.x = std::min(grid.x, max_grid_x);
  grid.y = std::min(grid.y, max_grid_y);
  gridDim = grid;
  blockDim = dim3(cuda::kIntensityThreads);
  for (unsigned y = 0; y < grid.y; ++y) {
    for (unsigned x = 0; x < grid.x; ++x) {
      blockIdx = dim3(x, y);
      for (unsigned t = 0; t < blockDim.x; ++t) {
        threadIdx = dim3(t);
        thread();
      }
    }
  }
}

}  // namespace

// image, out: (n, len) contiguous float32 (dtype 7) or float64 (8); sigma: (n,); seed: one
// int64. Returns 0, or 1 for another dtype.
extern "C" int emulate_gaussian_noise(const void* image, int32_t dtype, int64_t n, int64_t len, const void* sigma,
                                      const int64_t* seed, void* out, uint32_t max_grid_x, uint32_t max_grid_y) {
  auto run = [&](auto tag) {
    using T = decltype(tag);
    launch((len + 3) / 4, n, max_grid_x, max_grid_y, [&] {
      cuda::noise_kernel<T>(static_cast<const T*>(image), static_cast<const T*>(sigma), seed, static_cast<T*>(out),
                            n, len);
    });
  };
  switch (DType(dtype)) {
    case DType::Float32: run(float{}); return 0;
    case DType::Float64: run(double{}); return 0;
    default: return 1;
  }
}

// As emulate_gaussian_noise, each sample's sigma drawn in the kernel from the seed (low, high, p).
extern "C" int emulate_random_gaussian_noise(const void* image, int32_t dtype, int64_t n, int64_t len,
                                             const int64_t* seed, double low, double high, double p, void* out,
                                             uint32_t max_grid_x, uint32_t max_grid_y) {
  auto run = [&](auto tag) {
    using T = decltype(tag);
    launch((len + 3) / 4, n, max_grid_x, max_grid_y, [&] {
      cuda::noise_kernel<T>(static_cast<const T*>(image), nullptr, seed, static_cast<T*>(out), n, len, low, high, p);
    });
  };
  switch (DType(dtype)) {
    case DType::Float32: run(float{}); return 0;
    case DType::Float64: run(double{}); return 0;
    default: return 1;
  }
}

// image, out: (n, len) contiguous, any floating dtype; gamma, low, extent: (n,) of that dtype.
extern "C" int emulate_gamma_curve(const void* image, int32_t dtype, int64_t n, int64_t len, const void* gamma,
                                   const void* low, const void* extent, void* out, uint32_t max_grid_x,
                                   uint32_t max_grid_y) {
  auto run = [&](auto tag) {
    using T = decltype(tag);
    launch(len, n, max_grid_x, max_grid_y, [&] {
      cuda::gamma_kernel<T>(static_cast<const T*>(image), static_cast<const T*>(gamma), static_cast<const T*>(low),
                            static_cast<const T*>(extent), static_cast<T*>(out), n, len);
    });
  };
  switch (DType(dtype)) {
    case DType::Float32: run(float{}); return 0;
    case DType::Float64: run(double{}); return 0;
    case DType::Float16: run(Half{}); return 0;
    case DType::BFloat16: run(BFloat16{}); return 0;
    default: return 1;
  }
}

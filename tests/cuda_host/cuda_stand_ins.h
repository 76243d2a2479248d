// Stand-ins for the CUDA built-ins that the kernels under csrc/cuda/*.cuh read, so that host C++
// can include them and run a launch block by block, thread by thread: the emulator sets
// blockIdx, threadIdx, gridDim and blockDim before each "thread".
#pragma once

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
namespace {
dim3 blockIdx, threadIdx, gridDim, blockDim;
}  // namespace
#define __global__
#define __launch_bounds__(...)
#define __device__
#define __forceinline__ inline
#define __shared__ static

// Device discovery for medimg.info(): a machine without a driver reports 0 devices.
#include <cuda_runtime.h>

#include <string>

#include "cuda/launch.h"

namespace medimg::cuda {

int device_count() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error: no driver or no device means "no GPU"
    return 0;
  }
  return count;
}

std::string runtime_version() {
  int version = 0;
  cudaRuntimeGetVersion(&version);
  return std::to_string(version / 1000) + "." + std::to_string((version % 1000) / 10);
}

}  // namespace medimg::cuda

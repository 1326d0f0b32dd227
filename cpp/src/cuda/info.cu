// What the CUDA build compiled and what this machine has; and the one blocking copy the core
// needs (the value of a bad target, for its error message).
#include <cuda_runtime.h>

#include <string>

#include "cuda/api.h"
#include "cuda/runtime.cuh"

#ifndef FASTXENT_CUDA_ARCHS
#define FASTXENT_CUDA_ARCHS ""
#endif
#ifndef FASTXENT_CUDA_TOOLKIT
#define FASTXENT_CUDA_TOOLKIT ""
#endif

namespace fastxent {
namespace cuda {

bool built() { return true; }

int device_count() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();
      n = 0;
    }
    return n;
  }();
  return count;
}

CudaInfo info() {
  CudaInfo out;
  out.built = true;
  out.toolkit_version = FASTXENT_CUDA_TOOLKIT;
  out.architectures = FASTXENT_CUDA_ARCHS;
  cudaRuntimeGetVersion(&out.runtime_version);
  if (cudaDriverGetVersion(&out.driver_version) != cudaSuccess) out.driver_version = 0;
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();  // not sticky: clear it so later calls do not report it again
    out.status = std::string("no usable CUDA device: ") + cudaGetErrorString(status);
    return out;
  }
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, d) == cudaSuccess) {
      out.devices.push_back(std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
                            std::to_string(prop.minor) + ")");
    }
  }
  out.status = count > 0 ? "ok" : "no CUDA device";
  return out;
}

void copy_to_host(void* dst, const void* src, size_t bytes, const Stream& stream) {
  const DeviceGuard guard(stream.device);
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_of(stream)),
        "cudaMemcpyAsync");
  check(cudaStreamSynchronize(stream_of(stream)), "cudaStreamSynchronize");
}

}  // namespace cuda
}  // namespace fastxent

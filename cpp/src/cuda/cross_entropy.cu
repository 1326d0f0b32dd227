// Cross-entropy on CUDA: the dispatch on the logits' dtype (each dtype's kernels are compiled in
// cross_entropy_<dtype>.cu) and the target check.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/api.h"
#include "cuda/cross_entropy.cuh"

namespace fastxent {
namespace cuda {
namespace ce {

// Instantiated in cross_entropy_<dtype>.cu.
extern template void run<common::Half, float>(const CrossEntropyArgs&);
extern template void run<common::BFloat16, float>(const CrossEntropyArgs&);
extern template void run<float, float>(const CrossEntropyArgs&);
extern template void run<double, double>(const CrossEntropyArgs&);

namespace {

__global__ void check_kernel(const CrossEntropyArgs a, unsigned long long* first_bad) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; r < a.space.rows; r += step) {
    int64_t t = 0;
    if (target_state(a, r, &t) == kRowBad) atomicMin(first_bad, (unsigned long long)r);  // integer
  }
}

}  // namespace
}  // namespace ce

void cross_entropy(const CrossEntropyArgs& a) {
  switch (a.input.dtype) {
    case DType::kFloat16:
      return ce::run<common::Half, float>(a);
    case DType::kBFloat16:
      return ce::run<common::BFloat16, float>(a);
    case DType::kFloat32:
      return ce::run<float, float>(a);
    default:
      return ce::run<double, double>(a);
  }
}

int64_t check_targets(const CrossEntropyArgs& a) {
  using namespace ce;
  if (a.prob_target || a.space.rows == 0) return -1;
  const DeviceGuard guard(a.stream.device);
  const cudaStream_t stream = stream_of(a.stream);
  if (capturing(stream)) return -1;
  unsigned long long first = 0;
  {
    const Workspace ws(sizeof first, stream);
    auto* dev = reinterpret_cast<unsigned long long*>(ws.bytes());
    check(cudaMemsetAsync(dev, 0xff, sizeof first, stream), "cudaMemsetAsync");
    const unsigned blocks = grid_size(a.space.rows, kBlockThreads, 4096);
    check_kernel<<<blocks, kBlockThreads, 0, stream>>>(a, dev);
    check_launch("check_kernel");
    check(cudaMemcpyAsync(&first, dev, sizeof first, cudaMemcpyDeviceToHost, stream),
          "cudaMemcpyAsync");
  }
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize (target check)");
  return first == ~0ull ? -1 : int64_t(first);
}

}  // namespace cuda
}  // namespace fastxent

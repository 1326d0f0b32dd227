// The CUDA entry points of a build without CUDA (FASTXENT_CUDA=OFF, or no nvcc found): nothing
// is present, and check_view refuses CUDA arrays before any of the launchers could be reached.
#include "cuda/api.h"

namespace fastxent {
namespace cuda {

namespace {
[[noreturn]] void unavailable() {
  throw TypeError("this build of fastxent has no CUDA support");
}
}  // namespace

bool built() { return false; }
int device_count() { return 0; }
int64_t check_targets(const CrossEntropyArgs&) { unavailable(); }
void cross_entropy(const CrossEntropyArgs&) { unavailable(); }
void softmax(const SoftmaxArgs&) { unavailable(); }
void copy_to_host(void*, const void*, size_t, const Stream&) { unavailable(); }

CudaInfo info() {
  CudaInfo out;
  out.status = "built without CUDA";
  return out;
}

}  // namespace cuda
}  // namespace fastxent

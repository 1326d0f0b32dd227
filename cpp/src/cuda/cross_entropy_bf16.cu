// Cross-entropy kernels for common::BFloat16 logits (see cross_entropy.cuh).
#include "cuda/cross_entropy.cuh"

namespace fastxent {
namespace cuda {
namespace ce {

template void run<common::BFloat16, float>(const CrossEntropyArgs&);

}  // namespace ce
}  // namespace cuda
}  // namespace fastxent

// Cross-entropy kernels for float logits (see cross_entropy.cuh).
#include "cuda/cross_entropy.cuh"

namespace fastxent {
namespace cuda {
namespace ce {

template void run<float, float>(const CrossEntropyArgs&);

}  // namespace ce
}  // namespace cuda
}  // namespace fastxent

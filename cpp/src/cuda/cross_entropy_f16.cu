// Cross-entropy kernels for common::Half logits (see cross_entropy.cuh).
#include "cuda/cross_entropy.cuh"

namespace fastxent {
namespace cuda {
namespace ce {

template void run<common::Half, float>(const CrossEntropyArgs&);

}  // namespace ce
}  // namespace cuda
}  // namespace fastxent

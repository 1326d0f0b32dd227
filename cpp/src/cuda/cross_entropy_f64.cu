// Cross-entropy kernels for double logits (see cross_entropy.cuh).
#include "cuda/cross_entropy.cuh"

namespace fastxent {
namespace cuda {
namespace ce {

template void run<double, double>(const CrossEntropyArgs&);

}  // namespace ce
}  // namespace cuda
}  // namespace fastxent

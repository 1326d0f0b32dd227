// Baseline kernels: one-lane vectors, libm's exp. Runs on any CPU; the in-library reference.
#include <cmath>
#include <cstring>
#include <type_traits>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "common/bce_math.h"
#include "common/half_convert.h"
#include "common/row_math.h"
#include "cpu/kernel_args.h"
#include "cpu/kernel_table.h"

namespace fastxent {
namespace cpu {
namespace scalar {

#include "cpu/vec_scalar.h"
#include "cpu/kernels_impl.h"

const KernelTable kTable = {"scalar", cross_entropy_kernel, softmax_kernel, stream_read_kernel,
                            exp_kernel<float>, exp_kernel<double>,
                            bce_kernel, log1p_kernel<float>, log1p_kernel<double>};

}  // namespace scalar
}  // namespace cpu
}  // namespace fastxent

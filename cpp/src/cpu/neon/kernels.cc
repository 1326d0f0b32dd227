// neon kernels (AArch64 Advanced SIMD, part of the base ISA: no extra flags), and everything in
// this file lives in namespace fastxent::cpu::neon.
#include <arm_neon.h>

#include <cmath>
#include <cstring>
#include <type_traits>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "common/bce_math.h"
#include "common/half_convert.h"
#include "common/row_math.h"
#include "cpu/exp_constants.h"
#include "cpu/kernel_args.h"
#include "cpu/kernel_table.h"

namespace fastxent {
namespace cpu {
namespace neon {

#include "cpu/vec_neon.h"
#include "cpu/kernels_impl.h"

const KernelTable kTable = {"neon", cross_entropy_kernel, softmax_kernel, stream_read_kernel,
                            exp_kernel<float>, exp_kernel<double>,
                            bce_kernel, log1p_kernel<float>, log1p_kernel<double>};

}  // namespace neon
}  // namespace cpu
}  // namespace fastxent

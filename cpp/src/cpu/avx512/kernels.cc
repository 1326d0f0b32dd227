// avx512 kernels. This file alone is compiled with the avx512 flags (see CMakeLists.txt), and
// everything in it lives in namespace fastxent::cpu::avx512.
#include <immintrin.h>

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
namespace avx512 {

#include "cpu/vec_avx512.h"
#include "cpu/kernels_impl.h"

const KernelTable kTable = {"avx512", cross_entropy_kernel, softmax_kernel, stream_read_kernel,
                            exp_kernel<float>, exp_kernel<double>,
                            bce_kernel, log1p_kernel<float>, log1p_kernel<double>};

}  // namespace avx512
}  // namespace cpu
}  // namespace fastxent

// One instruction set's kernels, and the run-time choice between them (STYLE.md §4).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cpu/bce_args.h"
#include "cpu/kernel_args.h"

namespace fastxent {
namespace cpu {

struct KernelTable {
  const char* name;
  void (*cross_entropy)(const CrossEntropyArgs&);
  void (*softmax)(const SoftmaxArgs&);
  double (*stream_read)(const void* data, int64_t bytes, int threads);
  // The kernels' own vector exp over n contiguous values (for accuracy tests).
  void (*exp_f32)(const float* x, float* out, int64_t n);
  void (*exp_f64)(const double* x, double* out, int64_t n);
  void (*binary_cross_entropy)(const BceArgs&);
  // The BCE kernels' log1p over n contiguous values in [0, 1] (for accuracy tests).
  void (*log1p_f32)(const float* x, float* out, int64_t n);
  void (*log1p_f64)(const double* x, double* out, int64_t n);
};

namespace scalar {
extern const KernelTable kTable;
}
#if defined(FASTXENT_HAVE_X86_KERNELS)
namespace avx2 {
extern const KernelTable kTable;
}
namespace avx512 {
extern const KernelTable kTable;
}
#endif
#if defined(FASTXENT_HAVE_NEON_KERNELS)
namespace neon {
extern const KernelTable kTable;
}
#endif

// The kernels in use: chosen once from CPUID/XCR0 (or FASTXENT_ISA), changeable by select_isa.
const KernelTable& active_kernels();
// Names this CPU and build can run, best first.
std::vector<std::string> supported_isas();
// Throws ValueError for a name this CPU or build cannot run.
void select_isa(const std::string& name);

}  // namespace cpu
}  // namespace fastxent

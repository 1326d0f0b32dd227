// The contract between the core and the binary cross-entropy kernels: an elementwise problem laid
// out as rows × inner values (the core merges the dimensions every operand walks alike, so a
// contiguous input is one long row), with every operand checked and broadcast (stride 0) already.
#pragma once

#include <cstdint>

#include "cpu/kernel_args.h"

namespace fastxent {
namespace cpu {

// Values per work unit (and per staging block): work is cut into units that depend only on the
// shape, each unit's loss is summed on its own and the unit sums are added in a fixed order, so
// the reductions are bitwise the same for any thread count.
constexpr int64_t kBceBlock = 1024;

// Units of `space`: a row of at least kBceBlock values is cut into blocks of kBceBlock; shorter
// rows are grouped, whole, kBceBlock / inner rows to a unit.
static inline int64_t bce_rows_per_unit(const RowSpace& space) {
  return space.classes >= kBceBlock ? 1 : kBceBlock / (space.classes > 0 ? space.classes : 1);
}
static inline int64_t bce_blocks_per_row(const RowSpace& space) {
  return space.classes >= kBceBlock ? (space.classes + kBceBlock - 1) / kBceBlock : 1;
}
static inline int64_t bce_units(const RowSpace& space) {
  if (space.rows == 0 || space.classes == 0) return 0;
  const int64_t rpu = bce_rows_per_unit(space);
  return (space.rows + rpu - 1) / rpu * bce_blocks_per_row(space);
}

// Operands are RowOperands over `space` (`classes` is the inner length); data == nullptr marks an
// absent one. weight, pos_weight, grad_output may have any floating dtype; loss has the compute
// dtype (float64 for float64 input, else float32); grad has the input's dtype.
struct BceArgs {
  RowSpace space;
  RowOperand input, target, weight, pos_weight;
  int threads = 1;
  RowOperand loss;                 // elementwise loss out (reduction "none")
  double* unit_sums = nullptr;     // per-unit loss sums out (bce_units(space) of them), or null
  RowOperand grad;                 // gradient out (may be the input itself)
  RowOperand grad_output;          // elementwise upstream gradient, or absent: grad_scale
  double grad_scale = 0;           // scalar upstream gradient, mean normaliser folded in
};

}  // namespace cpu
}  // namespace fastxent

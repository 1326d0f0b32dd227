// The contract between the core (validation, layout) and the CPU kernels: a fully checked
// problem in plain data. Kernels trust every field (STYLE.md §2) and never throw.
#pragma once

#include <cstdint>

#include "common/row_layout.h"
#include "fastxent/dtype.h"
#include "fastxent/tensor.h"

namespace fastxent {
namespace cpu {

// The row layout (common/row_layout.h), shared with the CUDA kernels.
using common::RowOperand;
using common::RowSpace;
using common::row_offset;

struct CrossEntropyArgs {
  RowSpace space;
  RowOperand input;
  int threads = 1;
  // Class-index targets, one per row, already range-checked; kIgnoredRow marks ignored rows.
  // nullptr for probability targets.
  const int64_t* target_index = nullptr;
  RowOperand target_prob;  // probability targets (data == nullptr for index targets)
  // Class weights (C,) in both compute types, or both nullptr for all ones.
  const float* weight_f32 = nullptr;
  const double* weight_f64 = nullptr;
  double weight_sum = 0;           // Σ weight (C without weights)
  double label_smoothing = 0;
  double* row_loss = nullptr;      // per-row loss out, or nullptr when no loss is wanted
  double* row_lse = nullptr;       // per-row log-sum-exp out, or nullptr
  // Per-row log-sum-exp saved by an earlier forward: the gradient pass then computes
  // p = exp(x - lse) directly and skips the statistics pass over the logits.
  const double* saved_lse = nullptr;
  RowOperand grad;                 // gradient out (data == nullptr: no gradient); dtype = input's
  const double* row_grad_scale = nullptr;  // per-row upstream gradient, or nullptr: grad_scale
  double grad_scale = 0;
};

constexpr int64_t kIgnoredRow = -1;

enum class SoftmaxMode : int8_t { kLogSumExp, kLogSoftmax, kSoftmax };

struct SoftmaxArgs {
  RowSpace space;
  RowOperand input;
  int threads = 1;
  SoftmaxMode mode = SoftmaxMode::kLogSumExp;
  double* row_lse = nullptr;  // kLogSumExp
  RowOperand out;             // kLogSoftmax / kSoftmax; dtype = input's
};

}  // namespace cpu
}  // namespace fastxent

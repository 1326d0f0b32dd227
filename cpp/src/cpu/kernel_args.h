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
  // Class-index targets, one per row, already range-checked and relative to this input's
  // classes; kIgnoredRow marks ignored rows, kTargetInOtherShard rows whose target class lies
  // in another shard of a vocabulary-sharded input. nullptr for probability targets.
  const int64_t* target_index = nullptr;
  const double* target_weight = nullptr;  // index targets: w_t per row (1 without weights)
  RowOperand target_prob;  // probability targets (data == nullptr for index targets)
  // Class weights (C,) in both compute types, or both nullptr for all ones.
  const float* weight_f32 = nullptr;
  const double* weight_f64 = nullptr;
  double weight_sum = 0;           // Σ weight over the whole vocabulary (its size without weights)
  double vocab_size = 0;           // classes of the whole vocabulary (> C when sharded): ε/V
  double label_smoothing = 0;
  double z_loss = 0;               // extensions (see fastxent/options.h); 0 = off
  double softcap = 0;
  double* row_loss = nullptr;      // per-row loss out, or nullptr when no loss is wanted
  double* row_lse = nullptr;       // per-row log-sum-exp out (every row, ignored ones too)
  // Evaluation statistics per row (every row, ignored ones too), or nullptr: the index of the
  // max logit (of the first NaN), and the entropy of the softmax.
  int64_t* row_argmax = nullptr;
  double* row_entropy = nullptr;
  // Per-row partial statistics of a vocabulary shard out, kShardStatsWidth values per row
  // (see ShardStatsField), or nullptr.
  double* row_shard_stats = nullptr;
  // Per-row log-sum-exp saved by an earlier forward: the gradient pass then computes
  // p = exp(x - lse) directly and skips the statistics pass over the logits.
  const double* saved_lse = nullptr;
  // With saved_lse and probability targets of a vocabulary shard: Σ_c w_c·y'_c over the whole
  // vocabulary per row (the coefficient of p_j), which the shard alone cannot sum.
  const double* row_target_mass = nullptr;
  RowOperand grad;                 // gradient out (data == nullptr: no gradient); dtype = input's
  const double* row_grad_scale = nullptr;  // per-row upstream gradient, or nullptr: grad_scale
  double grad_scale = 0;
  // Per-row upstream gradient of the log-sum-exp output (return_lse under autograd), or
  // nullptr: ∂lse/∂x_j = p_j adds it to the coefficient of p_j. Not scaled by the mean.
  const double* row_lse_grad = nullptr;
};

constexpr int64_t kIgnoredRow = -1;
constexpr int64_t kTargetInOtherShard = -2;

// A shard's statistics of one row: common::RowStats over its classes plus the target's logit
// (softcapped) when the target is in the shard, else 0 — so the sum over shards is x_t.
enum ShardStatsField : int { kShardMax, kShardSumExp, kShardLin, kShardVSum, kShardTargetLogit };
constexpr int kShardStatsWidth = 5;

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

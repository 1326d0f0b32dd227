// The contract between the core and the CUDA kernels: a fully checked problem in plain data,
// every pointer a device pointer of `device` (host scalars are passed by value). Like the CPU
// kernels' (cpu/kernel_args.h), with the per-row tables the CPU core builds on the host (target
// classes, weights in the compute type, the mean normaliser) left to the device.
#pragma once

#include <cstdint>

#include "common/row_layout.h"
#include "fastxent/dtype.h"
#include "fastxent/options.h"

namespace fastxent {
namespace cuda {

using common::RowOperand;
using common::RowSpace;

// Where kernels run: the caller's stream (a cudaStream_t; 0 = the legacy default stream) on
// device `device`.
struct Stream {
  void* handle = nullptr;
  int device = 0;
};

struct CrossEntropyArgs {
  RowSpace space;
  RowOperand input;
  // Index targets: one integer per row (class_stride 0), range-checked by check_targets unless
  // the stream was being captured (then a bad row yields NaN). Probability targets: floating,
  // laid like the input.
  RowOperand target;
  bool prob_target = false;
  int64_t ignore_index = -100;
  // Class weights (C,) of any floating dtype, or data == nullptr for all ones.
  const void* weight = nullptr;
  DType weight_dtype = DType::kFloat32;
  int64_t weight_stride = 1;
  Reduction reduction = Reduction::kMean;
  double label_smoothing = 0;
  double z_loss = 0;   // extensions (fastxent/options.h); 0 = off
  double softcap = 0;

  // Outputs, each skipped when its data is nullptr. loss: per-row (class_stride 0) for
  // reduction "none", else the 0-d result (all strides 0); float32 or float64.
  RowOperand loss;
  RowOperand lse_out;    // one per row (ignored rows too), float64 or the loss's dtype
  RowOperand grad;       // the input's dtype, laid like the input (may be the input itself)

  // A log-sum-exp per row saved by an earlier forward (any floating dtype), or nullptr; and the
  // upstream gradient of a returned lse (∂lse/∂x = p; return_lse under autograd), or nullptr.
  RowOperand saved_lse;
  RowOperand lse_grad;
  // The upstream gradient: a device operand (per row, or all-zero strides for a 0-d device
  // scalar), else the host value grad_output_value.
  RowOperand grad_output;
  double grad_output_value = 1;

  Stream stream;
};

enum class SoftmaxMode : int8_t { kLogSumExp, kLogSoftmax, kSoftmax };

struct SoftmaxArgs {
  RowSpace space;
  RowOperand input;
  SoftmaxMode mode = SoftmaxMode::kLogSumExp;
  // kLogSumExp: one value per row (class_stride 0), float32 or float64; else laid like the input.
  RowOperand out;
  Stream stream;
};

}  // namespace cuda
}  // namespace fastxent

// The validated cross-entropy problem behind fastxent::CrossEntropy, shared by the CPU path
// (core/cross_entropy.cc) and the CUDA path (core/cross_entropy_cuda.cc).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "common/row_layout.h"
#include "fastxent/fastxent.h"

namespace fastxent {
namespace detail {

struct CrossEntropyPlan {
  TensorView input;
  TensorView target;
  std::optional<TensorView> weight;
  CrossEntropyOptions options;
  int axis = 1;
  bool prob_target = false;
  common::RowSpace space;
  Device device;  // where every array of the problem lives (CUDA: options.cuda_stream runs it)
  // The whole vocabulary: this input's classes are [vocab_start, vocab_start + C) of it
  // (vocab_start 0 and vocab_size C unless the options shard it).
  int64_t vocab_start = 0;
  int64_t vocab_size = 0;
  // CPU problems only (a CUDA problem keeps targets and weights on the device, see
  // core/cross_entropy_cuda.cc):
  // Index targets: the class per row relative to this input, cpu::kIgnoredRow or
  // cpu::kTargetInOtherShard; and its weight w_t (0 for ignored rows).
  std::vector<int64_t> target_index;
  std::vector<double> target_weight;
  std::vector<float> weight_f32;   // the weights of this input's classes
  std::vector<double> weight_f64;
  double weight_sum = 0;           // over the whole vocabulary
  std::vector<double> full_weight;  // the whole vocabulary's weights when sharded, else empty
  double mean_denominator = 0;  // Σ w_t over rows not ignored, or the row count
  std::vector<int64_t> loss_shape;
  std::vector<int64_t> row_shape;  // the input's shape without the class axis
  DType loss_dtype = DType::kFloat32;
};

}  // namespace detail

namespace core {

// CUDA problems: every index target checked on the device (one synchronisation; skipped while
// the stream is captured into a CUDA graph); IndexError names the first bad one as on the CPU.
void check_targets_cuda(const detail::CrossEntropyPlan& p);

// Checks grad_output (dtype, shape for the reduction, device: the problem's, or one value on the
// host) and returns whether it holds one value per row (else one scalar for every row).
bool check_grad_output(const detail::CrossEntropyPlan& p, const TensorView& grad_output);

// A per-row operand (lse, lse_grad_output): floating, on the problem's device, the rows' shape.
void check_row_values(const detail::CrossEntropyPlan& p, const TensorView& v, const char* name);

// The arrays of one CUDA call, already checked by the entry point (nullptr: not wanted).
struct CudaCall {
  const TensorView* loss = nullptr;
  const TensorView* lse = nullptr;          // lse out (float64 per row)
  const TensorView* grad = nullptr;
  const TensorView* grad_output = nullptr;
  const TensorView* saved_lse = nullptr;
  const TensorView* lse_grad_output = nullptr;  // the upstream gradient of a returned lse
};
void run_cuda(const detail::CrossEntropyPlan& p, const CudaCall& call);

}  // namespace core
}  // namespace fastxent

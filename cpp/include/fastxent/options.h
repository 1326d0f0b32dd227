// Options of the cross-entropy family, with torch.nn.functional.cross_entropy's defaults.
#pragma once

#include <cstdint>
#include <optional>

#include "fastxent/tensor.h"

namespace fastxent {

enum class Reduction : int8_t { kNone, kSum, kMean };

// Parses "none" / "sum" / "mean"; throws ValueError naming `reduction` otherwise.
Reduction parse_reduction(const char* name);

struct CrossEntropyOptions {
  std::optional<TensorView> weight;  // per-class weights, shape (C,), any floating dtype
  int64_t ignore_index = -100;
  Reduction reduction = Reduction::kMean;
  double label_smoothing = 0.0;      // in [0, 1]
  std::optional<int> axis;           // class axis; default 1 (0 for 1-D input); may be negative
  // CUDA arrays: the stream (a cudaStream_t) every kernel of this problem runs on, including the
  // target check at construction; nullptr is the legacy default stream. Ignored on the CPU.
  void* cuda_stream = nullptr;
  // Extensions beyond torch (DESIGN.md §1), both off at 0:
  double z_loss = 0.0;   // adds z_loss·lse² to each counted row's loss (PaLM), finite and >= 0
  double softcap = 0.0;  // logits become softcap·tanh(x/softcap) first (Gemma); finite and > 0
  // Vocabulary sharding (tensor parallelism): the input holds classes [vocab_start,
  // vocab_start + C) of a vocabulary of vocab_size classes (0: not sharded). Index targets,
  // `weight` and label smoothing's ε/V then refer to the whole vocabulary; probability targets
  // hold the shard's classes. See CrossEntropy::shard_statistics.
  int64_t vocab_start = 0;
  int64_t vocab_size = 0;
};

}  // namespace fastxent

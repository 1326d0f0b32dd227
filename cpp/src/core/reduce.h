// Per-row results → outputs: deterministic sums and dtype-converting stores.
#pragma once

#include <cstdint>

#include "fastxent/tensor.h"

namespace fastxent {
namespace core {

// Pairwise (cascade) sum in a fixed order: error O(log n · eps), independent of threads.
double pairwise_sum(const double* values, int64_t n);

// Writes values[i] to the i-th element (C order) of `out`, converted to out's floating dtype.
void store_rows(const double* values, int64_t n, const TensorView& out);

}  // namespace core
}  // namespace fastxent

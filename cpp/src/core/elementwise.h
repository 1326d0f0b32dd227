// Broadcasting and the merged layout of elementwise problems (binary cross-entropy): every view
// walks the same shape, and the kernels see it as rows × inner values.
#pragma once

#include <cstdint>
#include <vector>

#include "cpu/kernel_args.h"
#include "fastxent/tensor.h"

namespace fastxent {
namespace core {

// `v` viewed with `shape` by NumPy/torch broadcasting (dimensions aligned on the right; a missing
// or size-1 dimension repeats with stride 0). ValueError naming `name` when it cannot be.
TensorView broadcast_to(const TensorView& v, const std::vector<int64_t>& shape, const char* name);

// The rows × inner layout of `shape` for the given views (each of that shape; nullptr entries
// are skipped and get an empty operand): size-1 dimensions are dropped and neighbours merged
// where every view steps through them alike, so contiguous (or identically strided) operands
// become one long row whatever their rank. `ops` gets one RowOperand per entry of `views`.
void elementwise_layout(const std::vector<int64_t>& shape,
                        const std::vector<const TensorView*>& views, cpu::RowSpace* space,
                        std::vector<cpu::RowOperand>* ops);

}  // namespace core
}  // namespace fastxent

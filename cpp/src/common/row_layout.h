// The row layout every kernel walks (CPU and CUDA alike): rows are the positions of every axis
// but the class axis, in C order of those axes; an operand (logits, targets, outputs) is laid
// over them with its own strides. Built once by the core (core/views.h) from checked views.
#pragma once

#include <cstdint>

#include "common/host_device.h"
#include "fastxent/dtype.h"
#include "fastxent/tensor.h"

namespace fastxent {
namespace common {

struct RowSpace {
  int64_t rows = 0;
  int64_t classes = 0;
  int nouter = 0;                        // number of non-class axes
  int64_t outer_shape[kMaxDims] = {};
};

// An array laid over the row space: element (row r, class c) lives at
// data + row_offset(r) + c * class_stride, in elements of `dtype`. Operands shaped like the rows
// (targets, per-row losses) have class_stride 0; all-zero outer strides broadcast one element.
struct RowOperand {
  void* data = nullptr;
  DType dtype = DType::kFloat32;
  int64_t class_stride = 0;
  int64_t outer_strides[kMaxDims] = {};
};

FXE_FN int64_t row_offset(const RowSpace& space, const RowOperand& op, int64_t row) {
  int64_t offset = 0;
  for (int d = space.nouter - 1; d > 0; --d) {
    const int64_t extent = space.outer_shape[d];
    offset += (row % extent) * op.outer_strides[d];
    row /= extent;
  }
  // The outermost index needs no division: row < rows keeps it in range.
  return space.nouter > 0 ? offset + row * op.outer_strides[0] : offset;
}

}  // namespace common
}  // namespace fastxent

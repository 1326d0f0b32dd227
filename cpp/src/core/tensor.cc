#include <cstring>

#include "fastxent/errors.h"
#include "fastxent/options.h"
#include "fastxent/tensor.h"

namespace fastxent {

TensorView contiguous_view(void* data, DType dtype, const std::vector<int64_t>& shape) {
  if (shape.size() > size_t(kMaxDims)) {
    throw ValueError("contiguous_view: at most " + std::to_string(kMaxDims) + " dimensions");
  }
  TensorView v;
  v.data = data;
  v.dtype = dtype;
  v.ndim = int(shape.size());
  int64_t stride = 1;
  for (int d = v.ndim - 1; d >= 0; --d) {
    v.shape[d] = shape[d];
    v.strides[d] = stride;
    stride *= shape[d];
  }
  return v;
}

TensorView contiguous_view(const void* data, DType dtype, const std::vector<int64_t>& shape) {
  TensorView v = contiguous_view(const_cast<void*>(data), dtype, shape);
  v.readonly = true;
  return v;
}

Reduction parse_reduction(const char* name) {
  if (std::strcmp(name, "none") == 0) return Reduction::kNone;
  if (std::strcmp(name, "sum") == 0) return Reduction::kSum;
  if (std::strcmp(name, "mean") == 0) return Reduction::kMean;
  throw ValueError(std::string("reduction must be 'none', 'sum' or 'mean', got '") + name + "'");
}

}  // namespace fastxent

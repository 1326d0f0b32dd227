#include <string>

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
    if (shape[d] < 0) throw ValueError("contiguous_view: negative dimension");
    v.shape[d] = shape[d];
    v.strides[d] = stride;
    if (__builtin_mul_overflow(stride, shape[d], &stride)) {
      throw ValueError("contiguous_view: element count overflows 64 bits");
    }
  }
  return v;
}

TensorView contiguous_view(const void* data, DType dtype, const std::vector<int64_t>& shape) {
  TensorView v = contiguous_view(const_cast<void*>(data), dtype, shape);
  v.readonly = true;
  return v;
}

Reduction parse_reduction(const std::string& name) {
  // Whole strings: "mean\0junk" from Python is not "mean".
  if (name == "none") return Reduction::kNone;
  if (name == "sum") return Reduction::kSum;
  if (name == "mean") return Reduction::kMean;
  std::string shown;
  for (const char c : name) shown += c == '\0' ? std::string("\\0") : std::string(1, c);
  throw ValueError("reduction must be 'none', 'sum' or 'mean', got '" + shown + "'");
}

Reduction parse_reduction(const char* name) { return parse_reduction(std::string(name)); }

}  // namespace fastxent

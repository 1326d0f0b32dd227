#include "core/views.h"

#include <algorithm>
#include <cstring>

#include "common/half_convert.h"
#include "cuda/api.h"
#include "fastxent/errors.h"

namespace fastxent {
namespace core {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

std::vector<int64_t> shape_of(const TensorView& v) {
  return std::vector<int64_t>(v.shape, v.shape + v.ndim);
}

int64_t check_view(const TensorView& v, const char* name) {
  if (v.ndim < 0 || v.ndim > kMaxDims) {
    throw ValueError(std::string(name) + ": at most " + std::to_string(kMaxDims) +
                     " dimensions are supported, got " + std::to_string(v.ndim));
  }
  if (v.device.type == DeviceType::kCUDA) {
    if (!cuda::built()) {
      throw TypeError(std::string(name) + " is on a CUDA device, but this build of fastxent has "
                      "no CUDA support (rebuild with nvcc present, or -DFASTXENT_CUDA=ON); pass "
                      "a CPU array");
    }
    const int devices = cuda::device_count();
    if (devices == 0) {
      throw TypeError(std::string(name) + " is on a CUDA device, but no CUDA device or driver "
                      "is present");
    }
    if (v.device.index < 0 || v.device.index >= devices) {
      throw ValueError(std::string(name) + " is on " + device_str(v.device) + ", but only " +
                       std::to_string(devices) + " CUDA device(s) are present");
    }
  }
  int64_t numel = 1;
  for (int d = 0; d < v.ndim; ++d) {
    if (v.shape[d] < 0) throw ValueError(std::string(name) + ": negative dimension");
    if (v.shape[d] != 0 && numel > INT64_MAX / v.shape[d]) {
      throw ValueError(std::string(name) + ": element count overflows 64 bits");
    }
    numel *= v.shape[d];
  }
  if (numel > 0 && v.data == nullptr) throw ValueError(std::string(name) + ": null data");
  // Byte extents must be addressable too: |stride|·(extent-1)·itemsize summed over dims.
  const int64_t item = int64_t(dtype_size(v.dtype));
  int64_t span = item;
  for (int d = 0; d < v.ndim && numel > 0; ++d) {
    const int64_t s = v.strides[d] < 0 ? -v.strides[d] : v.strides[d];
    const int64_t steps = v.shape[d] - 1;
    if (s != 0 && steps > (INT64_MAX / 2) / item / s) {
      throw ValueError(std::string(name) + ": byte extent overflows 64 bits");
    }
    span += s * steps * item;
    if (span > INT64_MAX / 2) throw ValueError(std::string(name) + ": byte extent overflows 64 bits");
  }
  return numel;
}

std::string device_str(const Device& device) {
  return device.type == DeviceType::kCPU ? std::string("cpu")
                                         : "cuda:" + std::to_string(device.index);
}

bool on_cuda(const TensorView& v) { return v.device.type == DeviceType::kCUDA; }

void check_device(const TensorView& v, const char* name, const Device& device) {
  if (v.device.type != device.type || (on_cuda(v) && v.device.index != device.index)) {
    throw ValueError(std::string(name) + " is on " + device_str(v.device) + " but the input is on " +
                     device_str(device) + "; all arrays of one call must be on one device");
  }
}

void check_cpu(const TensorView& v, const char* name) {
  if (on_cuda(v)) {
    throw TypeError(std::string(name) + ": expected a CPU array (this operation has no CUDA "
                    "kernels yet), got one on " + device_str(v.device));
  }
}

void check_floating(const TensorView& v, const char* name) {
  if (!is_floating(v.dtype)) {
    throw TypeError(std::string(name) +
                    ": expected a floating dtype (float16, bfloat16, float32, float64), got " +
                    dtype_name(v.dtype));
  }
}

int normalize_axis(int axis, int ndim, const char* what) {
  if (axis < -ndim || axis >= ndim) {
    throw ValueError(std::string(what) + "=" + std::to_string(axis) +
                     " is out of range for an input with " + std::to_string(ndim) +
                     " dimension" + (ndim == 1 ? "" : "s"));
  }
  return axis < 0 ? axis + ndim : axis;
}

namespace {

// Byte interval [lo, hi) that v's elements occupy.
void byte_range(const TensorView& v, intptr_t* lo, intptr_t* hi) {
  const int64_t item = int64_t(dtype_size(v.dtype));
  int64_t low = 0, high = 0;
  for (int d = 0; d < v.ndim; ++d) {
    const int64_t reach = (v.shape[d] - 1) * v.strides[d] * item;
    if (reach < 0) low += reach; else high += reach;
  }
  *lo = reinterpret_cast<intptr_t>(v.data) + low;
  *hi = reinterpret_cast<intptr_t>(v.data) + high + item;
}

bool is_empty(const TensorView& v) {
  for (int d = 0; d < v.ndim; ++d) {
    if (v.shape[d] == 0) return true;
  }
  return false;
}

// True when two different index tuples may reach the same element. Sufficient test: with the
// dims sorted by |stride|, each stride must exceed the span of all smaller ones.
bool self_overlapping(const TensorView& v) {
  if (is_empty(v)) return false;
  std::vector<std::pair<int64_t, int64_t>> dims;  // (|stride|, extent)
  for (int d = 0; d < v.ndim; ++d) {
    if (v.shape[d] > 1) dims.emplace_back(v.strides[d] < 0 ? -v.strides[d] : v.strides[d], v.shape[d]);
  }
  std::sort(dims.begin(), dims.end());
  int64_t span = 0;  // largest offset reachable with the dims so far
  for (const auto& [stride, extent] : dims) {
    if (stride <= span) return true;
    span += stride * (extent - 1);
  }
  return false;
}

}  // namespace

bool same_view(const TensorView& a, const TensorView& b) {
  if (a.data != b.data || a.dtype != b.dtype || a.ndim != b.ndim) return false;
  for (int d = 0; d < a.ndim; ++d) {
    if (a.shape[d] != b.shape[d] || (a.shape[d] > 1 && a.strides[d] != b.strides[d])) return false;
  }
  return true;
}

void check_output(const TensorView& out, const char* name, const std::vector<int64_t>& shape,
                  DType dtype, const Device& device) {
  check_view(out, name);
  check_device(out, name, device);
  if (shape_of(out) != shape) {
    throw ValueError(std::string(name) + ": expected shape " + shape_str(shape) + ", got " +
                     shape_str(shape_of(out)));
  }
  if (out.dtype != dtype) {
    throw ValueError(std::string(name) + ": expected dtype " + dtype_name(dtype) + ", got " +
                     dtype_name(out.dtype));
  }
  if (out.readonly) throw ValueError(std::string(name) + " is read-only");
  if (self_overlapping(out)) {
    throw ValueError(std::string(name) +
                     ": its elements overlap in memory (zero or repeating strides); it cannot "
                     "be written");
  }
}

void check_no_overlap(const TensorView& out, const char* out_name, const TensorView& in,
                      const char* in_name, bool allow_same) {
  if (is_empty(out) || is_empty(in)) return;
  if (allow_same && same_view(out, in)) return;
  intptr_t a0, a1, b0, b1;
  byte_range(out, &a0, &a1);
  byte_range(in, &b0, &b1);
  if (a0 < b1 && b0 < a1) {
    throw ValueError(std::string(out_name) + " shares memory with " + in_name +
                     (allow_same ? " without being exactly the same array" : ""));
  }
}

common::RowSpace row_space(const TensorView& input, int axis) {
  common::RowSpace space;
  space.classes = input.shape[axis];
  space.rows = 1;
  for (int d = 0; d < input.ndim; ++d) {
    if (d == axis) continue;
    space.outer_shape[space.nouter++] = input.shape[d];
    space.rows *= input.shape[d];
  }
  return space;
}

common::RowOperand row_operand(const TensorView& v, int class_axis) {
  common::RowOperand op;
  op.data = v.data;
  op.dtype = v.dtype;
  op.class_stride = class_axis >= 0 ? v.strides[class_axis] : 0;
  int n = 0;
  for (int d = 0; d < v.ndim; ++d) {
    if (d != class_axis) op.outer_strides[n++] = v.strides[d];
  }
  return op;
}

int64_t element_offset(const TensorView& v, int64_t index) {
  int64_t offset = 0;
  for (int d = v.ndim - 1; d > 0; --d) {
    offset += (index % v.shape[d]) * v.strides[d];
    index /= v.shape[d];
  }
  if (v.ndim > 0) offset += index * v.strides[0];  // index < numel: no division needed
  return offset * int64_t(dtype_size(v.dtype));
}

std::string position_str(const TensorView& v, int64_t index) {
  std::vector<int64_t> pos(static_cast<size_t>(v.ndim));
  for (int d = v.ndim - 1; d >= 0; --d) {
    pos[size_t(d)] = index % v.shape[d];
    index /= v.shape[d];
  }
  std::string s = "[";
  for (size_t i = 0; i < pos.size(); ++i) s += (i ? ", " : "") + std::to_string(pos[i]);
  return s + "]";
}

double load_floating(const TensorView& v, int64_t index) {
  const char* p = static_cast<const char*>(v.data) + element_offset(v, index);
  switch (v.dtype) {
    case DType::kFloat16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return common::f16_to_float(h);
    }
    case DType::kBFloat16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return common::bf16_to_float(h);
    }
    case DType::kFloat32: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    default: {
      double f;
      std::memcpy(&f, p, 8);
      return f;
    }
  }
}

namespace {
template <class I>
I read_as(const char* p) {
  I value;
  std::memcpy(&value, p, sizeof value);
  return value;
}
}  // namespace

int64_t load_integer(const TensorView& v, int64_t index, bool* exact) {
  const char* p = static_cast<const char*>(v.data) + element_offset(v, index);
  *exact = true;
  switch (v.dtype) {
    case DType::kInt8: return read_as<int8_t>(p);
    case DType::kInt16: return read_as<int16_t>(p);
    case DType::kInt32: return read_as<int32_t>(p);
    case DType::kInt64: return read_as<int64_t>(p);
    case DType::kUInt8: return read_as<uint8_t>(p);
    case DType::kUInt16: return read_as<uint16_t>(p);
    case DType::kUInt32: return read_as<uint32_t>(p);
    default: {
      const uint64_t u = read_as<uint64_t>(p);
      if (u > uint64_t(INT64_MAX)) {
        *exact = false;
        return INT64_MAX;
      }
      return int64_t(u);
    }
  }
}

std::string integer_str(const TensorView& v, int64_t index) {
  bool exact = true;
  const int64_t value = load_integer(v, index, &exact);
  if (exact) return std::to_string(value);
  return std::to_string(read_as<uint64_t>(static_cast<const char*>(v.data) + element_offset(v, index)));
}

}  // namespace core
}  // namespace fastxent

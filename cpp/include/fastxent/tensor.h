// A non-owning, strided view of an array: what every entry point reads and writes.
#pragma once

#include <cstdint>
#include <vector>

#include "fastxent/dtype.h"

namespace fastxent {

enum class DeviceType : int8_t { kCPU, kCUDA };

struct Device {
  DeviceType type = DeviceType::kCPU;
  int index = 0;
};

constexpr int kMaxDims = 16;

// Strides are counted in elements (not bytes), may be zero or negative, and are never assumed
// to describe a contiguous array. A 0-d view (ndim == 0) holds one element.
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kFloat32;
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};
  Device device;
  bool readonly = false;
};

// A C-contiguous view of `data` with the given shape (convenience for C++ callers).
TensorView contiguous_view(void* data, DType dtype, const std::vector<int64_t>& shape);
TensorView contiguous_view(const void* data, DType dtype, const std::vector<int64_t>& shape);

}  // namespace fastxent

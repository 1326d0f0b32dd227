// Element types fastxent understands. Logits are floating; class-index targets are integers.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fastxent {

enum class DType : int8_t {
  kFloat16,
  kBFloat16,
  kFloat32,
  kFloat64,
  kInt8,
  kInt16,
  kInt32,
  kInt64,
  kUInt8,
  kUInt16,
  kUInt32,
  kUInt64,
  kBool,
};

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);  // NumPy spelling: "float32", "bfloat16", "int64", ...
bool is_floating(DType dtype);
bool is_integer(DType dtype);  // bool is not an integer here: it is no valid class index

}  // namespace fastxent

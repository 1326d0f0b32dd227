#include "core/reduce.h"

#include <cstring>

#include "common/half_convert.h"
#include "core/views.h"

namespace fastxent {
namespace core {

double pairwise_sum(const double* values, int64_t n) {
  constexpr int64_t kLeaf = 64;
  if (n <= kLeaf) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += values[i];
    return s;
  }
  const int64_t half = n / 2;
  return pairwise_sum(values, half) + pairwise_sum(values + half, n - half);
}

void store_rows(const double* values, int64_t n, const TensorView& out) {
  char* base = static_cast<char*>(out.data);
  for (int64_t i = 0; i < n; ++i) {
    char* p = base + element_offset(out, i);
    switch (out.dtype) {
      case DType::kFloat16: {
        const uint16_t h = common::float_to_f16(float(values[i]));
        std::memcpy(p, &h, 2);
        break;
      }
      case DType::kBFloat16: {
        const uint16_t h = common::float_to_bf16(float(values[i]));
        std::memcpy(p, &h, 2);
        break;
      }
      case DType::kFloat32: {
        const float f = float(values[i]);
        std::memcpy(p, &f, 4);
        break;
      }
      default:
        std::memcpy(p, &values[i], 8);
    }
  }
}

}  // namespace core
}  // namespace fastxent

// Scalar float16 / bfloat16 <-> float32 conversions (IEEE round-to-nearest-even), bit-exact with
// NumPy, ml_dtypes and torch. SIMD paths convert in registers; these serve tails and the scalar
// ISA.
#pragma once

#include <cstdint>
#include <cstring>

#include "common/host_device.h"

namespace fastxent {
namespace common {

// Storage types of the 16-bit floats: distinct types so that overloads pick the conversion.
struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

FXE_FN float bits_to_float(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

FXE_FN uint32_t float_to_bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}

FXE_FN float bf16_to_float(uint16_t h) { return bits_to_float(uint32_t(h) << 16); }

FXE_FN uint16_t float_to_bf16(float f) {
  uint32_t bits = float_to_bits(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40u);  // quiet NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);  // round to nearest, ties to even
  return uint16_t(bits >> 16);
}

FXE_FN float f16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  if (exp == 0x1fu) return bits_to_float(sign | 0x7f800000u | (man << 13));  // inf / NaN
  if (exp != 0) return bits_to_float(sign | ((exp + 112u) << 23) | (man << 13));
  // zero or subnormal: man · 2^-24, exact in float32
  const float mag = float(man) * bits_to_float(0x33800000u);
  return sign ? -mag : mag;
}

FXE_FN uint16_t float_to_f16(float f) {
  const uint32_t bits = float_to_bits(f);
  const uint16_t sign = uint16_t((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));  // NaN
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to ≥ 65520: inf
  if (abs < 0x38800000u) {
    // result is subnormal (or zero): round |f| / 2^-24 to an integer, ties to even, exactly
    // as the hardware: adding 0.5 (as float 2^-1 in the shifted scale) via the magic constant.
    const float shifted = bits_to_float(abs) + bits_to_float(0x3f000000u);  // |f| + 0.5
    return uint16_t(sign | (float_to_bits(shifted) - 0x3f000000u));
  }
  uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);  // round to nearest even at bit 13
  return uint16_t(sign | ((rounded - 0x38000000u) >> 13));
}

// Overloads used by the generic (strided / tail) paths: T -> compute type F and back.
FXE_FN float to_compute(Half h) { return f16_to_float(h.bits); }
FXE_FN float to_compute(BFloat16 h) { return bf16_to_float(h.bits); }
FXE_FN float to_compute(float v) { return v; }
FXE_FN double to_compute(double v) { return v; }

FXE_FN void store_compute(float v, Half* dst) { dst->bits = float_to_f16(v); }
FXE_FN void store_compute(float v, BFloat16* dst) { dst->bits = float_to_bf16(v); }
FXE_FN void store_compute(float v, float* dst) { *dst = v; }
FXE_FN void store_compute(double v, double* dst) { *dst = v; }

}  // namespace common
}  // namespace fastxent

// The constants of the kernels' vector exp, shared by every SIMD instruction set so that the
// AVX-512, AVX2 and NEON versions compute the same function.
//
// exp(x) = 2^n · e^r with n = round(x · log2 e) and r = x - n·ln2, |r| ≤ ln2/2. ln2 is split in
// a high part with few significant bits (n·ln2_hi is exact) and a low part, so r is accurate far
// beyond the working precision. e^r: float32 uses Cephes' minimax polynomial,
// e^r ≈ 1 + r + r²·P(r) (≤ 1 ulp on the interval); float64 the Taylor series to r^13
// (truncation < 5e-18 relative, below half an ulp). Inputs are clamped first: below `lowest`
// the result is 0 (after gradual underflow), above `highest` it is inf; the clamp is written
// max(lowest, x), min(highest, ·) so that a NaN x passes through it (x86's max/min return the
// second operand when one is NaN) and comes out NaN with no separate fix-up. n is rounded by
// adding and subtracting round_shift (one FMA and one add instead of a multiply and a round).
#pragma once

namespace fastxent {
namespace cpu {

struct ExpF32Constants {
  float lowest = -104.0f;
  float highest = 88.9f;
  float log2e = 1.44269504088896341f;
  float round_shift = 12582912.0f;  // 1.5·2^23: t + shift - shift rounds t to an integer
  float ln2_hi = 0.693359375f;
  float ln2_lo = -2.12194440e-4f;
  float poly[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                   4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};  // P, highest first
};

struct ExpF64Constants {
  double lowest = -746.0;
  double highest = 710.0;
  double log2e = 1.4426950408889634;
  double round_shift = 6755399441055744.0;  // 1.5·2^52
  double ln2_hi = 6.93147180369123816490e-01;
  double ln2_lo = 1.90821492927058770002e-10;
  double poly[14] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
                     1.0 / 362880.0,     1.0 / 40320.0,     1.0 / 5040.0,     1.0 / 720.0,
                     1.0 / 120.0,        1.0 / 24.0,        1.0 / 6.0,        0.5,
                     1.0,                1.0};  // 1/13! ... 1/0!, highest first
};

constexpr ExpF32Constants kExpF32{};
constexpr ExpF64Constants kExpF64{};

}  // namespace cpu
}  // namespace fastxent

// AArch64 Advanced SIMD (NEON) vectors. Included inside namespace fastxent::cpu::neon by the NEON
// translation unit. NEON (and its float16 conversions) is part of the AArch64 base ISA, so that
// file needs no extra flags; it still keeps its code in its own namespace (STYLE.md §3).
#pragma once

#include "cpu/convert_generic.h"
#include "cpu/log1p_poly.h"

// One 128-bit register's exp, float32: 2^n · e^r with the range reduction and Cephes minimax
// polynomial of the AVX-512 exp (see vec_avx512.h), the same operations in the same order, so
// the results are bitwise those of the AVX2/AVX-512 kernels. The clamp maps -inf to
// exp(-104) = 0 after rounding and +inf to inf. 2^n is applied as two exact factors
// 2^(n/2)·2^(n - n/2), each a normal float for n in [-150, 128], and the final product rounds
// once: correct subnormals and overflow (as avx2_pow2_ps in vec_avx2.h).
static inline float32x4_t neon_exp_f32(float32x4_t x) {
  const auto& k = kExpF32;
  const float32x4_t xc = vminq_f32(vmaxq_f32(x, vdupq_n_f32(k.lowest)), vdupq_n_f32(k.highest));
  const float32x4_t n = vrndnq_f32(vmulq_f32(xc, vdupq_n_f32(k.log2e)));
  float32x4_t r = vfmsq_f32(xc, n, vdupq_n_f32(k.ln2_hi));  // xc - n·c, fused
  r = vfmsq_f32(r, n, vdupq_n_f32(k.ln2_lo));
  float32x4_t p = vdupq_n_f32(k.poly[0]);
  for (int i = 1; i < 6; ++i) p = vfmaq_f32(vdupq_n_f32(k.poly[i]), p, r);  // p·r + c, fused
  const float32x4_t y = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
  const int32x4_t ni = vcvtnq_s32_f32(n);
  const int32x4_t half = vshrq_n_s32(ni, 1);
  const int32x4_t bias = vdupq_n_s32(127);
  const float32x4_t f1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(half, bias), 23));
  const float32x4_t f2 =
      vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vsubq_s32(ni, half), bias), 23));
  const float32x4_t result = vmulq_f32(vmulq_f32(y, f1), f2);
  return vbslq_f32(vceqq_f32(x, x), result, x);  // NaN in, NaN out
}

// float64: the AVX-512 double exp (Taylor series to r^13, ln 2 in two parts); the clamp keeps n
// within [-1076, 1025] so both factors of 2^n stay normal doubles.
static inline float64x2_t neon_exp_f64(float64x2_t x) {
  const auto& k = kExpF64;
  const float64x2_t xc = vminq_f64(vmaxq_f64(x, vdupq_n_f64(k.lowest)), vdupq_n_f64(k.highest));
  const float64x2_t n = vrndnq_f64(vmulq_f64(xc, vdupq_n_f64(k.log2e)));
  float64x2_t r = vfmsq_f64(xc, n, vdupq_n_f64(k.ln2_hi));
  r = vfmsq_f64(r, n, vdupq_n_f64(k.ln2_lo));
  float64x2_t p = vdupq_n_f64(k.poly[0]);
  for (int i = 1; i < 14; ++i) p = vfmaq_f64(vdupq_n_f64(k.poly[i]), p, r);
  const int64x2_t ni = vcvtnq_s64_f64(n);
  const int64x2_t half = vshrq_n_s64(ni, 1);
  const int64x2_t bias = vdupq_n_s64(1023);
  const float64x2_t f1 = vreinterpretq_f64_s64(vshlq_n_s64(vaddq_s64(half, bias), 52));
  const float64x2_t f2 =
      vreinterpretq_f64_s64(vshlq_n_s64(vaddq_s64(vsubq_s64(ni, half), bias), 52));
  const float64x2_t result = vmulq_f64(vmulq_f64(p, f1), f2);
  return vbslq_f64(vceqq_f64(x, x), result, x);
}

// A vector is a pair of 128-bit registers: 8 float / 4 double lanes, the AVX2 shape. The blocked
// sums then have the partial accumulators of the AVX2 and portable paths (blocked summation
// keeps float32 sums accurate), reduce_add adds lanes in the AVX2 order, and with the same exp
// the NEON results are bitwise those of the AVX2 kernels. Two independent operations per step
// also keep more of the core's floating-point pipes busy than one register would.
//
// max: vmaxq propagates NaN from either operand (the x86 max returns its second operand), as
// common::nan_max does; a row holding NaN gives NaN on every path either way.
// Partial vectors go through a small stack buffer: NEON has no masked loads or stores.
template <class F>
struct Vec;

template <>
struct Vec<float> {
  using R = float32x4x2_t;  // lanes 0-3 in val[0], 4-7 in val[1]
  static constexpr int kLanes = 8;
  static R load(const float* p) { return {{vld1q_f32(p), vld1q_f32(p + 4)}}; }
  static R load_tail(const float* p, int64_t n, float fill) {
    if (n == kLanes) return load(p);
    alignas(16) float buf[kLanes];
    for (int i = 0; i < kLanes; ++i) buf[i] = fill;
    std::memcpy(buf, p, size_t(n) * sizeof(float));
    return load(buf);
  }
  static void store(float* p, R v) {
    vst1q_f32(p, v.val[0]);
    vst1q_f32(p + 4, v.val[1]);
  }
  static void store_tail(float* p, R v, int64_t n) {
    if (n == kLanes) return store(p, v);
    alignas(16) float buf[kLanes];
    store(buf, v);
    std::memcpy(p, buf, size_t(n) * sizeof(float));
  }
  // No non-temporal store intrinsic in ACLE (STNP only by assembly): plain stores.
  static void stream(float* p, R v) { store(p, v); }
  static void fence() {}
  static R set1(float v) { return {{vdupq_n_f32(v), vdupq_n_f32(v)}}; }
  static R add(R a, R b) {
    return {{vaddq_f32(a.val[0], b.val[0]), vaddq_f32(a.val[1], b.val[1])}};
  }
  static R sub(R a, R b) {
    return {{vsubq_f32(a.val[0], b.val[0]), vsubq_f32(a.val[1], b.val[1])}};
  }
  static R mul(R a, R b) {
    return {{vmulq_f32(a.val[0], b.val[0]), vmulq_f32(a.val[1], b.val[1])}};
  }
  static R fmadd(R a, R b, R c) {  // a·b + c, fused
    return {{vfmaq_f32(c.val[0], a.val[0], b.val[0]), vfmaq_f32(c.val[1], a.val[1], b.val[1])}};
  }
  static R fnmadd(R a, R b, R c) {  // c - a·b, fused
    return {{vfmsq_f32(c.val[0], a.val[0], b.val[0]), vfmsq_f32(c.val[1], a.val[1], b.val[1])}};
  }
  static R max(R a, R b) {
    return {{vmaxq_f32(a.val[0], b.val[0]), vmaxq_f32(a.val[1], b.val[1])}};
  }
  static R min(R a, R b) {  // NaN when either is NaN
    return {{vminq_f32(a.val[0], b.val[0]), vminq_f32(a.val[1], b.val[1])}};
  }
  static R div(R a, R b) {
    return {{vdivq_f32(a.val[0], b.val[0]), vdivq_f32(a.val[1], b.val[1])}};
  }
  static R select_lt(R a, R b, R t, R f) {  // t where a < b, else f (NaN compares false)
    return {{vbslq_f32(vcltq_f32(a.val[0], b.val[0]), t.val[0], f.val[0]),
             vbslq_f32(vcltq_f32(a.val[1], b.val[1]), t.val[1], f.val[1])}};
  }
  static R log1p(R e) { return log1p_unit<Vec<float>, float>(e); }  // 0 <= e <= 1
  static R exp(R x) { return {{neon_exp_f32(x.val[0]), neon_exp_f32(x.val[1])}}; }
  // ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)): the AVX2 order.
  static float reduce_add(R v) {
    const float32x4_t s = vaddq_f32(v.val[0], v.val[1]);
    const float32x2_t t = vadd_f32(vget_low_f32(s), vget_high_f32(s));
    return vget_lane_f32(vpadd_f32(t, t), 0);
  }
  static float reduce_max(R v) { return vmaxvq_f32(vmaxq_f32(v.val[0], v.val[1])); }
};

template <>
struct Vec<double> {
  using R = float64x2x2_t;  // lanes 0-1 in val[0], 2-3 in val[1]
  static constexpr int kLanes = 4;
  static R load(const double* p) { return {{vld1q_f64(p), vld1q_f64(p + 2)}}; }
  static R load_tail(const double* p, int64_t n, double fill) {
    if (n == kLanes) return load(p);
    alignas(16) double buf[kLanes] = {fill, fill, fill, fill};
    std::memcpy(buf, p, size_t(n) * sizeof(double));
    return load(buf);
  }
  static void store(double* p, R v) {
    vst1q_f64(p, v.val[0]);
    vst1q_f64(p + 2, v.val[1]);
  }
  static void store_tail(double* p, R v, int64_t n) {
    if (n == kLanes) return store(p, v);
    alignas(16) double buf[kLanes];
    store(buf, v);
    std::memcpy(p, buf, size_t(n) * sizeof(double));
  }
  static void stream(double* p, R v) { store(p, v); }
  static void fence() {}
  static R set1(double v) { return {{vdupq_n_f64(v), vdupq_n_f64(v)}}; }
  static R add(R a, R b) {
    return {{vaddq_f64(a.val[0], b.val[0]), vaddq_f64(a.val[1], b.val[1])}};
  }
  static R sub(R a, R b) {
    return {{vsubq_f64(a.val[0], b.val[0]), vsubq_f64(a.val[1], b.val[1])}};
  }
  static R mul(R a, R b) {
    return {{vmulq_f64(a.val[0], b.val[0]), vmulq_f64(a.val[1], b.val[1])}};
  }
  static R fmadd(R a, R b, R c) {
    return {{vfmaq_f64(c.val[0], a.val[0], b.val[0]), vfmaq_f64(c.val[1], a.val[1], b.val[1])}};
  }
  static R fnmadd(R a, R b, R c) {
    return {{vfmsq_f64(c.val[0], a.val[0], b.val[0]), vfmsq_f64(c.val[1], a.val[1], b.val[1])}};
  }
  static R max(R a, R b) {
    return {{vmaxq_f64(a.val[0], b.val[0]), vmaxq_f64(a.val[1], b.val[1])}};
  }
  static R min(R a, R b) {
    return {{vminq_f64(a.val[0], b.val[0]), vminq_f64(a.val[1], b.val[1])}};
  }
  static R div(R a, R b) {
    return {{vdivq_f64(a.val[0], b.val[0]), vdivq_f64(a.val[1], b.val[1])}};
  }
  static R select_lt(R a, R b, R t, R f) {
    return {{vbslq_f64(vcltq_f64(a.val[0], b.val[0]), t.val[0], f.val[0]),
             vbslq_f64(vcltq_f64(a.val[1], b.val[1]), t.val[1], f.val[1])}};
  }
  static R log1p(R e) { return log1p_unit<Vec<double>, double>(e); }
  static R exp(R x) { return {{neon_exp_f64(x.val[0]), neon_exp_f64(x.val[1])}}; }
  // (l0 + l2) + (l1 + l3): the AVX2 order.
  static double reduce_add(R v) { return vaddvq_f64(vaddq_f64(v.val[0], v.val[1])); }
  static double reduce_max(R v) { return vmaxvq_f64(vmaxq_f64(v.val[0], v.val[1])); }
};

// Storage conversions in registers. float16 through FCVTL / FCVTN (IEEE round-to-nearest-even
// under the default FPCR, subnormals kept), bfloat16 by shifting the 16 bits into the top of a
// float32 and, on the way out, rounding to nearest even with integer arithmetic (NaN kept quiet),
// bit-exact with common::float_to_bf16.
static inline float32x4_t load4_f16(const common::Half* p) {
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const uint16_t*>(p))));
}
static inline float32x4_t load4_bf16(const common::BFloat16* p) {
  return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(reinterpret_cast<const uint16_t*>(p)), 16));
}
static inline void store4_f16(common::Half* p, float32x4_t v) {
  vst1_u16(reinterpret_cast<uint16_t*>(p), vreinterpret_u16_f16(vcvt_f16_f32(v)));
}
static inline void store4_bf16(common::BFloat16* p, float32x4_t v) {
  const uint32x4_t bits = vreinterpretq_u32_f32(v);
  const uint32x4_t lsb = vandq_u32(vshrq_n_u32(bits, 16), vdupq_n_u32(1));
  const uint32x4_t rounded = vaddq_u32(bits, vaddq_u32(lsb, vdupq_n_u32(0x7fff)));
  const uint32x4_t quiet = vorrq_u32(bits, vdupq_n_u32(0x400000));
  const uint32x4_t out = vbslq_u32(vceqq_f32(v, v), rounded, quiet);
  vst1_u16(reinterpret_cast<uint16_t*>(p), vshrn_n_u32(out, 16));
}

template <>
void convert_in(const common::Half* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, load4_f16(src + i));
  for (; i < n; ++i) dst[i] = common::to_compute(src[i]);
}
template <>
void convert_in(const common::BFloat16* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, load4_bf16(src + i));
  for (; i < n; ++i) dst[i] = common::to_compute(src[i]);
}

template <>
void convert_out(const float* src, int64_t n, common::Half* dst) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) store4_f16(dst + i, vld1q_f32(src + i));
  for (; i < n; ++i) common::store_compute(src[i], dst + i);
}
template <>
void convert_out(const float* src, int64_t n, common::BFloat16* dst) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) store4_bf16(dst + i, vld1q_f32(src + i));
  for (; i < n; ++i) common::store_compute(src[i], dst + i);
}

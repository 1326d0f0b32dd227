// AVX-512 (F, BW, DQ, VL) vectors. Included inside namespace fastxent::cpu::avx512 by the
// AVX-512 translation unit, the only one compiled with these flags.
#pragma once

#include "cpu/convert_generic.h"
#include "cpu/log1p_poly.h"

template <class F>
struct Vec;

template <>
struct Vec<float> {
  using R = __m512;
  static constexpr int kLanes = 16;
  static __mmask16 tail_mask(int64_t n) { return __mmask16((1u << n) - 1u); }
  static R load(const float* p) { return _mm512_loadu_ps(p); }
  static R load_tail(const float* p, int64_t n, float fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), tail_mask(n), p);
  }
  static void store(float* p, R v) { _mm512_storeu_ps(p, v); }
  static void stream(float* p, R v) { _mm512_stream_ps(p, v); }  // p 64-byte aligned
  static void fence() { _mm_sfence(); }
  static void store_tail(float* p, R v, int64_t n) { _mm512_mask_storeu_ps(p, tail_mask(n), v); }
  static R set1(float v) { return _mm512_set1_ps(v); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static R sub(R a, R b) { return _mm512_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static R fmadd(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R fnmadd(R a, R b, R c) { return _mm512_fnmadd_ps(a, b, c); }
  static R max(R a, R b) { return _mm512_max_ps(a, b); }
  static R min(R a, R b) { return _mm512_min_ps(a, b); }
  static R div(R a, R b) { return _mm512_div_ps(a, b); }
  static R select_lt(R a, R b, R t, R f) {  // t where a < b, else f (NaN compares false)
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_LT_OQ), f, t);
  }
  static R log1p(R e) { return log1p_unit<Vec<float>, float>(e); }  // 0 <= e <= 1
  static float reduce_add(R v) { return _mm512_reduce_add_ps(v); }
  static float reduce_max(R v) { return _mm512_reduce_max_ps(v); }

  // exp as described in exp_constants.h. vscalefps applies 2^n with correct overflow to inf and
  // gradual underflow to subnormals and 0 (and keeps NaN).
  static R exp(R x) {
    const auto& k = kExpF32;
    const R xc = _mm512_min_ps(set1(k.highest), _mm512_max_ps(set1(k.lowest), x));
    const R n = sub(fmadd(xc, set1(k.log2e), set1(k.round_shift)), set1(k.round_shift));
    R r = fnmadd(n, set1(k.ln2_hi), xc);
    r = fnmadd(n, set1(k.ln2_lo), r);
    R p = set1(k.poly[0]);
    for (int i = 1; i < 6; ++i) p = fmadd(p, r, set1(k.poly[i]));
    const R y = fmadd(p, mul(r, r), add(r, set1(1.0f)));
    return _mm512_scalef_ps(y, n);
  }
};

template <>
struct Vec<double> {
  using R = __m512d;
  static constexpr int kLanes = 8;
  static __mmask8 tail_mask(int64_t n) { return __mmask8((1u << n) - 1u); }
  static R load(const double* p) { return _mm512_loadu_pd(p); }
  static R load_tail(const double* p, int64_t n, double fill) {
    return _mm512_mask_loadu_pd(_mm512_set1_pd(fill), tail_mask(n), p);
  }
  static void store(double* p, R v) { _mm512_storeu_pd(p, v); }
  static void stream(double* p, R v) { _mm512_stream_pd(p, v); }
  static void fence() { _mm_sfence(); }
  static void store_tail(double* p, R v, int64_t n) {
    _mm512_mask_storeu_pd(p, tail_mask(n), v);
  }
  static R set1(double v) { return _mm512_set1_pd(v); }
  static R add(R a, R b) { return _mm512_add_pd(a, b); }
  static R sub(R a, R b) { return _mm512_sub_pd(a, b); }
  static R mul(R a, R b) { return _mm512_mul_pd(a, b); }
  static R fmadd(R a, R b, R c) { return _mm512_fmadd_pd(a, b, c); }
  static R fnmadd(R a, R b, R c) { return _mm512_fnmadd_pd(a, b, c); }
  static R max(R a, R b) { return _mm512_max_pd(a, b); }
  static R min(R a, R b) { return _mm512_min_pd(a, b); }
  static R div(R a, R b) { return _mm512_div_pd(a, b); }
  static R select_lt(R a, R b, R t, R f) {
    return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(a, b, _CMP_LT_OQ), f, t);
  }
  static R log1p(R e) { return log1p_unit<Vec<double>, double>(e); }
  static double reduce_add(R v) { return _mm512_reduce_add_pd(v); }
  static double reduce_max(R v) { return _mm512_reduce_max_pd(v); }

  // exp as described in exp_constants.h, 2^n applied by vscalefpd.
  static R exp(R x) {
    const auto& k = kExpF64;
    const R xc = _mm512_min_pd(set1(k.highest), _mm512_max_pd(set1(k.lowest), x));
    const R n = sub(fmadd(xc, set1(k.log2e), set1(k.round_shift)), set1(k.round_shift));
    R r = fnmadd(n, set1(k.ln2_hi), xc);
    r = fnmadd(n, set1(k.ln2_lo), r);
    R p = set1(k.poly[0]);
    for (int i = 1; i < 14; ++i) p = fmadd(p, r, set1(k.poly[i]));
    return _mm512_scalef_pd(p, n);
  }
};

// Storage conversions in registers. float16 through F16C's vcvtph2ps / vcvtps2ph (IEEE
// round-to-nearest-even), bfloat16 by shifting the 16 bits into the top of a float32 and, on the
// way out, rounding to nearest even with integer arithmetic (NaN kept quiet).
static inline __m512 load16_f16(const common::Half* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
static inline __m512 load16_bf16(const common::BFloat16* p) {
  const __m512i wide =
      _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}
static inline void store16_f16(common::Half* p, __m512 v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                      _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
static inline void store16_bf16(common::BFloat16* p, __m512 v) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  __m512i rounded = _mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  rounded = _mm512_mask_or_epi32(rounded, nan, bits, _mm512_set1_epi32(0x400000));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                      _mm512_cvtepi32_epi16(_mm512_srli_epi32(rounded, 16)));
}

template <>
void convert_in(const common::Half* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load16_f16(src + i));
  for (; i < n; ++i) dst[i] = common::to_compute(src[i]);
}
template <>
void convert_in(const common::BFloat16* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load16_bf16(src + i));
  for (; i < n; ++i) dst[i] = common::to_compute(src[i]);
}

template <>
void convert_out(const float* src, int64_t n, common::Half* dst) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) store16_f16(dst + i, _mm512_loadu_ps(src + i));
  for (; i < n; ++i) common::store_compute(src[i], dst + i);
}
template <>
void convert_out(const float* src, int64_t n, common::BFloat16* dst) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) store16_bf16(dst + i, _mm512_loadu_ps(src + i));
  for (; i < n; ++i) common::store_compute(src[i], dst + i);
}

// AVX2 + FMA + F16C vectors. Included inside namespace fastxent::cpu::avx2 by the AVX2
// translation unit, the only one compiled with these flags.
#pragma once

#include "cpu/convert_generic.h"
#include "cpu/log1p_poly.h"

// Lane masks for partial loads/stores: the first n lanes set.
static inline __m256i avx2_tail_mask32(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline __m256i avx2_tail_mask64(int64_t n) {
  return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}

// 2^n for integral-valued n in [-150, 128] as two exact factors 2^(n/2)·2^(n - n/2): each is a
// normal float, and the final product rounds once, giving correct subnormals and overflow.
static inline __m256 avx2_pow2_ps(__m256 y, __m256 n) {
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i half = _mm256_srai_epi32(ni, 1);
  const __m256i rest = _mm256_sub_epi32(ni, half);
  const __m256 f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, _mm256_set1_epi32(127)), 23));
  const __m256 f2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(rest, _mm256_set1_epi32(127)), 23));
  return _mm256_mul_ps(_mm256_mul_ps(y, f1), f2);
}

static inline __m256d avx2_pow2_pd(__m256d y, __m256d n) {
  const __m128i ni = _mm256_cvtpd_epi32(n);
  const __m128i half = _mm_srai_epi32(ni, 1);
  const __m128i rest = _mm_sub_epi32(ni, half);
  const __m256i bias = _mm256_set1_epi64x(1023);
  const __m256d f1 = _mm256_castsi256_pd(
      _mm256_slli_epi64(_mm256_add_epi64(_mm256_cvtepi32_epi64(half), bias), 52));
  const __m256d f2 = _mm256_castsi256_pd(
      _mm256_slli_epi64(_mm256_add_epi64(_mm256_cvtepi32_epi64(rest), bias), 52));
  return _mm256_mul_pd(_mm256_mul_pd(y, f1), f2);
}

template <class F>
struct Vec;

template <>
struct Vec<float> {
  using R = __m256;
  static constexpr int kLanes = 8;
  static R load(const float* p) { return _mm256_loadu_ps(p); }
  static R load_tail(const float* p, int64_t n, float fill) {
    const __m256i mask = avx2_tail_mask32(n);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, mask),
                            _mm256_castsi256_ps(mask));
  }
  static void store(float* p, R v) { _mm256_storeu_ps(p, v); }
  static void stream(float* p, R v) { _mm256_stream_ps(p, v); }  // p 32-byte aligned
  static void fence() { _mm_sfence(); }
  static void store_tail(float* p, R v, int64_t n) {
    _mm256_maskstore_ps(p, avx2_tail_mask32(n), v);
  }
  static R set1(float v) { return _mm256_set1_ps(v); }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
  static R sub(R a, R b) { return _mm256_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static R fmadd(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static R fnmadd(R a, R b, R c) { return _mm256_fnmadd_ps(a, b, c); }
  static R max(R a, R b) { return _mm256_max_ps(a, b); }
  static R min(R a, R b) { return _mm256_min_ps(a, b); }
  static R div(R a, R b) { return _mm256_div_ps(a, b); }
  static R select_lt(R a, R b, R t, R f) {  // t where a < b, else f (NaN compares false)
    return _mm256_blendv_ps(f, t, _mm256_cmp_ps(a, b, _CMP_LT_OQ));
  }
  static R log1p(R e) { return log1p_unit<Vec<float>, float>(e); }  // 0 <= e <= 1
  static float reduce_add(R v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float reduce_max(R v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // exp as described in exp_constants.h; 2^n by avx2_pow2_ps.
  static R exp(R x) {
    const auto& k = kExpF32;
    const R xc = _mm256_min_ps(set1(k.highest), _mm256_max_ps(set1(k.lowest), x));
    const R n = sub(fmadd(xc, set1(k.log2e), set1(k.round_shift)), set1(k.round_shift));
    R r = fnmadd(n, set1(k.ln2_hi), xc);
    r = fnmadd(n, set1(k.ln2_lo), r);
    R p = set1(k.poly[0]);
    for (int i = 1; i < 6; ++i) p = fmadd(p, r, set1(k.poly[i]));
    const R y = fmadd(p, mul(r, r), add(r, set1(1.0f)));
    return avx2_pow2_ps(y, n);  // a NaN y stays NaN whatever the factors
  }
};

template <>
struct Vec<double> {
  using R = __m256d;
  static constexpr int kLanes = 4;
  static R load(const double* p) { return _mm256_loadu_pd(p); }
  static R load_tail(const double* p, int64_t n, double fill) {
    const __m256i mask = avx2_tail_mask64(n);
    return _mm256_blendv_pd(_mm256_set1_pd(fill), _mm256_maskload_pd(p, mask),
                            _mm256_castsi256_pd(mask));
  }
  static void store(double* p, R v) { _mm256_storeu_pd(p, v); }
  static void stream(double* p, R v) { _mm256_stream_pd(p, v); }
  static void fence() { _mm_sfence(); }
  static void store_tail(double* p, R v, int64_t n) {
    _mm256_maskstore_pd(p, avx2_tail_mask64(n), v);
  }
  static R set1(double v) { return _mm256_set1_pd(v); }
  static R add(R a, R b) { return _mm256_add_pd(a, b); }
  static R sub(R a, R b) { return _mm256_sub_pd(a, b); }
  static R mul(R a, R b) { return _mm256_mul_pd(a, b); }
  static R fmadd(R a, R b, R c) { return _mm256_fmadd_pd(a, b, c); }
  static R fnmadd(R a, R b, R c) { return _mm256_fnmadd_pd(a, b, c); }
  static R max(R a, R b) { return _mm256_max_pd(a, b); }
  static R min(R a, R b) { return _mm256_min_pd(a, b); }
  static R div(R a, R b) { return _mm256_div_pd(a, b); }
  static R select_lt(R a, R b, R t, R f) {
    return _mm256_blendv_pd(f, t, _mm256_cmp_pd(a, b, _CMP_LT_OQ));
  }
  static R log1p(R e) { return log1p_unit<Vec<double>, double>(e); }
  static double reduce_add(R v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
  static double reduce_max(R v) {
    __m128d s = _mm_max_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_max_sd(s, _mm_unpackhi_pd(s, s)));
  }
  // Same as the AVX-512 double exp; the clamp keeps n within [-1076, 1025] so both factors of
  // 2^n stay normal doubles.
  static R exp(R x) {
    const auto& k = kExpF64;
    const R xc = _mm256_min_pd(set1(k.highest), _mm256_max_pd(set1(k.lowest), x));
    const R n = sub(fmadd(xc, set1(k.log2e), set1(k.round_shift)), set1(k.round_shift));
    R r = fnmadd(n, set1(k.ln2_hi), xc);
    r = fnmadd(n, set1(k.ln2_lo), r);
    R p = set1(k.poly[0]);
    for (int i = 1; i < 14; ++i) p = fmadd(p, r, set1(k.poly[i]));
    return avx2_pow2_pd(p, n);
  }
};

template <>
void convert_in(const common::Half* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(dst + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  }
  for (; i < n; ++i) dst[i] = common::to_compute(src[i]);
}
template <>
void convert_in(const common::BFloat16* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i wide =
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16)));
  }
  for (; i < n; ++i) dst[i] = common::to_compute(src[i]);
}

// float32 -> bfloat16, round to nearest even (NaN kept quiet), as common::float_to_bf16.
template <>
void convert_out(const float* src, int64_t n, common::BFloat16* dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(src + i);
    const __m256i bits = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
    __m256i rounded = _mm256_add_epi32(bits, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    rounded = _mm256_blendv_epi8(rounded, _mm256_or_si256(bits, _mm256_set1_epi32(0x400000)), nan);
    // 32 -> 16 bits: packus works within 128-bit lanes, the permute puts the halves together.
    const __m256i packed = _mm256_packus_epi32(_mm256_srli_epi32(rounded, 16), _mm256_setzero_si256());
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_castsi256_si128(_mm256_permute4x64_epi64(packed, 0x08)));
  }
  for (; i < n; ++i) common::store_compute(src[i], dst + i);
}
template <>
void convert_out(const float* src, int64_t n, common::Half* dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  for (; i < n; ++i) common::store_compute(src[i], dst + i);
}

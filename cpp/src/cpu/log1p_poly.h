// The vector log1p of the binary cross-entropy kernels, for 0 <= e <= 1 (e = exp(-|x|) of a
// logit), written once over the Vec<F> operations of an instruction set (add, mul, fmadd, div).
// Included inside namespace fastxent::cpu::<isa> by the SIMD vec_<isa>.h headers; the scalar
// ISA uses libm's log1p instead (the in-library reference).
//
// With s = e / (2 + e) in [0, 1/3], 1 + e = (1 + s) / (1 - s), so
//   log1p(e) = 2·atanh(s) = 2s + 2s·z·Q(z),   z = s² <= 1/9,   Q(z) = Σ_{k>=1} z^(k-1) / (2k+1).
// Nothing cancels: 2s carries one rounding of 2 + e and one of the division, relative to s, for
// every e (log(1 + e) would lose the digits of e below ulp(1)), and the correction 2s·z·Q is at
// most 4% of the result: at most about 2 ulp in all (measured: 1.95). Q is the series cut where the remainder, below (1/9)^K / (2K+1) of the
// result, is negligible: K = 7 terms in float32 (1.2e-8 = 0.2 ulp), 17 in float64 (1.6e-18).
// Accuracy over [0, 1] is measured by tests/test_log1p_accuracy.py.
#pragma once

template <class F>
struct Log1pSeries;

template <>
struct Log1pSeries<float> {
  static constexpr int kTerms = 7;  // 1/(2k+1), highest power first
  static constexpr float c[kTerms] = {1.0f / 15, 1.0f / 13, 1.0f / 11, 1.0f / 9,
                                      1.0f / 7,  1.0f / 5,  1.0f / 3};
};

template <>
struct Log1pSeries<double> {
  static constexpr int kTerms = 17;
  static constexpr double c[kTerms] = {1.0 / 35, 1.0 / 33, 1.0 / 31, 1.0 / 29, 1.0 / 27, 1.0 / 25,
                                       1.0 / 23, 1.0 / 21, 1.0 / 19, 1.0 / 17, 1.0 / 15, 1.0 / 13,
                                       1.0 / 11, 1.0 / 9,  1.0 / 7,  1.0 / 5,  1.0 / 3};
};

// V is an ISA's Vec<F>. NaN in, NaN out; e = 0 gives exactly 0.
template <class V, class F>
static typename V::R log1p_unit(typename V::R e) {
  using S = Log1pSeries<F>;
  // 2s = 2e / (2 + e) directly: e/2 would drop the last bit of a subnormal e, and log1p(e) = e
  // there. z = (2s)²/4 (the quarter is exact).
  const typename V::R s2 = V::div(V::add(e, e), V::add(V::set1(F(2)), e));
  const typename V::R z = V::mul(V::mul(s2, s2), V::set1(F(0.25)));
  typename V::R q = V::set1(S::c[0]);
  for (int i = 1; i < S::kTerms; ++i) q = V::fmadd(q, z, V::set1(S::c[i]));
  return V::fmadd(V::mul(s2, z), q, s2);
}

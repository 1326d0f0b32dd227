// Portable "vectors" of 8 lanes held in plain arrays: the baseline ISA, and the in-library
// reference for the SIMD ones. Eight lanes give the block sums as many partial accumulators as
// the AVX2 path (blocked summation keeps float32 sums accurate), and the compiler vectorises the
// lane loops with whatever the baseline target has (SSE2 on x86-64). exp and log1p are libm's.
// Included inside namespace fastxent::cpu::<isa> by an ISA translation unit.
#pragma once

#include "cpu/convert_generic.h"

template <class F>
struct Vec {
  static constexpr int kLanes = 8;
  struct R {
    F v[kLanes];
  };

  template <class Op>
  static R map(R a, Op op) {
    for (int i = 0; i < kLanes; ++i) a.v[i] = op(a.v[i]);
    return a;
  }
  template <class Op>
  static R zip(R a, R b, Op op) {
    for (int i = 0; i < kLanes; ++i) a.v[i] = op(a.v[i], b.v[i]);
    return a;
  }

  static R load(const F* p) {
    R r;
    for (int i = 0; i < kLanes; ++i) r.v[i] = p[i];
    return r;
  }
  static R load_tail(const F* p, int64_t n, F fill) {
    R r;
    for (int i = 0; i < kLanes; ++i) r.v[i] = i < n ? p[i] : fill;
    return r;
  }
  static void store(F* p, R v) {
    for (int i = 0; i < kLanes; ++i) p[i] = v.v[i];
  }
  static void store_tail(F* p, R v, int64_t n) {
    for (int i = 0; i < n; ++i) p[i] = v.v[i];
  }
  static void stream(F* p, R v) { store(p, v); }
  static void fence() {}
  static R set1(F x) {
    R r;
    for (int i = 0; i < kLanes; ++i) r.v[i] = x;
    return r;
  }
  static R add(R a, R b) { return zip(a, b, [](F x, F y) { return x + y; }); }
  static R sub(R a, R b) { return zip(a, b, [](F x, F y) { return x - y; }); }
  static R mul(R a, R b) { return zip(a, b, [](F x, F y) { return x * y; }); }
  static R fmadd(R a, R b, R c) { return add(mul(a, b), c); }
  static R fnmadd(R a, R b, R c) { return sub(c, mul(a, b)); }
  static R max(R a, R b) { return zip(a, b, [](F x, F y) { return x > y ? x : y; }); }
  static R min(R a, R b) { return zip(a, b, [](F x, F y) { return x < y ? x : y; }); }
  static R div(R a, R b) { return zip(a, b, [](F x, F y) { return x / y; }); }
  static R select_lt(R a, R b, R t, R f) {
    for (int i = 0; i < kLanes; ++i) t.v[i] = a.v[i] < b.v[i] ? t.v[i] : f.v[i];
    return t;
  }
  static R exp(R a) { return map(a, [](F x) { return F(std::exp(x)); }); }
  static R log1p(R a) { return map(a, [](F x) { return F(std::log1p(x)); }); }
  // Fixed pairwise order: (0+4)+(2+6) + (1+5)+(3+7).
  static F reduce_add(R a) {
    F h[4];
    for (int i = 0; i < 4; ++i) h[i] = a.v[i] + a.v[i + 4];
    return (h[0] + h[2]) + (h[1] + h[3]);
  }
  static F reduce_max(R a) {
    F m = a.v[0];
    for (int i = 1; i < kLanes; ++i) m = a.v[i] > m ? a.v[i] : m;
    return m;
  }
};

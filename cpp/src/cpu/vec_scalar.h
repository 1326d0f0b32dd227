// Portable one-lane "vectors": the baseline ISA, and the in-library reference for the SIMD ones.
// Included inside namespace fastxent::cpu::<isa> by an ISA translation unit.
#pragma once

template <class F>
struct Vec {
  using R = F;
  static constexpr int kLanes = 1;
  static R load(const F* p) { return *p; }
  static R load_tail(const F* p, int64_t, F) { return *p; }  // n is always 1 here
  static void store(F* p, R v) { *p = v; }
  static void store_tail(F* p, R v, int64_t) { *p = v; }
  static void stream(F* p, R v) { *p = v; }
  static void fence() {}
  static R set1(F v) { return v; }
  static R add(R a, R b) { return a + b; }
  static R sub(R a, R b) { return a - b; }
  static R mul(R a, R b) { return a * b; }
  static R fmadd(R a, R b, R c) { return a * b + c; }
  static R fnmadd(R a, R b, R c) { return c - a * b; }
  static R max(R a, R b) { return a > b ? a : b; }
  static R exp(R x) { return std::exp(x); }
  static F reduce_add(R v) { return v; }
  static F reduce_max(R v) { return v; }
};

// Block conversions between storage type T and compute type F (contiguous source/target).
template <class T, class F>
static void convert_in(const T* src, int64_t n, F* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = common::to_compute(src[i]);
}
template <class F, class T>
static void convert_out(const F* src, int64_t n, T* dst) {
  for (int64_t i = 0; i < n; ++i) common::store_compute(src[i], dst + i);
}

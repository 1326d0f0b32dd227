// The generic block conversions between storage type T and compute type F: scalar loops that
// each instruction set specialises where it has vector conversions. Included inside an ISA
// namespace by its vec_<isa>.h.
#pragma once

template <class T, class F>
static void convert_in(const T* src, int64_t n, F* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = common::to_compute(src[i]);
}

template <class F, class T>
static void convert_out(const F* src, int64_t n, T* dst) {
  for (int64_t i = 0; i < n; ++i) common::store_compute(src[i], dst + i);
}

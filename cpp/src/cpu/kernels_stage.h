// Staging between storage (type T, any class stride) and compute-type blocks, so that every
// block primitive sees contiguous F. Part of the kernels included per ISA (see kernels_impl.h).
#pragma once

template <class T, class F>
static const F* load_block(const T* row, int64_t stride, int64_t c0, int64_t n, F* buf) {
  if constexpr (std::is_same<T, F>::value) {
    if (stride == 1) return row + c0;
  }
  if (stride == 1) {
    convert_in(row + c0, n, buf);
  } else {
    const T* p = row + c0 * stride;
    for (int64_t i = 0; i < n; ++i) buf[i] = common::to_compute(p[i * stride]);
  }
  return buf;
}

// Probability targets may have another floating dtype than the logits.
template <class F>
static const F* load_block_any(const void* row, DType dtype, int64_t stride, int64_t c0,
                               int64_t n, F* buf) {
  switch (dtype) {
    case DType::kFloat16:
      return load_block(static_cast<const common::Half*>(row), stride, c0, n, buf);
    case DType::kBFloat16:
      return load_block(static_cast<const common::BFloat16*>(row), stride, c0, n, buf);
    case DType::kFloat32:
      return load_block(static_cast<const float*>(row), stride, c0, n, buf);
    default:
      return load_block(static_cast<const double*>(row), stride, c0, n, buf);
  }
}

// Where a block's output is computed: straight into the destination when it is contiguous F,
// else into the staging buffer (then commit_block converts / scatters it).
template <class T, class F>
static F* output_block(T* row, int64_t stride, int64_t c0, F* buf) {
  if constexpr (std::is_same<T, F>::value) {
    if (stride == 1) return row + c0;
  }
  return buf;
}

template <class T, class F>
static void commit_block(const F* computed, T* row, int64_t stride, int64_t c0, int64_t n) {
  if constexpr (std::is_same<T, F>::value) {
    if (stride == 1) return;  // computed in place
  }
  if (stride == 1) {
    convert_out(computed, n, row + c0);
  } else {
    T* p = row + c0 * stride;
    for (int64_t i = 0; i < n; ++i) common::store_compute(computed[i], p + i * stride);
  }
}

template <class T>
static void zero_row(T* row, int64_t stride, int64_t n) {
  if (stride == 1) {
    std::memset(static_cast<void*>(row), 0, size_t(n) * sizeof(T));  // +0.0 in every float type
  } else {
    for (int64_t i = 0; i < n; ++i) std::memset(static_cast<void*>(row + i * stride), 0, sizeof(T));
  }
}

// Device building blocks shared by the CUDA kernels: the thread group that owns a row, its
// deterministic reduction of row statistics, element loads of every dtype, and the walk over a
// row's elements with 128-bit loads where the layout allows.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/half_convert.h"
#include "common/row_layout.h"
#include "common/row_math.h"
#include "fastxent/dtype.h"

namespace fastxent {
namespace cuda {

using common::RowStats;

constexpr int kWarpSize = 32;
constexpr int kMaxWarps = 32;  // blocks have at most 1024 threads

template <class F>
__device__ __forceinline__ F neg_inf() {
  return -F(INFINITY);
}

template <class F>
__device__ __forceinline__ F quiet_nan() {
  return F(NAN);
}

// Statistics of nothing: the identity of common::merge (merging it changes no bit).
template <class F>
__device__ __forceinline__ RowStats<F> empty_stats() {
  return RowStats<F>{neg_inf<F>(), F(0), F(0), F(0)};
}

template <class F>
__device__ __forceinline__ RowStats<F> shuffle_xor(const RowStats<F>& s, int lane_mask) {
  return RowStats<F>{__shfl_xor_sync(0xffffffffu, s.max, lane_mask),
                     __shfl_xor_sync(0xffffffffu, s.sumexp, lane_mask),
                     __shfl_xor_sync(0xffffffffu, s.lin, lane_mask),
                     __shfl_xor_sync(0xffffffffu, s.vsum, lane_mask)};
}

// Butterfly merge across the warp. common::merge is commutative bit for bit (its sums and its
// NaN-propagating max are), so every lane ends with the same result, and the tree is fixed:
// deterministic.
template <class F>
__device__ __forceinline__ RowStats<F> warp_merge(RowStats<F> s) {
  for (int m = kWarpSize / 2; m > 0; m /= 2) s = common::merge(s, shuffle_xor(s, m));
  return s;
}

// The threads that own one row (or one chunk of a long row): a warp (short rows, several rows
// per block) or the whole block. Chosen per launch, so one kernel serves both.
struct Group {
  bool whole_block;
  int rank;
  int size;

  __device__ explicit Group(bool block)
      : whole_block(block),
        rank(block ? int(threadIdx.x) : int(threadIdx.x) % kWarpSize),
        size(block ? int(blockDim.x) : kWarpSize) {}

  // Merges every thread's statistics; all threads get the result. Also a barrier: memory reads
  // made before it (the target's logit) are ordered before writes after it (in place).
  template <class F>
  __device__ RowStats<F> reduce(RowStats<F> s, RowStats<F>* shared) const {
    s = warp_merge(s);
    if (!whole_block) {
      __syncwarp();
      return s;
    }
    const int warp = rank / kWarpSize, lane = rank % kWarpSize;
    const int warps = size / kWarpSize;
    if (lane == 0) shared[warp] = s;
    __syncthreads();
    if (warp == 0) {
      RowStats<F> t = lane < warps ? shared[lane] : empty_stats<F>();
      t = warp_merge(t);
      if (lane == 0) shared[kMaxWarps] = t;
    }
    __syncthreads();
    s = shared[kMaxWarps];
    __syncthreads();  // `shared` may be reused by the next reduction
    return s;
  }
};

// ---- loads and stores of every dtype ------------------------------------------------------------

template <class F>
__device__ __forceinline__ F load_floating(const void* base, DType dtype, int64_t index) {
  switch (dtype) {
    case DType::kFloat16:
      return F(common::to_compute(static_cast<const common::Half*>(base)[index]));
    case DType::kBFloat16:
      return F(common::to_compute(static_cast<const common::BFloat16*>(base)[index]));
    case DType::kFloat32:
      return F(static_cast<const float*>(base)[index]);
    default:
      return F(static_cast<const double*>(base)[index]);
  }
}

// The same, out of line: for per-class operands of rare paths (probability targets of any dtype),
// whose four inlined variants would multiply the code of every unrolled loop.
template <class F>
__device__ __noinline__ F load_floating_outlined(const void* base, DType dtype, int64_t index) {
  return load_floating<F>(base, dtype, index);
}

// Stores a per-row result into a float32 or float64 output.
__device__ __forceinline__ void store_real(void* base, DType dtype, int64_t index, double v) {
  if (dtype == DType::kFloat32) {
    static_cast<float*>(base)[index] = float(v);
  } else {
    static_cast<double*>(base)[index] = v;
  }
}

// An integer target as int64; *exact is false for a uint64 above INT64_MAX.
__device__ __forceinline__ int64_t load_integer(const void* base, DType dtype, int64_t index,
                                                bool* exact) {
  *exact = true;
  switch (dtype) {
    case DType::kInt8: return static_cast<const int8_t*>(base)[index];
    case DType::kInt16: return static_cast<const int16_t*>(base)[index];
    case DType::kInt32: return static_cast<const int32_t*>(base)[index];
    case DType::kInt64: return static_cast<const int64_t*>(base)[index];
    case DType::kUInt8: return static_cast<const uint8_t*>(base)[index];
    case DType::kUInt16: return static_cast<const uint16_t*>(base)[index];
    case DType::kUInt32: return static_cast<const uint32_t*>(base)[index];
    default: {
      const uint64_t u = static_cast<const uint64_t*>(base)[index];
      if (u > uint64_t(INT64_MAX)) {
        *exact = false;
        return INT64_MAX;
      }
      return int64_t(u);
    }
  }
}

// ---- walking a row --------------------------------------------------------------------------

// Sixteen bytes of T: one 128-bit load or store.
template <class T>
struct alignas(16) Pack {
  static constexpr int kCount = int(16 / sizeof(T));
  T v[kCount];
};

// Elements before `p` reaches 16-byte alignment (all n when it never can).
template <class T>
__device__ __forceinline__ int64_t head_count(const T* p, int64_t n) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (a % sizeof(T) != 0) return n;
  const int64_t head = int64_t(((16 - a % 16) % 16) / sizeof(T));
  return head < n ? head : n;
}

// Calls fn(c, x) for the classes c in [c0, c0 + n) of a row of T (x widened to F), spread over
// the group: 128-bit loads for a contiguous row, coalesced scalar loads otherwise.
template <class F, class T, class Fn>
__device__ __forceinline__ void for_each_value(const Group& g, const T* row, int64_t stride,
                                               int64_t c0, int64_t n, Fn&& fn) {
  if (stride != 1) {
    for (int64_t i = g.rank; i < n; i += g.size) {
      fn(c0 + i, F(common::to_compute(row[(c0 + i) * stride])));
    }
    return;
  }
  const T* p = row + c0;
  constexpr int V = Pack<T>::kCount;
  const int64_t head = head_count(p, n);
  const int64_t packs = (n - head) / V;
  for (int64_t i = g.rank; i < head; i += g.size) fn(c0 + i, F(common::to_compute(p[i])));
  const Pack<T>* pp = reinterpret_cast<const Pack<T>*>(p + head);
  for (int64_t k = g.rank; k < packs; k += g.size) {
    const Pack<T> pk = pp[k];
#pragma unroll
    for (int j = 0; j < V; ++j) fn(c0 + head + k * V + j, F(common::to_compute(pk.v[j])));
  }
  for (int64_t i = head + packs * V + g.rank; i < n; i += g.size) {
    fn(c0 + i, F(common::to_compute(p[i])));
  }
}

// out[c] = fn(c, x[c]) for the classes c in [c0, c0 + n), spread over the group; 128-bit loads
// and stores when both rows are contiguous with the same alignment (in place included).
template <class F, class T, class Fn>
__device__ __forceinline__ void map_values(const Group& g, const T* row, int64_t stride, T* out,
                                           int64_t out_stride, int64_t c0, int64_t n, Fn&& fn) {
  constexpr int V = Pack<T>::kCount;
  const bool packed = stride == 1 && out_stride == 1 &&
                      reinterpret_cast<uintptr_t>(row + c0) % 16 ==
                          reinterpret_cast<uintptr_t>(out + c0) % 16;
  if (!packed) {
    for (int64_t i = g.rank; i < n; i += g.size) {
      const int64_t c = c0 + i;
      common::store_compute(fn(c, F(common::to_compute(row[c * stride]))), out + c * out_stride);
    }
    return;
  }
  const T* p = row + c0;
  T* q = out + c0;
  const int64_t head = head_count(p, n);
  const int64_t packs = (n - head) / V;
  for (int64_t i = g.rank; i < head; i += g.size) {
    common::store_compute(fn(c0 + i, F(common::to_compute(p[i]))), q + i);
  }
  const Pack<T>* pp = reinterpret_cast<const Pack<T>*>(p + head);
  Pack<T>* qq = reinterpret_cast<Pack<T>*>(q + head);
  for (int64_t k = g.rank; k < packs; k += g.size) {
    const Pack<T> in = pp[k];
    Pack<T> res;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      common::store_compute(fn(c0 + head + k * V + j, F(common::to_compute(in.v[j]))), &res.v[j]);
    }
    qq[k] = res;
  }
  for (int64_t i = head + packs * V + g.rank; i < n; i += g.size) {
    common::store_compute(fn(c0 + i, F(common::to_compute(p[i]))), q + i);
  }
}

// Writes `value` to the classes [c0, c0 + n) of an output row (ignored rows: 0; bad rows: NaN).
template <class F, class T>
__device__ __forceinline__ void fill_values(const Group& g, T* out, int64_t stride, int64_t c0,
                                            int64_t n, F value) {
  for (int64_t i = g.rank; i < n; i += g.size) {
    common::store_compute(value, out + (c0 + i) * stride);
  }
}

}  // namespace cuda
}  // namespace fastxent

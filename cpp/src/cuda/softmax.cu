// logsumexp / log_softmax / softmax on CUDA through the row engine (engine.cuh) and the shared
// row math: lse = m + log s, log p = (x - m) - log s, p = exp((x - m) - log s).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "cuda/api.h"
#include "cuda/device_rows.cuh"
#include "cuda/engine.cuh"
#include "cuda/runtime.cuh"

namespace fastxent {
namespace cuda {
namespace {

template <class T, class Fc>
struct SoftmaxJob {
  using F = Fc;

  SoftmaxArgs a;

  struct Row {
    int64_t r;
    const T* x;
    T* out;
  };
  struct Final {
    F max, log_s;
  };

  __device__ int64_t rows() const { return a.space.rows; }
  __device__ int64_t classes() const { return a.space.classes; }
  __device__ bool emits() const { return a.mode != SoftmaxMode::kLogSumExp; }

  __device__ Row open(int64_t r) const {
    Row row;
    row.r = r;
    row.x = static_cast<const T*>(a.input.data) + common::row_offset(a.space, a.input, r);
    row.out = emits() ? static_cast<T*>(a.out.data) + common::row_offset(a.space, a.out, r)
                      : nullptr;
    return row;
  }

  __device__ void pin(Row&) const {}

  __device__ RowStats<F> stats(const Group& g, Row& row, int64_t c0, int64_t n,
                               RowStats<F>* shared) const {
    RowStats<F> st = empty_stats<F>();
    for_each_value<F>(g, row.x, a.input.class_stride, c0, n,
                      [&](int64_t, F x) { common::push<F, false>(st, x, F(0)); });
    return g.reduce(st, shared);
  }

  __device__ Final finish(const Row& row, const RowStats<F>& st, bool writer) const {
    Final f{st.max, F(std::log(st.sumexp))};
    if (writer && a.mode == SoftmaxMode::kLogSumExp) {
      store_real(a.out.data, a.out.dtype, common::row_offset(a.space, a.out, row.r),
                 double(common::logsumexp(st, f.log_s)));
    }
    return f;
  }

  __device__ void emit(const Group& g, const Row& row, const Final& f, int64_t c0,
                       int64_t n) const {
    if (a.mode == SoftmaxMode::kSoftmax) {
      map_values<F>(g, row.x, a.input.class_stride, row.out, a.out.class_stride, c0, n,
                    [&](int64_t, F x) { return common::prob(x, f.max, f.log_s); });
    } else {
      map_values<F>(g, row.x, a.input.class_stride, row.out, a.out.class_stride, c0, n,
                    [&](int64_t, F x) { return common::log_prob(x, f.max, f.log_s); });
    }
  }
};

template <class T, class F>
void run(const SoftmaxArgs& a) {
  const DeviceGuard guard(a.stream.device);
  const cudaStream_t stream = stream_of(a.stream);
  using Job = SoftmaxJob<T, F>;
  const Job job{a};
  const int64_t chunks = split_chunks(a.space.rows, a.space.classes);
  SplitScratch<Job> split;
  Carver sizing(nullptr);
  split.carve(sizing, a.space.rows, chunks);
  const Workspace ws(sizing.size(), stream);
  Carver placing(ws.bytes());
  split.carve(placing, a.space.rows, chunks);
  run_rows(job, a.space.rows, a.space.classes, a.mode != SoftmaxMode::kLogSumExp, chunks, split,
           stream);
}

}  // namespace

void softmax(const SoftmaxArgs& a) {
  switch (a.input.dtype) {
    case DType::kFloat16:
      return run<common::Half, float>(a);
    case DType::kBFloat16:
      return run<common::BFloat16, float>(a);
    case DType::kFloat32:
      return run<float, float>(a);
    default:
      return run<double, double>(a);
  }
}

}  // namespace cuda
}  // namespace fastxent

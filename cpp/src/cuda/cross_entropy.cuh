// Cross-entropy on CUDA: loss, log-sum-exp and gradient of DESIGN.md §1 through the shared row
// math (common/row_math.h) and the row engine (engine.cuh). Included by one translation unit per
// logits dtype (cross_entropy_<dtype>.cu), which instantiates run<T, F>: the architectures are
// compiled in parallel, one dtype per compiler process.
//
// A call runs: prepare_kernel (one block: the weights in the compute type, W = Σ w and the mean
// normaliser Σ w_t, each a fixed-order sum) → the row kernels (statistics, per-row results,
// gradient) → reduce_kernel for "sum"/"mean" (one block: the per-row losses in a fixed order).
// Every scratch array lives in one stream-ordered workspace; nothing waits for the device.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "cuda/api.h"
#include "cuda/device_rows.cuh"
#include "cuda/engine.cuh"
#include "cuda/runtime.cuh"

namespace fastxent {
namespace cuda {
namespace ce {

constexpr int kReduceThreads = 512;

enum RowState : int32_t { kRowOk = 0, kRowIgnored = 1, kRowBad = 2 };

// Device scratch the row kernels read (filled by prepare_kernel) or write (per-row losses).
template <class F>
struct Prepared {
  const F* weight = nullptr;      // (C,) in F, or nullptr for all ones
  const double* sums = nullptr;   // [0] = W = Σ w, [1] = the mean normaliser
  double* row_loss = nullptr;     // per-row losses for "sum"/"mean", or nullptr
};

// The class and state of row r's index target (ignored, or out of range: only reachable when
// the check was skipped during graph capture).
__device__ __forceinline__ int32_t target_state(const CrossEntropyArgs& a, int64_t r,
                                                int64_t* target) {
  bool exact = true;
  const int64_t v = load_integer(a.target.data, a.target.dtype,
                                 common::row_offset(a.space, a.target, r), &exact);
  *target = v;
  if (exact && v == a.ignore_index) return kRowIgnored;
  if (!exact || v < 0 || v >= a.space.classes) return kRowBad;
  return kRowOk;
}

// Fixed-order sum over the block (every thread passes its value; thread 0 gets the total).
__device__ inline double block_sum(double v, double* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) shared[threadIdx.x] += shared[threadIdx.x + half];
    __syncthreads();
  }
  const double total = shared[0];
  __syncthreads();
  return total;
}

template <class F>
__global__ void __launch_bounds__(kReduceThreads) prepare_kernel(const CrossEntropyArgs a,
                                                                 F* weight, double* sums) {
  __shared__ double shared[kReduceThreads];
  const int64_t classes = a.space.classes, rows = a.space.rows;
  double wsum = 0;
  if (a.weight) {
    for (int64_t c = threadIdx.x; c < classes; c += blockDim.x) {
      const double v = load_floating<double>(a.weight, a.weight_dtype, c * a.weight_stride);
      weight[c] = F(v);
      wsum += v;
    }
  } else if (threadIdx.x == 0) {
    wsum = double(classes);
  }
  double denominator = 0;
  if (a.prob_target) {
    if (threadIdx.x == 0) denominator = double(rows);
  } else if (a.reduction == Reduction::kMean) {
    for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
      int64_t t = 0;
      const int32_t state = target_state(a, r, &t);
      if (state == kRowBad) {
        denominator += quiet_nan<double>();
      } else if (state == kRowOk) {
        denominator += a.weight
                           ? load_floating<double>(a.weight, a.weight_dtype, t * a.weight_stride)
                           : 1.0;
      }
    }
  }
  wsum = block_sum(wsum, shared);
  denominator = block_sum(denominator, shared);
  if (threadIdx.x == 0) {
    sums[0] = wsum;
    sums[1] = denominator;
  }
}

// "sum" / "mean": the per-row losses summed in a fixed order, then divided by the normaliser.
template <int = 0>
__global__ void __launch_bounds__(kReduceThreads) reduce_kernel(const CrossEntropyArgs a,
                                                                const double* row_loss,
                                                                const double* sums) {
  __shared__ double shared[kReduceThreads];
  double s = 0;
  for (int64_t r = threadIdx.x; r < a.space.rows; r += blockDim.x) s += row_loss[r];
  s = block_sum(s, shared);
  if (threadIdx.x == 0) {
    if (a.reduction == Reduction::kMean) s /= sums[1];
    store_real(a.loss.data, a.loss.dtype, 0, s);
  }
}

// Which coefficients the statistics pass sums into RowStats::lin / vsum.
enum class Lin : int8_t { kNone, kClasses, kProb };

template <class T, class Fc>
struct CrossEntropyJob {
  using F = Fc;

  CrossEntropyArgs a;
  Prepared<F> prep;
  Lin lin;
  F eps, keep, spread, classes_f;
  F z_loss, cap, inv_cap;  // extensions; cap = 0: no softcap

  struct Row {
    int64_t r;
    const T* x;
    T* grad;
    int64_t y_offset;  // probability targets: the row's first element in `a.target`
    int64_t target;
    int32_t state;
    bool counted;      // its statistics are needed (an ignored row's only for its lse)
    F x_t;
  };

  struct Final {
    F max, log_s, g, weight_sum;
    F lse_coef;  // the part of coefs.prob_coef from z_loss and an lse gradient
    common::IndexGradCoefs<F> coefs;
    int64_t target;  // -1 unless the row is counted with an index target
    int32_t state;
  };

  __device__ int64_t rows() const { return a.space.rows; }
  __device__ int64_t classes() const { return a.space.classes; }
  __device__ bool emits() const { return a.grad.data != nullptr; }

  __device__ F weight_at(int64_t c) const { return prep.weight ? prep.weight[c] : F(1); }

  // The logit as the softmax sees it (softcapped when asked), and dy/dx for the gradient.
  __device__ F logit(F x) const { return cap == F(0) ? x : common::softcap(x, cap, inv_cap).value; }

  __device__ Row open(int64_t r) const {
    Row row;
    row.r = r;
    row.x = static_cast<const T*>(a.input.data) + common::row_offset(a.space, a.input, r);
    row.grad = a.grad.data ? static_cast<T*>(a.grad.data) + common::row_offset(a.space, a.grad, r)
                           : nullptr;
    row.y_offset = 0;
    row.target = 0;
    row.state = kRowOk;
    row.x_t = F(0);
    if (a.prob_target) {
      row.y_offset = common::row_offset(a.space, a.target, r);
    } else {
      row.state = target_state(a, r, &row.target);
    }
    // An ignored row's logits are read only when its lse is asked for, or has a gradient.
    row.counted = row.state == kRowOk ||
                  (row.state == kRowIgnored && (a.lse_out.data || a.lse_grad.data));
    return row;
  }

  // The target's logit, read before any thread may overwrite it with the gradient (in place).
  __device__ void pin(Row& row) const {
    if (!a.prob_target && row.state == kRowOk && a.loss.data && !a.saved_lse.data) {
      row.x_t = logit(F(common::to_compute(row.x[row.target * a.input.class_stride])));
    }
  }

  __device__ F smoothed_y(const Row& row, int64_t c) const {
    const F y = load_floating_outlined<F>(a.target.data, a.target.dtype,
                                          row.y_offset + c * a.target.class_stride);
    return common::smoothed_target(y, keep, spread);
  }

  __device__ RowStats<F> stats(const Group& g, Row& row, int64_t c0, int64_t n,
                               RowStats<F>* shared) const {
    RowStats<F> st = empty_stats<F>();
    if (row.counted) {
      const int64_t stride = a.input.class_stride;
      if (a.saved_lse.data) {
        // The logits' statistics are saved; probability targets still need Σ w·y'.
        if (lin == Lin::kProb) {
          for (int64_t i = g.rank; i < n; i += g.size) {
            st.vsum += weight_at(c0 + i) * smoothed_y(row, c0 + i);
          }
        }
      } else {
        // One loop for the three kinds of sums (a uniform branch per value; one copy of code).
        const Lin mode = row.state == kRowOk ? lin : Lin::kNone;  // ignored: the lse only
        for_each_value<F>(g, row.x, stride, c0, n, [&](int64_t c, F x) {
          x = logit(x);
          if (mode == Lin::kNone) {
            common::push<F, false>(st, x, F(0));
          } else {
            const F v = mode == Lin::kProb ? weight_at(c) * smoothed_y(row, c) : weight_at(c);
            common::push<F, true>(st, x, v);
          }
        });
      }
    }
    // Uniform over the group (row.counted is): every thread reaches the barrier.
    return g.reduce(st, shared);
  }

  __device__ Final finish(const Row& row, const RowStats<F>& st, bool writer) const {
    Final f;
    f.target = -1;
    f.state = row.state;
    f.weight_sum = F(prep.sums[0]);
    f.coefs = common::IndexGradCoefs<F>{F(0), F(0), F(0)};
    f.lse_coef = F(0);
    f.max = f.log_s = F(0);
    const int64_t r = row.r;
    double g = a.grad_output.data
                   ? load_floating<double>(a.grad_output.data, a.grad_output.dtype,
                                           common::row_offset(a.space, a.grad_output, r))
                   : a.grad_output_value;
    if (a.reduction == Reduction::kMean) g *= 1.0 / prep.sums[1];
    f.g = F(g);
    const F lse_grad = a.lse_grad.data
                           ? load_floating<F>(a.lse_grad.data, a.lse_grad.dtype,
                                              common::row_offset(a.space, a.lse_grad, r))
                           : F(0);
    double loss = row.state == kRowBad ? quiet_nan<double>() : 0.0;
    double lse_out = quiet_nan<double>();  // a bad target (graph capture skipped the check)
    if (row.counted) {
      F lse;
      if (a.saved_lse.data) {
        // lse (float64) split as hi + lo in F: p = exp((x - hi) - lo) keeps the digits that
        // x - F(lse) would lose for large logits (x - hi is exact near the max).
        const double saved = load_floating<double>(a.saved_lse.data, a.saved_lse.dtype,
                                                   common::row_offset(a.space, a.saved_lse, r));
        f.max = F(saved);
        f.log_s = F(saved - double(f.max));
        lse = F(saved);
      } else {
        f.max = st.max;
        f.log_s = F(std::log(st.sumexp));
        lse = common::logsumexp(st, f.log_s);
        lse_out = double(st.max) + double(f.log_s);  // in double: a saved lse keeps log s's digits
      }
      if (row.state == kRowIgnored) {
        f.lse_coef = lse_grad;
        f.coefs.prob_coef = lse_grad;
      } else {
        f.lse_coef = common::z_loss_prob_coef(f.g, z_loss, lse) + lse_grad;
        F l;
        if (a.prob_target) {
          l = common::prob_loss(st, f.log_s);
          f.coefs.prob_coef = f.g * st.vsum;  // ∂/∂x_j = p_j·Σ w·y' - w_j·y'_j
        } else {
          const F w_t = weight_at(row.target);
          l = common::index_loss(st, f.log_s, row.x_t, w_t, eps, classes_f);
          f.coefs = common::index_grad_coefs(f.g, w_t, f.weight_sum, eps, classes_f);
          f.target = row.target;
        }
        loss = double(l + common::z_loss_value(z_loss, lse));
        f.coefs.prob_coef += f.lse_coef;
      }
    }
    if (writer && a.loss.data) {
      if (a.reduction == Reduction::kNone) {
        store_real(a.loss.data, a.loss.dtype, common::row_offset(a.space, a.loss, r), loss);
      } else {
        prep.row_loss[r] = loss;
      }
    }
    if (writer && a.lse_out.data) {
      store_real(a.lse_out.data, a.lse_out.dtype, common::row_offset(a.space, a.lse_out, r),
                 lse_out);
    }
    return f;
  }

  __device__ void emit(const Group& g, const Row& row, const Final& f, int64_t c0,
                       int64_t n) const {
    const int64_t stride = a.input.class_stride, out_stride = a.grad.class_stride;
    if (f.state == kRowBad || (f.state == kRowIgnored && f.lse_coef == F(0))) {
      // No gradient at all: exactly 0, as torch; NaN for a bad target.
      fill_values<F>(g, row.grad, out_stride, c0, n,
                     f.state == kRowIgnored ? F(0) : quiet_nan<F>());
      return;
    }
    // ∂/∂x = ∂/∂y · dy/dx with y the softcapped logit.
    map_values<F>(g, row.x, stride, row.grad, out_stride, c0, n, [&](int64_t c, F x) {
      F slope = F(1);
      if (cap != F(0)) {
        const common::Softcapped<F> y = common::softcap(x, cap, inv_cap);
        x = y.value;
        slope = y.slope;
      }
      const F p = common::prob(x, f.max, f.log_s);
      F d;
      if (a.prob_target) {
        d = common::prob_grad(f.coefs.prob_coef, p, f.g, weight_at(c), smoothed_y(row, c));
      } else {
        d = common::index_grad(f.coefs, f.lse_coef, p, weight_at(c), c == f.target, f.weight_sum);
      }
      return cap == F(0) ? d : d * slope;
    });
  }
};

template <class T, class F>
void run(const CrossEntropyArgs& a) {
  const DeviceGuard guard(a.stream.device);
  const cudaStream_t stream = stream_of(a.stream);
  const int64_t rows = a.space.rows, classes = a.space.classes;
  const bool reduce = a.loss.data && a.reduction != Reduction::kNone;
  const int64_t chunks = split_chunks(rows, classes);

  using Job = CrossEntropyJob<T, F>;
  Job job;
  job.a = a;
  job.lin = a.prob_target ? Lin::kProb : (a.label_smoothing != 0 ? Lin::kClasses : Lin::kNone);
  job.eps = F(a.label_smoothing);
  job.keep = F(1) - F(a.label_smoothing);
  job.spread = F(a.label_smoothing) / F(classes);
  job.classes_f = F(classes);
  job.z_loss = F(a.z_loss);
  job.cap = F(a.softcap);
  job.inv_cap = a.softcap != 0 ? F(1) / F(a.softcap) : F(0);

  // Size the workspace, allocate it, then place the same pieces in it.
  auto carve = [&](Carver& c, F** weight, double** sums, double** row_loss,
                   SplitScratch<Job>* split) {
    *weight = a.weight ? c.take<F>(size_t(classes)) : nullptr;
    *sums = c.take<double>(2);
    *row_loss = reduce ? c.take<double>(size_t(rows > 0 ? rows : 1)) : nullptr;
    split->carve(c, rows, chunks);
  };
  F* weight;
  double *sums, *row_loss;
  SplitScratch<Job> split;
  Carver sizing(nullptr);
  carve(sizing, &weight, &sums, &row_loss, &split);
  const Workspace ws(sizing.size(), stream);
  Carver placing(ws.bytes());
  carve(placing, &weight, &sums, &row_loss, &split);

  prepare_kernel<F><<<1, kReduceThreads, 0, stream>>>(a, weight, sums);
  check_launch("prepare_kernel");
  job.prep.weight = weight;
  job.prep.sums = sums;
  job.prep.row_loss = row_loss;
  run_rows(job, rows, classes, a.grad.data != nullptr, chunks, split, stream);
  if (reduce) {
    reduce_kernel<><<<1, kReduceThreads, 0, stream>>>(a, row_loss, sums);
    check_launch("reduce_kernel");
  }
}

}  // namespace ce
}  // namespace cuda
}  // namespace fastxent

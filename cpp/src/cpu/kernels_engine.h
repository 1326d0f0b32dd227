// The row engine: runs a Job over every row, block by block, on OpenMP threads. Part of the
// kernels included per ISA (see kernels_impl.h).
//
// A row of C values is cut into fixed blocks of kBlock classes. Each block gets exact
// statistics (max, Σ exp, and the `lin` sums of label smoothing / probability targets; see
// common::RowStats) from a max pass over the block (from memory) and a second pass from L1.
// Block statistics merge into the row's in block order. Block bounds and merge order never
// change, so a row's result is bitwise the same whether its blocks run on one thread or are
// spread over several (rows fewer than threads) — for any thread count.
#pragma once

template <class F>
using Stats = common::RowStats<F>;

template <class F>
struct alignas(64) Scratch {  // per-thread L1 staging buffers (uninitialised: no cost to make)
  F x[kBlock];
  F y[kBlock];
  F out[kBlock];
  F e[kBlock];  // exponentials computed in the gradient pass (from a saved log-sum-exp)
  F slope[kBlock];  // softcap's dy/dx in the gradient pass
};

// True when some x is NaN: only asked for blocks whose max is -inf (max ignores NaN).
template <class F>
static bool block_has_nan(const F* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (x[i] != x[i]) return true;
  }
  return false;
}

enum class LinMode : int8_t { kNone, kClasses, kProbTarget };

// Exact statistics of one block; stores exp(x - max) into `exps` when given. `eval` adds the
// evaluation statistics (entropy term, argmax relative to the block).
template <class F>
static Stats<F> block_stats(const F* x, const F* y, const F* w, int64_t n, LinMode mode, F keep,
                            F spread, F* exps, bool eval = false) {
  Stats<F> st{};
  st.max = block_max(x, n);
  if (st.max == neg_inf<F>()) {  // all -inf (or NaN): exp(x - max) would be NaN
    st.sumexp = block_has_nan(x, n) ? static_cast<F>(__builtin_nan("")) : F(0);
    if (exps) {
      for (int64_t i = 0; i < n; ++i) exps[i] = F(0);
    }
  } else if (eval) {
    st.sumexp = block_sumexp<F, true>(x, n, st.max, exps, &st.ent);
  } else {
    st.sumexp = block_sumexp(x, n, st.max, exps);
  }
  if (eval) block_argmax(x, n, st);
  const F r = common::stats_ref(st.max);
  if (mode == LinMode::kClasses) block_lin(x, w, n, r, &st.lin, &st.vsum);
  if (mode == LinMode::kProbTarget) block_lin_prob(x, y, w, n, r, keep, spread, &st.lin, &st.vsum);
  return st;
}

// p_j = e_j · block_prob_scale: e_j = exp(x_j - m_block) was cached by block_stats, and
// exp(m_block - m) / s carries it to exp(x_j - m) / s (≤ 2 ulp apart in float32). The block
// holding the row's max (every block of a short row) needs no exp at all.
template <class F>
static F block_prob_scale(const Stats<F>& block, F row_max, F row_sumexp) {
  if (block.sumexp == F(0)) {
    // A block of -inf logits: p = 0 there, unless the whole row is -inf (or NaN), where
    // softmax is NaN throughout, as in torch.
    return common::is_finite(row_max) && common::is_finite(row_sumexp)
               ? F(0)
               : static_cast<F>(__builtin_nan(""));
  }
  const F shift = block.max == row_max ? F(1) : F(std::exp(block.max - row_max));
  return shift / row_sumexp;
}

static inline int thread_slot() {
#if defined(_OPENMP)
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// A Job describes one operation on rows (see CrossEntropyJob, SoftmaxJob):
//   Row row(r)                      pointers and per-row inputs of row r
//   bool skip(Row&)                 handles a row entirely (ignored rows)
//   Stats stats(row, c0, n, exps, scratch)         one block's statistics
//   void finish(Row&, const Stats& row_stats)      per-row outputs (loss, lse)
//   bool emits(), bool caches_exp() whether there are per-class outputs / they use exps
//   void emit(row, c0, n, block_stats, exps, scratch)   one block's per-class outputs
template <class F, class Job>
static void run_rows(const cpu::RowSpace& space, int threads, const Job& job) {
  const int64_t rows = space.rows, classes = space.classes;
  if (rows == 0) return;
  const int64_t nblocks = (classes + kBlock - 1) / kBlock;
  const bool split = rows < threads && classes >= 2 * kBlock;
  const int64_t slots = split ? 1 : threads;
  // Per thread: the block statistics of its current row and, if used, its cached exponentials.
  Stats<F>* parts = new Stats<F>[size_t(slots * nblocks)];
  F* exps = job.caches_exp() ? new F[size_t(slots * nblocks * kBlock)] : nullptr;
  auto block_len = [classes](int64_t b) {
    return classes - b * kBlock < kBlock ? classes - b * kBlock : kBlock;
  };

  if (!split) {
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
      Scratch<F> scratch;
      const int64_t slot = thread_slot();
      Stats<F>* my_parts = parts + slot * nblocks;
      F* my_exps = exps ? exps + slot * nblocks * kBlock : nullptr;
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        typename Job::Row row = job.row(r);
        if (job.skip(row)) continue;
        Stats<F> st{};
        for (int64_t b = 0; b < nblocks; ++b) {
          F* e = my_exps ? my_exps + b * kBlock : nullptr;
          my_parts[b] = job.stats(row, b * kBlock, block_len(b), e, scratch);
          st = b == 0 ? my_parts[0] : common::merge(st, my_parts[b]);
        }
        job.finish(row, st);
        if (!job.emits()) continue;
        for (int64_t b = 0; b < nblocks; ++b) {
          const F* e = my_exps ? my_exps + b * kBlock : nullptr;
          job.emit(row, b * kBlock, block_len(b), my_parts[b], e, scratch);
        }
      }
    }
  } else {
    for (int64_t r = 0; r < rows; ++r) {
      typename Job::Row row = job.row(r);
      if (job.skip(row)) continue;
#pragma omp parallel for num_threads(threads) schedule(static)
      for (int64_t b = 0; b < nblocks; ++b) {
        Scratch<F> scratch;
        parts[b] = job.stats(row, b * kBlock, block_len(b), exps ? exps + b * kBlock : nullptr,
                             scratch);
      }
      Stats<F> st = parts[0];
      for (int64_t b = 1; b < nblocks; ++b) st = common::merge(st, parts[b]);
      job.finish(row, st);
      if (!job.emits()) continue;
#pragma omp parallel for num_threads(threads) schedule(static)
      for (int64_t b = 0; b < nblocks; ++b) {
        Scratch<F> scratch;
        job.emit(row, b * kBlock, block_len(b), parts[b], exps ? exps + b * kBlock : nullptr,
                 scratch);
      }
    }
  }
  delete[] parts;
  delete[] exps;
}

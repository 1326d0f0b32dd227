// The CPU kernels, written once over the vector type Vec<F> of one instruction set. Each ISA's
// translation unit includes its vec_<isa>.h and then this file inside its own namespace
// (fastxent::cpu::<isa>), so nothing compiled here is shared between ISAs (STYLE.md §3).
//
// Shape of the work: a row of C logits is processed in fixed blocks of kBlock classes. For each
// block, a max pass (streaming from memory) and an exp-sum pass (from L1) give exact block
// statistics, which merge into the row's in block order (common::merge). Because block bounds
// and merge order are fixed, a row's result is bitwise the same whether its blocks run on one
// thread or are spread across threads (few long rows) — for any thread count.
// Logits that are not the compute type F, or not contiguous along the class axis, are staged
// block by block into an L1 buffer; outputs likewise. Nothing N×C is ever allocated.
#pragma once

// (included from an ISA translation unit: <cmath>, <cstring>, <type_traits>, the intrinsics,
// row_math.h, half_convert.h and kernel_args.h are already in scope)

constexpr int64_t kBlock = 2048;

template <class F>
using Stats = common::RowStats<F>;

template <class F>
struct alignas(64) Scratch {  // per-thread L1 staging buffers (uninitialised: no cost to make)
  F x[kBlock];
  F y[kBlock];
  F out[kBlock];
};

template <class F>
static constexpr F neg_inf() {
  return -static_cast<F>(__builtin_inf());
}

// ---- block primitives on contiguous compute-type data (n ≤ kBlock) ----------------------------

template <class F>
static F block_max(const F* x, int64_t n) {
  using V = Vec<F>;
  constexpr int L = V::kLanes;
  typename V::R m0 = V::set1(neg_inf<F>()), m1 = m0, m2 = m0, m3 = m0;
  int64_t i = 0;
  for (; i + 4 * L <= n; i += 4 * L) {
    m0 = V::max(m0, V::load(x + i));
    m1 = V::max(m1, V::load(x + i + L));
    m2 = V::max(m2, V::load(x + i + 2 * L));
    m3 = V::max(m3, V::load(x + i + 3 * L));
  }
  for (; i + L <= n; i += L) m0 = V::max(m0, V::load(x + i));
  if (i < n) m0 = V::max(m0, V::load_tail(x + i, n - i, neg_inf<F>()));
  return V::reduce_max(V::max(V::max(m0, m1), V::max(m2, m3)));
}

template <class F>
static F block_sumexp(const F* x, int64_t n, F m) {
  using V = Vec<F>;
  constexpr int L = V::kLanes;
  const typename V::R mv = V::set1(m);
  typename V::R s0 = V::set1(F(0)), s1 = s0;
  int64_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    s0 = V::add(s0, V::exp(V::sub(V::load(x + i), mv)));
    s1 = V::add(s1, V::exp(V::sub(V::load(x + i + L), mv)));
  }
  for (; i + L <= n; i += L) s0 = V::add(s0, V::exp(V::sub(V::load(x + i), mv)));
  if (i < n) s0 = V::add(s0, V::exp(V::sub(V::load_tail(x + i, n - i, neg_inf<F>()), mv)));
  return V::reduce_add(V::add(s0, s1));
}

// lin = Σ v·(r - x), vsum = Σ v with v = w (or 1 when w is null).
template <class F>
static void block_lin(const F* x, const F* w, int64_t n, F r, F* lin, F* vsum) {
  using V = Vec<F>;
  constexpr int L = V::kLanes;
  const typename V::R rv = V::set1(r);
  typename V::R acc = V::set1(F(0)), wacc = acc;
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    const typename V::R d = V::sub(rv, V::load(x + i));
    if (w) {
      const typename V::R wv = V::load(w + i);
      acc = V::fmadd(wv, d, acc);
      wacc = V::add(wacc, wv);
    } else {
      acc = V::add(acc, d);
    }
  }
  if (i < n) {
    const typename V::R d = V::sub(rv, V::load_tail(x + i, n - i, r));  // fill gives d = 0
    if (w) {
      const typename V::R wv = V::load_tail(w + i, n - i, F(0));
      acc = V::fmadd(wv, d, acc);
      wacc = V::add(wacc, wv);
    } else {
      acc = V::add(acc, d);
    }
  }
  *lin = V::reduce_add(acc);
  *vsum = w ? V::reduce_add(wacc) : F(n);
}

// Probability targets: v = w·y' with y' = keep·y + spread (label smoothing, see row_math.h).
template <class F>
static void block_lin_prob(const F* x, const F* y, const F* w, int64_t n, F r, F keep, F spread,
                           F* lin, F* vsum) {
  using V = Vec<F>;
  constexpr int L = V::kLanes;
  const typename V::R rv = V::set1(r), kv = V::set1(keep), sv = V::set1(spread);
  typename V::R acc = V::set1(F(0)), vacc = acc;
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    typename V::R v = V::fmadd(kv, V::load(y + i), sv);
    if (w) v = V::mul(V::load(w + i), v);
    acc = V::fmadd(v, V::sub(rv, V::load(x + i)), acc);
    vacc = V::add(vacc, v);
  }
  F tail_lin = 0, tail_v = 0;
  for (; i < n; ++i) {
    const F v = (w ? w[i] : F(1)) * (keep * y[i] + spread);
    tail_lin += v * (r - x[i]);
    tail_v += v;
  }
  *lin = V::reduce_add(acc) + tail_lin;
  *vsum = V::reduce_add(vacc) + tail_v;
}

// out = prob_coef·exp((x - m) - log_s) - class_coef·w   (w null: all ones).
// Covers the index-target gradient (before the target fix-up) and softmax (coefs 1, 0).
template <class F>
static void block_prob_minus_class(const F* x, const F* w, int64_t n, F m, F log_s, F prob_coef,
                                   F class_coef, F* out) {
  using V = Vec<F>;
  constexpr int L = V::kLanes;
  const typename V::R mv = V::set1(m), lv = V::set1(log_s), pc = V::set1(prob_coef),
                      cc = V::set1(class_coef);
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    const typename V::R p = V::exp(V::sub(V::sub(V::load(x + i), mv), lv));
    const typename V::R wv = w ? V::load(w + i) : V::set1(F(1));
    V::store(out + i, V::fnmadd(cc, wv, V::mul(pc, p)));
  }
  if (i < n) {
    const int64_t left = n - i;
    const typename V::R p = V::exp(V::sub(V::sub(V::load_tail(x + i, left, m), mv), lv));
    const typename V::R wv = w ? V::load_tail(w + i, left, F(0)) : V::set1(F(1));
    V::store_tail(out + i, V::fnmadd(cc, wv, V::mul(pc, p)), left);
  }
}

// Probability-target gradient: out = prob_coef·p - g·w·(keep·y + spread).
template <class F>
static void block_prob_grad(const F* x, const F* y, const F* w, int64_t n, F m, F log_s,
                            F prob_coef, F g, F keep, F spread, F* out) {
  using V = Vec<F>;
  constexpr int L = V::kLanes;
  const typename V::R mv = V::set1(m), lv = V::set1(log_s), pc = V::set1(prob_coef),
                      gv = V::set1(g), kv = V::set1(keep), sv = V::set1(spread);
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    const typename V::R p = V::exp(V::sub(V::sub(V::load(x + i), mv), lv));
    typename V::R v = V::mul(gv, V::fmadd(kv, V::load(y + i), sv));
    if (w) v = V::mul(V::load(w + i), v);
    V::store(out + i, V::sub(V::mul(pc, p), v));
  }
  for (; i < n; ++i) {
    const F p = std::exp((x[i] - m) - log_s);
    const F v = (w ? w[i] : F(1)) * g * (keep * y[i] + spread);
    out[i] = prob_coef * p - v;
  }
}

// ---- staging between storage (type T, any class stride) and compute-type blocks ---------------

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

// True when some x is NaN: only asked for blocks whose max is -inf (max ignores NaN).
template <class F>
static bool block_has_nan(const F* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (x[i] != x[i]) return true;
  }
  return false;
}

enum class LinMode : int8_t { kNone, kClasses, kProbTarget };

// Exact statistics of one block (see common::RowStats).
template <class F>
static Stats<F> block_stats(const F* x, const F* y, const F* w, int64_t n, LinMode mode, F keep,
                            F spread) {
  Stats<F> st{block_max(x, n), F(0), F(0), F(0)};
  if (st.max == neg_inf<F>()) {
    st.sumexp = block_has_nan(x, n) ? static_cast<F>(__builtin_nan("")) : F(0);
  } else {
    st.sumexp = block_sumexp(x, n, st.max);
  }
  const F r = common::stats_ref(st.max);
  if (mode == LinMode::kClasses) block_lin(x, w, n, r, &st.lin, &st.vsum);
  if (mode == LinMode::kProbTarget) block_lin_prob(x, y, w, n, r, keep, spread, &st.lin, &st.vsum);
  return st;
}

// ---- the row engine ----------------------------------------------------------------------------
// A Job describes one operation on rows:
//   typename Job::Row row(int64_t r)          -- pointers and per-row inputs of row r
//   bool skip(Row&)                           -- handles a row entirely (ignored rows)
//   Stats stats(const Row&, c0, c1, Scratch&) -- statistics of classes [c0, c1), block by block
//   void finish(Row&, const Stats&)           -- per-row outputs (loss, lse), emit constants
//   bool emits()                              -- whether emit writes per-class outputs
//   void emit(const Row&, c0, c1, Scratch&)   -- per-class outputs of [c0, c1)

template <class F, class Job>
static void run_rows(const cpu::RowSpace& space, int threads, Job& job) {
  const int64_t rows = space.rows, classes = space.classes;
  if (rows >= threads || classes < 2 * kBlock) {
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
      Scratch<F> scratch;
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        typename Job::Row row = job.row(r);
        if (job.skip(row)) continue;
        job.finish(row, job.stats(row, 0, classes, scratch));
        if (job.emits()) job.emit(row, 0, classes, scratch);
      }
    }
    return;
  }
  // Few long rows: spread each row's blocks over the threads. Same blocks, same merge order as
  // above, hence the same bits.
  const int64_t nblocks = (classes + kBlock - 1) / kBlock;
  Stats<F>* parts = new Stats<F>[nblocks];
  for (int64_t r = 0; r < rows; ++r) {
    typename Job::Row row = job.row(r);
    if (job.skip(row)) continue;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < nblocks; ++b) {
      Scratch<F> scratch;
      const int64_t c0 = b * kBlock;
      parts[b] = job.stats(row, c0, c0 + kBlock < classes ? c0 + kBlock : classes, scratch);
    }
    Stats<F> st = parts[0];
    for (int64_t b = 1; b < nblocks; ++b) st = common::merge(st, parts[b]);
    job.finish(row, st);
    if (!job.emits()) continue;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < nblocks; ++b) {
      Scratch<F> scratch;
      const int64_t c0 = b * kBlock;
      job.emit(row, c0, c0 + kBlock < classes ? c0 + kBlock : classes, scratch);
    }
  }
  delete[] parts;
}

// Statistics of classes [c0, c1) of a row: blocks of kBlock from c0, merged in order.
template <class T, class F>
static Stats<F> range_stats(const T* x, int64_t xs, const void* y, DType ydtype, int64_t ys,
                            const F* w, LinMode mode, F keep, F spread, int64_t c0, int64_t c1,
                            Scratch<F>& s) {
  Stats<F> acc{};
  for (int64_t b = c0; b < c1; b += kBlock) {
    const int64_t n = c1 - b < kBlock ? c1 - b : kBlock;
    const F* xb = load_block(x, xs, b, n, s.x);
    const F* yb = y ? load_block_any(y, ydtype, ys, b, n, s.y) : nullptr;
    const Stats<F> st = block_stats(xb, yb, w ? w + b : nullptr, n, mode, keep, spread);
    acc = b == c0 ? st : common::merge(acc, st);
  }
  return acc;
}

// ---- cross-entropy -------------------------------------------------------------------------------

template <class T, class F>
struct CrossEntropyJob {
  const cpu::CrossEntropyArgs& a;
  const F* weight;  // (C,) in F, or null
  F eps, classes_f, keep, spread;
  LinMode mode;

  struct Row {
    int64_t r;
    const T* x;
    const void* y;  // probability-target row, or null
    T* grad;        // gradient row, or null
    int64_t target;
    F max, log_s;
    common::IndexGradCoefs<F> coefs;  // index targets
    F g;                              // upstream gradient of the row
  };

  CrossEntropyJob(const cpu::CrossEntropyArgs& args, const F* w)
      : a(args),
        weight(w),
        eps(F(args.label_smoothing)),
        classes_f(F(args.space.classes)),
        keep(F(1) - F(args.label_smoothing)),
        spread(F(args.label_smoothing) / F(args.space.classes)) {
    if (a.target_index == nullptr) {
      mode = LinMode::kProbTarget;
    } else {
      mode = a.label_smoothing != 0 ? LinMode::kClasses : LinMode::kNone;
    }
  }

  Row row(int64_t r) const {
    Row row{};
    row.r = r;
    row.x = static_cast<const T*>(a.input.data) + cpu::row_offset(a.space, a.input, r);
    if (a.target_prob.data) {
      const size_t off = size_t(cpu::row_offset(a.space, a.target_prob, r)) * dtype_size(a.target_prob.dtype);
      row.y = static_cast<const char*>(a.target_prob.data) + off;
    }
    if (a.grad.data) row.grad = static_cast<T*>(a.grad.data) + cpu::row_offset(a.space, a.grad, r);
    row.target = a.target_index ? a.target_index[r] : 0;
    row.g = F(a.row_grad_scale ? a.row_grad_scale[r] : a.grad_scale);
    return row;
  }

  bool skip(Row& row) const {
    if (a.target_index == nullptr || row.target != cpu::kIgnoredRow) return false;
    if (a.row_loss) a.row_loss[row.r] = 0;
    if (row.grad) zero_row(row.grad, a.grad.class_stride, a.space.classes);
    return true;
  }

  Stats<F> stats(const Row& row, int64_t c0, int64_t c1, Scratch<F>& s) const {
    return range_stats(row.x, a.input.class_stride, row.y, a.target_prob.dtype,
                       a.target_prob.class_stride, weight, mode, keep, spread, c0, c1, s);
  }

  void finish(Row& row, const Stats<F>& st) const {
    row.max = st.max;
    row.log_s = F(std::log(st.sumexp));
    if (mode == LinMode::kProbTarget) {
      if (a.row_loss) a.row_loss[row.r] = double(common::prob_loss(st, row.log_s));
      row.coefs.prob_coef = row.g * st.vsum;  // p_j·Σ w·y'
      return;
    }
    const F w_t = weight ? weight[row.target] : F(1);
    if (a.row_loss) {
      const F x_t = common::to_compute(row.x[row.target * a.input.class_stride]);
      a.row_loss[row.r] = double(common::index_loss(st, row.log_s, x_t, w_t, eps, classes_f));
    }
    row.coefs = common::index_grad_coefs(row.g, w_t, F(a.weight_sum), eps, classes_f);
  }

  bool emits() const { return a.grad.data != nullptr; }

  void emit(const Row& row, int64_t c0, int64_t c1, Scratch<F>& s) const {
    for (int64_t b = c0; b < c1; b += kBlock) {
      const int64_t n = c1 - b < kBlock ? c1 - b : kBlock;
      const F* xb = load_block(row.x, a.input.class_stride, b, n, s.x);
      F* ob = output_block(row.grad, a.grad.class_stride, b, s.out);
      const F* wb = weight ? weight + b : nullptr;
      if (mode == LinMode::kProbTarget) {
        const F* yb = load_block_any(row.y, a.target_prob.dtype, a.target_prob.class_stride, b, n, s.y);
        block_prob_grad(xb, yb, wb, n, row.max, row.log_s, row.coefs.prob_coef, row.g, keep,
                        spread, ob);
      } else {
        block_prob_minus_class(xb, wb, n, row.max, row.log_s, row.coefs.prob_coef,
                               row.coefs.class_coef, ob);
        // The target's own term, subtracted in F before any rounding to T.
        if (row.target >= b && row.target < b + n) ob[row.target - b] -= row.coefs.target_coef;
      }
      commit_block(ob, row.grad, a.grad.class_stride, b, n);
    }
  }
};

template <class T, class F>
static void cross_entropy_typed(const cpu::CrossEntropyArgs& a) {
  const F* weight;
  if constexpr (std::is_same<F, float>::value) {
    weight = a.weight_f32;
  } else {
    weight = a.weight_f64;
  }
  CrossEntropyJob<T, F> job(a, weight);
  run_rows<F>(a.space, a.threads, job);
}

static void cross_entropy_kernel(const cpu::CrossEntropyArgs& a) {
  switch (a.input.dtype) {
    case DType::kFloat16:
      return cross_entropy_typed<common::Half, float>(a);
    case DType::kBFloat16:
      return cross_entropy_typed<common::BFloat16, float>(a);
    case DType::kFloat32:
      return cross_entropy_typed<float, float>(a);
    default:
      return cross_entropy_typed<double, double>(a);
  }
}

// ---- logsumexp / log_softmax / softmax -----------------------------------------------------------

template <class T, class F>
struct SoftmaxJob {
  const cpu::SoftmaxArgs& a;

  struct Row {
    int64_t r;
    const T* x;
    T* out;
    F max, log_s;
  };

  Row row(int64_t r) const {
    Row row{};
    row.r = r;
    row.x = static_cast<const T*>(a.input.data) + cpu::row_offset(a.space, a.input, r);
    if (a.out.data) row.out = static_cast<T*>(a.out.data) + cpu::row_offset(a.space, a.out, r);
    return row;
  }
  bool skip(Row&) const { return false; }
  Stats<F> stats(const Row& row, int64_t c0, int64_t c1, Scratch<F>& s) const {
    return range_stats<T, F>(row.x, a.input.class_stride, nullptr, DType::kFloat32, 0, nullptr,
                             LinMode::kNone, F(0), F(0), c0, c1, s);
  }
  void finish(Row& row, const Stats<F>& st) const {
    row.max = st.max;
    row.log_s = F(std::log(st.sumexp));
    if (a.row_lse) a.row_lse[row.r] = double(common::logsumexp(st, row.log_s));
  }
  bool emits() const { return a.mode != cpu::SoftmaxMode::kLogSumExp; }
  void emit(const Row& row, int64_t c0, int64_t c1, Scratch<F>& s) const {
    for (int64_t b = c0; b < c1; b += kBlock) {
      const int64_t n = c1 - b < kBlock ? c1 - b : kBlock;
      const F* xb = load_block(row.x, a.input.class_stride, b, n, s.x);
      F* ob = output_block(row.out, a.out.class_stride, b, s.out);
      if (a.mode == cpu::SoftmaxMode::kSoftmax) {
        block_prob_minus_class<F>(xb, nullptr, n, row.max, row.log_s, F(1), F(0), ob);
      } else {
        for (int64_t i = 0; i < n; ++i) ob[i] = common::log_prob(xb[i], row.max, row.log_s);
      }
      commit_block(ob, row.out, a.out.class_stride, b, n);
    }
  }
};

template <class T, class F>
static void softmax_typed(const cpu::SoftmaxArgs& a) {
  SoftmaxJob<T, F> job{a};
  run_rows<F>(a.space, a.threads, job);
}

static void softmax_kernel(const cpu::SoftmaxArgs& a) {
  switch (a.input.dtype) {
    case DType::kFloat16:
      return softmax_typed<common::Half, float>(a);
    case DType::kBFloat16:
      return softmax_typed<common::BFloat16, float>(a);
    case DType::kFloat32:
      return softmax_typed<float, float>(a);
    default:
      return softmax_typed<double, double>(a);
  }
}

// ---- memory-roofline probes ----------------------------------------------------------------------

// Reads every byte once (as floats; max has no slow path for subnormals) and returns a value
// that depends on all of them, so the compiler cannot drop the loads.
static double stream_read_kernel(const void* data, int64_t bytes, int threads) {
  const float* x = static_cast<const float*>(data);
  const int64_t n = bytes / int64_t(sizeof(float));
  using V = Vec<float>;
  constexpr int L = V::kLanes;
  double result = 0;
#pragma omp parallel num_threads(threads) reduction(+ : result)
  {
    typename V::R m0 = V::set1(neg_inf<float>()), m1 = m0, m2 = m0, m3 = m0;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n / (4 * L); ++i) {
      const float* p = x + i * 4 * L;
      m0 = V::max(m0, V::load(p));
      m1 = V::max(m1, V::load(p + L));
      m2 = V::max(m2, V::load(p + 2 * L));
      m3 = V::max(m3, V::load(p + 3 * L));
    }
    result += double(V::reduce_max(V::max(V::max(m0, m1), V::max(m2, m3))));
  }
  return result;
}

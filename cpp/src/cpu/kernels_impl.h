// The CPU kernels, written once over the vector type Vec<F> of one instruction set. Each ISA's
// translation unit includes its vec_<isa>.h and then this file inside its own namespace
// (fastxent::cpu::<isa>), so nothing compiled here is shared between ISAs (STYLE.md §3).
//
// The jobs below say what one row means for each operation; kernels_engine.h runs them over
// rows and threads. Logits that are not the compute type F, or not contiguous along the class
// axis, are staged block by block into L1 buffers (kernels_stage.h); so are outputs. Nothing N×C
// is ever allocated: the scratch is O(threads × C).
#pragma once

// (included from an ISA translation unit: <cmath>, <cstring>, <type_traits>, <omp.h>, the
// intrinsics, row_math.h, half_convert.h and kernel_args.h are already in scope)

#include "cpu/kernels_block.h"
#include "cpu/kernels_stage.h"
#include "cpu/kernels_engine.h"

// Outputs at least this large are written with non-temporal stores (when not in place): they
// cannot stay in cache anyway, and skipping the read-for-ownership saves a third of the traffic.
constexpr int64_t kStreamBytes = int64_t(16) << 20;

// ---- cross-entropy -------------------------------------------------------------------------------

template <class T, class F>
struct CrossEntropyJob {
  const cpu::CrossEntropyArgs& a;
  const F* weight;  // (C,) in F, or null
  F eps, classes_f, keep, spread;
  F z_loss, cap, inv_cap;  // extensions; cap = 0: no softcap
  LinMode mode;
  bool stream;  // non-temporal gradient stores

  struct Row {
    int64_t r;
    const T* x;
    const void* y;  // probability-target row, or null
    T* grad;        // gradient row, or null
    int64_t target;
    F max, sumexp, log_s, g;
    common::IndexGradCoefs<F> coefs;
    F lse_coef;  // the part of coefs.prob_coef from z_loss and an lse gradient
  };

  CrossEntropyJob(const cpu::CrossEntropyArgs& args, const F* w)
      : a(args),
        weight(w),
        eps(F(args.label_smoothing)),
        classes_f(F(args.vocab_size)),
        keep(F(1) - F(args.label_smoothing)),
        spread(F(args.label_smoothing) / F(args.vocab_size)),
        z_loss(F(args.z_loss)),
        cap(F(args.softcap)),
        inv_cap(args.softcap != 0 ? F(1) / F(args.softcap) : F(0)) {
    if (a.target_index == nullptr) {
      mode = LinMode::kProbTarget;
    } else {
      mode = a.label_smoothing != 0 ? LinMode::kClasses : LinMode::kNone;
    }
    const bool in_place = a.grad.data == a.input.data;
    // (softcap rescales the gradient block after writing it: plain stores keep it in cache)
    stream = a.grad.data && !in_place && std::is_same<T, F>::value && a.grad.class_stride == 1 &&
             cap == F(0) && a.space.rows * a.space.classes * int64_t(sizeof(T)) >= kStreamBytes;
  }

  Row row(int64_t r) const {
    Row row{};
    row.r = r;
    row.x = static_cast<const T*>(a.input.data) + cpu::row_offset(a.space, a.input, r);
    if (a.target_prob.data) {
      const int64_t off = cpu::row_offset(a.space, a.target_prob, r) *
                          int64_t(dtype_size(a.target_prob.dtype));
      row.y = static_cast<const char*>(a.target_prob.data) + off;
    }
    if (a.grad.data) row.grad = static_cast<T*>(a.grad.data) + cpu::row_offset(a.space, a.grad, r);
    row.target = a.target_index ? a.target_index[r] : 0;
    row.g = F(a.row_grad_scale ? a.row_grad_scale[r] : a.grad_scale);
    return row;
  }

  bool eval() const { return a.row_argmax != nullptr || a.row_entropy != nullptr; }

  bool ignored(const Row& row) const {
    return a.target_index != nullptr && row.target == cpu::kIgnoredRow;
  }

  // An ignored row has no loss and a zero gradient; its logits are read only when its
  // log-sum-exp is asked for, or has a gradient of its own.
  bool skip(Row& row) const {
    if (!ignored(row) || a.row_lse || a.row_lse_grad || a.row_shard_stats || eval()) return false;
    if (a.row_loss) a.row_loss[row.r] = 0;
    if (row.grad) zero_row(row.grad, a.grad.class_stride, a.space.classes);
    return true;
  }

  // The block of logits the softmax sees: softcapped when asked (then always staged in s.x).
  const F* logits_block(const Row& row, int64_t c0, int64_t n, Scratch<F>& s) const {
    const F* xb = load_block(row.x, a.input.class_stride, c0, n, s.x);
    if (cap == F(0)) return xb;
    block_softcap(xb, n, cap, inv_cap, s.x, static_cast<F*>(nullptr));
    return s.x;
  }

  // The target's logit as the softmax sees it, through the same vector code as its block.
  F target_logit(const Row& row) const {
    F x_t = common::to_compute(row.x[row.target * a.input.class_stride]);
    if (cap != F(0)) block_softcap(&x_t, 1, cap, inv_cap, &x_t, static_cast<F*>(nullptr));
    return x_t;
  }

  const F* y_block(const Row& row, int64_t c0, int64_t n, Scratch<F>& s) const {
    return load_block_any(row.y, a.target_prob.dtype, a.target_prob.class_stride, c0, n, s.y);
  }

  Stats<F> stats(const Row& row, int64_t c0, int64_t n, F* exps, Scratch<F>& s) const {
    if (a.saved_lse) {
      // The logits' statistics are known; probability targets still need Σ w·y' (vsum).
      Stats<F> st{};  // all 0
      if (mode == LinMode::kProbTarget && a.row_target_mass == nullptr) {
        const F* yb = y_block(row, c0, n, s);
        for (int64_t i = 0; i < n; ++i) {
          st.vsum += (weight ? weight[c0 + i] : F(1)) * (keep * yb[i] + spread);
        }
      }
      return st;
    }
    const F* xb = logits_block(row, c0, n, s);
    const F* yb = mode == LinMode::kProbTarget ? y_block(row, c0, n, s) : nullptr;
    Stats<F> st = block_stats(xb, yb, weight ? weight + c0 : nullptr, n, mode, keep, spread, exps,
                              eval());
    st.argmax += c0;
    return st;
  }

  void finish(Row& row, const Stats<F>& st) const {
    F lse;
    if (a.saved_lse) {
      // lse (float64) split as hi + lo in F: p = exp((x - hi) - lo) keeps the digits that
      // x - F(lse) would lose for large logits (x - hi is exact near the max).
      const double saved = a.saved_lse[row.r];
      row.max = F(saved);
      row.log_s = F(saved - double(row.max));
      row.sumexp = F(1);
      lse = F(saved);
    } else {
      row.max = st.max;
      row.sumexp = st.sumexp;
      row.log_s = F(std::log(st.sumexp));
      lse = common::logsumexp(st, row.log_s);
      // Summed in double: the saved lse must keep log s's digits next to a large max.
      if (a.row_lse) a.row_lse[row.r] = double(st.max) + double(row.log_s);
      if (a.row_argmax) a.row_argmax[row.r] = st.argmax;
      if (a.row_entropy) a.row_entropy[row.r] = double(common::entropy(st, row.log_s));
      if (a.row_shard_stats) {
        double* out = a.row_shard_stats + row.r * cpu::kShardStatsWidth;
        out[cpu::kShardMax] = double(st.max);
        out[cpu::kShardSumExp] = double(st.sumexp);
        out[cpu::kShardLin] = double(st.lin);
        out[cpu::kShardVSum] = double(st.vsum);
        out[cpu::kShardTargetLogit] = row.target >= 0 && a.target_index ? double(target_logit(row)) : 0.0;
      }
    }
    if (ignored(row)) {  // reached only when its lse is wanted or has a gradient
      if (a.row_loss) a.row_loss[row.r] = 0;
      row.lse_coef = a.row_lse_grad ? F(a.row_lse_grad[row.r]) : F(0);
      row.coefs = {row.lse_coef, F(0), F(0)};
      return;
    }
    F loss = F(0);
    row.lse_coef = common::z_loss_prob_coef(row.g, z_loss, lse);
    if (a.row_lse_grad) row.lse_coef += F(a.row_lse_grad[row.r]);
    if (mode == LinMode::kProbTarget) {
      loss = common::prob_loss(st, row.log_s);
      // ∂/∂x_j = p_j·Σ w·y' - w_j·y'_j
      row.coefs.prob_coef = row.g * (a.row_target_mass ? F(a.row_target_mass[row.r]) : st.vsum);
    } else {
      const F w_t = F(a.target_weight[row.r]);
      // x_t is read here, before any gradient is written (the gradient may overwrite x).
      // (Row losses are only asked of unsharded inputs: the target is here.)
      if (a.row_loss) loss = common::index_loss(st, row.log_s, target_logit(row), w_t, eps, classes_f);
      row.coefs = common::index_grad_coefs(row.g, w_t, F(a.weight_sum), eps, classes_f);
    }
    if (a.row_loss) a.row_loss[row.r] = double(loss + common::z_loss_value(z_loss, lse));
    row.coefs.prob_coef += row.lse_coef;
  }

  bool emits() const { return a.grad.data != nullptr; }
  bool caches_exp() const { return emits() && a.saved_lse == nullptr; }

  void emit(const Row& row, int64_t c0, int64_t n, const Stats<F>& block, const F* exps,
            Scratch<F>& s) const {
    if (ignored(row) && row.lse_coef == F(0)) {  // no gradient at all: exactly 0, as torch
      zero_row(row.grad + c0 * a.grad.class_stride, a.grad.class_stride, n);
      return;
    }
    // Everything read from the logits is read before the gradient is written (it may be
    // written over them): the capped logits and their slopes go to scratch first.
    const F* xb = nullptr;
    if (cap != F(0)) {
      xb = load_block(row.x, a.input.class_stride, c0, n, s.x);
      block_softcap(xb, n, cap, inv_cap, s.x, s.slope);
      xb = s.x;
    }
    F* ob = output_block(row.grad, a.grad.class_stride, c0, s.out);
    const F* wb = weight ? weight + c0 : nullptr;
    F pnorm = F(1);
    if (a.saved_lse) {  // exps are the probabilities themselves
      if (xb == nullptr) xb = load_block(row.x, a.input.class_stride, c0, n, s.x);
      block_probs(xb, n, row.max, row.log_s, s.e);
      exps = s.e;
    } else {
      pnorm = block_prob_scale(block, row.max, row.sumexp);
    }
    const F pscale = row.coefs.prob_coef * pnorm;
    if (mode == LinMode::kProbTarget) {
      block_prob_grad(exps, y_block(row, c0, n, s), wb, n, pscale, row.g, keep, spread, ob, stream);
    } else {
      block_index_grad(exps, wb, n, pscale, row.coefs.class_coef, ob, stream);
      const int64_t j = row.target - c0;
      if (j >= 0 && j < n) {
        // The target's entry, in F before any rounding to T, grouped as
        // (1-ε)·w_t·g·(p_t - 1) + (ε/C)·g·(W·p_t - w_t) + lse_coef·p_t: exactly 0 when p_t = 1
        // (C = 1) without z-loss.
        const F p_t = pnorm * exps[j];
        const F w_t = wb ? wb[j] : F(1);
        ob[j] = row.coefs.target_coef * (p_t - F(1)) +
                row.coefs.class_coef * (F(a.weight_sum) * p_t - w_t) + row.lse_coef * p_t;
      }
    }
    if (cap != F(0)) block_scale_by(ob, s.slope, n);  // ∂/∂x = ∂/∂y · dy/dx
    if (stream) Vec<F>::fence();
    commit_block(ob, row.grad, a.grad.class_stride, c0, n);
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
  run_rows<F>(a.space, a.threads, CrossEntropyJob<T, F>(a, weight));
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
  bool stream;

  struct Row {
    int64_t r;
    const T* x;
    T* out;
    F max, sumexp, log_s;
  };

  explicit SoftmaxJob(const cpu::SoftmaxArgs& args) : a(args) {
    stream = a.out.data && a.out.data != a.input.data && std::is_same<T, F>::value &&
             a.out.class_stride == 1 &&
             a.space.rows * a.space.classes * int64_t(sizeof(T)) >= kStreamBytes;
  }

  Row row(int64_t r) const {
    Row row{};
    row.r = r;
    row.x = static_cast<const T*>(a.input.data) + cpu::row_offset(a.space, a.input, r);
    if (a.out.data) row.out = static_cast<T*>(a.out.data) + cpu::row_offset(a.space, a.out, r);
    return row;
  }
  bool skip(Row&) const { return false; }
  Stats<F> stats(const Row& row, int64_t c0, int64_t n, F* exps, Scratch<F>& s) const {
    const F* xb = load_block(row.x, a.input.class_stride, c0, n, s.x);
    return block_stats<F>(xb, nullptr, nullptr, n, LinMode::kNone, F(0), F(0), exps);
  }
  void finish(Row& row, const Stats<F>& st) const {
    row.max = st.max;
    row.sumexp = st.sumexp;
    row.log_s = F(std::log(st.sumexp));
    if (a.row_lse) a.row_lse[row.r] = double(common::logsumexp(st, row.log_s));
  }
  bool emits() const { return a.mode != cpu::SoftmaxMode::kLogSumExp; }
  bool caches_exp() const { return a.mode == cpu::SoftmaxMode::kSoftmax; }
  void emit(const Row& row, int64_t c0, int64_t n, const Stats<F>& block, const F* exps,
            Scratch<F>& s) const {
    F* ob = output_block(row.out, a.out.class_stride, c0, s.out);
    if (a.mode == cpu::SoftmaxMode::kSoftmax) {
      block_index_grad<F>(exps, nullptr, n, block_prob_scale(block, row.max, row.sumexp), F(0), ob,
                          stream);
      if (stream) Vec<F>::fence();
    } else {
      block_log_softmax(load_block(row.x, a.input.class_stride, c0, n, s.x), n, row.max,
                        row.log_s, ob);
    }
    commit_block(ob, row.out, a.out.class_stride, c0, n);
  }
};

template <class T, class F>
static void softmax_typed(const cpu::SoftmaxArgs& a) {
  run_rows<F>(a.space, a.threads, SoftmaxJob<T, F>(a));
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

// ---- memory-roofline probe -----------------------------------------------------------------------

// Reads every byte once (as floats; max has no slow path for subnormals) and returns a value
// that depends on all of them, so the compiler cannot drop the loads.
static double stream_read_kernel(const void* data, int64_t bytes, int threads) {
  const float* x = static_cast<const float*>(data);
  using V = Vec<float>;
  constexpr int L = V::kLanes;
  const int64_t chunks = bytes / int64_t(sizeof(float) * 4 * L);
  double result = 0;
#pragma omp parallel num_threads(threads) reduction(+ : result)
  {
    typename V::R m0 = V::set1(neg_inf<float>()), m1 = m0, m2 = m0, m3 = m0;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < chunks; ++i) {
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

// ---- the vector exp on its own (accuracy tests) ---------------------------------------------------

template <class F>
static void exp_kernel(const F* x, F* out, int64_t n) {
  using V = Vec<F>;
  constexpr int L = V::kLanes;
  for (int64_t i = 0; i < n; i += L) {
    const int64_t left = n - i < L ? n - i : L;
    V::store_tail(out + i, V::exp(V::load_tail(x + i, left, F(0))), left);
  }
}

// ---- binary cross-entropy with logits -------------------------------------------------------------

#include "cpu/kernels_bce.h"

// The row math of DESIGN.md §1, written once and shared by the scalar, SIMD and CUDA kernels.
//
// Notation: a row holds C logits x; p = softmax(x); lse = log Σ exp(x); w are the class weights
// (all ones without `weight`); W = Σ w; ε is label smoothing; g is the row's upstream gradient
// (already divided by the mean normaliser).
//
// Numerics. A row is summarised by RowStats: its max m, s = Σ exp(x - m) (every term ≤ 1, so no
// overflow) and, when label smoothing or probability targets need it, lin = Σ v·(r - x) for
// per-class coefficients v, taken relative to r = ref(m). Losses are then assembled as
// (m - x_t) + log s rather than (m + log s) - x_t: with logits near 1e4 the latter loses every
// digit in float32. Likewise Σ v·x is never formed: Σ v·(r - x) has terms of the size of the
// logits' spread, not of the logits.
#pragma once

#include <cmath>

#include "common/host_device.h"

namespace fastxent {
namespace common {

template <class F>
struct RowStats {
  F max;     // m: max over the covered logits (-inf when all are -inf)
  F sumexp;  // s: Σ exp(x - m); 0 when m is -inf
  F lin;     // Σ v·(ref(m) - x), see above (0 when not requested)
  F vsum;    // Σ v
  // Evaluation statistics, when requested (else 0):
  F ent;            // Σ exp(x - m)·(x - m) ≤ 0 (-inf logits add 0); entropy = log s - ent/s
  int64_t argmax;   // the first index of the max, or of the first NaN (torch.argmax's rule)
  bool argmax_nan;  // argmax points at a NaN
};

template <class F>
FXE_FN bool is_finite(F v) {
  return v - v == v - v;  // false for ±inf and NaN, without relying on fast-math-sensitive calls
}

// The reference point of `lin`: the max itself when finite. A non-finite max means the row is
// all -inf (loss nan, as torch) or holds +inf/NaN (nan): 0 keeps `lin` free of inf - inf there.
template <class F>
FXE_FN F stats_ref(F max) {
  return is_finite(max) ? max : F(0);
}

// max that propagates NaN from either side (std::fmax would drop it).
template <class F>
FXE_FN F nan_max(F a, F b) {
  return (a > b || a != a) ? a : b;
}

// exp(a.max - m) without the -inf - -inf = NaN of an all -inf block (whose s is 0).
template <class F>
FXE_FN F rescale_factor(const RowStats<F>& a, F m) {
  return a.sumexp == F(0) ? F(0) : F(std::exp(a.max - m));
}

// a's Σ exp(x - a.max)·(x - a.max) moved to the reference m: exp(a.max - m)·(ent + s·(a.max - m)).
template <class F>
FXE_FN F rescaled_ent(const RowStats<F>& a, F factor, F m) {
  return a.sumexp == F(0) ? F(0) : factor * (a.ent + a.sumexp * (a.max - m));
}

// Exact merge of two partials (no second look at the logits). Order matters only in rounding;
// callers merge in a fixed order, so results do not depend on the thread count.
template <class F>
FXE_FN RowStats<F> merge(const RowStats<F>& a, const RowStats<F>& b) {
  RowStats<F> out;
  out.max = nan_max(a.max, b.max);
  const F fa = rescale_factor(a, out.max), fb = rescale_factor(b, out.max);
  out.sumexp = a.sumexp * fa + b.sumexp * fb;
  out.ent = rescaled_ent(a, fa, out.max) + rescaled_ent(b, fb, out.max);
  // a covers lower indices than b: ties and NaNs go to a's.
  const bool take_b = !a.argmax_nan && (b.argmax_nan || b.max > a.max);
  out.argmax = take_b ? b.argmax : a.argmax;
  out.argmax_nan = take_b ? b.argmax_nan : a.argmax_nan;
  const F r = stats_ref(out.max);
  // a.vsum == 0 guards 0·inf when a block's reference moved by an infinite amount.
  const F shift_a = a.vsum == F(0) ? F(0) : a.vsum * (r - stats_ref(a.max));
  const F shift_b = b.vsum == F(0) ? F(0) : b.vsum * (r - stats_ref(b.max));
  out.lin = (a.lin + shift_a) + (b.lin + shift_b);
  out.vsum = a.vsum + b.vsum;
  return out;
}

// The one-logit (online) form of a block's statistics, for kernels that see a row one value at
// a time (each CUDA thread over its share of a row): adds logit x with coefficient v to `st`
// (v enters lin and vsum only when kLin). Same conventions as a block of the CPU kernels: a -inf
// logit adds nothing to s, a NaN or a +inf one makes s NaN (exp(inf - inf)), and lin stays
// relative to stats_ref(max), shifted like merge() when the max moves.
template <class F, bool kLin>
FXE_FN void push(RowStats<F>& st, F x, F v) {
  if (x > st.max) {
    if (kLin && st.vsum != F(0)) st.lin += st.vsum * (stats_ref(x) - stats_ref(st.max));
    // st.max = -inf: s·exp(-inf) = 0; exp(x - x) is 1, or NaN for x = +inf.
    st.sumexp = st.sumexp * F(std::exp(st.max - x)) + F(std::exp(x - x));
    st.max = x;
  } else if (x == x && x - x != x - x && x < F(0)) {
    // -inf: p = 0, nothing to add (exp(-inf - -inf) would be NaN in an all -inf prefix)
  } else {
    st.sumexp += F(std::exp(x - st.max));  // NaN x, or x = max = +inf: s becomes NaN
  }
  if (kLin) {
    st.lin += v * (stats_ref(st.max) - x);
    st.vsum += v;
  }
}

// log p_j and p_j from a row's max m and log s, in torch's order: (x - m) - log s, never
// x - (m + log s), which loses the digits of logits near 1e4. (m, log s) may also be a saved
// log-sum-exp split as hi + lo.
template <class F>
FXE_FN F log_prob(F x, F m, F log_s) {
  return (x - m) - log_s;
}

template <class F>
FXE_FN F prob(F x, F m, F log_s) {
  return F(std::exp((x - m) - log_s));
}

// lse - ref(m) = (m - ref(m)) + log s. 0 + log s for an ordinary row.
template <class F>
FXE_FN F lse_minus_ref(const RowStats<F>& st, F log_s) {
  return (st.max - stats_ref(st.max)) + log_s;
}

template <class F>
FXE_FN F logsumexp(const RowStats<F>& st, F log_s) {
  return st.max + log_s;
}

// The most negative finite value: x - m clamped to it keeps exp(x - m)·(x - m) at 0 (not
// 0·inf) for a -inf logit.
template <class F>
FXE_FN F lowest_finite() {
  if constexpr (sizeof(F) == 4) {
    return F(-3.40282347e+38f);
  } else {
    return F(-1.7976931348623157e+308);
  }
}

// The entropy of the row's softmax, -Σ p·log p = log s - ent/s: two terms >= 0, no cancellation.
template <class F>
FXE_FN F entropy(const RowStats<F>& st, F log_s) {
  return log_s - st.ent / st.sumexp;
}

// ---- class-index targets ------------------------------------------------------------------
// loss = (1-ε)·w_t·(lse - x_t) + (ε/C)·Σ_c w_c·(lse - x_c)
// with stats.lin = Σ w_c·(r - x_c) and stats.vsum = W when ε > 0.
template <class F>
FXE_FN F index_loss(const RowStats<F>& st, F log_s, F x_t, F w_t, F eps, F num_classes) {
  const F nll = (st.max - x_t) + log_s;
  F loss = (F(1) - eps) * w_t * nll;
  if (eps != F(0)) {  // skipping the term at ε = 0 keeps -inf logits from turning 0·inf into NaN
    loss += (eps / num_classes) * (st.lin + st.vsum * lse_minus_ref(st, log_s));
  }
  return loss;
}

// ∂loss/∂x_j = g·[(1-ε)·w_t + ε·W/C]·p_j - g·(ε/C)·w_j - g·(1-ε)·w_t·[j = t]
// prob_coef multiplies p_j; class_coef multiplies w_j; target_coef is subtracted at j = t.
template <class F>
struct IndexGradCoefs {
  F prob_coef;
  F class_coef;
  F target_coef;
};

template <class F>
FXE_FN IndexGradCoefs<F> index_grad_coefs(F g, F w_t, F weight_sum, F eps, F num_classes) {
  IndexGradCoefs<F> c;
  const F smooth = eps / num_classes;
  c.prob_coef = g * ((F(1) - eps) * w_t + smooth * weight_sum);
  c.class_coef = g * smooth;
  c.target_coef = g * (F(1) - eps) * w_t;
  return c;
}

// One class's gradient from the coefficients (prob_coef including lse_coef, the z-loss and
// lse-gradient part of the coefficient of p_j), grouped at the target as
// (1-ε)·w_t·g·(p_t - 1) + (ε/C)·g·(W·p_t - w_t) + lse_coef·p_t: exactly 0 when p_t = 1 (C = 1)
// without z-loss. The CPU kernels write the same grouping with their vectors.
template <class F>
FXE_FN F index_grad(const IndexGradCoefs<F>& c, F lse_coef, F p, F w_j, bool is_target,
                    F weight_sum) {
  if (is_target) {
    return c.target_coef * (p - F(1)) + c.class_coef * (weight_sum * p - w_j) + lse_coef * p;
  }
  return c.prob_coef * p - c.class_coef * w_j;
}

// ---- probability targets ------------------------------------------------------------------
// y'_c = (1-ε)·y_c + ε/C;  loss = Σ_c w_c·y'_c·(lse - x_c);  ∂loss/∂x_j = p_j·Σ_c w_c·y'_c - w_j·y'_j
// with stats.lin = Σ w_c·y'_c·(r - x_c) and stats.vsum = Σ w_c·y'_c.
template <class F>
FXE_FN F prob_loss(const RowStats<F>& st, F log_s) {
  return st.lin + st.vsum * lse_minus_ref(st, log_s);
}

// y'_c = (1-ε)·y_c + ε/C, as keep·y + spread.
template <class F>
FXE_FN F smoothed_target(F y, F keep, F spread) {
  return keep * y + spread;
}

// ∂loss/∂x_j = g·(p_j·Σ w·y' - w_j·y'_j), with prob_coef = g·Σ w·y' (= g·stats.vsum).
template <class F>
FXE_FN F prob_grad(F prob_coef, F p, F g, F w_j, F y_smoothed) {
  return prob_coef * p - w_j * (g * y_smoothed);
}

// ---- extensions beyond torch (DESIGN.md §1) -----------------------------------------------
// z-loss (PaLM): z·lse² is added to the loss of every counted row (not ignored), and the mean
// divides it by the same normaliser as the rest of the loss. ∂(z·lse²)/∂x_j = 2z·lse·p_j: a
// term of the coefficient of p_j. At z = 0 both are exactly 0 (no 0·inf for an infinite lse).
template <class F>
FXE_FN F z_loss_value(F z, F lse) {
  return z == F(0) ? F(0) : z * lse * lse;
}

template <class F>
FXE_FN F z_loss_prob_coef(F g, F z, F lse) {
  return z == F(0) ? F(0) : g * (F(2) * z * lse);
}

// softcap (Gemma): each logit becomes y = c·tanh(x/c) before the softmax; the gradient with
// respect to x is the gradient with respect to y times dy/dx = 1 - tanh²(x/c).
// tanh through one exp: with u = x/c, E = exp(2u) and d = 1/(E + 1), tanh u = 1 - 2d and
// 1 - tanh² u = 4·E·d² (no cancellation where tanh saturates). u is clamped to ±20 first: that
// keeps E finite in float32 and changes nothing (tanh(±20) rounds to ±1 even in float64). The
// absolute error of y is a few ulp of c (1 - 2d cancels near u = 0): the scale of the capped
// logits themselves, which is what the softmax is sensitive to. ±inf → ±c; NaN stays NaN.
// The SIMD kernels evaluate the same formula with their vector exp (block_softcap).
constexpr double kSoftcapClamp = 20.0;

template <class F>
struct Softcapped {
  F value;  // c·tanh(x/c)
  F slope;  // 1 - tanh²(x/c)
};

template <class F>
FXE_FN Softcapped<F> softcap(F x, F cap, F inv_cap) {
  F u = x * inv_cap;
  // NaN fails both comparisons and passes through.
  u = u < F(-kSoftcapClamp) ? F(-kSoftcapClamp) : (u > F(kSoftcapClamp) ? F(kSoftcapClamp) : u);
  const F e = F(std::exp(F(2) * u));
  const F d = F(1) / (e + F(1));
  return {cap * (F(1) - F(2) * d), F(4) * e * (d * d)};
}

}  // namespace common
}  // namespace fastxent

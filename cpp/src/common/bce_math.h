// The elementwise math of binary cross-entropy with logits, written once over an operations type
// V (a CPU instruction set's Vec<F>; any type with R, set1, add, sub, mul, min, div, select_lt,
// exp and log1p serves, e.g. a one-lane type for CUDA). Values follow torch's
// binary_cross_entropy_with_logits operation by operation, so non-finite inputs give what torch
// gives: x = +inf with y = 1 is 0·inf = NaN, x = -inf is -inf + inf = NaN (the formula, not the
// limit), NaN propagates.
//
// Numerics: e = exp(-|x|) is in [0, 1] and never overflows; log σ(x) = min(x, 0) - log1p(e)
// keeps full relative accuracy for large |x| (log(1 + exp(-x)) would overflow, and log(σ(x))
// would lose everything once σ(x) rounds to 1). σ(x) = e / (1 + e) for x < 0 (accurate down to
// the smallest subnormal) and 1 / (1 + e) otherwise.
#pragma once

#include "common/host_device.h"

namespace fastxent {
namespace common {

// e = exp(-|x|), shared by the loss and the gradient. min(x, -x) is NaN for NaN x on every ISA.
template <class V, class F>
FXE_FN typename V::R bce_exp_neg_abs(typename V::R x) {
  return V::exp(V::min(x, V::sub(V::set1(F(0)), x)));
}

// loss = (1 - y)·x - lw·log σ(x), lw = (pw - 1)·y + 1 (1 without pos_weight).
template <class V, class F>
FXE_FN typename V::R bce_loss(typename V::R x, typename V::R y, typename V::R e,
                              typename V::R pw, bool has_pw) {
  const typename V::R one = V::set1(F(1));
  const typename V::R log_sigmoid = V::sub(V::min(x, V::set1(F(0))), V::log1p(e));
  const typename V::R lw = has_pw ? V::add(V::mul(V::sub(pw, one), y), one) : one;
  return V::sub(V::mul(V::sub(one, y), x), V::mul(lw, log_sigmoid));
}

// ∂loss/∂x = (pw·y + 1 - y)·σ(x) - pw·y (σ(x) - y without pos_weight), before weight and the
// upstream gradient multiply it.
template <class V, class F>
FXE_FN typename V::R bce_grad(typename V::R x, typename V::R y, typename V::R e,
                              typename V::R pw, bool has_pw) {
  const typename V::R one = V::set1(F(1));
  const typename V::R sigmoid =
      V::div(V::select_lt(x, V::set1(F(0)), e, one), V::add(one, e));
  if (!has_pw) return V::sub(sigmoid, y);
  const typename V::R t = V::mul(pw, y);
  return V::sub(V::mul(V::sub(V::add(t, one), y), sigmoid), t);
}

}  // namespace common
}  // namespace fastxent

// Block primitives: loops over n ≤ kBlock contiguous values of the compute type F, written once
// over Vec<F>. Part of the kernels included per ISA (see kernels_impl.h).
#pragma once

constexpr int64_t kBlock = 2048;

template <class F>
static constexpr F neg_inf() {
  return -static_cast<F>(__builtin_inf());
}

template <class F>
alignas(64) static const F kOnes[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};

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

// Σ exp(x - m); when `exps` is given, also stores each exp(x - m) there for the gradient pass,
// which then needs a multiply instead of a second exp. kEnt also sums exp(x - m)·(x - m) into
// *ent (the entropy's term; x - m clamped to the lowest finite value so -inf adds 0, not NaN).
template <class F, bool kEnt = false>
static F block_sumexp(const F* x, int64_t n, F m, F* exps, F* ent = nullptr) {
  using V = Vec<F>;
  constexpr int L = V::kLanes;
  const typename V::R mv = V::set1(m), lowest = V::set1(common::lowest_finite<F>());
  typename V::R s0 = V::set1(F(0)), s1 = s0, h0 = s0, h1 = s0;
  int64_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    const typename V::R d0 = V::sub(V::load(x + i), mv), d1 = V::sub(V::load(x + i + L), mv);
    const typename V::R e0 = V::exp(d0), e1 = V::exp(d1);
    if (exps) {
      V::store(exps + i, e0);
      V::store(exps + i + L, e1);
    }
    s0 = V::add(s0, e0);
    s1 = V::add(s1, e1);
    if constexpr (kEnt) {
      h0 = V::fmadd(e0, V::max(lowest, d0), h0);
      h1 = V::fmadd(e1, V::max(lowest, d1), h1);
    }
  }
  for (; i < n; i += L) {
    const int64_t left = n - i < L ? n - i : L;
    const typename V::R d = V::sub(V::load_tail(x + i, left, neg_inf<F>()), mv);
    const typename V::R e = V::exp(d);
    if (exps) V::store_tail(exps + i, e, left);
    s0 = V::add(s0, e);
    if constexpr (kEnt) h0 = V::fmadd(e, V::max(lowest, d), h0);
  }
  if constexpr (kEnt) *ent = V::reduce_add(V::add(h0, h1));
  return V::reduce_add(V::add(s0, s1));
}

// st.argmax: the first NaN of the block if it has one (torch.argmax's rule: the max ignores
// NaN), else the first index of its max. A NaN Σexp (NaN or +inf logits) is the only hint that
// a NaN may be there. Runs from L1 after the statistics pass, on request only.
template <class F>
static void block_argmax(const F* x, int64_t n, common::RowStats<F>& st) {
  st.argmax = 0;
  st.argmax_nan = false;
  if (st.sumexp != st.sumexp) {
    for (int64_t i = 0; i < n; ++i) {
      if (x[i] != x[i]) {
        st.argmax = i;
        st.argmax_nan = true;
        return;
      }
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    if (x[i] == st.max) {
      st.argmax = i;
      return;
    }
  }
}

// lin = Σ v·(r - x), vsum = Σ v with v = w (or 1 when w is null).
template <class F>
static void block_lin(const F* x, const F* w, int64_t n, F r, F* lin, F* vsum) {
  using V = Vec<F>;
  constexpr int L = V::kLanes;
  const typename V::R rv = V::set1(r);
  typename V::R acc = V::set1(F(0)), wacc = acc;
  for (int64_t i = 0; i < n; i += L) {
    const int64_t left = n - i < L ? n - i : L;
    const typename V::R d = V::sub(rv, V::load_tail(x + i, left, r));  // fill lanes: d = 0
    if (w) {
      const typename V::R wv = V::load_tail(w + i, left, F(0));
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
  for (int64_t i = 0; i < n; i += L) {
    const int64_t left = n - i < L ? n - i : L;
    typename V::R v = V::fmadd(kv, V::load_tail(y + i, left, F(0)), sv);
    if (left < L) v = V::mul(V::load_tail(kOnes<F>, left, F(0)), v);  // v = 0 in fill lanes
    if (w) v = V::mul(V::load_tail(w + i, left, F(0)), v);
    acc = V::fmadd(v, V::sub(rv, V::load_tail(x + i, left, r)), acc);
    vacc = V::add(vacc, v);
  }
  *lin = V::reduce_add(acc);
  *vsum = V::reduce_add(vacc);
}

// p = exp((x - hi) - lo): the probabilities from a row's log-sum-exp given as hi + lo.
template <class F>
static void block_probs(const F* x, int64_t n, F hi, F lo, F* p) {
  using V = Vec<F>;
  constexpr int L = V::kLanes;
  const typename V::R hv = V::set1(hi), lv = V::set1(lo);
  for (int64_t i = 0; i < n; i += L) {
    const int64_t left = n - i < L ? n - i : L;
    V::store_tail(p + i, V::exp(V::sub(V::sub(V::load_tail(x + i, left, hi), hv), lv)), left);
  }
}

// Writes one vector of results: streaming (non-temporal) when asked and `p` is aligned for it.
template <class F>
static void put(F* p, typename Vec<F>::R v, bool stream) {
  if (stream) {
    Vec<F>::stream(p, v);
  } else {
    Vec<F>::store(p, v);
  }
}

// Elements before `out` reaches the alignment non-temporal stores need (0 when it cannot).
template <class F>
static int64_t stream_head(const F* out, int64_t n) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(out);
  constexpr uintptr_t align = sizeof(typename Vec<F>::R);
  if (a % sizeof(F) != 0) return n;  // not even element-aligned: plain stores throughout
  const int64_t head = int64_t(((align - a % align) % align) / sizeof(F));
  return head < n ? head : n;
}

// Index-target gradient / softmax from cached exponentials e = exp(x - m_block):
// out = pscale·e - class_coef·w (w null: all ones), pscale = prob_coef·exp(m_block - m - log s).
template <class F>
static void block_index_grad(const F* e, const F* w, int64_t n, F pscale, F class_coef, F* out,
                             bool stream) {
  using V = Vec<F>;
  constexpr int L = V::kLanes;
  const typename V::R pc = V::set1(pscale), cc = V::set1(class_coef);
  int64_t i = 0;
  if (stream) {
    for (const int64_t head = stream_head(out, n); i < head; ++i) {
      out[i] = pscale * e[i] - class_coef * (w ? w[i] : F(1));
    }
  }
  for (; i + L <= n; i += L) {
    const typename V::R wv = w ? V::load(w + i) : V::set1(F(1));
    put(out + i, V::fnmadd(cc, wv, V::mul(pc, V::load(e + i))), stream);
  }
  if (i < n) {
    const int64_t left = n - i;
    const typename V::R wv = w ? V::load_tail(w + i, left, F(0)) : V::set1(F(1));
    V::store_tail(out + i, V::fnmadd(cc, wv, V::mul(pc, V::load_tail(e + i, left, F(0)))), left);
  }
}

// Probability-target gradient: out = pscale·e - g·w·(keep·y + spread).
template <class F>
static void block_prob_grad(const F* e, const F* y, const F* w, int64_t n, F pscale, F g, F keep,
                            F spread, F* out, bool stream) {
  using V = Vec<F>;
  constexpr int L = V::kLanes;
  const typename V::R pc = V::set1(pscale), gv = V::set1(g), kv = V::set1(keep),
                      sv = V::set1(spread);
  int64_t i = 0;
  if (stream) {
    for (const int64_t head = stream_head(out, n); i < head; ++i) {
      out[i] = pscale * e[i] - (w ? w[i] : F(1)) * (g * (keep * y[i] + spread));
    }
  }
  for (; i + L <= n; i += L) {
    typename V::R v = V::mul(gv, V::fmadd(kv, V::load(y + i), sv));
    if (w) v = V::mul(V::load(w + i), v);
    put(out + i, V::sub(V::mul(pc, V::load(e + i)), v), stream);
  }
  if (i < n) {
    const int64_t left = n - i;
    typename V::R v = V::mul(gv, V::fmadd(kv, V::load_tail(y + i, left, F(0)), sv));
    if (w) v = V::mul(V::load_tail(w + i, left, F(0)), v);
    V::store_tail(out + i, V::sub(V::mul(pc, V::load_tail(e + i, left, F(0))), v), left);
  }
}

// softcap: y = c·tanh(x/c) and, when `slope` is given, dy/dx — common::softcap's formula over
// vectors (see row_math.h for the numerics). y may be x itself.
template <class F>
static void block_softcap(const F* x, int64_t n, F cap, F inv_cap, F* y, F* slope) {
  using V = Vec<F>;
  constexpr int L = V::kLanes;
  const typename V::R lo = V::set1(F(-common::kSoftcapClamp)), hi = V::set1(F(common::kSoftcapClamp));
  const typename V::R one = V::set1(F(1)), two = V::set1(F(2)), four = V::set1(F(4));
  const typename V::R cv = V::set1(cap), iv = V::set1(inv_cap);
  for (int64_t i = 0; i < n; i += L) {
    const int64_t left = n - i < L ? n - i : L;
    // x·(1/c) clamped to ±20; the loaded value second, so a NaN passes through max and min.
    const typename V::R u = V::min(hi, V::max(lo, V::mul(V::load_tail(x + i, left, F(0)), iv)));
    const typename V::R e = V::exp(V::mul(two, u));
    const typename V::R d = V::div(one, V::add(e, one));
    V::store_tail(y + i, V::mul(cv, V::fnmadd(two, d, one)), left);
    if (slope) V::store_tail(slope + i, V::mul(V::mul(four, e), V::mul(d, d)), left);
  }
}

// out *= s elementwise (the chain rule through softcap).
template <class F>
static void block_scale_by(F* out, const F* s, int64_t n) {
  using V = Vec<F>;
  constexpr int L = V::kLanes;
  for (int64_t i = 0; i < n; i += L) {
    const int64_t left = n - i < L ? n - i : L;
    V::store_tail(out + i, V::mul(V::load_tail(out + i, left, F(0)), V::load_tail(s + i, left, F(0))),
                  left);
  }
}

// log p = (x - m) - log s, the order torch's log_softmax uses.
template <class F>
static void block_log_softmax(const F* x, int64_t n, F m, F log_s, F* out) {
  using V = Vec<F>;
  constexpr int L = V::kLanes;
  const typename V::R mv = V::set1(m), lv = V::set1(log_s);
  for (int64_t i = 0; i < n; i += L) {
    const int64_t left = n - i < L ? n - i : L;
    V::store_tail(out + i, V::sub(V::sub(V::load_tail(x + i, left, m), mv), lv), left);
  }
}

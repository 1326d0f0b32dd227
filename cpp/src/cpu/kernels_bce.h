// Binary cross-entropy with logits on the CPU: one elementwise pass over the work units of
// bce_args.h, the math of common/bce_math.h on Vec<F> lanes. Part of the kernels included per
// ISA (see kernels_impl.h; kernels_stage.h stages operands that are not contiguous F).
//
// Every unit writes its own loss sum (in F, from vector accumulators) to a fixed slot; the core
// adds the slots pairwise in a fixed order. Units depend only on the shape, so the sum is bitwise
// the same for any thread count. The elementwise loss and the gradient are written block by
// block, the gradient possibly over the input (each lane is read before it is written).
#pragma once

template <class F>
struct alignas(64) BceScratch {  // per-thread staging (uninitialised: no cost to make)
  F x[kBceBlock];
  F y[kBceBlock];
  F w[kBceBlock];
  F pw[kBceBlock];
  F go[kBceBlock];
  F loss[kBceBlock];
  F grad[kBceBlock];
};

template <class F>
static void put_tail(F* p, typename Vec<F>::R v, int64_t left) {
  if (left == Vec<F>::kLanes) {
    Vec<F>::store(p, v);
  } else {
    Vec<F>::store_tail(p, v, left);
  }
}

// n contiguous values: the loss into `loss` (when given), the gradient g·go·w·∂loss/∂x into `grad`
// (when given; go null: g alone). Returns Σ loss when `sum` is set (tail lanes add exactly 0).
template <class F>
static F bce_block(const F* x, const F* y, const F* w, const F* pw, const F* go, F g, int64_t n,
                   F* loss, bool sum, F* grad) {
  using V = Vec<F>;
  using R = typename V::R;
  constexpr int L = V::kLanes;
  const R zero = V::set1(F(0)), gv = V::set1(g);
  const bool has_pw = pw != nullptr;
  R acc = zero;
  for (int64_t i = 0; i < n; i += L) {
    const int64_t left = n - i < L ? n - i : L;
    auto ld = [left](const F* p, F fill) {  // full vectors without masks
      return left == L ? V::load(p) : V::load_tail(p, left, fill);
    };
    const R xv = ld(x + i, F(0));
    const R yv = ld(y + i, F(0));
    const R pwv = has_pw ? ld(pw + i, F(1)) : zero;
    const R wv = w ? ld(w + i, F(0)) : zero;  // 0 in tail lanes
    const R e = common::bce_exp_neg_abs<V, F>(xv);
    if (loss || sum) {
      R lv = common::bce_loss<V, F>(xv, yv, e, pwv, has_pw);
      if (w) {
        lv = V::mul(lv, wv);
      } else if (left < L) {
        lv = V::mul(V::load_tail(kOnes<F>, left, F(0)), lv);  // tail lanes: 0
      }
      if (loss) put_tail(loss + i, lv, left);
      acc = V::add(acc, lv);
    }
    if (grad) {
      R gr = V::mul(common::bce_grad<V, F>(xv, yv, e, pwv, has_pw),
                    go ? ld(go + i, F(0)) : gv);
      if (w) gr = V::mul(gr, wv);
      put_tail(grad + i, gr, left);
    }
  }
  return sum ? V::reduce_add(acc) : F(0);
}

// Row r of a floating operand of any dtype, as bytes.
static inline const void* operand_row(const cpu::RowSpace& space, const cpu::RowOperand& op,
                                       int64_t r) {
  return static_cast<const char*>(op.data) +
         cpu::row_offset(space, op, r) * int64_t(dtype_size(op.dtype));
}

template <class T, class F>
static F bce_row_block(const cpu::BceArgs& a, int64_t r, int64_t c0, int64_t n,
                       BceScratch<F>& s) {
  const cpu::RowSpace& sp = a.space;
  auto staged = [&](const cpu::RowOperand& op, F* buf) -> const F* {
    if (op.data == nullptr) return nullptr;
    return load_block_any(operand_row(sp, op, r), op.dtype, op.class_stride, c0, n, buf);
  };
  const T* x_row = static_cast<const T*>(a.input.data) + cpu::row_offset(sp, a.input, r);
  const F* x = load_block(x_row, a.input.class_stride, c0, n, s.x);
  const F* y = staged(a.target, s.y);
  const F* w = staged(a.weight, s.w);
  const F* pw = staged(a.pos_weight, s.pw);
  const F* go = staged(a.grad_output, s.go);
  F* loss_row = a.loss.data ? static_cast<F*>(a.loss.data) + cpu::row_offset(sp, a.loss, r)
                            : nullptr;
  T* grad_row = a.grad.data ? static_cast<T*>(a.grad.data) + cpu::row_offset(sp, a.grad, r)
                            : nullptr;
  F* loss = loss_row ? output_block(loss_row, a.loss.class_stride, c0, s.loss) : nullptr;
  F* grad = grad_row ? output_block(grad_row, a.grad.class_stride, c0, s.grad) : nullptr;
  const F sum = bce_block(x, y, w, pw, go, F(a.grad_scale), n, loss, a.unit_sums != nullptr,
                          grad);
  if (loss) commit_block(loss, loss_row, a.loss.class_stride, c0, n);
  if (grad) commit_block(grad, grad_row, a.grad.class_stride, c0, n);
  return sum;
}

template <class T, class F>
static void bce_typed(const cpu::BceArgs& a) {
  const cpu::RowSpace& sp = a.space;
  const int64_t units = cpu::bce_units(sp), rows_per_unit = cpu::bce_rows_per_unit(sp),
                blocks = cpu::bce_blocks_per_row(sp);
#pragma omp parallel num_threads(a.threads) if (a.threads > 1)
  {
    BceScratch<F> scratch;
#pragma omp for schedule(static)
    for (int64_t u = 0; u < units; ++u) {
      const int64_t r0 = u / blocks * rows_per_unit;
      const int64_t r1 = r0 + rows_per_unit < sp.rows ? r0 + rows_per_unit : sp.rows;
      const int64_t c0 = u % blocks * kBceBlock;
      const int64_t n = sp.classes - c0 < kBceBlock ? sp.classes - c0 : kBceBlock;
      F sum = F(0);
      for (int64_t r = r0; r < r1; ++r) sum += bce_row_block<T, F>(a, r, c0, n, scratch);
      if (a.unit_sums) a.unit_sums[u] = double(sum);
    }
  }
}

static void bce_kernel(const cpu::BceArgs& a) {
  switch (a.input.dtype) {
    case DType::kFloat16:
      return bce_typed<common::Half, float>(a);
    case DType::kBFloat16:
      return bce_typed<common::BFloat16, float>(a);
    case DType::kFloat32:
      return bce_typed<float, float>(a);
    default:
      return bce_typed<double, double>(a);
  }
}

// The vector log1p on its own (accuracy tests); x in [0, 1].
template <class F>
static void log1p_kernel(const F* x, F* out, int64_t n) {
  using V = Vec<F>;
  constexpr int L = V::kLanes;
  for (int64_t i = 0; i < n; i += L) {
    const int64_t left = n - i < L ? n - i : L;
    V::store_tail(out + i, V::log1p(V::load_tail(x + i, left, F(0))), left);
  }
}

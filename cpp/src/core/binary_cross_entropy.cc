// BinaryCrossEntropy: validation of every argument (shapes, broadcasting, dtypes, outputs) before
// anything is written, the merged elementwise layout, one kernel call per entry point, and the
// fixed-order sum of the kernel's per-unit loss sums.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/elementwise.h"
#include "core/reduce.h"
#include "core/threads.h"
#include "core/views.h"
#include "cpu/kernel_table.h"
#include "fastxent/binary_cross_entropy.h"
#include "fastxent/errors.h"

namespace fastxent {
namespace detail {

struct BinaryCrossEntropyPlan {
  TensorView input;
  TensorView target;
  std::optional<TensorView> weight;      // broadcast to the input's shape
  std::optional<TensorView> pos_weight;  // broadcast to the input's shape
  Reduction reduction = Reduction::kMean;
  std::vector<int64_t> shape;            // the input's
  int64_t numel = 0;
  std::vector<int64_t> loss_shape;
  DType loss_dtype = DType::kFloat32;
};

}  // namespace detail

namespace {

using core::shape_of;
using core::shape_str;
using Plan = detail::BinaryCrossEntropyPlan;

std::optional<TensorView> broadcast_weight(const std::optional<TensorView>& w,
                                           const std::vector<int64_t>& shape, const char* name) {
  if (!w) return std::nullopt;
  core::check_view(*w, name);
  core::check_cpu(*w, name);
  core::check_floating(*w, name);
  return core::broadcast_to(*w, shape, name);
}

std::unique_ptr<Plan> make_plan(const TensorView& input, const TensorView& target,
                                const BinaryCrossEntropyOptions& options) {
  auto p = std::make_unique<Plan>();
  p->numel = core::check_view(input, "input");
  core::check_cpu(input, "input");
  core::check_floating(input, "input");
  core::check_view(target, "target");
  core::check_cpu(target, "target");
  if (!is_floating(target.dtype)) {
    throw TypeError(std::string("target: expected floating targets (float16, bfloat16, float32, "
                                "float64) of the input's shape, got dtype ") +
                    dtype_name(target.dtype));
  }
  p->shape = shape_of(input);
  if (shape_of(target) != p->shape) {
    throw ValueError("target: expected the input's shape " + shape_str(p->shape) +
                     " (one target per logit), got " + shape_str(shape_of(target)));
  }
  p->input = input;
  p->target = target;
  p->weight = broadcast_weight(options.weight, p->shape, "weight");
  p->pos_weight = broadcast_weight(options.pos_weight, p->shape, "pos_weight");
  p->reduction = options.reduction;
  if (p->reduction == Reduction::kNone) p->loss_shape = p->shape;
  p->loss_dtype = input.dtype == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32;
  return p;
}

// Everything the kernel reads, for the aliasing checks of outputs.
void check_reads(const Plan& p, const TensorView& out, const char* name, bool may_be_input) {
  core::check_no_overlap(out, name, p.input, "input", may_be_input);
  core::check_no_overlap(out, name, p.target, "target", false);
  if (p.weight) core::check_no_overlap(out, name, *p.weight, "weight", false);
  if (p.pos_weight) core::check_no_overlap(out, name, *p.pos_weight, "pos_weight", false);
}

void check_loss_out(const Plan& p, const TensorView& loss_out) {
  core::check_output(loss_out, "loss out", p.loss_shape, p.loss_dtype, Device{});
  check_reads(p, loss_out, "loss out", false);
}

void check_grad_out(const Plan& p, const TensorView& grad_out, const TensorView& grad_output) {
  core::check_output(grad_out, "out", p.shape, p.input.dtype, Device{});
  check_reads(p, grad_out, "out", true);
  core::check_no_overlap(grad_out, "out", grad_output, "grad_output", false);
}

// The upstream gradient: an elementwise view (reduction "none" with an array of the loss's
// shape; returned) or a scalar with the mean normaliser folded in (*scalar).
std::optional<TensorView> upstream(const Plan& p, const TensorView& grad_output, double* scalar) {
  const int64_t numel = core::check_view(grad_output, "grad_output");
  core::check_cpu(grad_output, "grad_output");
  core::check_floating(grad_output, "grad_output");
  if (p.reduction == Reduction::kNone && grad_output.ndim > 0) {
    if (shape_of(grad_output) != p.loss_shape) {
      throw ValueError("grad_output: expected a scalar or the loss's shape " +
                       shape_str(p.loss_shape) + ", got " + shape_str(shape_of(grad_output)));
    }
    *scalar = 0;
    return grad_output;
  }
  if (numel != 1) {
    throw ValueError("grad_output: expected a scalar for reduction '" +
                     std::string(p.reduction == Reduction::kSum ? "sum" : "mean") +
                     "', got shape " + shape_str(shape_of(grad_output)));
  }
  const double g = core::load_floating(grad_output, 0);
  *scalar = p.reduction == Reduction::kMean ? g / double(p.numel) : g;
  return std::nullopt;
}

// One kernel call. loss_out / grad_out / go may be null (not wanted / scalar upstream gradient).
void run(const Plan& p, const TensorView* loss_out, const TensorView* go, double grad_scale,
         const TensorView* grad_out) {
  const core::RunningCall running;
  const bool elementwise_loss = loss_out && p.reduction == Reduction::kNone;
  const std::optional<TensorView>& w = p.weight;
  const std::optional<TensorView>& pw = p.pos_weight;
  const std::vector<const TensorView*> views = {
      &p.input, &p.target, w ? &*w : nullptr, pw ? &*pw : nullptr,
      elementwise_loss ? loss_out : nullptr, grad_out, go};
  cpu::BceArgs a;
  std::vector<cpu::RowOperand> ops;
  core::elementwise_layout(p.shape, views, &a.space, &ops);
  a.input = ops[0];
  a.target = ops[1];
  a.weight = ops[2];
  a.pos_weight = ops[3];
  a.loss = ops[4];
  a.grad = ops[5];
  a.grad_output = ops[6];
  a.grad_scale = grad_scale;
  a.threads = core::threads_for(p.numel);
  std::vector<double> unit_sums;
  if (loss_out && !elementwise_loss) {
    unit_sums.resize(size_t(cpu::bce_units(a.space)));
    a.unit_sums = unit_sums.data();
  }
  if (p.numel > 0) cpu::active_kernels().binary_cross_entropy(a);
  if (loss_out && !elementwise_loss) {
    double total = core::pairwise_sum(unit_sums.data(), int64_t(unit_sums.size()));
    if (p.reduction == Reduction::kMean) total /= double(p.numel);  // 0/0 = nan, as torch
    core::store_rows(&total, 1, *loss_out);
  }
}

}  // namespace

BinaryCrossEntropy::BinaryCrossEntropy(const TensorView& input, const TensorView& target,
                                       const BinaryCrossEntropyOptions& options)
    : plan_(make_plan(input, target, options)) {}
BinaryCrossEntropy::~BinaryCrossEntropy() = default;
BinaryCrossEntropy::BinaryCrossEntropy(BinaryCrossEntropy&&) noexcept = default;
BinaryCrossEntropy& BinaryCrossEntropy::operator=(BinaryCrossEntropy&&) noexcept = default;

std::vector<int64_t> BinaryCrossEntropy::loss_shape() const { return plan_->loss_shape; }
int64_t BinaryCrossEntropy::loss_numel() const {
  return plan_->reduction == Reduction::kNone ? plan_->numel : 1;
}
DType BinaryCrossEntropy::loss_dtype() const { return plan_->loss_dtype; }
std::vector<int64_t> BinaryCrossEntropy::grad_shape() const { return plan_->shape; }
DType BinaryCrossEntropy::grad_dtype() const { return plan_->input.dtype; }

void BinaryCrossEntropy::forward(const TensorView& loss_out) const {
  check_loss_out(*plan_, loss_out);
  run(*plan_, &loss_out, nullptr, 0.0, nullptr);
}

void BinaryCrossEntropy::backward(const TensorView& grad_output,
                                  const TensorView& grad_input_out) const {
  check_grad_out(*plan_, grad_input_out, grad_output);
  double scale = 0;
  const std::optional<TensorView> go = upstream(*plan_, grad_output, &scale);
  run(*plan_, nullptr, go ? &*go : nullptr, scale, &grad_input_out);
}

void BinaryCrossEntropy::forward_backward(const TensorView& grad_output,
                                          const TensorView& loss_out,
                                          const TensorView& grad_input_out) const {
  check_loss_out(*plan_, loss_out);
  check_grad_out(*plan_, grad_input_out, grad_output);
  core::check_no_overlap(loss_out, "loss out", grad_input_out, "out", false);
  core::check_no_overlap(loss_out, "loss out", grad_output, "grad_output", false);
  double scale = 0;
  const std::optional<TensorView> go = upstream(*plan_, grad_output, &scale);
  run(*plan_, &loss_out, go ? &*go : nullptr, scale, &grad_input_out);
}

}  // namespace fastxent

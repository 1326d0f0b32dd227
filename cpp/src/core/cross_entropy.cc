// CrossEntropy: validation of every argument, the row layout, the per-row target table and
// mean normaliser, then one kernel call per entry point. Kernels see only checked data.
#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/cross_entropy_plan.h"
#include "core/reduce.h"
#include "core/threads.h"
#include "core/views.h"
#include "cpu/kernel_table.h"
#include "fastxent/fastxent.h"

namespace fastxent {

namespace {

using core::shape_of;
using core::shape_str;

DType compute_dtype(DType input) {
  return input == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32;
}

void check_options(const CrossEntropyOptions& o, bool prob_target) {
  if (!(o.label_smoothing >= 0.0 && o.label_smoothing <= 1.0)) {
    throw ValueError("label_smoothing must be in [0, 1], got " + std::to_string(o.label_smoothing));
  }
  if (prob_target && o.ignore_index >= 0) {
    throw ValueError("ignore_index=" + std::to_string(o.ignore_index) +
                     " is not supported with probability targets (as in torch); leave it "
                     "negative");
  }
}

void load_weights(detail::CrossEntropyPlan& p) {
  if (!p.weight) {
    p.weight_sum = double(p.space.classes);
    return;
  }
  const TensorView& w = *p.weight;
  core::check_view(w, "weight");
  core::check_device(w, "weight", p.device);
  core::check_floating(w, "weight");
  if (w.ndim != 1 || w.shape[0] != p.space.classes) {
    throw ValueError("weight: expected shape (" + std::to_string(p.space.classes) +
                     ",) (one weight per class), got " + shape_str(shape_of(w)));
  }
  if (core::on_cuda(w)) return;  // read on the device, by every call's first kernel
  const int64_t classes = p.space.classes;
  p.weight_f64.resize(size_t(classes));
  p.weight_f32.resize(size_t(classes));
  for (int64_t c = 0; c < classes; ++c) {
    p.weight_f64[size_t(c)] = core::load_floating(w, c);
    p.weight_f32[size_t(c)] = float(p.weight_f64[size_t(c)]);
  }
  p.weight_sum = core::pairwise_sum(p.weight_f64.data(), classes);
}

// Reads every class-index target once: range check (first bad one in C order is reported), the
// per-row class table the kernels use, and the mean normaliser Σ w_t — all before any output
// is touched.
void load_targets(detail::CrossEntropyPlan& p) {
  const TensorView& t = p.target;
  const int64_t rows = p.space.rows, classes = p.space.classes;
  p.target_index.resize(size_t(rows));
  std::vector<double> row_weight(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    bool exact = true;
    const int64_t value = core::load_integer(t, r, &exact);
    if (exact && value == p.options.ignore_index) {
      p.target_index[size_t(r)] = cpu::kIgnoredRow;
      row_weight[size_t(r)] = 0;
      continue;
    }
    if (!exact || value < 0 || value >= classes) {
      throw IndexError("target" + core::position_str(t, r) + " = " + core::integer_str(t, r) +
                       " is out of range: expected 0 <= target < " + std::to_string(classes) +
                       " (the number of classes) or ignore_index=" +
                       std::to_string(p.options.ignore_index));
    }
    p.target_index[size_t(r)] = value;
    row_weight[size_t(r)] = p.weight ? p.weight_f64[size_t(value)] : 1.0;
  }
  p.mean_denominator = core::pairwise_sum(row_weight.data(), rows);
}

std::unique_ptr<detail::CrossEntropyPlan> make_plan(const TensorView& input,
                                                    const TensorView& target,
                                                    const CrossEntropyOptions& options) {
  auto p = std::make_unique<detail::CrossEntropyPlan>();
  p->input = input;
  p->target = target;
  p->weight = options.weight;
  p->options = options;
  core::check_view(input, "input");
  core::check_floating(input, "input");
  if (input.ndim == 0) throw ValueError("input: expected at least 1 dimension (the classes), got a 0-d array");
  p->device = input.device;
  core::check_view(target, "target");
  core::check_device(target, "target", p->device);
  p->axis = core::normalize_axis(options.axis.value_or(input.ndim >= 2 ? 1 : 0), input.ndim, "axis");
  p->space = core::row_space(input, p->axis);
  if (p->space.classes == 0) throw ValueError("input: the class axis has size 0");

  std::vector<int64_t> row_shape;  // the input's shape without the class axis
  for (int d = 0; d < input.ndim; ++d) {
    if (d != p->axis) row_shape.push_back(input.shape[d]);
  }
  if (is_floating(target.dtype)) {
    if (shape_of(target) != shape_of(input)) {
      throw ValueError("target: a floating target holds class probabilities and must have the "
                       "input's shape " + shape_str(shape_of(input)) + ", got " +
                       shape_str(shape_of(target)) + "; class indices need an integer dtype");
    }
    p->prob_target = true;
  } else if (is_integer(target.dtype)) {
    if (shape_of(target) != row_shape) {
      throw ValueError("target: expected shape " + shape_str(row_shape) +
                       " (the input's shape without class axis " + std::to_string(p->axis) +
                       "), got " + shape_str(shape_of(target)));
    }
  } else {
    throw TypeError(std::string("target: expected integer class indices or floating class "
                                "probabilities, got dtype ") + dtype_name(target.dtype));
  }
  check_options(options, p->prob_target);
  load_weights(*p);
  if (p->prob_target) {
    p->mean_denominator = double(p->space.rows);
  } else if (core::on_cuda(input)) {
    core::check_targets_cuda(*p);
  } else {
    load_targets(*p);
  }
  if (options.reduction == Reduction::kNone) p->loss_shape = row_shape;
  p->row_shape = row_shape;
  p->loss_dtype = compute_dtype(input.dtype);
  return p;
}

}  // namespace

CrossEntropy::CrossEntropy(const TensorView& input, const TensorView& target,
                           const CrossEntropyOptions& options)
    : plan_(make_plan(input, target, options)) {}
CrossEntropy::~CrossEntropy() = default;
CrossEntropy::CrossEntropy(CrossEntropy&&) noexcept = default;
CrossEntropy& CrossEntropy::operator=(CrossEntropy&&) noexcept = default;

std::vector<int64_t> CrossEntropy::loss_shape() const { return plan_->loss_shape; }
int64_t CrossEntropy::loss_numel() const {
  return plan_->options.reduction == Reduction::kNone ? plan_->space.rows : 1;
}
DType CrossEntropy::loss_dtype() const { return plan_->loss_dtype; }
std::vector<int64_t> CrossEntropy::lse_shape() const { return plan_->row_shape; }
std::vector<int64_t> CrossEntropy::grad_shape() const { return shape_of(plan_->input); }
DType CrossEntropy::grad_dtype() const { return plan_->input.dtype; }
int64_t CrossEntropy::num_classes() const { return plan_->space.classes; }
int64_t CrossEntropy::num_rows() const { return plan_->space.rows; }

namespace {

// Output checks common to every entry point: shape, dtype, writability, no aliasing of inputs
// (the gradient alone may be the input itself: in place).
void check_loss_out(const detail::CrossEntropyPlan& p, const TensorView& loss_out) {
  core::check_output(loss_out, "loss out", p.loss_shape, p.loss_dtype, p.device);
  core::check_no_overlap(loss_out, "loss out", p.input, "input", false);
  core::check_no_overlap(loss_out, "loss out", p.target, "target", false);
}

void check_grad_out(const detail::CrossEntropyPlan& p, const TensorView& grad_out,
                    const TensorView& grad_output) {
  core::check_output(grad_out, "out", shape_of(p.input), p.input.dtype, p.device);
  core::check_no_overlap(grad_out, "out", p.input, "input", true);
  core::check_no_overlap(grad_out, "out", p.target, "target", false);
  if (p.weight) core::check_no_overlap(grad_out, "out", *p.weight, "weight", false);
  core::check_no_overlap(grad_out, "out", grad_output, "grad_output", false);
}

}  // namespace

bool core::check_grad_output(const detail::CrossEntropyPlan& p, const TensorView& grad_output) {
  core::check_view(grad_output, "grad_output");
  core::check_floating(grad_output, "grad_output");
  int64_t numel = 1;
  for (int d = 0; d < grad_output.ndim; ++d) numel *= grad_output.shape[d];
  // One value may come from the host whatever the device (a Python float, a NumPy scalar).
  if (!(numel == 1 && !core::on_cuda(grad_output))) {
    core::check_device(grad_output, "grad_output", p.device);
  }
  const bool per_row = p.options.reduction == Reduction::kNone && grad_output.ndim > 0;
  if (!per_row) {
    if (numel != 1) {
      throw ValueError("grad_output: expected a scalar for reduction '" +
                       std::string(p.options.reduction == Reduction::kSum ? "sum" : "mean") +
                       "', got shape " + shape_str(shape_of(grad_output)));
    }
    return false;
  }
  if (shape_of(grad_output) != p.loss_shape) {
    throw ValueError("grad_output: expected a scalar or the loss's shape " +
                     shape_str(p.loss_shape) + ", got " + shape_str(shape_of(grad_output)));
  }
  return true;
}

namespace {

// The upstream gradient per row, with the mean normaliser folded in. Returns the per-row table
// (empty when one scalar serves every row, then stored in *scalar).
std::vector<double> row_grad_scales(const detail::CrossEntropyPlan& p,
                                    const TensorView& grad_output, double* scalar) {
  const double norm = p.options.reduction == Reduction::kMean ? 1.0 / p.mean_denominator : 1.0;
  if (!core::check_grad_output(p, grad_output)) {
    *scalar = core::load_floating(grad_output, 0) * norm;
    return {};
  }
  std::vector<double> scales(static_cast<size_t>(p.space.rows));
  for (int64_t r = 0; r < p.space.rows; ++r) scales[size_t(r)] = core::load_floating(grad_output, r);
  *scalar = 0;
  return scales;
}

cpu::CrossEntropyArgs kernel_args(const detail::CrossEntropyPlan& p) {
  cpu::CrossEntropyArgs a;
  a.space = p.space;
  a.input = core::row_operand(p.input, p.axis);
  a.threads = core::threads_for(p.space.rows * p.space.classes);
  if (p.prob_target) {
    a.target_prob = core::row_operand(p.target, p.axis);
  } else {
    a.target_index = p.target_index.data();
  }
  if (p.weight) {
    a.weight_f32 = p.weight_f32.data();
    a.weight_f64 = p.weight_f64.data();
  }
  a.weight_sum = p.weight_sum;
  a.label_smoothing = p.options.label_smoothing;
  return a;
}

// Per-row losses → the loss output: scattered for "none", summed in a fixed order otherwise.
void write_loss(const detail::CrossEntropyPlan& p, const std::vector<double>& row_loss,
                const TensorView& loss_out) {
  if (p.options.reduction == Reduction::kNone) {
    core::store_rows(row_loss.data(), p.space.rows, loss_out);
    return;
  }
  double total = core::pairwise_sum(row_loss.data(), p.space.rows);
  if (p.options.reduction == Reduction::kMean) total /= p.mean_denominator;
  core::store_rows(&total, 1, loss_out);
}

}  // namespace

void CrossEntropy::forward(const TensorView& loss_out) const {
  const detail::CrossEntropyPlan& p = *plan_;
  check_loss_out(p, loss_out);
  if (core::on_cuda(p.input)) {
    core::CudaCall call;
    call.loss = &loss_out;
    return core::run_cuda(p, call);
  }
  const core::RunningCall running;
  std::vector<double> row_loss(static_cast<size_t>(p.space.rows));
  cpu::CrossEntropyArgs a = kernel_args(p);
  a.row_loss = row_loss.data();
  cpu::active_kernels().cross_entropy(a);
  write_loss(p, row_loss, loss_out);
}

void CrossEntropy::forward(const TensorView& loss_out, const TensorView& lse_out) const {
  const detail::CrossEntropyPlan& p = *plan_;
  check_loss_out(p, loss_out);
  core::check_output(lse_out, "lse out", p.row_shape, DType::kFloat64, p.device);
  core::check_no_overlap(lse_out, "lse out", p.input, "input", false);
  core::check_no_overlap(lse_out, "lse out", loss_out, "loss out", false);
  if (core::on_cuda(p.input)) {
    core::CudaCall call;
    call.loss = &loss_out;
    call.lse = &lse_out;
    return core::run_cuda(p, call);
  }
  const core::RunningCall running;
  std::vector<double> row_loss(static_cast<size_t>(p.space.rows));
  std::vector<double> row_lse(static_cast<size_t>(p.space.rows));
  cpu::CrossEntropyArgs a = kernel_args(p);
  a.row_loss = row_loss.data();
  a.row_lse = row_lse.data();
  cpu::active_kernels().cross_entropy(a);
  write_loss(p, row_loss, loss_out);
  core::store_rows(row_lse.data(), p.space.rows, lse_out);
}

void CrossEntropy::backward_from_lse(const TensorView& grad_output, const TensorView& lse,
                                     const TensorView& grad_input_out) const {
  const detail::CrossEntropyPlan& p = *plan_;
  check_grad_out(p, grad_input_out, grad_output);
  core::check_view(lse, "lse");
  core::check_device(lse, "lse", p.device);
  core::check_floating(lse, "lse");
  if (core::shape_of(lse) != p.row_shape) {
    throw ValueError("lse: expected shape " + core::shape_str(p.row_shape) +
                     " (one log-sum-exp per row), got " + core::shape_str(core::shape_of(lse)));
  }
  core::check_no_overlap(grad_input_out, "out", lse, "lse", false);
  if (core::on_cuda(p.input)) {
    core::CudaCall call;
    call.grad = &grad_input_out;
    call.grad_output = &grad_output;
    call.saved_lse = &lse;
    return core::run_cuda(p, call);
  }
  const core::RunningCall running;
  cpu::CrossEntropyArgs a = kernel_args(p);
  const std::vector<double> scales = row_grad_scales(p, grad_output, &a.grad_scale);
  if (!scales.empty()) a.row_grad_scale = scales.data();
  std::vector<double> saved(static_cast<size_t>(p.space.rows));
  for (int64_t r = 0; r < p.space.rows; ++r) saved[size_t(r)] = core::load_floating(lse, r);
  a.saved_lse = saved.data();
  a.grad = core::row_operand(grad_input_out, p.axis);
  cpu::active_kernels().cross_entropy(a);
}

void CrossEntropy::backward(const TensorView& grad_output, const TensorView& grad_input_out) const {
  const detail::CrossEntropyPlan& p = *plan_;
  check_grad_out(p, grad_input_out, grad_output);
  if (core::on_cuda(p.input)) {
    core::CudaCall call;
    call.grad = &grad_input_out;
    call.grad_output = &grad_output;
    return core::run_cuda(p, call);
  }
  const core::RunningCall running;
  cpu::CrossEntropyArgs a = kernel_args(p);
  const std::vector<double> scales = row_grad_scales(p, grad_output, &a.grad_scale);
  if (!scales.empty()) a.row_grad_scale = scales.data();
  a.grad = core::row_operand(grad_input_out, p.axis);
  cpu::active_kernels().cross_entropy(a);
}

void CrossEntropy::forward_backward(const TensorView& grad_output, const TensorView& loss_out,
                                    const TensorView& grad_input_out) const {
  const detail::CrossEntropyPlan& p = *plan_;
  check_loss_out(p, loss_out);
  check_grad_out(p, grad_input_out, grad_output);
  core::check_no_overlap(loss_out, "loss out", grad_input_out, "out", false);
  if (core::on_cuda(p.input)) {
    core::CudaCall call;
    call.loss = &loss_out;
    call.grad = &grad_input_out;
    call.grad_output = &grad_output;
    return core::run_cuda(p, call);
  }
  const core::RunningCall running;
  cpu::CrossEntropyArgs a = kernel_args(p);
  const std::vector<double> scales = row_grad_scales(p, grad_output, &a.grad_scale);
  if (!scales.empty()) a.row_grad_scale = scales.data();
  std::vector<double> row_loss(static_cast<size_t>(p.space.rows));
  a.row_loss = row_loss.data();
  a.grad = core::row_operand(grad_input_out, p.axis);
  cpu::active_kernels().cross_entropy(a);
  write_loss(p, row_loss, loss_out);
}

}  // namespace fastxent

// CrossEntropy: validation of every argument, the row layout, the per-row target table and
// mean normaliser, then one kernel call per entry point. Kernels see only checked data.
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/row_math.h"
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
  if (!(std::isfinite(o.z_loss) && o.z_loss >= 0.0)) {
    throw ValueError("z_loss must be a finite number >= 0 (0 turns it off), got " +
                     std::to_string(o.z_loss));
  }
  if (!(std::isfinite(o.softcap) && o.softcap >= 0.0)) {
    throw ValueError("softcap must be a finite number > 0 (0 turns it off), got " +
                     std::to_string(o.softcap));
  }
  if (o.vocab_size < 0 || (o.vocab_size == 0 && o.vocab_start != 0)) {
    throw ValueError("vocab_size must be > 0 with vocab_start=" + std::to_string(o.vocab_start) +
                     " (0 leaves the vocabulary unsharded), got " + std::to_string(o.vocab_size));
  }
  if (prob_target && o.ignore_index >= 0) {
    throw ValueError("ignore_index=" + std::to_string(o.ignore_index) +
                     " is not supported with probability targets (as in torch); leave it "
                     "negative");
  }
}

// This input's classes within the vocabulary (all of it unless the options shard it).
void locate_in_vocabulary(detail::CrossEntropyPlan& p) {
  const CrossEntropyOptions& o = p.options;
  p.vocab_start = o.vocab_start;
  p.vocab_size = o.vocab_size > 0 ? o.vocab_size : p.space.classes;
  if (o.vocab_start < 0 || o.vocab_start > p.vocab_size - p.space.classes) {
    throw ValueError("vocab_start: the input's " + std::to_string(p.space.classes) +
                     " classes starting at vocab_start=" + std::to_string(o.vocab_start) +
                     " do not fit in vocab_size=" + std::to_string(p.vocab_size));
  }
}

void load_weights(detail::CrossEntropyPlan& p) {
  if (!p.weight) {
    p.weight_sum = double(p.vocab_size);
    return;
  }
  const TensorView& w = *p.weight;
  core::check_view(w, "weight");
  core::check_device(w, "weight", p.device);
  core::check_floating(w, "weight");
  if (w.ndim != 1 || w.shape[0] != p.vocab_size) {
    throw ValueError("weight: expected shape (" + std::to_string(p.vocab_size) +
                     ",) (one weight per class of the vocabulary), got " + shape_str(shape_of(w)));
  }
  if (core::on_cuda(w)) return;  // read on the device, by every call's first kernel
  std::vector<double> all(static_cast<size_t>(p.vocab_size));
  for (int64_t c = 0; c < p.vocab_size; ++c) all[size_t(c)] = core::load_floating(w, c);
  p.weight_sum = core::pairwise_sum(all.data(), p.vocab_size);
  p.weight_f64.assign(all.begin() + p.vocab_start, all.begin() + p.vocab_start + p.space.classes);
  p.weight_f32.assign(p.weight_f64.begin(), p.weight_f64.end());  // rounded once, per class
  if (p.vocab_size != p.space.classes) p.full_weight = std::move(all);
}

// Reads every class-index target once: range check (first bad one in C order is reported), the
// per-row class table the kernels use, and the mean normaliser Σ w_t — all before any output
// is touched.
void load_targets(detail::CrossEntropyPlan& p) {
  const TensorView& t = p.target;
  const int64_t rows = p.space.rows, classes = p.space.classes;
  const std::vector<double>& weight = p.full_weight.empty() ? p.weight_f64 : p.full_weight;
  p.target_index.resize(size_t(rows));
  p.target_weight.resize(size_t(rows));
  for (int64_t r = 0; r < rows; ++r) {
    bool exact = true;
    const int64_t value = core::load_integer(t, r, &exact);
    if (exact && value == p.options.ignore_index) {
      p.target_index[size_t(r)] = cpu::kIgnoredRow;
      p.target_weight[size_t(r)] = 0;
      continue;
    }
    if (!exact || value < 0 || value >= p.vocab_size) {
      throw IndexError("target" + core::position_str(t, r) + " = " + core::integer_str(t, r) +
                       " is out of range: expected 0 <= target < " + std::to_string(p.vocab_size) +
                       " (the number of classes) or ignore_index=" +
                       std::to_string(p.options.ignore_index));
    }
    const int64_t local = value - p.vocab_start;
    p.target_index[size_t(r)] = local >= 0 && local < classes ? local : cpu::kTargetInOtherShard;
    p.target_weight[size_t(r)] = p.weight ? weight[size_t(value)] : 1.0;
  }
  p.mean_denominator = core::pairwise_sum(p.target_weight.data(), rows);
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
  locate_in_vocabulary(*p);
  if (core::on_cuda(input) && p->vocab_size != p->space.classes) {
    throw TypeError("vocab_size: vocabulary-sharded inputs run on the CPU only so far, got a "
                    "CUDA input");
  }
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

void core::check_row_values(const detail::CrossEntropyPlan& p, const TensorView& v,
                            const char* name) {
  core::check_view(v, name);
  core::check_device(v, name, p.device);
  core::check_floating(v, name);
  if (core::shape_of(v) != p.row_shape) {
    throw ValueError(std::string(name) + ": expected shape " + core::shape_str(p.row_shape) +
                     " (one value per row), got " + core::shape_str(core::shape_of(v)));
  }
}

namespace {

// The entry points the CUDA kernels do not serve yet.
void require_cpu(const detail::CrossEntropyPlan& p, const char* entry) {
  if (core::on_cuda(p.input)) {
    throw TypeError(std::string(entry) + " runs on the CPU only so far, got a CUDA input");
  }
}

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
    a.target_weight = p.target_weight.data();
  }
  if (p.weight) {
    a.weight_f32 = p.weight_f32.data();
    a.weight_f64 = p.weight_f64.data();
  }
  a.weight_sum = p.weight_sum;
  a.vocab_size = double(p.vocab_size);
  a.label_smoothing = p.options.label_smoothing;
  a.z_loss = p.options.z_loss;
  a.softcap = p.options.softcap;
  return a;
}

// The entry points that compute a row's statistics themselves need all of its classes.
void require_whole_vocabulary(const detail::CrossEntropyPlan& p, const char* entry) {
  if (p.vocab_size != p.space.classes) {
    throw ValueError(std::string(entry) + " needs the whole vocabulary, but the input holds " +
                     std::to_string(p.space.classes) + " of vocab_size=" +
                     std::to_string(p.vocab_size) + " classes: use shard_statistics, "
                     "loss_from_shard_statistics and shard_backward");
  }
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
  require_whole_vocabulary(p, "forward");
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

namespace {

// The per-row log-sum-exp output: float64 (what a backward_from_lse needs to keep every digit)
// or the loss's dtype (return_lse: float32 for 16-bit logits).
void check_lse_out(const detail::CrossEntropyPlan& p, const TensorView& lse_out,
                   const TensorView& loss_out) {
  const DType dtype = lse_out.dtype == DType::kFloat64 ? DType::kFloat64 : p.loss_dtype;
  core::check_output(lse_out, "lse out", p.row_shape, dtype, p.device);
  core::check_no_overlap(lse_out, "lse out", p.input, "input", false);
  core::check_no_overlap(lse_out, "lse out", p.target, "target", false);
  core::check_no_overlap(lse_out, "lse out", loss_out, "loss out", false);
}

// One floating value per row (shape: the input without its class axis), read into float64.
std::vector<double> load_row_values(const detail::CrossEntropyPlan& p, const TensorView& v,
                                    const char* name) {
  core::check_row_values(p, v, name);
  std::vector<double> values(static_cast<size_t>(p.space.rows));
  for (int64_t r = 0; r < p.space.rows; ++r) values[size_t(r)] = core::load_floating(v, r);
  return values;
}

}  // namespace

void CrossEntropy::forward(const TensorView& loss_out, const TensorView& lse_out) const {
  const detail::CrossEntropyPlan& p = *plan_;
  require_whole_vocabulary(p, "forward");
  check_loss_out(p, loss_out);
  check_lse_out(p, lse_out, loss_out);
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

void CrossEntropy::forward_statistics(const TensorView& loss_out, const TensorView& lse_out,
                                      const TensorView& argmax_out,
                                      const TensorView& entropy_out) const {
  const detail::CrossEntropyPlan& p = *plan_;
  require_whole_vocabulary(p, "forward_statistics");
  require_cpu(p, "forward_statistics (argmax, entropy)");
  check_loss_out(p, loss_out);
  check_lse_out(p, lse_out, loss_out);
  core::check_output(argmax_out, "argmax out", p.row_shape, DType::kInt64, p.device);
  core::check_output(entropy_out, "entropy out", p.row_shape, p.loss_dtype, p.device);
  for (const TensorView* out : {&argmax_out, &entropy_out}) {
    const char* name = out == &argmax_out ? "argmax out" : "entropy out";
    core::check_no_overlap(*out, name, p.input, "input", false);
    core::check_no_overlap(*out, name, p.target, "target", false);
    core::check_no_overlap(*out, name, loss_out, "loss out", false);
    core::check_no_overlap(*out, name, lse_out, "lse out", false);
  }
  core::check_no_overlap(argmax_out, "argmax out", entropy_out, "entropy out", false);
  const core::RunningCall running;
  const size_t rows = static_cast<size_t>(p.space.rows);
  std::vector<double> row_loss(rows), row_lse(rows), row_entropy(rows);
  std::vector<int64_t> row_argmax(rows);
  cpu::CrossEntropyArgs a = kernel_args(p);
  a.row_loss = row_loss.data();
  a.row_lse = row_lse.data();
  a.row_argmax = row_argmax.data();
  a.row_entropy = row_entropy.data();
  cpu::active_kernels().cross_entropy(a);
  write_loss(p, row_loss, loss_out);
  core::store_rows(row_lse.data(), p.space.rows, lse_out);
  core::store_rows(row_entropy.data(), p.space.rows, entropy_out);
  for (int64_t r = 0; r < p.space.rows; ++r) {
    std::memcpy(static_cast<char*>(argmax_out.data) + core::element_offset(argmax_out, r),
                &row_argmax[size_t(r)], sizeof(int64_t));
  }
}

void CrossEntropy::backward_from_lse(const TensorView& grad_output, const TensorView& lse,
                                     const TensorView& grad_input_out,
                                     const TensorView* lse_grad_output) const {
  const detail::CrossEntropyPlan& p = *plan_;
  require_whole_vocabulary(p, "backward_from_lse");
  check_grad_out(p, grad_input_out, grad_output);
  core::check_no_overlap(grad_input_out, "out", lse, "lse", false);
  if (core::on_cuda(p.input)) {
    core::check_row_values(p, lse, "lse");
    core::CudaCall call;
    call.grad = &grad_input_out;
    call.grad_output = &grad_output;
    call.saved_lse = &lse;
    if (lse_grad_output) {
      core::check_no_overlap(grad_input_out, "out", *lse_grad_output, "lse_grad_output", false);
      core::check_row_values(p, *lse_grad_output, "lse_grad_output");
      call.lse_grad_output = lse_grad_output;
    }
    return core::run_cuda(p, call);
  }
  const std::vector<double> saved = load_row_values(p, lse, "lse");
  std::vector<double> lse_grads;
  if (lse_grad_output) {
    core::check_no_overlap(grad_input_out, "out", *lse_grad_output, "lse_grad_output", false);
    lse_grads = load_row_values(p, *lse_grad_output, "lse_grad_output");
  }
  const core::RunningCall running;
  cpu::CrossEntropyArgs a = kernel_args(p);
  const std::vector<double> scales = row_grad_scales(p, grad_output, &a.grad_scale);
  if (!scales.empty()) a.row_grad_scale = scales.data();
  a.saved_lse = saved.data();
  if (lse_grad_output) a.row_lse_grad = lse_grads.data();
  a.grad = core::row_operand(grad_input_out, p.axis);
  cpu::active_kernels().cross_entropy(a);
}

void CrossEntropy::backward(const TensorView& grad_output, const TensorView& grad_input_out) const {
  const detail::CrossEntropyPlan& p = *plan_;
  require_whole_vocabulary(p, "backward");
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
                                    const TensorView& grad_input_out,
                                    const TensorView* lse_out) const {
  const detail::CrossEntropyPlan& p = *plan_;
  require_whole_vocabulary(p, "forward_backward");
  check_loss_out(p, loss_out);
  check_grad_out(p, grad_input_out, grad_output);
  core::check_no_overlap(loss_out, "loss out", grad_input_out, "out", false);
  if (lse_out) {
    check_lse_out(p, *lse_out, loss_out);
    core::check_no_overlap(*lse_out, "lse out", grad_input_out, "out", false);
  }
  if (core::on_cuda(p.input)) {
    core::CudaCall call;
    call.loss = &loss_out;
    call.lse = lse_out;
    call.grad = &grad_input_out;
    call.grad_output = &grad_output;
    return core::run_cuda(p, call);
  }
  const core::RunningCall running;
  cpu::CrossEntropyArgs a = kernel_args(p);
  const std::vector<double> scales = row_grad_scales(p, grad_output, &a.grad_scale);
  if (!scales.empty()) a.row_grad_scale = scales.data();
  std::vector<double> row_loss(static_cast<size_t>(p.space.rows));
  std::vector<double> row_lse(lse_out ? static_cast<size_t>(p.space.rows) : 0);
  a.row_loss = row_loss.data();
  if (lse_out) a.row_lse = row_lse.data();
  a.grad = core::row_operand(grad_input_out, p.axis);
  cpu::active_kernels().cross_entropy(a);
  write_loss(p, row_loss, loss_out);
  if (lse_out) core::store_rows(row_lse.data(), p.space.rows, *lse_out);
}

std::vector<int64_t> CrossEntropy::shard_stats_shape() const {
  std::vector<int64_t> shape = plan_->row_shape;
  shape.push_back(kShardStatsWidth);
  return shape;
}

void CrossEntropy::shard_statistics(const TensorView& stats_out) const {
  static_assert(kShardStatsWidth == cpu::kShardStatsWidth, "one layout of shard statistics");
  const detail::CrossEntropyPlan& p = *plan_;
  require_cpu(p, "shard_statistics");
  core::check_output(stats_out, "stats out", shard_stats_shape(), DType::kFloat64, p.device);
  core::check_no_overlap(stats_out, "stats out", p.input, "input", false);
  core::check_no_overlap(stats_out, "stats out", p.target, "target", false);
  const core::RunningCall running;
  std::vector<double> stats(static_cast<size_t>(p.space.rows * kShardStatsWidth));
  cpu::CrossEntropyArgs a = kernel_args(p);
  a.row_shard_stats = stats.data();
  cpu::active_kernels().cross_entropy(a);
  core::store_rows(stats.data(), p.space.rows * kShardStatsWidth, stats_out);
}

namespace {

// Every shard's statistics of each row merged in shard order (so every shard computes the same
// bits), with the target's logit (the sum of the shards' entries: only its shard's is not 0).
struct MergedRows {
  std::vector<common::RowStats<double>> stats;
  std::vector<double> target_logit;
};

MergedRows merge_shards(const detail::CrossEntropyPlan& p, const TensorView& all_stats,
                        const std::vector<int64_t>& stats_shape) {
  core::check_view(all_stats, "all_stats");
  core::check_floating(all_stats, "all_stats");
  const std::vector<int64_t> got = shape_of(all_stats);
  if (got.size() != stats_shape.size() + 1 || got[0] < 1 ||
      !std::equal(stats_shape.begin(), stats_shape.end(), got.begin() + 1)) {
    throw ValueError("all_stats: expected shape (shards,) + " + shape_str(stats_shape) +
                     ": every shard's shard_statistics stacked along a new first axis, got " +
                     shape_str(got));
  }
  const int64_t shards = got[0], rows = p.space.rows, width = cpu::kShardStatsWidth;
  MergedRows m;
  m.stats.resize(size_t(rows));
  m.target_logit.assign(size_t(rows), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t s = 0; s < shards; ++s) {
      const int64_t base = (s * rows + r) * width;
      common::RowStats<double> part{};
      part.max = core::load_floating(all_stats, base + cpu::kShardMax);
      part.sumexp = core::load_floating(all_stats, base + cpu::kShardSumExp);
      part.lin = core::load_floating(all_stats, base + cpu::kShardLin);
      part.vsum = core::load_floating(all_stats, base + cpu::kShardVSum);
      m.stats[size_t(r)] = s == 0 ? part : common::merge(m.stats[size_t(r)], part);
      m.target_logit[size_t(r)] += core::load_floating(all_stats, base + cpu::kShardTargetLogit);
    }
  }
  return m;
}

}  // namespace

void CrossEntropy::loss_from_shard_statistics(const TensorView& all_stats,
                                              const TensorView& loss_out,
                                              const TensorView& lse_out) const {
  const detail::CrossEntropyPlan& p = *plan_;
  require_cpu(p, "loss_from_shard_statistics");
  const MergedRows m = merge_shards(p, all_stats, shard_stats_shape());
  check_loss_out(p, loss_out);
  check_lse_out(p, lse_out, loss_out);
  const double eps = p.options.label_smoothing, z = p.options.z_loss;
  const int64_t rows = p.space.rows;
  std::vector<double> row_loss(static_cast<size_t>(rows)), row_lse(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const common::RowStats<double>& st = m.stats[size_t(r)];
    const double log_s = std::log(st.sumexp);
    const double lse = common::logsumexp(st, log_s);
    row_lse[size_t(r)] = lse;
    if (p.prob_target) {
      row_loss[size_t(r)] = common::prob_loss(st, log_s) + common::z_loss_value(z, lse);
    } else if (p.target_index[size_t(r)] == cpu::kIgnoredRow) {
      row_loss[size_t(r)] = 0;
    } else {
      row_loss[size_t(r)] =
          common::index_loss(st, log_s, m.target_logit[size_t(r)], p.target_weight[size_t(r)],
                             eps, double(p.vocab_size)) + common::z_loss_value(z, lse);
    }
  }
  write_loss(p, row_loss, loss_out);
  core::store_rows(row_lse.data(), rows, lse_out);
}

void CrossEntropy::shard_backward(const TensorView& grad_output, const TensorView& all_stats,
                                  const TensorView& grad_input_out,
                                  const TensorView* lse_grad_output) const {
  const detail::CrossEntropyPlan& p = *plan_;
  require_cpu(p, "shard_backward");
  const MergedRows m = merge_shards(p, all_stats, shard_stats_shape());
  check_grad_out(p, grad_input_out, grad_output);
  core::check_no_overlap(grad_input_out, "out", all_stats, "all_stats", false);
  std::vector<double> lse_grads;
  if (lse_grad_output) {
    core::check_no_overlap(grad_input_out, "out", *lse_grad_output, "lse_grad_output", false);
    lse_grads = load_row_values(p, *lse_grad_output, "lse_grad_output");
  }
  const int64_t rows = p.space.rows;
  std::vector<double> lse(static_cast<size_t>(rows)), target_mass(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const common::RowStats<double>& st = m.stats[size_t(r)];
    lse[size_t(r)] = common::logsumexp(st, std::log(st.sumexp));
    target_mass[size_t(r)] = st.vsum;
  }
  const core::RunningCall running;
  cpu::CrossEntropyArgs a = kernel_args(p);
  const std::vector<double> scales = row_grad_scales(p, grad_output, &a.grad_scale);
  if (!scales.empty()) a.row_grad_scale = scales.data();
  a.saved_lse = lse.data();
  if (p.prob_target) a.row_target_mass = target_mass.data();
  if (lse_grad_output) a.row_lse_grad = lse_grads.data();
  a.grad = core::row_operand(grad_input_out, p.axis);
  cpu::active_kernels().cross_entropy(a);
}

}  // namespace fastxent

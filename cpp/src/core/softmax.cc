// Softmax: logsumexp / log_softmax / softmax over one axis, through the same row engine.
#include <memory>
#include <vector>

#include "core/reduce.h"
#include "core/threads.h"
#include "core/views.h"
#include "cpu/kernel_table.h"
#include "cuda/api.h"
#include "fastxent/fastxent.h"

namespace fastxent {
namespace detail {

struct SoftmaxPlan {
  TensorView input;
  int axis = 0;
  common::RowSpace space;
  std::vector<int64_t> reduced_shape;
  void* cuda_stream = nullptr;
};

}  // namespace detail

Softmax::Softmax(const TensorView& input, int axis, void* cuda_stream)
    : plan_(std::make_unique<detail::SoftmaxPlan>()) {
  core::check_view(input, "input");
  core::check_floating(input, "input");
  if (input.ndim == 0) throw ValueError("input: expected at least 1 dimension, got a 0-d array");
  plan_->input = input;
  plan_->cuda_stream = cuda_stream;
  plan_->axis = core::normalize_axis(axis, input.ndim, "axis");
  plan_->space = core::row_space(input, plan_->axis);
  if (plan_->space.classes == 0) throw ValueError("input: the reduced axis has size 0");
  for (int d = 0; d < input.ndim; ++d) {
    if (d != plan_->axis) plan_->reduced_shape.push_back(input.shape[d]);
  }
}
Softmax::~Softmax() = default;
Softmax::Softmax(Softmax&&) noexcept = default;
Softmax& Softmax::operator=(Softmax&&) noexcept = default;

std::vector<int64_t> Softmax::reduced_shape() const { return plan_->reduced_shape; }
DType Softmax::reduced_dtype() const {
  return plan_->input.dtype == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32;
}

namespace {

cpu::SoftmaxArgs kernel_args(const detail::SoftmaxPlan& p, cpu::SoftmaxMode mode) {
  cpu::SoftmaxArgs a;
  a.space = p.space;
  a.input = core::row_operand(p.input, p.axis);
  a.threads = core::threads_for(p.space.rows * p.space.classes);
  a.mode = mode;
  return a;
}

// CUDA input: the same operation on the device (cuda/softmax.cu), on the caller's stream.
void run_cuda(const detail::SoftmaxPlan& p, const TensorView& out, cuda::SoftmaxMode mode,
              int out_class_axis) {
  cuda::SoftmaxArgs a;
  a.space = p.space;
  a.input = core::row_operand(p.input, p.axis);
  a.mode = mode;
  a.out = core::row_operand(out, out_class_axis);
  a.stream = cuda::Stream{p.cuda_stream, p.input.device.index};
  cuda::softmax(a);
}

void run_elementwise(const detail::SoftmaxPlan& p, const TensorView& out, cpu::SoftmaxMode mode) {
  core::check_output(out, "out", core::shape_of(p.input), p.input.dtype, p.input.device);
  core::check_no_overlap(out, "out", p.input, "input", true);
  if (core::on_cuda(p.input)) {
    return run_cuda(p, out, mode == cpu::SoftmaxMode::kSoftmax ? cuda::SoftmaxMode::kSoftmax
                                                               : cuda::SoftmaxMode::kLogSoftmax,
                    p.axis);
  }
  const core::RunningCall running;
  cpu::SoftmaxArgs a = kernel_args(p, mode);
  a.out = core::row_operand(out, p.axis);
  cpu::active_kernels().softmax(a);
}

}  // namespace

void Softmax::logsumexp(const TensorView& out) const {
  core::check_output(out, "out", plan_->reduced_shape, reduced_dtype(), plan_->input.device);
  core::check_no_overlap(out, "out", plan_->input, "input", false);
  if (core::on_cuda(plan_->input)) return run_cuda(*plan_, out, cuda::SoftmaxMode::kLogSumExp, -1);
  const core::RunningCall running;
  std::vector<double> lse(static_cast<size_t>(plan_->space.rows));
  cpu::SoftmaxArgs a = kernel_args(*plan_, cpu::SoftmaxMode::kLogSumExp);
  a.row_lse = lse.data();
  cpu::active_kernels().softmax(a);
  core::store_rows(lse.data(), plan_->space.rows, out);
}

void Softmax::log_softmax(const TensorView& out) const {
  run_elementwise(*plan_, out, cpu::SoftmaxMode::kLogSoftmax);
}

void Softmax::softmax(const TensorView& out) const {
  run_elementwise(*plan_, out, cpu::SoftmaxMode::kSoftmax);
}

}  // namespace fastxent

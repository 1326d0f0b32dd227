// The CUDA half of fastxent::CrossEntropy: the checked problem (core/cross_entropy.cc) turned
// into device kernel arguments. Unlike the CPU path nothing is read on the host: targets,
// weights and grad_output stay on the device and the kernels derive the mean normaliser and the
// weight sum themselves. Compiled in every build; without CUDA its calls are unreachable
// (check_view refuses CUDA arrays) and cuda/api.h is served by core/no_cuda.cc.
#include <cstdint>
#include <cstring>
#include <string>

#include "core/cross_entropy_plan.h"
#include "core/views.h"
#include "cuda/api.h"

namespace fastxent {
namespace core {
namespace {

cuda::CrossEntropyArgs base_args(const detail::CrossEntropyPlan& p) {
  cuda::CrossEntropyArgs a;
  a.space = p.space;
  a.input = row_operand(p.input, p.axis);
  a.prob_target = p.prob_target;
  a.target = row_operand(p.target, p.prob_target ? p.axis : -1);
  a.ignore_index = p.options.ignore_index;
  if (p.weight) {
    a.weight = p.weight->data;
    a.weight_dtype = p.weight->dtype;
    a.weight_stride = p.weight->strides[0];
  }
  a.reduction = p.options.reduction;
  a.label_smoothing = p.options.label_smoothing;
  a.z_loss = p.options.z_loss;
  a.softcap = p.options.softcap;
  a.stream = cuda::Stream{p.options.cuda_stream, p.device.index};
  return a;
}

// One element at `data`, broadcast to every row (all outer strides 0).
common::RowOperand scalar_operand(const TensorView& v) {
  common::RowOperand op;
  op.data = v.data;
  op.dtype = v.dtype;
  return op;
}

}  // namespace

void check_targets_cuda(const detail::CrossEntropyPlan& p) {
  const cuda::CrossEntropyArgs a = base_args(p);
  const int64_t bad = cuda::check_targets(a);
  if (bad < 0) return;
  // The bad value, copied to the host for the message (the error path only).
  const TensorView& t = p.target;
  alignas(8) unsigned char value[8] = {};
  cuda::copy_to_host(value, static_cast<const char*>(t.data) + element_offset(t, bad),
                     dtype_size(t.dtype), a.stream);
  TensorView host;
  host.data = value;
  host.dtype = t.dtype;
  throw IndexError("target" + position_str(t, bad) + " = " + integer_str(host, 0) +
                   " is out of range: expected 0 <= target < " +
                   std::to_string(p.space.classes) + " (the number of classes) or ignore_index=" +
                   std::to_string(p.options.ignore_index));
}

void run_cuda(const detail::CrossEntropyPlan& p, const CudaCall& call) {
  cuda::CrossEntropyArgs a = base_args(p);
  if (call.loss) {
    a.loss = p.options.reduction == Reduction::kNone ? row_operand(*call.loss, -1)
                                                      : scalar_operand(*call.loss);
  }
  if (call.lse) a.lse_out = row_operand(*call.lse, -1);
  if (call.saved_lse) a.saved_lse = row_operand(*call.saved_lse, -1);
  if (call.lse_grad_output) a.lse_grad = row_operand(*call.lse_grad_output, -1);
  if (call.grad) {
    a.grad = row_operand(*call.grad, p.axis);
    const TensorView& go = *call.grad_output;
    if (check_grad_output(p, go)) {
      a.grad_output = row_operand(go, -1);
    } else if (on_cuda(go)) {
      a.grad_output = scalar_operand(go);
    } else {
      a.grad_output_value = load_floating(go, 0);
    }
  }
  cuda::cross_entropy(a);
}

}  // namespace core
}  // namespace fastxent

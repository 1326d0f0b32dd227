// Binary cross-entropy with logits: exactly torch.nn.functional.binary_cross_entropy_with_logits.
//
// Elementwise over the input x with targets y (same shape, any floating dtype), optional
// weight w and pos_weight pw (each broadcastable to the input's shape, NumPy/torch rules):
//   loss = w·((1 - y)·x - (1 + (pw - 1)·y)·log σ(x)),  log σ(x) = min(x, 0) - log1p(exp(-|x|))
//   ∂loss/∂x = w·((pw·y + 1 - y)·σ(x) - pw·y)                       (pw = 1 without pos_weight)
// reduction "none" returns the loss with the input's shape; "sum" / "mean" (÷ element count) a
// 0-d value. The loss is float32 for float16/bfloat16 inputs (computed and accumulated in
// float32), else the input's dtype; the gradient has the input's shape and dtype.
//
//   fastxent::BinaryCrossEntropy bce(logits, targets, options);   // validates everything
//   bce.forward_backward(grad_output, loss_out, grad_out);         // one pass, may be in place
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "fastxent/dtype.h"
#include "fastxent/options.h"
#include "fastxent/tensor.h"

namespace fastxent {

namespace detail {
struct BinaryCrossEntropyPlan;
}  // namespace detail

struct BinaryCrossEntropyOptions {
  std::optional<TensorView> weight;      // broadcastable to the input, any floating dtype
  std::optional<TensorView> pos_weight;  // broadcastable to the input (usually (C,)), floating
  Reduction reduction = Reduction::kMean;
};

class BinaryCrossEntropy {
 public:
  BinaryCrossEntropy(const TensorView& input, const TensorView& target,
                     const BinaryCrossEntropyOptions& options = {});
  ~BinaryCrossEntropy();
  BinaryCrossEntropy(BinaryCrossEntropy&&) noexcept;
  BinaryCrossEntropy& operator=(BinaryCrossEntropy&&) noexcept;

  std::vector<int64_t> loss_shape() const;  // the input's shape for "none", else ()
  int64_t loss_numel() const;
  DType loss_dtype() const;
  std::vector<int64_t> grad_shape() const;  // the input's shape
  DType grad_dtype() const;                 // the input's dtype

  void forward(const TensorView& loss_out) const;
  // grad_output: 0-d (a scalar) or, for reduction "none", the loss's shape. grad_input_out may be
  // the input itself (same data and strides): an in-place gradient.
  void backward(const TensorView& grad_output, const TensorView& grad_input_out) const;
  // Loss and gradient in one pass over the input.
  void forward_backward(const TensorView& grad_output, const TensorView& loss_out,
                        const TensorView& grad_input_out) const;

 private:
  std::unique_ptr<detail::BinaryCrossEntropyPlan> plan_;
};

// out = log1p(x) elementwise with the BCE kernels' own vector log1p (float32/float64,
// contiguous, same shape and dtype; every x in [0, 1], the kernels' domain: x = exp(-|logit|)),
// so that tests can measure its accuracy.
void vector_log1p(const TensorView& x, const TensorView& out);

}  // namespace fastxent

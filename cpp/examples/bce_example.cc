// Binary cross-entropy with logits through the C++ API, checked against a direct computation in
// double: loss (mean, with pos_weight over the last axis) and gradient in one fused pass.
// Exits non-zero if the results disagree, so CI can run it (also under qemu on AArch64).
#include <cmath>
#include <cstdio>
#include <vector>

#include "fastxent/fastxent.h"

int main() {
  const int64_t rows = 3, labels = 37;  // 37: full vectors and a tail on every ISA
  std::vector<float> logits(rows * labels), targets(rows * labels), pos_weight(labels);
  for (size_t i = 0; i < logits.size(); ++i) {
    logits[i] = std::sin(float(i)) * 6.0f;
    targets[i] = float(i % 3) / 2.0f;  // 0, 0.5, 1
  }
  for (int64_t c = 0; c < labels; ++c) pos_weight[size_t(c)] = 0.5f + float(c) / 10.0f;

  using fastxent::DType;
  fastxent::BinaryCrossEntropyOptions options;
  options.pos_weight = fastxent::contiguous_view(pos_weight.data(), DType::kFloat32, {labels});
  fastxent::BinaryCrossEntropy bce(
      fastxent::contiguous_view(logits.data(), DType::kFloat32, {rows, labels}),
      fastxent::contiguous_view(targets.data(), DType::kFloat32, {rows, labels}), options);
  float loss = 0;
  double upstream = 1.0;
  std::vector<float> grad(logits.size());
  bce.forward_backward(fastxent::contiguous_view(&upstream, DType::kFloat64, {}),
                       fastxent::contiguous_view(&loss, DType::kFloat32, {}),
                       fastxent::contiguous_view(grad.data(), DType::kFloat32, {rows, labels}));

  // Direct computation in double: loss = (1-y)·x + lw·softplus(-x), lw = 1 + (pw-1)·y.
  const double n = double(logits.size());
  double expected = 0, worst = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    const double x = logits[i], y = targets[i], pw = pos_weight[i % size_t(labels)];
    const double softplus_neg = std::log1p(std::exp(-std::fabs(x))) + std::fmax(-x, 0.0);
    expected += ((1 - y) * x + (1 + (pw - 1) * y) * softplus_neg) / n;
    const double sigmoid = 1 / (1 + std::exp(-x));
    const double g = ((pw * y + 1 - y) * sigmoid - pw * y) / n;
    worst = std::fmax(worst, std::fabs(g - grad[i]));
  }
  std::printf("fastxent %s (isa %s): BCE loss %.6f (expected %.6f), max gradient error %.2e\n",
              fastxent::version().c_str(), fastxent::cpu_isa().c_str(), loss, expected, worst);

  // A pos_weight that does not broadcast is an exception, never an abort.
  options.pos_weight = fastxent::contiguous_view(pos_weight.data(), DType::kFloat32, {5});
  try {
    fastxent::BinaryCrossEntropy bad(
        fastxent::contiguous_view(logits.data(), DType::kFloat32, {rows, labels}),
        fastxent::contiguous_view(targets.data(), DType::kFloat32, {rows, labels}), options);
    std::printf("expected a ValueError\n");
    return 1;
  } catch (const fastxent::ValueError& e) {
    std::printf("ValueError: %s\n", e.what());
  }
  return (std::fabs(loss - expected) < 1e-5 * std::fabs(expected) && worst < 1e-7) ? 0 : 1;
}

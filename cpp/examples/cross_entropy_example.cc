// Loss and gradient of a small batch with the C++ API, checked against a direct computation.
// Exits non-zero if the results disagree, so CI can run it.
#include <cmath>
#include <cstdio>
#include <vector>

#include "fastxent/fastxent.h"

int main() {
  const int64_t rows = 4, classes = 5;
  std::vector<float> logits(rows * classes);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(float(i)) * 3.0f;
  std::vector<int64_t> targets = {0, 3, 4, 1};

  const auto input = fastxent::contiguous_view(logits.data(), fastxent::DType::kFloat32, {rows, classes});
  const auto target = fastxent::contiguous_view(targets.data(), fastxent::DType::kInt64, {rows});
  fastxent::CrossEntropyOptions options;
  options.reduction = fastxent::Reduction::kMean;

  fastxent::CrossEntropy ce(input, target, options);
  float loss = 0;
  double upstream = 1.0;
  std::vector<float> grad(logits.size());
  ce.forward_backward(fastxent::contiguous_view(&upstream, fastxent::DType::kFloat64, {}),
                      fastxent::contiguous_view(&loss, fastxent::DType::kFloat32, {}),
                      fastxent::contiguous_view(grad.data(), fastxent::DType::kFloat32, {rows, classes}));

  // Direct computation in double.
  double expected = 0, worst = 0;
  for (int64_t r = 0; r < rows; ++r) {
    double m = -INFINITY, s = 0;
    for (int64_t c = 0; c < classes; ++c) m = std::fmax(m, logits[r * classes + c]);
    for (int64_t c = 0; c < classes; ++c) s += std::exp(logits[r * classes + c] - m);
    expected += (m + std::log(s) - logits[r * classes + targets[r]]) / rows;
    for (int64_t c = 0; c < classes; ++c) {
      const double p = std::exp(logits[r * classes + c] - m) / s;
      const double g = (p - (c == targets[r] ? 1.0 : 0.0)) / rows;
      worst = std::fmax(worst, std::fabs(g - grad[r * classes + c]));
    }
  }
  std::printf("fastxent %s (isa %s): loss %.6f (expected %.6f), max gradient error %.2e\n",
              fastxent::version().c_str(), fastxent::cpu_isa().c_str(), loss, expected, worst);
  const fastxent::CudaInfo cuda = fastxent::cuda_info();
  std::printf("CUDA: %s, %s%s%s, %zu device(s): %s\n", cuda.built ? "built" : "not built",
              cuda.toolkit_version.c_str(), cuda.built ? ", architectures " : "",
              cuda.architectures.c_str(), cuda.devices.size(), cuda.status.c_str());

  // Errors are exceptions, never aborts: a target out of range.
  targets[2] = 7;
  try {
    fastxent::CrossEntropy bad(input, target, options);
    std::printf("expected an IndexError\n");
    return 1;
  } catch (const fastxent::IndexError& e) {
    std::printf("IndexError: %s\n", e.what());
  }
  return (std::fabs(loss - expected) < 1e-5 && worst < 1e-6) ? 0 : 1;
}

// Google Benchmark: fastxent's cross-entropy kernels against this machine's memory roofline.
//
// Every (dtype, shape) gets six benchmarks, registered from the tables below (not written out per
// shape), named  <op>/<dtype>/<N>x<C>:
//   roofline_read   fastxent::stream_read of the logits buffer          bytes = N·C·size
//   roofline_copy   fastxent::stream_copy logits -> gradient buffer     bytes = 2·N·C·size
//   forward         CrossEntropy::forward (mean loss)                   bytes = N·C·size
//   backward        CrossEntropy::backward into an existing buffer      bytes = 2·N·C·size
//   fused           CrossEntropy::forward_backward into a buffer        bytes = 2·N·C·size
//   fused_inplace   forward_backward writing the gradient over the logits
// bytes_per_second is then directly comparable with the roofline rows, which are also reported on
// every kernel row as the counter roof_GBps (read roofline for forward, copy roofline otherwise),
// measured once per input outside the timed loops.
//
// Every benchmark verifies its result once before timing (the mean loss; the gradient of three
// rows element by element against a float64 reference computed here) and reports SkipWithError
// otherwise, or when the dtype is not supported by the build. Times are wall-clock, since OpenMP
// threads do the work (UseRealTime).
// Threads: OMP_NUM_THREADS. ISA: FASTXENT_ISA. Example:
//   fastxent_bench --benchmark_filter='float32/4096x50257' --benchmark_min_time=0.2
// (Google Benchmark >= 1.8 spells the last one --benchmark_min_time=0.2s.)

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fastxent/fastxent.h"

namespace {

using fastxent::DType;
using fastxent::TensorView;

struct Shape {
  int64_t rows, classes;
};

// LM vocabularies (GPT-2, Llama 3, Llama 2), one huge row (threads must split it), tiny rows
// (per-row overhead), ImageNet-like classes. Same shapes as `python -m fastxent bench`.
const Shape kShapes[] = {{4096, 50257}, {2048, 128256}, {8192, 32000},
                         {1, 262144},   {65536, 10},    {16384, 1000}};
const DType kDTypes[] = {DType::kFloat32, DType::kBFloat16, DType::kFloat16, DType::kFloat64};

// --- inputs --------------------------------------------------------------------------------------

uint16_t float_to_bf16(float f) {  // round to nearest even; inputs here are finite
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

uint16_t float_to_f16(float f) {  // |f| < 8 here: normal range, round to nearest even
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const uint16_t sign = uint16_t((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs < 0x38800000u) return sign;  // below float16's normal range: flush (never hit here)
  uint32_t h = ((abs - 0x38000000u) >> 13);
  const uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return uint16_t(sign | h);
}

struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<uint8_t[], AlignedFree>;

Buffer allocate(size_t bytes) {
  const size_t rounded = (bytes + 63) / 64 * 64;
  return Buffer(static_cast<uint8_t*>(std::aligned_alloc(64, std::max<size_t>(rounded, 64))));
}

// One problem at a time lives here: benchmarks of the same input run one after another (the
// registration order), and the library calls each benchmark function several times.
struct Input {
  Shape shape{};
  DType dtype{};
  size_t bytes = 0;
  Buffer logits, grad, scratch;
  std::vector<int64_t> targets;
  double read_gbps = 0, copy_gbps = 0;  // roofline of this buffer size, measured once
  bool mean_loss_checked = false;
  double mean_loss = 0;  // float64 mean of the checked per-row losses

  TensorView logits_view() const { return view(logits.get()); }
  TensorView grad_view() const { return view(grad.get()); }
  TensorView view(void* p) const {
    return fastxent::contiguous_view(p, dtype, {shape.rows, shape.classes});
  }
  TensorView targets_view() const {
    return fastxent::contiguous_view(targets.data(), DType::kInt64, {shape.rows});
  }
  // The in-place benchmark's buffer: a copy of the logits, then its own gradient (see below).
  void* scratch_data() {
    if (!scratch) {
      scratch = allocate(bytes);
      std::memcpy(scratch.get(), logits.get(), bytes);
    }
    return scratch.get();
  }
};

std::unique_ptr<Input> g_input;

void fill_logits(Input& in) {
  // Uniform in [-6, 6) from a xorshift generator: reproducible and fast enough for 1 GiB.
  uint64_t s = 0x9e3779b97f4a7c15ull;
  const size_t n = size_t(in.shape.rows) * size_t(in.shape.classes);
  auto next = [&s] {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return float(s >> 40) * (12.0f / 16777216.0f) - 6.0f;
  };
  uint8_t* p = in.logits.get();
  switch (in.dtype) {
    case DType::kFloat32:
      for (size_t i = 0; i < n; ++i) reinterpret_cast<float*>(p)[i] = next();
      break;
    case DType::kFloat64:
      for (size_t i = 0; i < n; ++i) reinterpret_cast<double*>(p)[i] = next();
      break;
    case DType::kBFloat16:
      for (size_t i = 0; i < n; ++i) reinterpret_cast<uint16_t*>(p)[i] = float_to_bf16(next());
      break;
    case DType::kFloat16:
      for (size_t i = 0; i < n; ++i) reinterpret_cast<uint16_t*>(p)[i] = float_to_f16(next());
      break;
    default:
      break;
  }
  for (int64_t r = 0; r < in.shape.rows; ++r) {
    in.targets[size_t(r)] = int64_t((uint64_t(r) * 2654435761u) % uint64_t(in.shape.classes));
  }
}

template <class F>
double median_seconds(F&& f, int repeats) {
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

Input& get_input(Shape shape, DType dtype) {
  if (g_input && g_input->shape.rows == shape.rows && g_input->shape.classes == shape.classes &&
      g_input->dtype == dtype) {
    return *g_input;
  }
  g_input.reset();  // free the previous problem before allocating the next
  auto in = std::make_unique<Input>();
  in->shape = shape;
  in->dtype = dtype;
  in->bytes = size_t(shape.rows) * size_t(shape.classes) * fastxent::dtype_size(dtype);
  in->logits = allocate(in->bytes);
  in->grad = allocate(in->bytes);
  in->targets.resize(size_t(shape.rows));
  fill_logits(*in);
  std::memset(in->grad.get(), 0, in->bytes);  // fault the pages in before anything is timed
  const TensorView x = in->logits_view(), g = in->grad_view();
  const int repeats = in->bytes > (size_t(256) << 20) ? 5 : 21;
  double sink = 0;
  in->read_gbps = double(in->bytes) / median_seconds([&] { sink += fastxent::stream_read(x); },
                                                     repeats) / 1e9;
  benchmark::DoNotOptimize(sink);
  in->copy_gbps = 2.0 * double(in->bytes) /
                  median_seconds([&] { fastxent::stream_copy(x, g); }, repeats) / 1e9;
  g_input = std::move(in);
  return *g_input;
}

// --- verification --------------------------------------------------------------------------------

double element(const void* p, DType dtype, size_t i) {
  switch (dtype) {
    case DType::kFloat32:
      return static_cast<const float*>(p)[i];
    case DType::kFloat64:
      return static_cast<const double*>(p)[i];
    case DType::kBFloat16: {
      const uint32_t bits = uint32_t(static_cast<const uint16_t*>(p)[i]) << 16;
      float f;
      std::memcpy(&f, &bits, sizeof f);
      return f;
    }
    case DType::kFloat16: {  // normal numbers, zero and subnormals (no inf/NaN expected)
      const uint16_t h = static_cast<const uint16_t*>(p)[i];
      const int exp = (h >> 10) & 0x1f;
      const double man = h & 0x3ff;
      const double mag = exp == 0 ? std::ldexp(man, -24) : std::ldexp(1024 + man, exp - 25);
      if (exp == 0x1f) return NAN;
      return (h & 0x8000) ? -mag : mag;
    }
    default:
      return NAN;
  }
}

// Verification: an independent float64 reference of a few rows, computed here from the logits as
// stored (so the rounding of the input is not counted as an error), and the mean loss against
// the mean of fastxent's per-row ("none") losses, which are themselves checked on those rows.
struct Tolerance {
  double rel, abs;  // |got - expected| <= rel * |expected| + abs
};

Tolerance tolerance(DType dtype) {
  switch (dtype) {
    case DType::kFloat64: return {1e-10, 1e-300};
    case DType::kFloat32: return {1e-4, 1e-37};
    case DType::kBFloat16: return {1.6e-2, 1e-37};  // outputs rounded to 8 significant bits
    default: return {2e-3, 6e-8};  // float16: 11 bits; subnormal quantum 2^-24 near zero
  }
}

std::vector<int64_t> check_rows(Shape shape) { return {0, shape.rows / 2, shape.rows - 1}; }

// Row r's logits in double, its log-sum-exp and its loss lse - x_t.
struct RowRef {
  std::vector<double> x;
  double lse = 0, loss = 0;
};

RowRef row_reference(const Input& in, int64_t row) {
  RowRef ref;
  const size_t c = size_t(in.shape.classes), base = size_t(row) * c;
  ref.x.resize(c);
  double m = -INFINITY;
  for (size_t j = 0; j < c; ++j) {
    ref.x[j] = element(in.logits.get(), in.dtype, base + j);
    m = std::max(m, ref.x[j]);
  }
  double s = 0;
  for (size_t j = 0; j < c; ++j) s += std::exp(ref.x[j] - m);
  ref.lse = m + std::log(s);
  ref.loss = ref.lse - ref.x[size_t(in.targets[size_t(row)])];
  return ref;
}

bool close(double got, double expected, Tolerance tol) {
  return std::fabs(got - expected) <= tol.rel * std::fabs(expected) + tol.abs;
}

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// The mean loss, checked once per input: per-row losses (reduction "none") against the float64
// reference on check_rows(), their mean in double is the expected mean loss.
std::string expected_mean_loss(Input& in, double* mean) {
  if (in.mean_loss_checked) {
    *mean = in.mean_loss;
    return "";
  }
  fastxent::CrossEntropyOptions none;
  none.reduction = fastxent::Reduction::kNone;
  const fastxent::CrossEntropy ce(in.logits_view(), in.targets_view(), none);
  const DType ld = ce.loss_dtype();
  std::vector<uint8_t> losses(size_t(ce.loss_numel()) * fastxent::dtype_size(ld));
  ce.forward(fastxent::contiguous_view(losses.data(), ld, ce.loss_shape()));
  const Tolerance tol = tolerance(ld);  // float32 losses for 16-bit logits
  for (int64_t r : check_rows(in.shape)) {
    const double got = element(losses.data(), ld, size_t(r)), want = row_reference(in, r).loss;
    if (!close(got, want, tol)) {
      return "row " + std::to_string(r) + " loss " + fmt(got) + ", float64 reference " + fmt(want);
    }
  }
  double sum = 0;
  for (int64_t r = 0; r < in.shape.rows; ++r) sum += element(losses.data(), ld, size_t(r));
  in.mean_loss = sum / double(in.shape.rows);
  in.mean_loss_checked = true;
  *mean = in.mean_loss;
  return "";
}

std::string check_loss(Input& in, double loss, DType loss_dtype) {
  double want = 0;
  std::string error = expected_mean_loss(in, &want);
  if (!error.empty()) return error;
  // Mean of N float32 row losses vs their float64 mean: blocked sums keep this near 1e-6.
  const double rel = loss_dtype == DType::kFloat64 ? 1e-10 : 1e-5;
  if (!std::isfinite(loss) || std::fabs(loss - want) > rel * std::fabs(want)) {
    return "mean loss " + fmt(loss) + ", expected " + fmt(want);
  }
  return "";
}

// With mean reduction, row r's gradient is (softmax(x_r) - onehot(t_r)) / N.
std::string check_grad(const Input& in, const void* grad) {
  const Tolerance tol = tolerance(in.dtype);
  const size_t c = size_t(in.shape.classes);
  for (int64_t r : check_rows(in.shape)) {
    const RowRef ref = row_reference(in, r);
    const size_t t = size_t(in.targets[size_t(r)]);
    for (size_t j = 0; j < c; ++j) {
      const double p = std::exp(ref.x[j] - ref.lse);
      const double want = (p - (j == t ? 1.0 : 0.0)) / double(in.shape.rows);
      const double got = element(grad, in.dtype, size_t(r) * c + j);
      if (!close(got, want, tol)) {
        return "gradient[" + std::to_string(r) + ", " + std::to_string(j) + "] = " + fmt(got) +
               ", float64 reference " + fmt(want);
      }
    }
  }
  return "";
}

// --- the benchmarks ------------------------------------------------------------------------------

enum class Op { kRead, kCopy, kForward, kBackward, kFused, kFusedInPlace };
const char* const kOpNames[] = {"roofline_read", "roofline_copy", "forward",
                                "backward",      "fused",         "fused_inplace"};

void bench(benchmark::State& state, Op op, Shape shape, DType dtype) {
  Input* in = nullptr;
  try {
    in = &get_input(shape, dtype);
  } catch (const std::exception& e) {
    state.SkipWithError((std::string("setup: ") + e.what()).c_str());
    return;
  }
  const int64_t moved = int64_t(in->bytes) * (op == Op::kRead || op == Op::kForward ? 1 : 2);
  state.counters["rows"] = double(shape.rows);
  state.counters["classes"] = double(shape.classes);
  state.counters["roof_GBps"] =
      op == Op::kRead || op == Op::kForward ? in->read_gbps : in->copy_gbps;
  state.SetLabel(fastxent::cpu_isa() + " " + fastxent::dtype_name(dtype) + " " +
                 std::to_string(fastxent::get_num_threads()) + "thr");

  const TensorView x = in->logits_view(), g = in->grad_view();
  double go = 1.0;  // d(mean loss)/d(loss): a 0-d grad_output
  const TensorView grad_out = fastxent::contiguous_view(&go, DType::kFloat64, {});
  double loss_storage = 0;  // 8 bytes: holds the 0-d loss, float32 or float64
  std::string error;
  try {
    if (op == Op::kRead) {
      for (auto _ : state) benchmark::DoNotOptimize(fastxent::stream_read(x));
    } else if (op == Op::kCopy) {
      fastxent::stream_copy(x, g);
      if (std::memcmp(in->logits.get(), in->grad.get(), std::min<size_t>(in->bytes, 4096)) != 0) {
        error = "stream_copy did not copy";
      }
      for (auto _ : state) {
        if (!error.empty()) break;
        fastxent::stream_copy(x, g);
        benchmark::ClobberMemory();
      }
    } else {
      // In place, the kernel runs again and again on its own output: the gradient, finite
      // values of size <= 1/N, valid logits whose cost is that of any other (no denormals:
      // their softmax is nearly uniform). A re-copy inside the loop would time memcpy too.
      const TensorView input = op == Op::kFusedInPlace ? in->view(in->scratch_data()) : x;
      const fastxent::CrossEntropy ce(input, in->targets_view());  // validated once, reused
      const TensorView loss = fastxent::contiguous_view(&loss_storage, ce.loss_dtype(), {});
      const TensorView grad = op == Op::kFusedInPlace ? input : g;
      auto read_loss = [&] {
        if (ce.loss_dtype() == DType::kFloat64) return loss_storage;
        float f;
        std::memcpy(&f, &loss_storage, sizeof f);
        return double(f);
      };
      auto once = [&] {
        switch (op) {
          case Op::kForward: ce.forward(loss); break;
          case Op::kBackward: ce.backward(grad_out, grad); break;
          default: ce.forward_backward(grad_out, loss, grad); break;
        }
      };
      if (op == Op::kFusedInPlace) std::memcpy(in->scratch_data(), in->logits.get(), in->bytes);
      once();  // verify before timing
      if (op != Op::kBackward) error = check_loss(*in, read_loss(), ce.loss_dtype());
      if (error.empty() && op != Op::kForward) error = check_grad(*in, grad.data);
      if (error.empty()) {
        for (auto _ : state) {
          once();
          benchmark::ClobberMemory();
        }
      }
    }
  } catch (const std::exception& e) {  // e.g. TypeError: dtype not supported by this build
    error = e.what();
  }
  if (!error.empty()) {
    state.SkipWithError(error.c_str());
    return;
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * moved);
}

// Registration: every op for every dtype and shape, grouped so that one input serves six
// benchmarks in a row.
const bool g_registered = [] {
  benchmark::AddCustomContext("fastxent", fastxent::version());
  benchmark::AddCustomContext("fastxent_isa", fastxent::cpu_isa());
  benchmark::AddCustomContext("fastxent_threads", std::to_string(fastxent::get_num_threads()));
  for (DType dtype : kDTypes) {
    for (const Shape& shape : kShapes) {
      for (int op = 0; op < 6; ++op) {
        const std::string name = std::string(kOpNames[op]) + "/" + fastxent::dtype_name(dtype) +
                                 "/" + std::to_string(shape.rows) + "x" +
                                 std::to_string(shape.classes);
        benchmark::RegisterBenchmark(name.c_str(), bench, Op(op), shape, dtype)
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
      }
    }
  }
  return true;
}();

}  // namespace

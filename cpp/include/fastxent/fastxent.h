// fastxent: softmax cross-entropy and its gradient at the speed of memory.
//
// Semantics are those of torch.nn.functional.cross_entropy (see DESIGN.md §1). Every entry point
// validates all of its arguments before writing anything, and writes only into buffers the
// caller allocated (outputs are TensorViews too). Usage:
//
//   fastxent::CrossEntropy ce(logits, targets, options);   // validates; checks every target
//   std::vector<float> loss(ce.loss_numel());
//   ce.forward(fastxent::contiguous_view(loss.data(), ce.loss_dtype(), ce.loss_shape()));
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fastxent/binary_cross_entropy.h"
#include "fastxent/dtype.h"
#include "fastxent/errors.h"
#include "fastxent/options.h"
#include "fastxent/tensor.h"

namespace fastxent {

namespace detail {
struct CrossEntropyPlan;
struct SoftmaxPlan;
}  // namespace detail

// One validated cross-entropy problem: logits, targets and options. Construction checks shapes,
// dtypes, options and every target value (IndexError names the first bad one and its position).
class CrossEntropy {
 public:
  CrossEntropy(const TensorView& input, const TensorView& target,
               const CrossEntropyOptions& options = {});
  ~CrossEntropy();
  CrossEntropy(CrossEntropy&&) noexcept;
  CrossEntropy& operator=(CrossEntropy&&) noexcept;

  // The loss: shaped like the target (index targets) or the input without its class axis
  // (probability targets) for reduction "none", 0-d otherwise. float32 for float16/bfloat16
  // logits, else the logits' dtype.
  std::vector<int64_t> loss_shape() const;
  int64_t loss_numel() const;
  DType loss_dtype() const;
  // The gradient with respect to the input has the input's shape and dtype.
  std::vector<int64_t> grad_shape() const;
  DType grad_dtype() const;
  int64_t num_classes() const;
  int64_t num_rows() const;

  void forward(const TensorView& loss_out) const;
  // grad_output: 0-d (a scalar; broadcast for reduction "none") or shaped like the loss.
  // grad_input_out may be the input itself (same data and strides): an in-place gradient.
  void backward(const TensorView& grad_output, const TensorView& grad_input_out) const;
  // The forward that also writes each row's log-sum-exp (of the softcapped logits when softcap
  // is on; ignored rows included): lse_out has lse_shape() and dtype float64 — what
  // backward_from_lse needs, since a float32 lse loses the digits of large logits — or
  // loss_dtype().
  std::vector<int64_t> lse_shape() const;
  void forward(const TensorView& loss_out, const TensorView& lse_out) const;
  // The forward with evaluation statistics, all from the same single pass: each row's lse (as
  // in forward), the index of its largest logit (argmax_out: lse_shape(), int64; the first
  // NaN's if any, as torch.argmax) and the entropy of its softmax (entropy_out: lse_shape(),
  // loss_dtype()). Every row, ignored ones included; of the softcapped logits with softcap.
  void forward_statistics(const TensorView& loss_out, const TensorView& lse_out,
                          const TensorView& argmax_out, const TensorView& entropy_out) const;
  // The gradient from a log-sum-exp saved by forward: p = exp(x - lse) directly, with no
  // statistics pass over the logits (probability targets still read their targets twice).
  // lse_grad_output, when given (lse_shape(), any floating dtype), is the upstream gradient of
  // the lse output itself (∂lse/∂x = p): autograd through return_lse.
  void backward_from_lse(const TensorView& grad_output, const TensorView& lse,
                         const TensorView& grad_input_out,
                         const TensorView* lse_grad_output = nullptr) const;
  // Loss and gradient in one pass over the logits; lse_out as in forward, when given.
  void forward_backward(const TensorView& grad_output, const TensorView& loss_out,
                        const TensorView& grad_input_out,
                        const TensorView* lse_out = nullptr) const;

  // ---- vocabulary-parallel cross-entropy (options.vocab_size > 0) ----
  // Each shard writes its rows' partial statistics (shard_stats_shape(): the rows' shape plus
  // a last axis of kShardStatsWidth float64 values). The statistics of every shard, stacked in
  // shard order along a new first axis (all_stats), give the loss and each row's log-sum-exp
  // (lse_shape(), float64) of the whole vocabulary — the same bits on every shard — and this
  // shard's slice of the gradient. Only these small per-row vectors cross shards.
  static constexpr int kShardStatsWidth = 5;
  std::vector<int64_t> shard_stats_shape() const;
  void shard_statistics(const TensorView& stats_out) const;
  void loss_from_shard_statistics(const TensorView& all_stats, const TensorView& loss_out,
                                  const TensorView& lse_out) const;
  // lse_grad_output as in backward_from_lse: the upstream gradient of the returned lse.
  void shard_backward(const TensorView& grad_output, const TensorView& all_stats,
                      const TensorView& grad_input_out,
                      const TensorView* lse_grad_output = nullptr) const;

 private:
  std::unique_ptr<detail::CrossEntropyPlan> plan_;
};

// logsumexp / log_softmax / softmax of `input` over one axis.
class Softmax {
 public:
  // cuda_stream: for CUDA input, the stream (cudaStream_t) the kernels run on; nullptr is the
  // legacy default stream.
  Softmax(const TensorView& input, int axis = -1, void* cuda_stream = nullptr);
  ~Softmax();
  Softmax(Softmax&&) noexcept;
  Softmax& operator=(Softmax&&) noexcept;

  std::vector<int64_t> reduced_shape() const;  // the input's shape without `axis`
  DType reduced_dtype() const;                 // float32 for float16/bfloat16, else the input's
  void logsumexp(const TensorView& out) const; // out: reduced_shape(), reduced_dtype()
  void log_softmax(const TensorView& out) const;  // out: the input's shape and dtype
  void softmax(const TensorView& out) const;

 private:
  std::unique_ptr<detail::SoftmaxPlan> plan_;
};

// Threads used by every kernel (OpenMP). Default: OpenMP's default (OMP_NUM_THREADS or cores),
// at most 1024. It is a budget shared by the calls running at the same moment: a call alone uses
// up to n threads; calls from several threads add at most n - 1 helper threads to their own
// threads together; a call made from inside an OpenMP parallel region runs on its calling thread.
void set_num_threads(int n);  // ValueError unless 1 <= n <= 1024
int get_num_threads();

// Observables of that rule, for tests: since the last reset, the most helper threads held at
// once by running calls, and the most threads at once inside the kernels' OpenMP regions.
struct ThreadPeaks {
  int helpers = 0;
  int active = 0;
};
ThreadPeaks thread_peaks();
void reset_thread_peaks();
// Runs fn(i) on thread i of an OpenMP team of `team` threads, as a caller's own parallel region
// (e.g. torch's) would; the first exception fn throws is rethrown after the region.
void run_in_parallel_region(int team, const std::function<void(int)>& fn);

// The instruction set chosen at run time ("avx512", "avx2", "neon", "scalar"), and all this CPU and
// build can run. FASTXENT_ISA=avx512|avx2|neon|scalar overrides the choice.
std::string cpu_isa();
std::vector<std::string> available_cpu_isas();
void set_cpu_isa(const std::string& name);  // ValueError for one this CPU/build cannot run
bool openmp_enabled();
std::string version();

// The CUDA path: what this build compiled and what this machine has. Arrays on a CUDA device
// (TensorView::device) are served when cuda_available(); otherwise they raise TypeError.
struct CudaInfo {
  bool built = false;               // compiled with CUDA (FASTXENT_CUDA)
  std::string toolkit_version;      // the CUDA toolkit it was compiled with, e.g. "13.0.88"
  std::string architectures;        // CMAKE_CUDA_ARCHITECTURES, e.g. "75-real;...;120"
  int runtime_version = 0;          // the (statically linked) CUDA runtime, e.g. 13000
  int driver_version = 0;           // the driver's CUDA version; 0 without a driver
  std::vector<std::string> devices;  // names of the devices present
  std::string status;               // "ok", or why no device can be used
};
CudaInfo cuda_info();
bool cuda_available();  // built, and at least one device present

// Memory-roofline probes for benchmarks: a streaming read of `buffer` (returns a checksum so it
// cannot be optimised away) and a copy of `src` into `dst` (same shape, dtype, contiguous).
double stream_read(const TensorView& buffer);
// out = exp(x) elementwise with the kernels' own vector exp (float32/float64, contiguous, same
// shape and dtype): lets tests measure its accuracy over the whole range.
void vector_exp(const TensorView& x, const TensorView& out);
void stream_copy(const TensorView& src, const TensorView& dst);

}  // namespace fastxent

// Build and machine facts, ISA selection, and the memory-roofline probes.
#include <cstring>
#include <string>
#include <vector>

#include "core/threads.h"
#include "core/views.h"
#include "cpu/kernel_table.h"
#include "cuda/api.h"
#include "fastxent/fastxent.h"

#if defined(_OPENMP)
#include <omp.h>
#endif

#ifndef FASTXENT_VERSION
#define FASTXENT_VERSION "0.0.0"
#endif

namespace fastxent {

std::string version() { return FASTXENT_VERSION; }
CudaInfo cuda_info() { return cuda::info(); }
bool cuda_available() { return cuda::built() && cuda::device_count() > 0; }
std::string cpu_isa() { return cpu::active_kernels().name; }
std::vector<std::string> available_cpu_isas() { return cpu::supported_isas(); }
void set_cpu_isa(const std::string& name) { cpu::select_isa(name); }

namespace {

int64_t contiguous_bytes(const TensorView& v, const char* name) {
  const int64_t numel = core::check_view(v, name);
  core::check_cpu(v, name);  // the roofline probes and the vector exp are CPU tools
  const TensorView dense = contiguous_view(v.data, v.dtype, core::shape_of(v));
  if (numel > 1 && !core::same_view(v, dense)) {
    throw ValueError(std::string(name) + ": must be C-contiguous");
  }
  return numel * int64_t(dtype_size(v.dtype));
}

}  // namespace

double stream_read(const TensorView& buffer) {
  const int64_t bytes = contiguous_bytes(buffer, "buffer");
  return cpu::active_kernels().stream_read(buffer.data, bytes, core::threads_for(bytes / 4));
}

void stream_copy(const TensorView& src, const TensorView& dst) {
  const int64_t bytes = contiguous_bytes(src, "src");
  core::check_output(dst, "dst", core::shape_of(src), src.dtype, Device{});
  if (contiguous_bytes(dst, "dst") != bytes) throw ValueError("dst: size differs from src");
  core::check_no_overlap(dst, "dst", src, "src", false);
  const char* s = static_cast<const char*>(src.data);
  char* d = static_cast<char*>(dst.data);
  const int threads = core::threads_for(bytes / 4);
  // One contiguous slice per thread, each copied by libc's memcpy (the fastest copy it knows).
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
#if defined(_OPENMP)
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
    const int64_t t = 0, nt = 1;
#endif
    const int64_t lo = bytes * t / nt, hi = bytes * (t + 1) / nt;
    std::memcpy(d + lo, s + lo, size_t(hi - lo));
  }
}

namespace {

// Elements of a contiguous float32/float64 `x` and its output `out` (same shape, dtype).
int64_t unary_probe_size(const TensorView& x, const TensorView& out) {
  const int64_t bytes = contiguous_bytes(x, "x");
  if (x.dtype != DType::kFloat32 && x.dtype != DType::kFloat64) {
    throw TypeError(std::string("x: expected float32 or float64, got ") + dtype_name(x.dtype));
  }
  core::check_output(out, "out", core::shape_of(x), x.dtype, Device{});
  contiguous_bytes(out, "out");
  return bytes / int64_t(dtype_size(x.dtype));
}

}  // namespace

void vector_exp(const TensorView& x, const TensorView& out) {
  const int64_t n = unary_probe_size(x, out);
  if (x.dtype == DType::kFloat32) {
    cpu::active_kernels().exp_f32(static_cast<const float*>(x.data), static_cast<float*>(out.data), n);
  } else {
    cpu::active_kernels().exp_f64(static_cast<const double*>(x.data), static_cast<double*>(out.data), n);
  }
}

namespace {

template <class F>
void check_unit_interval(const F* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (x[i] < F(0) || x[i] > F(1)) {  // NaN passes (and gives NaN)
      throw ValueError("x: vector_log1p is defined on [0, 1] (the kernels' domain, exp(-|x|)), "
                       "got " + std::to_string(double(x[i])) + " at index " + std::to_string(i));
    }
  }
}

}  // namespace

void vector_log1p(const TensorView& x, const TensorView& out) {
  const int64_t n = unary_probe_size(x, out);
  if (x.dtype == DType::kFloat32) {
    const float* xf = static_cast<const float*>(x.data);
    check_unit_interval(xf, n);
    cpu::active_kernels().log1p_f32(xf, static_cast<float*>(out.data), n);
  } else {
    const double* xd = static_cast<const double*>(x.data);
    check_unit_interval(xd, n);
    cpu::active_kernels().log1p_f64(xd, static_cast<double*>(out.data), n);
  }
}

}  // namespace fastxent

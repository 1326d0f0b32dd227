#include "core/threads.h"

#include <atomic>

#include "fastxent/errors.h"
#include "fastxent/fastxent.h"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace fastxent {
namespace {

// 0 = not set: use OpenMP's default (OMP_NUM_THREADS, else the number of cores). Kept here rather
// than in omp_set_num_threads, which only affects the calling thread.
std::atomic<int> g_num_threads{0};
std::atomic<int> g_running_calls{0};

constexpr int64_t kMinElementsPerThread = 1 << 15;

}  // namespace

void set_num_threads(int n) {
  if (n < 1) throw ValueError("num_threads must be >= 1, got " + std::to_string(n));
  g_num_threads.store(n, std::memory_order_relaxed);
}

int get_num_threads() {
  const int n = g_num_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

bool openmp_enabled() {
#if defined(_OPENMP)
  return true;
#else
  return false;
#endif
}

namespace core {

RunningCall::RunningCall() { g_running_calls.fetch_add(1, std::memory_order_relaxed); }
RunningCall::~RunningCall() { g_running_calls.fetch_sub(1, std::memory_order_relaxed); }

int threads_for(int64_t elements) {
#if defined(_OPENMP)
  if (omp_in_parallel()) return 1;
#endif
  const int64_t by_size = elements / kMinElementsPerThread;
  const int running = g_running_calls.load(std::memory_order_relaxed);
  int n = get_num_threads() / (running > 1 ? running : 1);
  if (n < 1) n = 1;
  if (by_size < 2) return 1;
  return by_size < n ? int(by_size) : n;
}

}  // namespace core
}  // namespace fastxent

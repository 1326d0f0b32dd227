#include "core/threads.h"

#include <atomic>
#include <exception>
#include <functional>
#include <string>

#include "cpu/kernel_args.h"
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
// More threads than this is a mistake, not a wish: libgomp aborts the process when it cannot
// create a thread it was asked for.
constexpr int kMaxThreads = 1024;

// Helper threads held by running calls: the threads of their OpenMP teams other than the
// calling threads themselves (which exist whatever fastxent does).
std::atomic<int> g_helpers{0};
std::atomic<int> g_active{0};  // threads inside the kernels' OpenMP regions now
std::atomic<int> g_helpers_peak{0};
std::atomic<int> g_active_peak{0};
thread_local core::RunningCall* t_current_call = nullptr;

constexpr int64_t kMinElementsPerThread = 1 << 15;

void raise_peak(std::atomic<int>& peak, int value) {
  int seen = peak.load(std::memory_order_relaxed);
  while (value > seen && !peak.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

}  // namespace

void set_num_threads(int n) {
  if (n < 1 || n > kMaxThreads) {
    throw ValueError("num_threads must be in [1, " + std::to_string(kMaxThreads) + "], got " +
                     std::to_string(n));
  }
  g_num_threads.store(n, std::memory_order_relaxed);
}

int get_num_threads() {
  const int n = g_num_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
#if defined(_OPENMP)
  const int omp = omp_get_max_threads();
  return omp < kMaxThreads ? omp : kMaxThreads;
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

namespace cpu {

void team_member_enter() {
  raise_peak(g_active_peak, g_active.fetch_add(1, std::memory_order_relaxed) + 1);
}
void team_member_exit() { g_active.fetch_sub(1, std::memory_order_relaxed); }

}  // namespace cpu

namespace core {

RunningCall::RunningCall() : outer_(t_current_call) { t_current_call = this; }

RunningCall::~RunningCall() {
  g_helpers.fetch_sub(helpers_, std::memory_order_relaxed);
  t_current_call = outer_;
}

int threads_for(int64_t elements) {
#if defined(_OPENMP)
  if (omp_in_parallel()) return 1;  // the enclosing team already holds this thread
#endif
  const int64_t by_size = elements / kMinElementsPerThread;
  const int budget = get_num_threads();
  const int wanted = by_size < 2 ? 1 : (by_size < budget ? int(by_size) : budget);
  RunningCall* call = t_current_call;
  if (call == nullptr) return 1;  // not inside an entry point: nothing to account the threads to
  g_helpers.fetch_sub(call->helpers_, std::memory_order_relaxed);  // a second kernel call
  call->helpers_ = 0;
  // The calling thread always works; it takes helpers only while the running calls together
  // hold fewer than budget - 1 (so one call alone gets the whole budget, and calls arriving
  // when it is taken run on their own threads until helpers are free again).
  int held = g_helpers.load(std::memory_order_relaxed);
  int take;
  do {
    const int free = budget - 1 - held;
    take = wanted - 1 <= free ? wanted - 1 : (free > 0 ? free : 0);
  } while (!g_helpers.compare_exchange_weak(held, held + take, std::memory_order_relaxed));
  raise_peak(g_helpers_peak, held + take);
  call->helpers_ = take;
  return 1 + take;
}

}  // namespace core

ThreadPeaks thread_peaks() {
  ThreadPeaks peaks;
  peaks.helpers = g_helpers_peak.load(std::memory_order_relaxed);
  peaks.active = g_active_peak.load(std::memory_order_relaxed);
  return peaks;
}

void reset_thread_peaks() {
  g_helpers_peak.store(g_helpers.load(std::memory_order_relaxed), std::memory_order_relaxed);
  g_active_peak.store(g_active.load(std::memory_order_relaxed), std::memory_order_relaxed);
}

void run_in_parallel_region(int team, const std::function<void(int)>& fn) {
  if (team < 1 || team > kMaxThreads) {
    throw ValueError("team must be in [1, " + std::to_string(kMaxThreads) + "], got " +
                     std::to_string(team));
  }
  std::exception_ptr error;
#pragma omp parallel num_threads(team)
  {
#if defined(_OPENMP)
    const int i = omp_get_thread_num();
#else
    const int i = 0;
#endif
    try {
      fn(i);
    } catch (...) {  // nothing may leave an OpenMP region: keep the first, rethrow after it
#pragma omp critical(fastxent_region_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}
}  // namespace fastxent

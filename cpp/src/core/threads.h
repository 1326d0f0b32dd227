// The thread count every kernel uses, and when a problem is too small to be worth threads.
#pragma once

#include <cstdint>

namespace fastxent {
namespace core {

// Marks a kernel call as running for as long as it lives, and gives the helper threads it took
// through threads_for back to the shared budget when it ends. One per entry point, on the calling
// thread, around the kernel call.
class RunningCall {
 public:
  RunningCall();
  ~RunningCall();
  RunningCall(const RunningCall&) = delete;
  RunningCall& operator=(const RunningCall&) = delete;

 private:
  friend int threads_for(int64_t elements);
  RunningCall* outer_;  // an enclosing call on this thread (none in practice)
  int helpers_ = 0;  // threads beyond its own that it took from the budget
};

// Threads for a problem touching `elements` values, taken for the RunningCall of this thread:
// 1 when threads would cost more than they save (starting an OpenMP team costs a few
// microseconds). The budget (get_num_threads()) is shared by every call running at the same
// moment (several Python threads calling fastxent): a call adds helper threads to its own only
// while the calls running together hold fewer than budget - 1 helpers, so together they never
// run more than budget + (number of calls - 1) threads, and one call alone gets the whole
// budget. A call made from inside an OpenMP parallel region (e.g. one of torch's: torch and
// fastxent share one libgomp) runs on its calling thread alone.
int threads_for(int64_t elements);
// (fastxent::thread_peaks() reports how the rule held.)

}  // namespace core
}  // namespace fastxent

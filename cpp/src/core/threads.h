// The thread count every kernel uses, and when a problem is too small to be worth threads.
#pragma once

#include <cstdint>

namespace fastxent {
namespace core {

// Threads for a problem touching `elements` values: 1 when threads would cost more than they
// save (starting an OpenMP team costs a few microseconds). The thread budget is shared by the
// kernel calls running at the same moment (several Python threads calling fastxent), and a call
// made from inside an OpenMP parallel region (e.g. one of torch's) runs on its calling thread,
// so fastxent never oversubscribes the cores.
int threads_for(int64_t elements);

// Marks a kernel call as running for as long as it lives (see threads_for).
class RunningCall {
 public:
  RunningCall();
  ~RunningCall();
  RunningCall(const RunningCall&) = delete;
  RunningCall& operator=(const RunningCall&) = delete;
};

}  // namespace core
}  // namespace fastxent

// The thread count every kernel uses, and when a problem is too small to be worth threads.
#pragma once

#include <cstdint>

namespace fastxent {
namespace core {

// Threads for a problem touching `elements` values: 1 when threads would cost more than they
// save (starting an OpenMP team costs a few microseconds).
int threads_for(int64_t elements);

}  // namespace core
}  // namespace fastxent

// The CUDA path as the core sees it: host functions (compiled by nvcc) that launch the kernels
// on the caller's stream. None of them synchronises with the host except check_targets, and
// they throw fastxent::Error on a CUDA error. A build without CUDA links core/no_cuda.cc
// instead: built() is false there and the core never gets past check_view with a CUDA array.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cuda/kernel_args.h"
#include "fastxent/fastxent.h"

namespace fastxent {
namespace cuda {

bool built();
// Devices present (0 without a driver), asked once per process.
int device_count();

// The first row (in C order) whose index target is neither ignore_index nor in [0, C), or -1.
// Runs a check kernel and waits for its one-number result (the only host synchronisation of the
// CUDA path). When the stream is being captured into a CUDA graph nothing can wait: returns -1
// without checking, and the kernels then write NaN for every bad row.
int64_t check_targets(const CrossEntropyArgs& a);

// Loss, log-sum-exp and/or gradient, as the outputs set in `a` ask.
void cross_entropy(const CrossEntropyArgs& a);
void softmax(const SoftmaxArgs& a);

// Copies `bytes` from device memory to the host and waits (error messages only).
void copy_to_host(void* dst, const void* src, size_t bytes, const Stream& stream);

// What was compiled and what this machine has (fastxent::cuda_info()).
CudaInfo info();

}  // namespace cuda
}  // namespace fastxent

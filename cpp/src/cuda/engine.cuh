// The CUDA row engine: runs a Job over every row (the CUDA twin of cpu/kernels_engine.h).
//
// Short rows (up to kWarpRowMax classes) get one warp each, several rows per block; longer rows
// one block each. When rows are few and long (at most kSplitMaxRows rows of at least 2·kChunk
// classes), each row is cut into fixed chunks of kChunk classes, one block per chunk, in three
// launches: the chunks' statistics; their merge, in chunk order, by one thread per row, which
// also finishes the row; the chunks' outputs. Chunk bounds and merge order depend on the shape
// only, so a result is bitwise the same on every run (no atomics anywhere). One kernel serves
// every phase and group size (chosen per launch), which keeps the compiled code (and the build
// time for every architecture) small.
//
// A Job (see CrossEntropyJob, SoftmaxJob) provides, with F its compute type:
//   Row open(r)                     pointers and per-row inputs of row r
//   void pin(Row&)                  reads what must be read before any output is written (the
//                                   target's logit, when the gradient may overwrite the logits)
//   RowStats<F> stats(g, row, c0, n, shared)   the merged statistics of classes [c0, c0 + n)
//                                   (every thread of the group gets them; a barrier)
//   Final finish(row, stats, writer)           per-row results; `writer` stores per-row outputs
//   void emit(g, row, final, c0, n)            per-class outputs of [c0, c0 + n)
//   bool emits(), rows(), classes()
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/device_rows.cuh"
#include "cuda/runtime.cuh"

namespace fastxent {
namespace cuda {

constexpr int kBlockThreads = 256;
constexpr int kRowsPerWarpBlock = kBlockThreads / kWarpSize;
constexpr int64_t kWarpRowMax = 1024;
constexpr int64_t kChunk = 16384;
constexpr int64_t kSplitMaxRows = 64;
constexpr int64_t kMaxGrid = int64_t(1) << 20;  // grid-stride loops cover more work items

// Chunks per row when rows are split (0: one group per row).
inline int64_t split_chunks(int64_t rows, int64_t classes) {
  if (rows > kSplitMaxRows || classes < 2 * kChunk) return 0;
  return (classes + kChunk - 1) / kChunk;
}

enum class Phase : int8_t {
  kWhole,  // statistics, finish and outputs of whole rows
  kStats,  // a chunk's statistics → partials
  kEmit,   // a chunk's outputs from the finished rows
};

template <class Job>
struct EngineLaunch {
  Phase phase = Phase::kWhole;
  bool whole_block = true;
  int64_t chunks = 1;      // work items per row
  int64_t chunk = 0;       // classes per work item
  RowStats<typename Job::F>* partials = nullptr;
  const typename Job::Final* finals = nullptr;
};

template <class Job>
__global__ void __launch_bounds__(kBlockThreads) row_kernel(const Job job,
                                                            const EngineLaunch<Job> L) {
  using F = typename Job::F;
  __shared__ RowStats<F> shared[kMaxWarps + 1];
  const Group g(L.whole_block);
  const int64_t per_block = L.whole_block ? 1 : blockDim.x / kWarpSize;
  const int64_t items = job.rows() * L.chunks;
  const int64_t step = int64_t(gridDim.x) * per_block;
  const int64_t first =
      int64_t(blockIdx.x) * per_block + (L.whole_block ? 0 : threadIdx.x / kWarpSize);
  for (int64_t item = first; item < items; item += step) {  // uniform over the group
    const int64_t r = item / L.chunks, c0 = (item % L.chunks) * L.chunk;
    const int64_t n = job.classes() - c0 < L.chunk ? job.classes() - c0 : L.chunk;
    typename Job::Row row = job.open(r);
    if (L.phase == Phase::kEmit) {
      job.emit(g, row, L.finals[r], c0, n);
      continue;
    }
    job.pin(row);
    const RowStats<F> st = job.stats(g, row, c0, n, shared);
    if (L.phase == Phase::kStats) {
      if (g.rank == 0) L.partials[item] = st;
      continue;
    }
    const typename Job::Final fin = job.finish(row, st, g.rank == 0);
    if (job.emits()) job.emit(g, row, fin, c0, n);
  }
}

// Split rows, middle step: one thread per row merges its chunks in order and finishes the row.
template <class Job>
__global__ void finish_kernel(const Job job, const RowStats<typename Job::F>* partials,
                              int64_t chunks, typename Job::Final* finals) {
  const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= job.rows()) return;
  typename Job::Row row = job.open(r);
  job.pin(row);
  RowStats<typename Job::F> st = partials[r * chunks];
  for (int64_t c = 1; c < chunks; ++c) st = common::merge(st, partials[r * chunks + c]);
  finals[r] = job.finish(row, st, true);
}

// Scratch the split path needs (nothing when rows are not split); carve before launching.
template <class Job>
struct SplitScratch {
  RowStats<typename Job::F>* partials = nullptr;
  typename Job::Final* finals = nullptr;

  void carve(Carver& carver, int64_t rows, int64_t chunks) {
    if (chunks == 0) return;
    partials = carver.take<RowStats<typename Job::F>>(size_t(rows * chunks));
    finals = carver.take<typename Job::Final>(size_t(rows));
  }
};

template <class Job>
void run_rows(const Job& job, int64_t rows, int64_t classes, bool emits, int64_t chunks,
              const SplitScratch<Job>& scratch, cudaStream_t stream) {
  if (rows == 0) return;
  EngineLaunch<Job> L;
  if (chunks == 0) {
    L.whole_block = classes > kWarpRowMax;
    L.chunk = classes;
    const int per_block = L.whole_block ? 1 : kRowsPerWarpBlock;
    row_kernel<Job><<<grid_size(rows, per_block, kMaxGrid), kBlockThreads, 0, stream>>>(job, L);
    check_launch("row_kernel");
    return;
  }
  L.chunks = chunks;
  L.chunk = kChunk;
  L.phase = Phase::kStats;
  L.partials = scratch.partials;
  row_kernel<Job><<<grid_size(rows * chunks, 1, kMaxGrid), kBlockThreads, 0, stream>>>(job, L);
  check_launch("row_kernel (chunk statistics)");
  finish_kernel<Job><<<grid_size(rows, 128), 128, 0, stream>>>(job, scratch.partials, chunks,
                                                               scratch.finals);
  check_launch("finish_kernel");
  if (emits) {
    L.phase = Phase::kEmit;
    L.finals = scratch.finals;
    row_kernel<Job><<<grid_size(rows * chunks, 1, kMaxGrid), kBlockThreads, 0, stream>>>(job, L);
    check_launch("row_kernel (chunk outputs)");
  }
}

}  // namespace cuda
}  // namespace fastxent

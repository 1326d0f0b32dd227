// DLPack consumer: any object with __dlpack__ / __dlpack_device__ (torch, JAX, CuPy, NumPy) →
// fastxent::TensorView, without copying. The structs below are written from the DLPack
// specification (dlpack.h v1.x, https://dmlc.github.io/dlpack/latest/c_api.html); only their
// layout matters, and it is ABI-stable: the versioned struct starts with its version, manager
// context and deleter, so an unknown major version can still be released.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>

#include "fastxent/tensor.h"

namespace fastxent {
namespace bindings {
namespace dlpack {

struct DLPackVersion {
  uint32_t major;
  uint32_t minor;
};
// The DLPack major/minor this consumer implements (max_version passed to __dlpack__).
constexpr uint32_t kMajorVersion = 1;
constexpr uint32_t kMinorVersion = 0;

enum DLDeviceTypeCode : int32_t {
  kDLCPU = 1,
  kDLCUDA = 2,
  kDLCUDAHost = 3,  // pinned host memory: readable by the CPU
  kDLCUDAManaged = 13,
};
struct DLDevice {
  int32_t device_type;  // a DLDeviceType (a C enum: int-sized)
  int32_t device_id;
};

enum DLDataTypeCode : uint8_t {
  kDLInt = 0,
  kDLUInt = 1,
  kDLFloat = 2,
  kDLOpaqueHandle = 3,
  kDLBfloat = 4,
  kDLComplex = 5,
  kDLBool = 6,
};
struct DLDataType {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
};

struct DLTensor {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements; NULL means compact row-major
  uint64_t byte_offset;
};

struct DLManagedTensor {  // the legacy (unversioned) capsule "dltensor"
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor* self);
};

constexpr uint64_t kFlagReadOnly = 1ULL << 0;
constexpr uint64_t kFlagIsCopied = 1ULL << 1;

struct DLManagedTensorVersioned {  // the capsule "dltensor_versioned" (DLPack >= 1.0)
  DLPackVersion version;
  void* manager_ctx;
  void (*deleter)(DLManagedTensorVersioned* self);
  uint64_t flags;
  DLTensor dl_tensor;
};

}  // namespace dlpack

// A view and what keeps its memory alive: for a DLPack argument, the consumed managed tensor,
// whose deleter runs exactly once when the last copy of `owner` goes (with the GIL held).
// For a NumPy argument `owner` is empty and the caller keeps the array alive.
struct ArrayArg {
  TensorView view;
  std::shared_ptr<void> owner;
};

bool has_dlpack(const pybind11::handle& obj);

// Exports `obj` through __dlpack__ (versioned capsule when the producer offers one, legacy
// otherwise, never a copy), marks the capsule consumed and returns a view of it. Errors are
// TypeError / ValueError naming `name`; the deleter has run by the time one propagates.
// `stream` is the CUDA stream the consumer will use, in DLPack's convention (1: the legacy
// default stream, 2: the per-thread default stream, else a cudaStream_t; 0: not given): for an
// array on a CUDA device it is passed as __dlpack__(stream=...), so that the producer orders its
// pending work on the array before that stream.
ArrayArg from_dlpack(const pybind11::handle& obj, const char* name, intptr_t stream = 0);

}  // namespace bindings
}  // namespace fastxent

// DLPack consumer protocol (https://dmlc.github.io/dlpack/latest/python_spec.html):
//   1. ask __dlpack_device__ where the data lives, refuse devices this build cannot read;
//   2. call __dlpack__(max_version=(1, 0), copy=False) — a producer that predates DLPack 1.0
//      rejects the keywords, and is asked again with no arguments (legacy capsule);
//   3. rename the capsule "used_dltensor[_versioned]": from then on the consumer, not the
//      capsule, owns the managed tensor and calls its deleter exactly once — here through the
//      shared_ptr in ArrayArg, which is created before anything else can fail.
#include "dlpack.h"

#include <string>

#include "fastxent/errors.h"

namespace py = pybind11;

namespace fastxent {
namespace bindings {
namespace {

using namespace dlpack;

constexpr const char* kVersionedName = "dltensor_versioned";
constexpr const char* kUsedVersionedName = "used_dltensor_versioned";
constexpr const char* kLegacyName = "dltensor";
constexpr const char* kUsedLegacyName = "used_dltensor";

std::string type_name(const py::handle& obj) {
  return py::str(py::type::of(obj).attr("__name__"));
}

std::string dtype_string(const DLDataType& t) {
  const char* kind = "code";
  switch (t.code) {
    case kDLInt: kind = "int"; break;
    case kDLUInt: kind = "uint"; break;
    case kDLFloat: kind = "float"; break;
    case kDLBfloat: kind = "bfloat"; break;
    case kDLComplex: kind = "complex"; break;
    case kDLBool: kind = "bool"; break;
    case kDLOpaqueHandle: kind = "opaque"; break;
    default: return "DLPack type code " + std::to_string(t.code) + " (" +
                    std::to_string(t.bits) + " bits)";
  }
  std::string s = kind + std::to_string(t.bits);
  if (t.lanes != 1) s += "x" + std::to_string(t.lanes);
  return s;
}

DType dtype_of(const DLDataType& t, const char* name) {
  if (t.lanes == 1) {
    switch (t.code) {
      case kDLFloat:
        if (t.bits == 16) return DType::kFloat16;
        if (t.bits == 32) return DType::kFloat32;
        if (t.bits == 64) return DType::kFloat64;
        break;
      case kDLBfloat:
        if (t.bits == 16) return DType::kBFloat16;
        break;
      case kDLInt:
        if (t.bits == 8) return DType::kInt8;
        if (t.bits == 16) return DType::kInt16;
        if (t.bits == 32) return DType::kInt32;
        if (t.bits == 64) return DType::kInt64;
        break;
      case kDLUInt:
        if (t.bits == 8) return DType::kUInt8;
        if (t.bits == 16) return DType::kUInt16;
        if (t.bits == 32) return DType::kUInt32;
        if (t.bits == 64) return DType::kUInt64;
        break;
      case kDLBool:
        if (t.bits == 8) return DType::kBool;
        break;
      default:
        break;
    }
  }
  throw TypeError(std::string(name) + ": unsupported dtype " + dtype_string(t));
}

Device device_of(int32_t type, int32_t id, const char* name) {
  switch (type) {
    case kDLCPU:
    case kDLCUDAHost:
      return Device{DeviceType::kCPU, 0};
    case kDLCUDA:
    case kDLCUDAManaged:
      return Device{DeviceType::kCUDA, int(id)};
    default:
      throw TypeError(std::string(name) + ": arrays on DLPack device type " +
                      std::to_string(type) + " are not supported (CPU and CUDA only)");
  }
}

// Calls __dlpack__, versioned first. Producer errors (e.g. BufferError: cannot export without
// a copy) become a TypeError naming the argument. `stream`: None, or the consumer's CUDA stream.
py::object export_capsule(const py::handle& obj, const char* name, const py::object& stream) {
  const py::object method = obj.attr("__dlpack__");
  py::dict kwargs;
  if (!stream.is_none()) kwargs["stream"] = stream;
  try {
    try {
      return method(py::arg("max_version") = py::make_tuple(kMajorVersion, kMinorVersion),
                    py::arg("copy") = false, **kwargs);
    } catch (py::error_already_set& e) {
      if (!e.matches(PyExc_TypeError)) throw;
      return method(**kwargs);  // a pre-1.0 producer: no max_version / copy keywords
    }
  } catch (py::error_already_set& e) {
    throw TypeError(std::string(name) + ": " + type_name(obj) +
                    ".__dlpack__() failed: " + e.what());
  }
}

TensorView view_of(const DLTensor& t, bool readonly, const char* name) {
  TensorView v;
  v.dtype = dtype_of(t.dtype, name);
  v.device = device_of(t.device.device_type, t.device.device_id, name);
  if (t.ndim < 0 || t.ndim > kMaxDims) {
    throw ValueError(std::string(name) + ": at most " + std::to_string(kMaxDims) +
                     " dimensions are supported, got " + std::to_string(t.ndim));
  }
  v.ndim = t.ndim;
  int64_t stride = 1;  // compact row-major strides when the producer gives none
  for (int d = v.ndim - 1; d >= 0; --d) {
    v.shape[d] = t.shape[d];
    if (v.shape[d] < 0) throw ValueError(std::string(name) + ": negative DLPack shape");
    v.strides[d] = t.strides != nullptr ? t.strides[d] : stride;
    stride *= v.shape[d];
  }
  v.data = t.data == nullptr ? nullptr : static_cast<char*>(t.data) + t.byte_offset;
  v.readonly = readonly;
  return v;
}

}  // namespace

bool has_dlpack(const py::handle& obj) {
  return py::hasattr(obj, "__dlpack__") && py::hasattr(obj, "__dlpack_device__");
}

ArrayArg from_dlpack(const py::handle& obj, const char* name, intptr_t stream) {
  // Where the data lives, before anything is exported (a CUDA export may need a stream).
  const py::tuple dev = obj.attr("__dlpack_device__")();
  if (dev.size() != 2) {
    throw TypeError(std::string(name) + ": __dlpack_device__() must return (type, id)");
  }
  const Device device = device_of(dev[0].cast<int32_t>(), dev[1].cast<int32_t>(), name);
  // The stream goes to CUDA producers only: for CPU arrays DLPack requires None.
  const py::object stream_arg = device.type == DeviceType::kCUDA && stream != 0
                                    ? py::object(py::int_(stream))
                                    : py::object(py::none());

  const py::object capsule = export_capsule(obj, name, stream_arg);
  PyObject* cap = capsule.ptr();
  if (!PyCapsule_CheckExact(cap)) {
    throw TypeError(std::string(name) + ": __dlpack__() returned a " + type_name(capsule) +
                    ", not a DLPack capsule");
  }
  const char* cap_name = PyCapsule_GetName(cap);
  if (cap_name == nullptr) throw py::error_already_set();
  const std::string cap_str = cap_name;

  ArrayArg arg;
  if (cap_str == kVersionedName) {
    auto* m = static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(cap, kVersionedName));
    if (m == nullptr) throw py::error_already_set();
    // Consumed: the capsule's destructor no longer frees it; the owner below does, once.
    if (PyCapsule_SetName(cap, kUsedVersionedName) != 0) throw py::error_already_set();
    arg.owner = std::shared_ptr<void>(m, [](void* p) {
      auto* t = static_cast<DLManagedTensorVersioned*>(p);
      if (t->deleter != nullptr) {
        py::gil_scoped_acquire gil;  // producers' deleters may touch Python objects
        t->deleter(t);
      }
    });
    if (m->version.major != kMajorVersion) {
      throw TypeError(std::string(name) + ": DLPack " + std::to_string(m->version.major) + "." +
                      std::to_string(m->version.minor) + " tensors are not supported (" +
                      std::to_string(kMajorVersion) + ".x only)");
    }
    if (m->flags & kFlagIsCopied) {
      throw TypeError(std::string(name) + ": " + type_name(obj) +
                      " exported a copy; fastxent reads and writes arrays in place");
    }
    arg.view = view_of(m->dl_tensor, (m->flags & kFlagReadOnly) != 0, name);
  } else if (cap_str == kLegacyName) {
    auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, kLegacyName));
    if (m == nullptr) throw py::error_already_set();
    if (PyCapsule_SetName(cap, kUsedLegacyName) != 0) throw py::error_already_set();
    arg.owner = std::shared_ptr<void>(m, [](void* p) {
      auto* t = static_cast<DLManagedTensor*>(p);
      if (t->deleter != nullptr) {
        py::gil_scoped_acquire gil;
        t->deleter(t);
      }
    });
    arg.view = view_of(m->dl_tensor, false, name);  // legacy DLPack cannot say read-only
  } else {
    throw TypeError(std::string(name) + ": __dlpack__() returned a capsule named '" + cap_str +
                    "' (already consumed, or not DLPack)");
  }
  return arg;
}

}  // namespace bindings
}  // namespace fastxent

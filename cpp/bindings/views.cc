#include "views.h"

#include <pybind11/stl.h>

#include <string>

#include "fastxent/errors.h"

namespace py = pybind11;

namespace fastxent {
namespace bindings {
namespace {

DType dtype_of(const py::dtype& dt, const char* name) {
  const char kind = dt.kind();
  const auto size = dt.itemsize();
  const std::string dtype_name = py::str(dt.attr("name"));
  if (dt.byteorder() == '>') {
    throw TypeError(std::string(name) + ": non-native (big-endian) byte order is not supported");
  }
  if (dtype_name == "bfloat16") return DType::kBFloat16;
  if (kind == 'f') {
    if (size == 2) return DType::kFloat16;
    if (size == 4) return DType::kFloat32;
    if (size == 8) return DType::kFloat64;
  } else if (kind == 'i') {
    if (size == 1) return DType::kInt8;
    if (size == 2) return DType::kInt16;
    if (size == 4) return DType::kInt32;
    if (size == 8) return DType::kInt64;
  } else if (kind == 'u') {
    if (size == 1) return DType::kUInt8;
    if (size == 2) return DType::kUInt16;
    if (size == 4) return DType::kUInt32;
    if (size == 8) return DType::kUInt64;
  } else if (kind == 'b') {
    return DType::kBool;
  }
  throw TypeError(std::string(name) + ": unsupported dtype " + dtype_name);
}

}  // namespace

ArrayArg to_view(const py::handle& obj, const char* name, intptr_t stream) {
  if (!py::isinstance<py::array>(obj)) {
    if (has_dlpack(obj)) return from_dlpack(obj, name, stream);
    throw TypeError(std::string(name) + ": expected a NumPy array or an array with __dlpack__, "
                    "got " + std::string(py::str(py::type::of(obj).attr("__name__"))));
  }
  const auto arr = py::reinterpret_borrow<py::array>(obj);
  TensorView v;
  v.dtype = dtype_of(arr.dtype(), name);
  if (arr.ndim() > kMaxDims) {
    throw ValueError(std::string(name) + ": at most " + std::to_string(kMaxDims) +
                     " dimensions are supported, got " + std::to_string(arr.ndim()));
  }
  v.ndim = int(arr.ndim());
  v.data = const_cast<void*>(arr.data());
  v.readonly = !arr.writeable();
  const auto item = arr.itemsize();
  for (int d = 0; d < v.ndim; ++d) {
    v.shape[d] = arr.shape(d);
    if (arr.strides(d) % item != 0) {
      throw ValueError(std::string(name) + ": strides must be multiples of the item size");
    }
    v.strides[d] = arr.strides(d) / item;
  }
  return ArrayArg{v, nullptr};
}

ArrayArg output_view(const py::handle& obj, const char* name, intptr_t stream) {
  ArrayArg v = to_view(obj, name, stream);
  if (v.view.readonly) throw ValueError(std::string(name) + " is read-only");
  return v;
}

py::object allocate(const py::function& alloc, const std::vector<int64_t>& shape, DType dtype) {
  return alloc(py::tuple(py::cast(shape)), dtype_name(dtype));
}

}  // namespace bindings
}  // namespace fastxent

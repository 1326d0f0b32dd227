// Python objects → fastxent::TensorView: NumPy arrays through the buffer of a py::array, every
// other array (torch, JAX, CuPy, ...) through DLPack (dlpack.h).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <vector>

#include "dlpack.h"
#include "fastxent/tensor.h"

namespace fastxent {
namespace bindings {

// A view of `obj`: a NumPy array or an object with __dlpack__ / __dlpack_device__ (the Python
// layer converts lists and scalars). The caller keeps `obj` and the returned ArrayArg alive
// while the view is used, and drops the ArrayArg with the GIL held. TypeError names `name` on
// a bad dtype, device or type. `stream`: the CUDA stream the call runs on, for DLPack exports
// of CUDA arrays (see from_dlpack).
ArrayArg to_view(const pybind11::handle& obj, const char* name, intptr_t stream = 0);

// A view of an output array: as to_view, and ValueError naming `name` when it is read-only.
ArrayArg output_view(const pybind11::handle& obj, const char* name, intptr_t stream = 0);

// A new output from the Python layer's allocator `alloc(shape, dtype_name)` (the library the
// inputs came from: NumPy, torch, ...).
pybind11::object allocate(const pybind11::function& alloc, const std::vector<int64_t>& shape,
                          DType dtype);

// The binary cross-entropy functions (bce.cc).
void register_binary_cross_entropy(pybind11::module_& m);

}  // namespace bindings
}  // namespace fastxent

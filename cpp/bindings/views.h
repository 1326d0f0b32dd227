// Python objects → fastxent::TensorView: NumPy arrays through the buffer of a py::array, every
// other array (torch, JAX, CuPy, ...) through DLPack (dlpack.h).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

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

}  // namespace bindings
}  // namespace fastxent

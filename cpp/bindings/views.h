// Python objects → fastxent::TensorView (NumPy arrays through the buffer of a py::array).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "fastxent/tensor.h"

namespace fastxent {
namespace bindings {

// A view of `obj`, which must be a NumPy array (the Python layer converts other inputs). The
// caller keeps `obj` alive while the view is used. TypeError names `name` on a bad dtype.
TensorView to_view(const pybind11::handle& obj, const char* name);

}  // namespace bindings
}  // namespace fastxent

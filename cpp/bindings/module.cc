// The fastxent._core extension: converts arguments, releases the GIL around the C++ calls and
// maps C++ exceptions to Python ones. No math and no shape logic here (STYLE.md §6): outputs are
// allocated by the Python layer's `alloc(shape, dtype_name)` with the shapes the core reports.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "fastxent/fastxent.h"
#include "views.h"

namespace py = pybind11;
using fastxent::bindings::to_view;

namespace {

struct CeArgs {
  py::object weight;  // None or array
  int64_t ignore_index;
  std::string reduction;
  double label_smoothing;
  std::optional<int> axis;
};

fastxent::CrossEntropy make_problem(const py::handle& input, const py::handle& target,
                                    const CeArgs& args) {
  const fastxent::TensorView in = to_view(input, "input");
  const fastxent::TensorView tg = to_view(target, "target");
  fastxent::CrossEntropyOptions o;
  if (!args.weight.is_none()) o.weight = to_view(args.weight, "weight");
  o.ignore_index = args.ignore_index;
  o.reduction = fastxent::parse_reduction(args.reduction.c_str());
  o.label_smoothing = args.label_smoothing;
  o.axis = args.axis;
  py::gil_scoped_release release;  // construction reads every target
  return fastxent::CrossEntropy(in, tg, o);
}

py::object allocate(const py::function& alloc, const std::vector<int64_t>& shape,
                    fastxent::DType dtype) {
  return alloc(py::tuple(py::cast(shape)), fastxent::dtype_name(dtype));
}

fastxent::TensorView output_view(const py::handle& obj, const char* name) {
  fastxent::TensorView v = to_view(obj, name);
  if (v.readonly) throw fastxent::ValueError(std::string(name) + " is read-only");
  return v;
}

py::object cross_entropy(py::handle input, py::handle target, CeArgs args, py::function alloc) {
  const fastxent::CrossEntropy ce = make_problem(input, target, args);
  py::object loss = allocate(alloc, ce.loss_shape(), ce.loss_dtype());
  const fastxent::TensorView loss_view = output_view(loss, "loss out");
  py::gil_scoped_release release;
  ce.forward(loss_view);
  return loss;
}

py::object cross_entropy_backward(py::handle input, py::handle target, py::handle grad_output,
                                  CeArgs args, py::object out, py::function alloc) {
  const fastxent::CrossEntropy ce = make_problem(input, target, args);
  const fastxent::TensorView go = to_view(grad_output, "grad_output");
  py::object grad = out.is_none() ? allocate(alloc, ce.grad_shape(), ce.grad_dtype()) : out;
  const fastxent::TensorView grad_view = output_view(grad, "out");
  py::gil_scoped_release release;
  ce.backward(go, grad_view);
  return grad;
}

py::tuple cross_entropy_with_grad(py::handle input, py::handle target, py::handle grad_output,
                                  CeArgs args, bool inplace, py::function alloc) {
  const fastxent::CrossEntropy ce = make_problem(input, target, args);
  const fastxent::TensorView go = to_view(grad_output, "grad_output");
  py::object loss = allocate(alloc, ce.loss_shape(), ce.loss_dtype());
  py::object grad = inplace ? py::reinterpret_borrow<py::object>(input)
                            : allocate(alloc, ce.grad_shape(), ce.grad_dtype());
  const fastxent::TensorView loss_view = output_view(loss, "loss out");
  const fastxent::TensorView grad_view = output_view(grad, inplace ? "input" : "out");
  {
    py::gil_scoped_release release;
    ce.forward_backward(go, loss_view, grad_view);
  }
  return py::make_tuple(loss, grad);
}

py::object softmax_family(py::handle input, int axis, py::object out, py::function alloc,
                          const std::string& which) {
  const fastxent::Softmax sm(to_view(input, "input"), axis);
  if (which == "logsumexp") {
    py::object lse = allocate(alloc, sm.reduced_shape(), sm.reduced_dtype());
    const fastxent::TensorView v = output_view(lse, "out");
    py::gil_scoped_release release;
    sm.logsumexp(v);
    return lse;
  }
  const fastxent::TensorView in = to_view(input, "input");
  py::object result = out.is_none() ? allocate(alloc, {in.shape, in.shape + in.ndim}, in.dtype) : out;
  const fastxent::TensorView v = output_view(result, "out");
  py::gil_scoped_release release;
  if (which == "softmax") {
    sm.softmax(v);
  } else {
    sm.log_softmax(v);
  }
  return result;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastxent C++ core (use the fastxent package, not this module)";

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const fastxent::IndexError& e) {
      PyErr_SetString(PyExc_IndexError, e.what());
    } catch (const fastxent::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const fastxent::ValueError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  py::class_<CeArgs>(m, "CrossEntropyArgs")
      .def(py::init<py::object, int64_t, std::string, double, std::optional<int>>(),
           py::arg("weight"), py::arg("ignore_index"), py::arg("reduction"),
           py::arg("label_smoothing"), py::arg("axis"));

  m.def("cross_entropy", &cross_entropy, py::arg("input"), py::arg("target"), py::arg("args"),
        py::arg("alloc"));
  m.def("cross_entropy_backward", &cross_entropy_backward, py::arg("input"), py::arg("target"),
        py::arg("grad_output"), py::arg("args"), py::arg("out"), py::arg("alloc"));
  m.def("cross_entropy_with_grad", &cross_entropy_with_grad, py::arg("input"), py::arg("target"),
        py::arg("grad_output"), py::arg("args"), py::arg("inplace"), py::arg("alloc"));
  m.def("softmax_family", &softmax_family, py::arg("input"), py::arg("axis"), py::arg("out"),
        py::arg("alloc"), py::arg("which"));

  m.def("set_num_threads", &fastxent::set_num_threads, py::arg("n"));
  m.def("get_num_threads", &fastxent::get_num_threads);
  m.def("cpu_isa", &fastxent::cpu_isa);
  m.def("available_cpu_isas", &fastxent::available_cpu_isas);
  m.def("set_cpu_isa", &fastxent::set_cpu_isa, py::arg("name"));
  m.def("openmp_enabled", &fastxent::openmp_enabled);
  m.def("version", &fastxent::version);
  m.def("stream_read", [](py::handle buffer) {
    const fastxent::TensorView v = to_view(buffer, "buffer");
    py::gil_scoped_release release;
    return fastxent::stream_read(v);
  }, py::arg("buffer"));
  m.def("vector_exp", [](py::handle x, py::handle out) {
    const fastxent::TensorView xv = to_view(x, "x");
    const fastxent::TensorView ov = output_view(out, "out");
    py::gil_scoped_release release;
    fastxent::vector_exp(xv, ov);
  }, py::arg("x"), py::arg("out"));
  m.def("stream_copy", [](py::handle src, py::handle dst) {
    const fastxent::TensorView s = to_view(src, "src");
    const fastxent::TensorView d = output_view(dst, "dst");
    py::gil_scoped_release release;
    fastxent::stream_copy(s, d);
  }, py::arg("src"), py::arg("dst"));
}

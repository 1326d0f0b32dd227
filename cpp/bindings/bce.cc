// Python bindings of binary cross-entropy with logits: argument conversion, output allocation,
// GIL release around the C++ calls (no math here; see fastxent/binary_cross_entropy.h).
#include <pybind11/pybind11.h>

#include <optional>
#include <string>

#include "fastxent/fastxent.h"
#include "views.h"

namespace py = pybind11;

namespace fastxent {
namespace bindings {
namespace {

struct BceArgs {
  py::object weight;      // None or array
  py::object pos_weight;  // None or array
  std::string reduction;
};

// A validated problem and the views it reads (kept alive, DLPack exports included, until the
// problem is dropped with the GIL held).
struct Problem {
  ArrayArg input, target, weight, pos_weight;
  std::optional<BinaryCrossEntropy> bce;
};

Problem make_problem(const py::handle& input, const py::handle& target, const BceArgs& args) {
  Problem p;
  p.input = to_view(input, "input");
  p.target = to_view(target, "target");
  BinaryCrossEntropyOptions o;
  if (!args.weight.is_none()) {
    p.weight = to_view(args.weight, "weight");
    o.weight = p.weight.view;
  }
  if (!args.pos_weight.is_none()) {
    p.pos_weight = to_view(args.pos_weight, "pos_weight");
    o.pos_weight = p.pos_weight.view;
  }
  o.reduction = parse_reduction(args.reduction.c_str());
  p.bce.emplace(p.input.view, p.target.view, o);
  return p;
}

py::object forward(py::handle input, py::handle target, const BceArgs& args, py::function alloc) {
  const Problem p = make_problem(input, target, args);
  py::object loss = allocate(alloc, p.bce->loss_shape(), p.bce->loss_dtype());
  const ArrayArg loss_view = output_view(loss, "loss out");
  py::gil_scoped_release release;
  p.bce->forward(loss_view.view);
  return loss;
}

py::object backward(py::handle input, py::handle target, py::handle grad_output,
                    const BceArgs& args, py::object out, py::function alloc) {
  const Problem p = make_problem(input, target, args);
  const ArrayArg go = to_view(grad_output, "grad_output");
  py::object grad = out.is_none() ? allocate(alloc, p.bce->grad_shape(), p.bce->grad_dtype()) : out;
  const ArrayArg grad_view = output_view(grad, "out");
  py::gil_scoped_release release;
  p.bce->backward(go.view, grad_view.view);
  return grad;
}

py::tuple with_grad(py::handle input, py::handle target, py::handle grad_output,
                    const BceArgs& args, bool inplace, py::object out, py::function alloc) {
  const Problem p = make_problem(input, target, args);
  const ArrayArg go = to_view(grad_output, "grad_output");
  py::object loss = allocate(alloc, p.bce->loss_shape(), p.bce->loss_dtype());
  py::object grad = inplace           ? py::reinterpret_borrow<py::object>(input)
                    : !out.is_none() ? out
                                      : allocate(alloc, p.bce->grad_shape(), p.bce->grad_dtype());
  const ArrayArg loss_view = output_view(loss, "loss out");
  const ArrayArg grad_view = output_view(grad, inplace ? "input" : "out");
  {
    py::gil_scoped_release release;
    p.bce->forward_backward(go.view, loss_view.view, grad_view.view);
  }
  return py::make_tuple(loss, grad);
}

}  // namespace

void register_binary_cross_entropy(py::module_& m) {
  py::class_<BceArgs>(m, "BinaryCrossEntropyArgs")
      .def(py::init<py::object, py::object, std::string>(), py::arg("weight"),
           py::arg("pos_weight"), py::arg("reduction"));
  m.def("binary_cross_entropy_with_logits", &forward, py::arg("input"), py::arg("target"),
        py::arg("args"), py::arg("alloc"));
  m.def("binary_cross_entropy_with_logits_backward", &backward, py::arg("input"),
        py::arg("target"), py::arg("grad_output"), py::arg("args"), py::arg("out"),
        py::arg("alloc"));
  m.def("binary_cross_entropy_with_logits_with_grad", &with_grad, py::arg("input"),
        py::arg("target"), py::arg("grad_output"), py::arg("args"), py::arg("inplace"),
        py::arg("out"), py::arg("alloc"));
}

}  // namespace bindings
}  // namespace fastxent

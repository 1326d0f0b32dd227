// The fastxent._core extension: converts arguments, releases the GIL around the C++ calls and
// maps C++ exceptions to Python ones. No math and no shape logic here (STYLE.md §6): outputs are
// allocated by the Python layer's `alloc(shape, dtype_name)` with the shapes the core reports, by
// the library the inputs came from (NumPy, torch, ...), and written through their views.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "fastxent/fastxent.h"
#include "views.h"

namespace py = pybind11;
using fastxent::bindings::allocate;
using fastxent::bindings::ArrayArg;
using fastxent::bindings::output_view;
using fastxent::bindings::to_view;

namespace {

struct CeArgs {
  py::object weight;  // None or array
  int64_t ignore_index;
  std::string reduction;
  double label_smoothing;
  std::optional<int> axis;
  double z_loss;
  double softcap;
  int64_t vocab_start;
  int64_t vocab_size;
  // CUDA arrays: the stream to run on, in DLPack's convention (1: legacy default stream, 2:
  // per-thread default stream, else a cudaStream_t); the Python layer passes the caller's current
  // stream. Also handed to __dlpack__(stream=...) of CUDA producers.
  intptr_t stream;
};

void* stream_handle(intptr_t stream) {
  // 1 and 2 are also the CUDA runtime's cudaStreamLegacy and cudaStreamPerThread handles.
  return reinterpret_cast<void*>(stream);
}

// A validated problem and the views it reads: the ArrayArgs keep DLPack exports alive until
// the problem is dropped (after the GIL is taken back: declared before any release).
struct Problem {
  ArrayArg input, target, weight;
  std::optional<fastxent::CrossEntropy> ce;
};

Problem make_problem(const py::handle& input, const py::handle& target, const CeArgs& args) {
  Problem p;
  p.input = to_view(input, "input", args.stream);
  p.target = to_view(target, "target", args.stream);
  fastxent::CrossEntropyOptions o;
  if (!args.weight.is_none()) {
    p.weight = to_view(args.weight, "weight", args.stream);
    o.weight = p.weight.view;
  }
  o.ignore_index = args.ignore_index;
  o.reduction = fastxent::parse_reduction(args.reduction);
  o.label_smoothing = args.label_smoothing;
  o.axis = args.axis;
  o.z_loss = args.z_loss;
  o.softcap = args.softcap;
  o.vocab_start = args.vocab_start;
  o.vocab_size = args.vocab_size;
  o.cuda_stream = stream_handle(args.stream);
  py::gil_scoped_release release;  // construction reads every target
  p.ce.emplace(p.input.view, p.target.view, o);
  return p;
}

// The per-row log-sum-exp output asked for: "" (none), "float64" (saved for a backward) or
// "loss" (return_lse: the loss's dtype).
std::optional<fastxent::DType> lse_dtype(const Problem& p, const std::string& with_lse) {
  if (with_lse.empty()) return std::nullopt;
  return with_lse == "float64" ? fastxent::DType::kFloat64 : p.ce->loss_dtype();
}

py::object cross_entropy(py::handle input, py::handle target, CeArgs args,
                         const std::string& with_lse, py::function alloc) {
  const Problem p = make_problem(input, target, args);
  py::object loss = allocate(alloc, p.ce->loss_shape(), p.ce->loss_dtype());
  const ArrayArg loss_view = output_view(loss, "loss out", args.stream);
  const std::optional<fastxent::DType> lse_type = lse_dtype(p, with_lse);
  if (!lse_type) {
    py::gil_scoped_release release;
    p.ce->forward(loss_view.view);
    return loss;
  }
  py::object lse = allocate(alloc, p.ce->lse_shape(), *lse_type);
  const ArrayArg lse_view = output_view(lse, "lse out", args.stream);
  {
    py::gil_scoped_release release;
    p.ce->forward(loss_view.view, lse_view.view);
  }
  return py::make_tuple(loss, lse);
}

py::object cross_entropy_backward(py::handle input, py::handle target, py::handle grad_output,
                                  CeArgs args, py::object lse, py::object lse_grad,
                                  py::object out, py::function alloc) {
  const Problem p = make_problem(input, target, args);
  const ArrayArg go = to_view(grad_output, "grad_output", args.stream);
  py::object grad = out.is_none() ? allocate(alloc, p.ce->grad_shape(), p.ce->grad_dtype()) : out;
  const ArrayArg grad_view = output_view(grad, "out", args.stream);
  if (lse.is_none()) {
    py::gil_scoped_release release;
    p.ce->backward(go.view, grad_view.view);
    return grad;
  }
  const ArrayArg lse_view = to_view(lse, "lse", args.stream);
  ArrayArg lse_grad_view;
  if (!lse_grad.is_none()) lse_grad_view = to_view(lse_grad, "lse_grad_output", args.stream);
  py::gil_scoped_release release;
  p.ce->backward_from_lse(go.view, lse_view.view, grad_view.view,
                          lse_grad.is_none() ? nullptr : &lse_grad_view.view);
  return grad;
}

py::tuple cross_entropy_with_grad(py::handle input, py::handle target, py::handle grad_output,
                                  CeArgs args, bool inplace, py::object out,
                                  const std::string& with_lse, py::function alloc) {
  const Problem p = make_problem(input, target, args);
  const ArrayArg go = to_view(grad_output, "grad_output", args.stream);
  py::object loss = allocate(alloc, p.ce->loss_shape(), p.ce->loss_dtype());
  py::object grad = inplace           ? py::reinterpret_borrow<py::object>(input)
                    : !out.is_none() ? out
                                      : allocate(alloc, p.ce->grad_shape(), p.ce->grad_dtype());
  const ArrayArg loss_view = output_view(loss, "loss out", args.stream);
  const ArrayArg grad_view = output_view(grad, inplace ? "input" : "out", args.stream);
  const std::optional<fastxent::DType> lse_type = lse_dtype(p, with_lse);
  py::object lse = lse_type ? allocate(alloc, p.ce->lse_shape(), *lse_type) : py::none();
  ArrayArg lse_view;
  if (lse_type) lse_view = output_view(lse, "lse out", args.stream);
  {
    py::gil_scoped_release release;
    p.ce->forward_backward(go.view, loss_view.view, grad_view.view,
                           lse_type ? &lse_view.view : nullptr);
  }
  if (lse_type) return py::make_tuple(loss, grad, lse);
  return py::make_tuple(loss, grad);
}

// loss, lse, argmax and entropy from one pass (CrossEntropy::forward_statistics).
py::tuple cross_entropy_statistics(py::handle input, py::handle target, CeArgs args,
                                   py::function alloc) {
  const Problem p = make_problem(input, target, args);
  py::object loss = allocate(alloc, p.ce->loss_shape(), p.ce->loss_dtype());
  py::object lse = allocate(alloc, p.ce->lse_shape(), p.ce->loss_dtype());
  py::object argmax = allocate(alloc, p.ce->lse_shape(), fastxent::DType::kInt64);
  py::object entropy = allocate(alloc, p.ce->lse_shape(), p.ce->loss_dtype());
  const ArrayArg loss_view = output_view(loss, "loss out", args.stream);
  const ArrayArg lse_view = output_view(lse, "lse out", args.stream);
  const ArrayArg argmax_view = output_view(argmax, "argmax out", args.stream);
  const ArrayArg entropy_view = output_view(entropy, "entropy out", args.stream);
  {
    py::gil_scoped_release release;
    p.ce->forward_statistics(loss_view.view, lse_view.view, argmax_view.view, entropy_view.view);
  }
  return py::make_tuple(loss, lse, argmax, entropy);
}

// Vocabulary-parallel pieces: this shard's per-row statistics, and the loss and float64 lse
// of the whole vocabulary from every shard's statistics (see CrossEntropy::shard_statistics).
py::object shard_statistics(py::handle input, py::handle target, CeArgs args,
                            py::function alloc) {
  const Problem p = make_problem(input, target, args);
  py::object stats = allocate(alloc, p.ce->shard_stats_shape(), fastxent::DType::kFloat64);
  const ArrayArg stats_view = output_view(stats, "stats out", args.stream);
  py::gil_scoped_release release;
  p.ce->shard_statistics(stats_view.view);
  return stats;
}

py::tuple loss_from_shard_statistics(py::handle input, py::handle target, CeArgs args,
                                     py::handle all_stats, py::function alloc) {
  const Problem p = make_problem(input, target, args);
  const ArrayArg stats_view = to_view(all_stats, "all_stats", args.stream);
  py::object loss = allocate(alloc, p.ce->loss_shape(), p.ce->loss_dtype());
  py::object lse = allocate(alloc, p.ce->lse_shape(), fastxent::DType::kFloat64);
  const ArrayArg loss_view = output_view(loss, "loss out", args.stream);
  const ArrayArg lse_view = output_view(lse, "lse out", args.stream);
  {
    py::gil_scoped_release release;
    p.ce->loss_from_shard_statistics(stats_view.view, loss_view.view, lse_view.view);
  }
  return py::make_tuple(loss, lse);
}

py::object shard_backward(py::handle input, py::handle target, py::handle grad_output,
                          CeArgs args, py::handle all_stats, py::object lse_grad, py::object out,
                          py::function alloc) {
  const Problem p = make_problem(input, target, args);
  const ArrayArg go = to_view(grad_output, "grad_output", args.stream);
  const ArrayArg stats_view = to_view(all_stats, "all_stats", args.stream);
  ArrayArg lse_grad_view;
  if (!lse_grad.is_none()) lse_grad_view = to_view(lse_grad, "lse_grad_output", args.stream);
  py::object grad = out.is_none() ? allocate(alloc, p.ce->grad_shape(), p.ce->grad_dtype()) : out;
  const ArrayArg grad_view = output_view(grad, "out", args.stream);
  py::gil_scoped_release release;
  p.ce->shard_backward(go.view, stats_view.view, grad_view.view,
                       lse_grad.is_none() ? nullptr : &lse_grad_view.view);
  return grad;
}

py::object softmax_family(py::handle input, int axis, py::object out, py::function alloc,
                          const std::string& which, intptr_t stream) {
  const ArrayArg in = to_view(input, "input", stream);
  const fastxent::Softmax sm(in.view, axis, stream_handle(stream));
  if (which == "logsumexp") {
    py::object lse = allocate(alloc, sm.reduced_shape(), sm.reduced_dtype());
    const ArrayArg v = output_view(lse, "out", stream);
    py::gil_scoped_release release;
    sm.logsumexp(v.view);
    return lse;
  }
  py::object result = out.is_none()
      ? allocate(alloc, {in.view.shape, in.view.shape + in.view.ndim}, in.view.dtype) : out;
  const ArrayArg v = output_view(result, "out", stream);
  py::gil_scoped_release release;
  if (which == "softmax") {
    sm.softmax(v.view);
  } else {
    sm.log_softmax(v.view);
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
      .def(py::init<py::object, int64_t, std::string, double, std::optional<int>, double,
                    double, int64_t, int64_t, intptr_t>(),
           py::arg("weight"), py::arg("ignore_index"), py::arg("reduction"),
           py::arg("label_smoothing"), py::arg("axis"), py::arg("z_loss"), py::arg("softcap"),
           py::arg("vocab_start"), py::arg("vocab_size"), py::arg("stream") = 0);

  m.def("cross_entropy", &cross_entropy, py::arg("input"), py::arg("target"), py::arg("args"),
        py::arg("with_lse"), py::arg("alloc"));
  m.def("cross_entropy_backward", &cross_entropy_backward, py::arg("input"), py::arg("target"),
        py::arg("grad_output"), py::arg("args"), py::arg("lse"), py::arg("lse_grad"),
        py::arg("out"), py::arg("alloc"));
  m.def("cross_entropy_with_grad", &cross_entropy_with_grad, py::arg("input"), py::arg("target"),
        py::arg("grad_output"), py::arg("args"), py::arg("inplace"), py::arg("out"),
        py::arg("with_lse"), py::arg("alloc"));
  m.def("cross_entropy_statistics", &cross_entropy_statistics, py::arg("input"),
        py::arg("target"), py::arg("args"), py::arg("alloc"));
  m.def("shard_statistics", &shard_statistics, py::arg("input"), py::arg("target"),
        py::arg("args"), py::arg("alloc"));
  m.def("loss_from_shard_statistics", &loss_from_shard_statistics, py::arg("input"),
        py::arg("target"), py::arg("args"), py::arg("all_stats"), py::arg("alloc"));
  m.def("shard_backward", &shard_backward, py::arg("input"), py::arg("target"),
        py::arg("grad_output"), py::arg("args"), py::arg("all_stats"), py::arg("lse_grad"),
        py::arg("out"), py::arg("alloc"));
  fastxent::bindings::register_binary_cross_entropy(m);
  m.def("softmax_family", &softmax_family, py::arg("input"), py::arg("axis"), py::arg("out"),
        py::arg("alloc"), py::arg("which"), py::arg("stream") = 0);

  m.def("set_num_threads", &fastxent::set_num_threads, py::arg("n"));
  m.def("get_num_threads", &fastxent::get_num_threads);
  // Test hooks of the thread budget (tests/test_concurrency.py).
  m.def("_thread_peaks", [] {
    const fastxent::ThreadPeaks peaks = fastxent::thread_peaks();
    return py::dict(py::arg("helpers") = peaks.helpers, py::arg("active") = peaks.active);
  });
  m.def("_reset_thread_peaks", &fastxent::reset_thread_peaks);
  m.def("_run_in_parallel_region", [](int team, const py::function& fn) {
    py::gil_scoped_release release;  // each team thread takes the GIL to call fn
    fastxent::run_in_parallel_region(team, [&fn](int i) {
      py::gil_scoped_acquire gil;
      fn(i);
    });
  }, py::arg("team"), py::arg("fn"));
  m.def("cpu_isa", &fastxent::cpu_isa);
  m.def("available_cpu_isas", &fastxent::available_cpu_isas);
  m.def("set_cpu_isa", &fastxent::set_cpu_isa, py::arg("name"));
  m.def("openmp_enabled", &fastxent::openmp_enabled);
  m.def("version", &fastxent::version);
  m.def("cuda_available", &fastxent::cuda_available);
  m.def("cuda_info", [] {
    const fastxent::CudaInfo i = fastxent::cuda_info();
    py::dict d;
    d["built"] = i.built;
    d["toolkit"] = i.toolkit_version;
    d["architectures"] = i.architectures;
    d["runtime_version"] = i.runtime_version;
    d["driver_version"] = i.driver_version;
    d["devices"] = i.devices;
    d["status"] = i.status;
    return d;
  });
  m.def("stream_read", [](py::handle buffer) {
    const ArrayArg v = to_view(buffer, "buffer", 0);
    py::gil_scoped_release release;
    return fastxent::stream_read(v.view);
  }, py::arg("buffer"));
  m.def("vector_exp", [](py::handle x, py::handle out) {
    const ArrayArg xv = to_view(x, "x", 0);
    const ArrayArg ov = output_view(out, "out", 0);
    py::gil_scoped_release release;
    fastxent::vector_exp(xv.view, ov.view);
  }, py::arg("x"), py::arg("out"));
  m.def("vector_log1p", [](py::handle x, py::handle out) {
    const ArrayArg xv = to_view(x, "x");
    const ArrayArg ov = output_view(out, "out");
    py::gil_scoped_release release;
    fastxent::vector_log1p(xv.view, ov.view);
  }, py::arg("x"), py::arg("out"));
  m.def("stream_copy", [](py::handle src, py::handle dst) {
    const ArrayArg s = to_view(src, "src", 0);
    const ArrayArg d = output_view(dst, "dst", 0);
    py::gil_scoped_release release;
    fastxent::stream_copy(s.view, d.view);
  }, py::arg("src"), py::arg("dst"));
}

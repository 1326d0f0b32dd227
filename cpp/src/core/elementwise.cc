#include "core/elementwise.h"

#include <string>

#include "core/views.h"
#include "fastxent/errors.h"

namespace fastxent {
namespace core {

TensorView broadcast_to(const TensorView& v, const std::vector<int64_t>& shape, const char* name) {
  const int nd = int(shape.size());
  const int lead = nd - v.ndim;
  bool ok = lead >= 0;
  for (int d = 0; ok && d < v.ndim; ++d) ok = v.shape[d] == 1 || v.shape[d] == shape[size_t(lead + d)];
  if (!ok) {
    throw ValueError(std::string(name) + ": shape " + shape_str(shape_of(v)) +
                     " cannot be broadcast to the input's shape " + shape_str(shape));
  }
  TensorView out = v;
  out.ndim = nd;
  for (int d = 0; d < nd; ++d) {
    out.shape[d] = shape[size_t(d)];
    const bool repeated = d < lead || v.shape[d - lead] == 1;
    out.strides[d] = repeated ? 0 : v.strides[d - lead];
  }
  return out;
}

void elementwise_layout(const std::vector<int64_t>& shape,
                        const std::vector<const TensorView*>& views, cpu::RowSpace* space,
                        std::vector<cpu::RowOperand>* ops) {
  const size_t nv = views.size();
  struct Dim {
    int64_t size;
    std::vector<int64_t> strides;
  };
  std::vector<Dim> dims;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    Dim next{shape[d], std::vector<int64_t>(nv, 0)};
    for (size_t k = 0; k < nv; ++k) {
      if (views[k]) next.strides[k] = views[k]->strides[d];
    }
    bool merge = !dims.empty();
    for (size_t k = 0; merge && k < nv; ++k) {
      merge = dims.back().strides[k] == next.size * next.strides[k];
    }
    if (merge) {  // the previous dimension steps over exactly this one in every view
      dims.back().size *= next.size;
      dims.back().strides = next.strides;
    } else {
      dims.push_back(next);
    }
  }
  if (dims.empty()) dims.push_back(Dim{1, std::vector<int64_t>(nv, 0)});

  *space = cpu::RowSpace{};
  space->classes = dims.back().size;
  space->rows = 1;
  for (size_t d = 0; d + 1 < dims.size(); ++d) {
    space->outer_shape[space->nouter++] = dims[d].size;
    space->rows *= dims[d].size;
  }
  ops->assign(nv, cpu::RowOperand{});
  for (size_t k = 0; k < nv; ++k) {
    if (!views[k]) continue;
    cpu::RowOperand& op = (*ops)[k];
    op.data = views[k]->data;
    op.dtype = views[k]->dtype;
    op.class_stride = dims.back().strides[k];
    for (size_t d = 0; d + 1 < dims.size(); ++d) op.outer_strides[d] = dims[d].strides[k];
  }
}

}  // namespace core
}  // namespace fastxent

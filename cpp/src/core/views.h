// Checks and conversions on TensorViews shared by every entry point: argument names go into
// every message, so a Python user reads which argument was wrong and what was expected.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/row_layout.h"
#include "fastxent/tensor.h"

namespace fastxent {
namespace core {

std::string shape_str(const std::vector<int64_t>& shape);
std::vector<int64_t> shape_of(const TensorView& v);

// ndim within limits, on a device this build and machine serve (TypeError for a CUDA array
// without CUDA support or device), element count fits in int64 (returns it).
int64_t check_view(const TensorView& v, const char* name);
// ValueError unless v is on `device` (mixed devices); TypeError for a CUDA array given to a
// CPU-only function.
void check_device(const TensorView& v, const char* name, const Device& device);
void check_cpu(const TensorView& v, const char* name);
std::string device_str(const Device& device);  // "cpu", "cuda:1"
bool on_cuda(const TensorView& v);
void check_floating(const TensorView& v, const char* name);
int normalize_axis(int axis, int ndim, const char* what);

// An output: writable, the expected shape and dtype, no element written twice.
void check_output(const TensorView& out, const char* name, const std::vector<int64_t>& shape,
                  DType dtype, const Device& device);
// Throws ValueError when `out` may share memory with `in` (other than being exactly `in` when
// `allow_same` is set: an in-place result).
void check_no_overlap(const TensorView& out, const char* out_name, const TensorView& in,
                      const char* in_name, bool allow_same);
bool same_view(const TensorView& a, const TensorView& b);

// The rows of `shape` with `axis` as class axis, and an operand laid over them. For operands
// shaped like the rows (targets, per-row losses) pass class_axis = -1.
common::RowSpace row_space(const TensorView& input, int axis);
common::RowOperand row_operand(const TensorView& v, int class_axis);

// Element `index` (in C order of v's shape) of a floating / integer view, widened.
double load_floating(const TensorView& v, int64_t index);
// Integer element as int64; `exact` is false for uint64 values above INT64_MAX.
int64_t load_integer(const TensorView& v, int64_t index, bool* exact);
// Integer element as text, whatever its dtype (for error messages).
std::string integer_str(const TensorView& v, int64_t index);
// Byte offset of C-order element `index`.
int64_t element_offset(const TensorView& v, int64_t index);
// "[i, j, k]" position of C-order element `index` in v's shape.
std::string position_str(const TensorView& v, int64_t index);

}  // namespace core
}  // namespace fastxent

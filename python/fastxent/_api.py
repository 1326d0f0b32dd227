"""The NumPy-facing functions of fastxent (DESIGN.md §2). Semantics: torch's F.cross_entropy."""

from __future__ import annotations

import numpy as np

from . import _core
from ._arrays import (Outputs, as_array, as_grad_output, check_axis, is_cupy, is_torch,
                      mark_written)


def _options(weight, ignore_index, reduction, label_smoothing, axis, outputs):
    # Types are checked here; values (the reduction's name, label_smoothing's range) by the core.
    if not isinstance(reduction, str):
        raise TypeError(f"reduction must be a string, got {type(reduction).__name__}")
    try:
        smoothing = float(label_smoothing)
    except (TypeError, ValueError):
        raise TypeError(
            f"label_smoothing must be a number, got {type(label_smoothing).__name__}"
        ) from None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        try:
            ignore_index = int(ignore_index.__index__())
        except AttributeError:
            raise TypeError(
                f"ignore_index must be an integer, got {type(ignore_index).__name__}"
            ) from None
    if not -(2**63) <= ignore_index < 2**63:
        raise ValueError(f"ignore_index={ignore_index} does not fit in 64 bits")
    w = None if weight is None else as_array(weight, "weight")
    return _core.CrossEntropyArgs(w, ignore_index, reduction, smoothing, check_axis(axis),
                                  outputs.stream)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, *, axis=None):
    """Softmax cross-entropy loss, exactly ``torch.nn.functional.cross_entropy``.

    Parameters
    ----------
    input : array (C,), (N, C) or (N, C, d1, ..., dk)
        Logits, float16/bfloat16/float32/float64. Read in place, whatever the strides.
    target : array
        Class indices (any integer dtype, the input's shape without the class axis) or class
        probabilities (floating, the input's shape).
    weight : array (C,), optional
        Per-class weights.
    ignore_index : int
        Index targets equal to it contribute no loss and no gradient (not allowed >= 0 with
        probability targets, as in torch).
    reduction : {"none", "sum", "mean"}
        "mean" divides by the summed weight of the rows not ignored (index targets) or by the
        number of rows (probability targets).
    label_smoothing : float in [0, 1]
    axis : int, optional (keyword-only)
        The class axis; default 1 (0 for 1-D input). ``axis=-1`` for (B, T, V) logits.

    Returns
    -------
    An array of the input's kind (NumPy for NumPy, lists and unknown DLPack producers; torch on
    the input's device for torch; JAX for JAX): per-row losses for "none", else 0-d. float64
    for float64 logits, float32 otherwise (float16/bfloat16 logits are accumulated and
    returned in float32).
    """
    outputs = Outputs(input)
    args = _options(weight, ignore_index, reduction, label_smoothing, axis, outputs)
    return outputs.wrap(_core.cross_entropy(as_array(input, "input"), as_array(target, "target"),
                                            args, False, outputs.alloc))


def forward_saving_lse(input, target, weight, ignore_index, reduction, label_smoothing):
    """``(loss, lse)``: :func:`cross_entropy` plus each row's log-sum-exp (shape: the input
    without its class axis; 0 for ignored rows), for :func:`backward_from_lse`. Used by the
    torch autograd path, which saves O(rows) instead of any N×C intermediate."""
    outputs = Outputs(input)
    args = _options(weight, ignore_index, reduction, label_smoothing, None, outputs)
    return outputs.wrap(_core.cross_entropy(as_array(input, "input"), as_array(target, "target"),
                                            args, True, outputs.alloc))


def backward_from_lse(input, target, grad_output, lse, weight, ignore_index, reduction,
                      label_smoothing, *, out=None):
    """:func:`cross_entropy_backward` from a log-sum-exp saved by :func:`forward_saving_lse`:
    p = exp(x - lse) directly, without the statistics pass over the logits."""
    outputs = Outputs(input)
    args = _options(weight, ignore_index, reduction, label_smoothing, None, outputs)
    result = outputs.wrap(_core.cross_entropy_backward(
        as_array(input, "input"), as_array(target, "target"), as_grad_output(grad_output), args,
        as_array(lse, "lse"), _out(out), outputs.alloc))
    mark_written(out)
    return result


def cross_entropy_backward(input, target, grad_output=1.0, weight=None, ignore_index=-100,
                           reduction="mean", label_smoothing=0.0, *, axis=None, out=None):
    """Gradient of :func:`cross_entropy` with respect to ``input``.

    ``grad_output`` is the upstream gradient: a scalar for "sum"/"mean"; a scalar or an array
    shaped like the "none" loss otherwise. The result has the input's shape and dtype; pass
    ``out=`` to write it into an existing array (``out=input`` overwrites the logits).
    """
    outputs = Outputs(input)
    args = _options(weight, ignore_index, reduction, label_smoothing, axis, outputs)
    result = outputs.wrap(_core.cross_entropy_backward(
        as_array(input, "input"), as_array(target, "target"), as_grad_output(grad_output), args,
        None, _out(out), outputs.alloc))
    mark_written(out)
    return result


def cross_entropy_with_grad(input, target, grad_output=1.0, weight=None, ignore_index=-100,
                            reduction="mean", label_smoothing=0.0, *, axis=None, inplace=False,
                            out=None):
    """Loss and gradient in one pass over the logits: ``(loss, grad_input)``.

    With ``inplace=True`` the gradient overwrites ``input`` (no N×C allocation at all) and the
    returned gradient is ``input`` itself; ``out=`` writes it into an existing array of the
    input's shape and dtype instead (a reused buffer: no page faults of a fresh allocation).
    Every argument is checked before anything is written: a failing call leaves ``input`` and
    ``out`` untouched.
    """
    x = as_array(input, "input")
    if inplace and not (isinstance(input, np.ndarray) or is_torch(input) or is_cupy(input)):
        raise TypeError("input: inplace=True needs a NumPy array, a torch tensor or a CuPy array "
                        f"to write the gradient into, got {type(input).__name__}")
    if inplace and out is not None:
        raise ValueError("out: give either inplace=True or out=, not both")
    outputs = Outputs(input)
    args = _options(weight, ignore_index, reduction, label_smoothing, axis, outputs)
    result = outputs.wrap(_core.cross_entropy_with_grad(
        x, as_array(target, "target"), as_grad_output(grad_output), args, bool(inplace),
        _out(out), outputs.alloc))
    mark_written(input if inplace else out)
    return result


def logsumexp(x, axis=-1):
    """``log(sum(exp(x), axis))`` computed in one pass, stable for any magnitude."""
    outputs = Outputs(x)
    return outputs.wrap(_core.softmax_family(as_array(x, "input"), _axis(axis), None,
                                             outputs.alloc, "logsumexp", outputs.stream))


def log_softmax(x, axis=-1, *, out=None):
    """``x - logsumexp(x, axis)``, computed as ``(x - max) - log(sum(exp(x - max)))``."""
    outputs = Outputs(x)
    result = outputs.wrap(_core.softmax_family(as_array(x, "input"), _axis(axis), _out(out),
                                               outputs.alloc, "log_softmax", outputs.stream))
    mark_written(out)
    return result


def softmax(x, axis=-1, *, out=None):
    """``exp(x - logsumexp(x, axis))``."""
    outputs = Outputs(x)
    result = outputs.wrap(_core.softmax_family(as_array(x, "input"), _axis(axis), _out(out),
                                               outputs.alloc, "softmax", outputs.stream))
    mark_written(out)
    return result


def _axis(axis) -> int:
    checked = check_axis(axis)
    if checked is None:
        raise TypeError("axis must be an integer")
    return checked


def _out(out):
    return None if out is None else as_array(out, "out")

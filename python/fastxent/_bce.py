"""Binary cross-entropy with logits for NumPy, torch and DLPack arrays: exactly
``torch.nn.functional.binary_cross_entropy_with_logits``, computed by the C++ core in one
elementwise pass (SIMD + OpenMP, deterministic sums)."""

from __future__ import annotations

from . import _core
from ._arrays import (Outputs, as_array, as_grad_output, as_out, as_reduction, check_inplace,
                      mark_written)


def _options(weight, pos_weight, reduction):
    # Types here; values (the reduction's name, shapes, dtypes) are checked by the core.
    reduction = as_reduction(reduction)
    w = None if weight is None else as_array(weight, "weight")
    pw = None if pos_weight is None else as_array(pos_weight, "pos_weight")
    return _core.BinaryCrossEntropyArgs(w, pw, reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, pos_weight=None,
                                     reduction="mean"):
    """Binary cross-entropy of logits, exactly ``torch.nn.functional.binary_cross_entropy_with_logits``.

    ``loss = weight·((1 - y)·x - (1 + (pos_weight - 1)·y)·log σ(x))`` elementwise, with
    ``log σ(x) = min(x, 0) - log1p(exp(-|x|))`` (stable for any magnitude of x).

    Parameters
    ----------
    input : array, any shape
        Logits, float16/bfloat16/float32/float64. Read in place, whatever the strides.
    target : array
        Targets (usually in [0, 1]) of the input's shape, any floating dtype.
    weight : array, optional
        Rescales each element's loss; broadcastable to the input's shape.
    pos_weight : array, optional
        Weight of the positive term; broadcastable to the input's shape, usually ``(C,)`` for
        the last axis's C classes (multi-label).
    reduction : {"none", "sum", "mean"}
        "mean" divides the sum by the number of elements.

    Returns
    -------
    An array of the input's kind: the input's shape for "none", else 0-d. float64 for float64
    logits, float32 otherwise (float16/bfloat16 logits are computed and returned in float32).
    """
    args = _options(weight, pos_weight, reduction)
    outputs = Outputs(input)
    return outputs.wrap(_core.binary_cross_entropy_with_logits(
        as_array(input, "input"), as_array(target, "target"), args, outputs.alloc))


def binary_cross_entropy_with_logits_backward(input, target, grad_output=1.0, weight=None,
                                              pos_weight=None, reduction="mean", *, out=None):
    """Gradient of :func:`binary_cross_entropy_with_logits` with respect to ``input``:
    ``grad_output · weight · ((pos_weight·y + 1 - y)·σ(x) - pos_weight·y)`` (÷ the element count
    for "mean").

    ``grad_output`` is a scalar for "sum"/"mean"; a scalar or an array of the input's shape for
    "none". The result has the input's shape and dtype; ``out=`` writes it into an existing
    array (``out=input`` overwrites the logits).
    """
    args = _options(weight, pos_weight, reduction)
    outputs = Outputs(input)
    result = outputs.wrap(_core.binary_cross_entropy_with_logits_backward(
        as_array(input, "input"), as_array(target, "target"), as_grad_output(grad_output), args,
        as_out(out), outputs.alloc))
    mark_written(out)
    return result


def binary_cross_entropy_with_logits_with_grad(input, target, grad_output=1.0, weight=None,
                                               pos_weight=None, reduction="mean", *,
                                               inplace=False, out=None):
    """Loss and gradient in one pass over the logits: ``(loss, grad_input)``.

    ``inplace=True`` writes the gradient over ``input`` (returned as the gradient); ``out=``
    into an existing array of the input's shape and dtype. Every argument is checked before
    anything is written: a failing call leaves ``input`` and ``out`` untouched.
    """
    args = _options(weight, pos_weight, reduction)
    x = as_array(input, "input")
    check_inplace(input, inplace, out)
    outputs = Outputs(input)
    result = outputs.wrap(_core.binary_cross_entropy_with_logits_with_grad(
        x, as_array(target, "target"), as_grad_output(grad_output), args, bool(inplace),
        as_out(out), outputs.alloc))
    mark_written(input if inplace else out)
    return result

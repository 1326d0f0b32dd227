"""The NumPy-facing functions of fastxent (DESIGN.md §2). Semantics: torch's F.cross_entropy."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from . import _core
from ._arrays import (Outputs, as_array, as_grad_output, as_integer, as_number, as_out,
                      as_reduction, check_axis, check_inplace, mark_written)


def _options(weight, ignore_index, reduction, label_smoothing, axis, z_loss=0.0, softcap=None,
             vocab_start=0, vocab_size=0, *, stream=0):
    # Types are checked here; values (the reduction's name, the options' ranges) by the core.
    reduction = as_reduction(reduction)
    smoothing = as_number(label_smoothing, "label_smoothing")
    ignore_index = as_integer(ignore_index, "ignore_index")
    w = None if weight is None else as_array(weight, "weight")
    cap = 0.0 if softcap is None else as_number(softcap, "softcap")  # 0: off, as None
    return _core.CrossEntropyArgs(w, ignore_index, reduction, smoothing, check_axis(axis),
                                  as_number(z_loss, "z_loss"), cap,
                                  as_integer(vocab_start, "vocab_start"),
                                  as_integer(vocab_size, "vocab_size"), stream)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, *, axis=None, z_loss=0.0, softcap=None, return_lse=False):
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
    z_loss : float >= 0 (keyword-only)
        Adds ``z_loss * lse**2`` to the loss of every row not ignored (PaLM's z-loss), with
        ``lse`` the row's log-sum-exp; "mean" divides it by the same normaliser as the loss.
    softcap : float > 0, optional (keyword-only)
        Logits pass through ``softcap * tanh(x / softcap)`` before the softmax (Gemma). A
        ``-inf`` logit then becomes ``-softcap``: no longer masked.
    return_lse : bool (keyword-only)
        Also return each row's log-sum-exp (of the softcapped logits; ignored rows included),
        shaped like the input without its class axis, in the loss's dtype.

    Returns
    -------
    An array of the input's kind (NumPy for NumPy, lists and unknown DLPack producers; torch on
    the input's device for torch; JAX for JAX): per-row losses for "none", else 0-d. float64
    for float64 logits, float32 otherwise (float16/bfloat16 logits are accumulated and
    returned in float32). ``(loss, lse)`` with ``return_lse=True``.
    """
    outputs = Outputs(input)
    args = _options(weight, ignore_index, reduction, label_smoothing, axis, z_loss, softcap,
                    stream=outputs.stream)
    return outputs.wrap(_core.cross_entropy(as_array(input, "input"), as_array(target, "target"),
                                            args, "loss" if return_lse else "", outputs.alloc))


class CrossEntropyStatistics(NamedTuple):
    """What :func:`cross_entropy_statistics` returns (arrays of the input's kind)."""

    loss: Any     #: as :func:`cross_entropy` returns it
    lse: Any      #: per row: log Σ exp(x) (float32 for 16-bit logits)
    argmax: Any   #: per row: the predicted class (int64; a NaN's index if the row has one)
    entropy: Any  #: per row: -Σ p·log p of the softmax (float32 for 16-bit logits)


def cross_entropy_statistics(input, target, weight=None, ignore_index=-100, reduction="mean",
                             label_smoothing=0.0, *, axis=None, z_loss=0.0, softcap=None):
    """The loss plus per-row evaluation statistics, all from the same single pass over the
    logits: ``(loss, lse, argmax, entropy)`` as a :class:`CrossEntropyStatistics`.

    Accuracy comes free: ``(stats.argmax == target)`` over the rows not ignored. The per-row
    values cover every row, ignored ones included, and are shaped like the input without its
    class axis; with ``softcap`` they describe the capped logits (the argmax is the same up to
    ties the cap creates; the first index wins, as ``argmax`` does). Options as in
    :func:`cross_entropy`.
    """
    outputs = Outputs(input)
    args = _options(weight, ignore_index, reduction, label_smoothing, axis, z_loss, softcap,
                    stream=outputs.stream)
    return CrossEntropyStatistics(*outputs.wrap(_core.cross_entropy_statistics(
        as_array(input, "input"), as_array(target, "target"), args, outputs.alloc)))


def forward_saving_lse(input, target, weight, ignore_index, reduction, label_smoothing,
                       z_loss=0.0, softcap=None):
    """``(loss, lse)``: :func:`cross_entropy` plus each row's log-sum-exp in float64 (shape:
    the input without its class axis), for :func:`backward_from_lse`. Used by the torch
    autograd path, which saves O(rows) instead of any N×C intermediate."""
    outputs = Outputs(input)
    args = _options(weight, ignore_index, reduction, label_smoothing, None, z_loss, softcap,
                    stream=outputs.stream)
    return outputs.wrap(_core.cross_entropy(as_array(input, "input"), as_array(target, "target"),
                                            args, "float64", outputs.alloc))


def with_grad_saving_lse(input, target, grad_output, weight, ignore_index, reduction,
                         label_smoothing, z_loss=0.0, softcap=None):
    """``(loss, grad, lse)``: :func:`cross_entropy_with_grad` with ``inplace=True`` (``grad`` is
    ``input``, overwritten) plus each row's log-sum-exp in float64, for
    :func:`backward_from_lse`. The step of linear cross-entropy, whose chunks of logits become
    their gradient and whose per-row lse a later backward may need."""
    args = _options(weight, ignore_index, reduction, label_smoothing, None, z_loss, softcap)
    outputs = Outputs(input)
    result = outputs.wrap(_core.cross_entropy_with_grad(
        as_array(input, "input"), as_array(target, "target"), as_grad_output(grad_output), args,
        True, None, "float64", outputs.alloc))
    mark_written(input)
    return result


def backward_from_lse(input, target, grad_output, lse, weight, ignore_index, reduction,
                      label_smoothing, z_loss=0.0, softcap=None, *, lse_grad_output=None,
                      out=None):
    """:func:`cross_entropy_backward` from a log-sum-exp saved by :func:`forward_saving_lse`:
    p = exp(x - lse) directly, without the statistics pass over the logits.
    ``lse_grad_output`` (one value per row) is the upstream gradient of a returned lse."""
    outputs = Outputs(input)
    args = _options(weight, ignore_index, reduction, label_smoothing, None, z_loss, softcap,
                    stream=outputs.stream)
    lse_grad = None if lse_grad_output is None else as_array(lse_grad_output, "lse_grad_output")
    result = outputs.wrap(_core.cross_entropy_backward(
        as_array(input, "input"), as_array(target, "target"), as_grad_output(grad_output), args,
        as_array(lse, "lse"), lse_grad, as_out(out), outputs.alloc))
    mark_written(out)
    return result


def cross_entropy_backward(input, target, grad_output=1.0, weight=None, ignore_index=-100,
                           reduction="mean", label_smoothing=0.0, *, axis=None, z_loss=0.0,
                           softcap=None, out=None):
    """Gradient of :func:`cross_entropy` with respect to ``input``.

    ``grad_output`` is the upstream gradient: a scalar for "sum"/"mean"; a scalar or an array
    shaped like the "none" loss otherwise. The result has the input's shape and dtype; pass
    ``out=`` to write it into an existing array (``out=input`` overwrites the logits).
    ``z_loss`` and ``softcap`` as in :func:`cross_entropy` (the gradient is with respect to the
    logits before the cap).
    """
    outputs = Outputs(input)
    args = _options(weight, ignore_index, reduction, label_smoothing, axis, z_loss, softcap,
                    stream=outputs.stream)
    result = outputs.wrap(_core.cross_entropy_backward(
        as_array(input, "input"), as_array(target, "target"), as_grad_output(grad_output), args,
        None, None, as_out(out), outputs.alloc))
    mark_written(out)
    return result


def cross_entropy_with_grad(input, target, grad_output=1.0, weight=None, ignore_index=-100,
                            reduction="mean", label_smoothing=0.0, *, axis=None, z_loss=0.0,
                            softcap=None, return_lse=False, inplace=False, out=None):
    """Loss and gradient in one pass over the logits: ``(loss, grad_input)``, or
    ``(loss, grad_input, lse)`` with ``return_lse=True``.

    With ``inplace=True`` the gradient overwrites ``input`` (no N×C allocation at all) and the
    returned gradient is ``input`` itself; ``out=`` writes it into an existing array of the
    input's shape and dtype instead (a reused buffer: no page faults of a fresh allocation).
    Every argument is checked before anything is written: a failing call leaves ``input`` and
    ``out`` untouched. ``z_loss``, ``softcap``, ``return_lse`` as in :func:`cross_entropy`.
    """
    x = as_array(input, "input")
    check_inplace(input, inplace, out)
    outputs = Outputs(input)
    args = _options(weight, ignore_index, reduction, label_smoothing, axis, z_loss, softcap,
                    stream=outputs.stream)
    result = outputs.wrap(_core.cross_entropy_with_grad(
        x, as_array(target, "target"), as_grad_output(grad_output), args, bool(inplace),
        as_out(out), "loss" if return_lse else "", outputs.alloc))
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
    result = outputs.wrap(_core.softmax_family(as_array(x, "input"), _axis(axis), as_out(out),
                                               outputs.alloc, "log_softmax", outputs.stream))
    mark_written(out)
    return result


def softmax(x, axis=-1, *, out=None):
    """``exp(x - logsumexp(x, axis))``."""
    outputs = Outputs(x)
    result = outputs.wrap(_core.softmax_family(as_array(x, "input"), _axis(axis), as_out(out),
                                               outputs.alloc, "softmax", outputs.stream))
    mark_written(out)
    return result


def _axis(axis) -> int:
    checked = check_axis(axis)
    if checked is None:
        raise TypeError("axis must be an integer")
    return checked


# ---- vocabulary-parallel pieces (fastxent.distributed runs them over processes) ----------------

def shard_statistics(local_input, target, vocab_start, vocab_size, weight=None,
                     ignore_index=-100, label_smoothing=0.0, *, axis=None, softcap=None):
    """Per-row partial statistics of a vocabulary shard: ``local_input`` holds classes
    ``[vocab_start, vocab_start + C_local)`` of ``vocab_size``. Returns float64 of shape
    ``rows_shape + (5,)``: (max, Σexp(x - max), smoothing sums, target logit or 0). Index targets
    and ``weight`` (``(vocab_size,)``) refer to the whole vocabulary; probability targets are
    this shard's slice. Stack every shard's result in shard order for
    :func:`loss_from_shard_statistics`."""
    outputs = Outputs(local_input)
    args = _options(weight, ignore_index, "none", label_smoothing, axis, 0.0, softcap,
                    vocab_start, vocab_size, stream=outputs.stream)
    return outputs.wrap(_core.shard_statistics(as_array(local_input, "input"),
                                               as_array(target, "target"), args, outputs.alloc))


def loss_from_shard_statistics(local_input, target, all_stats, vocab_start, vocab_size,
                               weight=None, ignore_index=-100, reduction="mean",
                               label_smoothing=0.0, *, axis=None, z_loss=0.0, softcap=None):
    """``(loss, lse)`` of the whole vocabulary from every shard's :func:`shard_statistics`
    stacked along a new first axis (``all_stats``); ``lse`` is float64, per row. Every shard
    computes the same bits."""
    outputs = Outputs(local_input)
    args = _options(weight, ignore_index, reduction, label_smoothing, axis, z_loss, softcap,
                    vocab_start, vocab_size, stream=outputs.stream)
    return outputs.wrap(_core.loss_from_shard_statistics(
        as_array(local_input, "input"), as_array(target, "target"), args,
        as_array(all_stats, "all_stats"), outputs.alloc))


def shard_backward(local_input, target, all_stats, vocab_start, vocab_size, grad_output=1.0,
                   weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0, *,
                   axis=None, z_loss=0.0, softcap=None, lse_grad_output=None, out=None):
    """This shard's slice of ∂loss/∂input, from every shard's statistics (``all_stats``, as for
    :func:`loss_from_shard_statistics`). ``lse_grad_output`` (one value per row) is the upstream
    gradient of the returned lse. ``out=local_input`` writes it in place."""
    outputs = Outputs(local_input)
    args = _options(weight, ignore_index, reduction, label_smoothing, axis, z_loss, softcap,
                    vocab_start, vocab_size, stream=outputs.stream)
    lse_grad = None if lse_grad_output is None else as_array(lse_grad_output, "lse_grad_output")
    result = outputs.wrap(_core.shard_backward(
        as_array(local_input, "input"), as_array(target, "target"), as_grad_output(grad_output),
        args, as_array(all_stats, "all_stats"), lse_grad, as_out(out), outputs.alloc))
    mark_written(out)
    return result

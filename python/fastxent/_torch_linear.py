"""fastxent.torch.linear_cross_entropy: autograd for the chunked linear cross-entropy
(fastxent/_linear.py), without N×V logits in forward or backward.

"sum"/"mean": the forward's chunk loop computes the gradients of hidden, weight and bias (those
that require grad) along with the loss and saves them — O(N·H + V·H), the size of the inputs —
so the backward only scales them by the scalar grad_output (as Liger-Kernel's fused linear
cross-entropy does). With ``inplace_backward=True`` it scales them in place and hands them over,
which saves a second copy of grad_weight during backward; autograd then refuses a second
backward through the same graph (retain_graph=True, gradcheck), whose saved tensors changed.

"none" — and any reduction whose returned log-sum-exp (return_lse=True) gets a gradient — needs
per-row upstream gradients, which weigh each row's contribution to grad_weight differently: the
backward runs the chunk loop again with them, from the per-row float64 log-sum-exp the forward
saved (the logits are recomputed, one more matrix product; still one chunk at a time).

The loops are torch.library custom ops with fake implementations, so torch.compile
(fullgraph=True) traces them without graph breaks.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from fastxent import _linear


def _or_empty(grad: Optional[Tensor], like: Tensor) -> Tensor:
    # Custom ops return tensors, never None: a gradient not asked for is an empty tensor.
    return like.new_empty(0) if grad is None else grad


def _problem(hidden, weight, target, bias, class_weight, ignore_index, reduction,
             label_smoothing, z_loss, softcap, chunk_size):
    return _linear.Problem(hidden, weight, target, bias, class_weight, ignore_index, reduction,
                           label_smoothing, chunk_size, z_loss, softcap or None)  # 0: no cap


# Returns (loss, lse, grad_hidden, grad_weight, grad_bias): lse is each row's log-sum-exp in
# float64 (what a recomputing backward needs); the gradients are those asked for (empty else).
@torch.library.custom_op("fastxent::linear_cross_entropy", mutates_args=())
def _forward_op(hidden: Tensor, weight: Tensor, target: Tensor, bias: Optional[Tensor],
                class_weight: Optional[Tensor], ignore_index: int, reduction: str,
                label_smoothing: float, z_loss: float, softcap: float,
                chunk_size: Optional[int], grad_hidden: bool, grad_weight: bool, grad_bias: bool,
                inplace_backward: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    p = _problem(hidden, weight, target, bias, class_weight, ignore_index, reduction,
                 label_smoothing, z_loss, softcap, chunk_size)
    grads = grad_hidden or grad_weight or grad_bias
    loss, gh, gw, gb, lse = _linear.run(p, 1.0 if grads else None,
                                        (grad_hidden, grad_weight, grad_bias))
    # torch returns the loss in the logits' dtype (fastxent's is float32 for 16-bit logits).
    return (loss.to(hidden.dtype), lse.reshape(p.rows_shape), _or_empty(gh, hidden),
            _or_empty(gw, hidden), _or_empty(gb, hidden))


def _fake_grads(hidden, weight, bias, grad_hidden, grad_weight, grad_bias):
    return (hidden.new_empty(hidden.shape if grad_hidden else (0,)),
            hidden.new_empty(weight.shape if grad_weight else (0,)),
            hidden.new_empty(bias.shape if grad_bias and bias is not None else (0,)))


@_forward_op.register_fake
def _(hidden, weight, target, bias, class_weight, ignore_index, reduction, label_smoothing,
      z_loss, softcap, chunk_size, grad_hidden, grad_weight, grad_bias, inplace_backward):
    rows = hidden.shape[:-1]
    return (hidden.new_empty(rows if reduction == "none" else ()),
            hidden.new_empty(rows, dtype=torch.float64),
            *_fake_grads(hidden, weight, bias, grad_hidden, grad_weight, grad_bias))


@torch.library.custom_op("fastxent::linear_cross_entropy_backward", mutates_args=())
def _backward_op(grad_output: Tensor, grad_lse: Optional[Tensor], lse: Tensor, hidden: Tensor,
                 weight: Tensor, target: Tensor, bias: Optional[Tensor],
                 class_weight: Optional[Tensor], ignore_index: int, reduction: str,
                 label_smoothing: float, z_loss: float, softcap: float,
                 chunk_size: Optional[int], grad_hidden: bool, grad_weight: bool,
                 grad_bias: bool) -> tuple[Tensor, Tensor, Tensor]:
    p = _problem(hidden, weight, target, bias, class_weight, ignore_index, reduction,
                 label_smoothing, z_loss, softcap, chunk_size)
    gh, gw, gb = _linear.backward(p, grad_output, lse, grad_lse,
                                  (grad_hidden, grad_weight, grad_bias))
    return _or_empty(gh, hidden), _or_empty(gw, hidden), _or_empty(gb, hidden)


@_backward_op.register_fake
def _(grad_output, grad_lse, lse, hidden, weight, target, bias, class_weight, ignore_index,
      reduction, label_smoothing, z_loss, softcap, chunk_size, grad_hidden, grad_weight,
      grad_bias):
    return _fake_grads(hidden, weight, bias, grad_hidden, grad_weight, grad_bias)


def _setup_context(ctx, inputs, output):
    hidden, weight, target, bias, class_weight, *options = inputs
    ctx.options = tuple(options[:6])  # ignore_index ... chunk_size
    ctx.inplace_backward = options[-1]
    # The gradients the op returns are not differentiable outputs: without this, autograd would
    # hand the backward zero-filled gradients for them (O(N·H + V·H) of zeros per backward).
    ctx.mark_non_differentiable(*output[2:])
    ctx.set_materialize_grads(False)
    # The inputs (references: autograd holds them anyway) and the float64 lse, for a backward
    # that recomputes; the forward's gradients (empty for "none"), for one that scales them.
    ctx.save_for_backward(hidden, weight, target, bias, class_weight, output[1], *output[2:])


def _backward(ctx, grad_loss, grad_lse, *_):
    needs = ctx.needs_input_grad
    hidden, weight, target, bias, class_weight, lse, *saved = ctx.saved_tensors
    if grad_loss is None and grad_lse is None:  # grads are not materialised
        return (None,) * 15
    if ctx.options[1] == "none" or grad_lse is not None:
        if grad_loss is None:
            grad_loss = hidden.new_zeros(())
        gh, gw, gb = _backward_op(grad_loss, grad_lse, lse, hidden, weight, target, bias,
                                  class_weight, *ctx.options, needs[0], needs[1], needs[3])
    elif ctx.inplace_backward:
        # d(grad_output · loss) = grad_output · (gradients at grad_output = 1). In place: the
        # saved gradients become the returned ones (their version changes, so autograd refuses
        # a second backward through this graph). grad_loss is 0-d: each keeps its dtype.
        gh, gw, gb = (g.mul_(grad_loss) for g in saved)
    else:
        gh, gw, gb = (g * grad_loss for g in saved)
    return (gh if needs[0] else None, gw if needs[1] else None, None,
            gb if needs[3] else None) + (None,) * 11


_forward_op.register_autograd(_backward, setup_context=_setup_context)


def linear_cross_entropy(hidden: Tensor, weight: Tensor, target: Tensor,
                         bias: Optional[Tensor] = None, class_weight: Optional[Tensor] = None,
                         ignore_index: int = -100, reduction: str = "mean",
                         label_smoothing: float = 0.0, *, chunk_size: Optional[int] = None,
                         inplace_backward: bool = False, z_loss: float = 0.0,
                         softcap: Optional[float] = None, return_lse: bool = False):
    """``F.cross_entropy(F.linear(hidden, weight, bias), target, class_weight, ...)`` with
    autograd, computed in chunks of rows: never N×V logits (see fastxent.linear_cross_entropy).

    hidden (..., H), weight (V, H), bias (V,); float32, float64, bfloat16 or float16 (the matrix
    products run in that dtype, as F.linear's; the cross-entropy accumulates in float32). Any
    subset of hidden, weight and bias may require grad; target and class_weight may not.

    ``inplace_backward=True`` ("sum"/"mean"): the backward scales the gradients computed in the
    forward in place instead of into new tensors (one copy of grad_weight less at the peak); a
    second backward through the same graph is then refused.
    ``z_loss``, ``softcap``, ``return_lse`` as in :func:`fastxent.torch.cross_entropy`:
    ``return_lse=True`` returns ``(loss, lse)``, lse differentiable (float32 for 16-bit inputs).
    """
    if torch.is_grad_enabled():
        for name, t in (("target", target), ("class_weight", class_weight)):
            if t is not None and t.requires_grad:
                raise RuntimeError(f"fastxent.torch.linear_cross_entropy: {name} cannot require "
                                   "grad (only hidden, weight and bias get gradients)")
    wants = [torch.is_grad_enabled() and t is not None and t.requires_grad
             for t in (hidden, weight, bias)]
    # "none": the gradients are computed in backward, with the per-row grad_output.
    flags = (False, False, False) if reduction == "none" else tuple(wants)
    loss, lse, *_ = _forward_op(hidden, weight, target, bias, class_weight, int(ignore_index),
                                reduction, float(label_smoothing), float(z_loss),
                                0.0 if softcap is None else float(softcap),
                                None if chunk_size is None else int(chunk_size), *flags,
                                bool(inplace_backward))
    if not return_lse:
        return loss
    low = hidden.dtype in (torch.float16, torch.bfloat16)
    return loss, lse.to(torch.float32 if low else hidden.dtype)


class LinearCrossEntropyLoss(torch.nn.Module):
    """Module form of :func:`linear_cross_entropy`: ``loss = criterion(hidden, weight, target,
    bias=None)``; the cross-entropy options (``class_weight`` a buffer, as in
    ``nn.CrossEntropyLoss``), ``chunk_size``, ``inplace_backward``, ``z_loss`` and ``softcap``
    fixed at construction."""

    def __init__(self, class_weight: Optional[Tensor] = None, ignore_index: int = -100,
                 reduction: str = "mean", label_smoothing: float = 0.0, *,
                 chunk_size: Optional[int] = None, inplace_backward: bool = False,
                 z_loss: float = 0.0, softcap: Optional[float] = None) -> None:
        super().__init__()
        self.register_buffer("class_weight", class_weight)
        self.ignore_index, self.reduction = ignore_index, reduction
        self.label_smoothing, self.chunk_size = label_smoothing, chunk_size
        self.inplace_backward, self.z_loss, self.softcap = inplace_backward, z_loss, softcap

    def forward(self, hidden: Tensor, weight: Tensor, target: Tensor,
                bias: Optional[Tensor] = None) -> Tensor:
        return linear_cross_entropy(hidden, weight, target, bias, self.class_weight,
                                    self.ignore_index, self.reduction, self.label_smoothing,
                                    chunk_size=self.chunk_size,
                                    inplace_backward=self.inplace_backward, z_loss=self.z_loss,
                                    softcap=self.softcap)

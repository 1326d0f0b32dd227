"""fastxent.torch's binary cross-entropy: a drop-in for
``torch.nn.functional.binary_cross_entropy_with_logits`` and ``torch.nn.BCEWithLogitsLoss``
(imported from fastxent.torch; this module only keeps the BCE glue apart).

Forward and backward each read the logits once through DLPack (no copy); autograd saves
references to the logits, targets and weights and nothing else; the backward allocates only the
gradient. The kernels are torch.library custom ops (``torch.ops.fastxent.*``) with fake
implementations, so ``torch.compile(fullgraph=True)`` traces them. A target that requires grad
gets torch's own gradient (its composite on the detached logits: that rare path allocates N×C
temporaries); weight and pos_weight are not differentiable, as in torch.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from fastxent import _bce

__all__ = ["binary_cross_entropy_with_logits", "BCEWithLogitsLoss"]


@torch.library.custom_op("fastxent::binary_cross_entropy_with_logits", mutates_args=())
def _forward_op(input: Tensor, target: Tensor, weight: Optional[Tensor],
                pos_weight: Optional[Tensor], reduction: str) -> Tensor:
    loss = _bce.binary_cross_entropy_with_logits(input, target, weight, pos_weight, reduction)
    # torch's loss has the target's dtype (its formula starts in place on 1 - target);
    # fastxent computes at the input's precision (float32 for 16-bit logits) and casts.
    return loss.to(target.dtype)


@_forward_op.register_fake
def _(input, target, weight, pos_weight, reduction):
    shape = input.shape if reduction == "none" else ()
    return input.new_empty(shape, dtype=target.dtype)


@torch.library.custom_op("fastxent::binary_cross_entropy_with_logits_backward", mutates_args=())
def _backward_op(grad_output: Tensor, input: Tensor, target: Tensor, weight: Optional[Tensor],
                 pos_weight: Optional[Tensor], reduction: str) -> Tensor:
    return _bce.binary_cross_entropy_with_logits_backward(input, target, grad_output, weight,
                                                          pos_weight, reduction)


@_backward_op.register_fake
def _(grad_output, input, target, weight, pos_weight, reduction):
    return input.new_empty(input.shape)  # C-contiguous, as the real allocation


def _setup_context(ctx, inputs, output):
    input, target, weight, pos_weight, reduction = inputs
    ctx.save_for_backward(input, target, weight, pos_weight)
    ctx.reduction = reduction


def _target_grad(ctx, grad_output, input, target, weight, pos_weight):
    # torch's own derivative with respect to the target, on detached logits.
    with torch.enable_grad():
        leaf = target.detach().requires_grad_()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            input.detach(), leaf, weight, reduction=ctx.reduction, pos_weight=pos_weight)
        (grad,) = torch.autograd.grad(loss, [leaf], grad_output.to(loss.dtype))
    return grad


def _backward(ctx, grad_output):
    input, target, weight, pos_weight = ctx.saved_tensors
    grad_target = None
    if ctx.needs_input_grad[1]:
        grad_target = _target_grad(ctx, grad_output, input, target, weight, pos_weight)
    grad = None
    if ctx.needs_input_grad[0]:
        grad = _backward_op(grad_output, input, target, weight, pos_weight, ctx.reduction)
    return grad, grad_target, None, None, None


_forward_op.register_autograd(_backward, setup_context=_setup_context)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor,
                                     weight: Optional[Tensor] = None,
                                     size_average: Optional[bool] = None,
                                     reduce: Optional[bool] = None, reduction: str = "mean",
                                     pos_weight: Optional[Tensor] = None) -> Tensor:
    """``torch.nn.functional.binary_cross_entropy_with_logits`` computed by fastxent (same
    arguments, same result and dtype, same gradients for input and target)."""
    if size_average is not None or reduce is not None:
        reduction = torch.nn._reduction.legacy_get_string(size_average, reduce)
    if torch.is_grad_enabled():
        for name, t in (("weight", weight), ("pos_weight", pos_weight)):
            if t is not None and t.requires_grad:
                raise RuntimeError(
                    "The function 'binary_cross_entropy_with_logits' is not differentiable with "
                    f"respect to argument '{name}'. This input cannot have requires_grad True.")
    return _forward_op(input, target, weight, pos_weight, reduction)


class BCEWithLogitsLoss(torch.nn.BCEWithLogitsLoss):
    """``torch.nn.BCEWithLogitsLoss`` computed by fastxent: same arguments and buffers."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return binary_cross_entropy_with_logits(input, target, self.weight,
                                                reduction=self.reduction,
                                                pos_weight=self.pos_weight)

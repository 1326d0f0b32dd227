"""fastxent for torch: a drop-in ``torch.nn.functional.cross_entropy`` / ``nn.CrossEntropyLoss``.

    import fastxent.torch as fxt
    loss = fxt.cross_entropy(logits, target)             # same arguments as F.cross_entropy
    criterion = fxt.CrossEntropyLoss(label_smoothing=0.1)  # same arguments as nn.CrossEntropyLoss

Forward and backward each read the logits once through DLPack (no copy) and allocate nothing
N×C but the gradient. Besides the logits, targets and weights autograd holds anyway, the
forward saves one float64 log-sum-exp per row (no probabilities, no log-softmax); the backward
computes p = exp(x - lse) from it, with no statistics pass over the logits. The kernels are torch.library custom
ops (``torch.ops.fastxent.*``) with fake implementations, so ``torch.compile(fullgraph=True)``
traces them without graph breaks.

``inplace_backward=True`` writes the gradient over the logits' storage (no N×C allocation in
backward at all) and bumps the logits' version counter, so autograd raises if anything that
saved the logits for its own backward (or a second backward through the loss) would read the
overwritten values. Use it when the logits are an intermediate nobody reads after the loss, as
the output of a language model's head usually is; after backward they hold the gradient.

``linear_cross_entropy(hidden, weight, target, bias=None, ...)`` (and the module
``LinearCrossEntropyLoss``) is ``cross_entropy(F.linear(hidden, weight, bias), target, ...)``
computed in chunks of rows, never holding the N×V logits (fastxent/_torch_linear.py).

Probability targets and ``weight`` that require grad get their gradients too, as in torch
(computed by torch's own composite on the detached logits: that rare path allocates N×C
temporaries).

``binary_cross_entropy_with_logits`` / ``BCEWithLogitsLoss`` are the drop-ins for torch's
binary (multi-label) loss, with the same design (see fastxent/_bce_torch.py).
"""

# This module is fastxent.torch; `import torch` below is absolute and gets the real torch.
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from fastxent import _api
from fastxent._bce_torch import BCEWithLogitsLoss, binary_cross_entropy_with_logits
from fastxent._torch_linear import LinearCrossEntropyLoss, linear_cross_entropy

__all__ = ["cross_entropy", "CrossEntropyLoss", "binary_cross_entropy_with_logits",
           "BCEWithLogitsLoss", "linear_cross_entropy", "LinearCrossEntropyLoss"]


def _loss_like(input: Tensor, loss: Tensor) -> Tensor:
    # fastxent returns float32 losses for 16-bit logits; torch returns the logits' dtype.
    return loss if loss.dtype == input.dtype else loss.to(input.dtype)


def _row_shape(input: Tensor):
    """The input's shape without its class axis (1, or 0 for 1-D input)."""
    return input.shape[:1] + input.shape[2:] if input.dim() > 1 else ()


# The forward returns the loss and each row's log-sum-exp (float64, O(rows)), which autograd
# saves: the backward then computes p = exp(x - lse) without a statistics pass over the logits.
# z_loss and softcap are DESIGN.md's extensions (softcap 0: off).
@torch.library.custom_op("fastxent::cross_entropy", mutates_args=())
def _forward_op(input: Tensor, target: Tensor, weight: Optional[Tensor], ignore_index: int,
                reduction: str, label_smoothing: float, z_loss: float, softcap: float,
                inplace_backward: bool) -> tuple[Tensor, Tensor]:
    loss, lse = _api.forward_saving_lse(input, target, weight, ignore_index, reduction,
                                        label_smoothing, z_loss, softcap)
    return _loss_like(input, loss), lse


@_forward_op.register_fake
def _(input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
      inplace_backward):
    lse = input.new_empty(_row_shape(input), dtype=torch.float64)
    if reduction != "none":
        return input.new_empty(()), lse
    # probability targets: the input without its class axis; index targets: the target's shape
    return input.new_empty(_row_shape(input) if target.is_floating_point() else target.shape), lse


# grad_lse: the upstream gradient of the returned log-sum-exp (return_lse=True), or None.
@torch.library.custom_op("fastxent::cross_entropy_backward", mutates_args=())
def _backward_op(grad_output: Tensor, grad_lse: Optional[Tensor], lse: Tensor, input: Tensor,
                 target: Tensor, weight: Optional[Tensor], ignore_index: int, reduction: str,
                 label_smoothing: float, z_loss: float, softcap: float) -> Tensor:
    return _api.backward_from_lse(input, target, grad_output, lse, weight, ignore_index,
                                  reduction, label_smoothing, z_loss, softcap,
                                  lse_grad_output=grad_lse)


@_backward_op.register_fake
def _(grad_output, grad_lse, lse, input, target, weight, ignore_index, reduction,
      label_smoothing, z_loss, softcap):
    return input.new_empty(input.shape)  # C-contiguous, as the real allocation


@torch.library.custom_op("fastxent::cross_entropy_backward_", mutates_args=("input",))
def _backward_inplace_op(grad_output: Tensor, grad_lse: Optional[Tensor], lse: Tensor,
                         input: Tensor, target: Tensor, weight: Optional[Tensor],
                         ignore_index: int, reduction: str, label_smoothing: float,
                         z_loss: float, softcap: float) -> None:
    # torch.library bumps `input`'s version counter (it is declared mutated).
    try:
        _api.backward_from_lse(input, target, grad_output, lse, weight, ignore_index, reduction,
                               label_smoothing, z_loss, softcap, lse_grad_output=grad_lse,
                               out=input)
    except ValueError as exc:  # e.g. expanded logits: elements overlap, nowhere to write
        raise ValueError(f"inplace_backward=True: the logits cannot hold the gradient ({exc}); "
                         "use inplace_backward=False") from exc


@_backward_inplace_op.register_fake
def _(grad_output, grad_lse, lse, input, target, weight, ignore_index, reduction,
      label_smoothing, z_loss, softcap):
    return None


# Autograd (torch.library builds the autograd.Function): the forward saves references to the
# logits, targets and weights and the per-row log-sum-exp — nothing N×C of its own.
def _setup_context(ctx, inputs, output):
    input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap, \
        inplace = inputs
    ctx.save_for_backward(input, target, weight, output[1])
    ctx.options = (ignore_index, reduction, label_smoothing, z_loss, softcap)
    ctx.inplace_backward = inplace


def _target_and_weight_grads(ctx, grad_output, input, target, weight):
    # Rarely wanted (soft-label distillation, learned class weights): torch's own composite
    # differentiates the loss with respect to them, on detached logits. It allocates N×C
    # temporaries as torch does; the logits' gradient above stays fastxent's.
    # The z-loss term depends on neither; a softcap changes the logits they multiply.
    wanted = [t for t, needed in ((target, ctx.needs_input_grad[1]),
                                  (weight, ctx.needs_input_grad[2])) if needed]
    softcap = ctx.options[4]
    logits = input.detach()
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    with torch.enable_grad():
        leaves = {id(t): t.detach().requires_grad_() for t in wanted}
        loss = torch.nn.functional.cross_entropy(
            logits, leaves.get(id(target), target),
            leaves.get(id(weight), weight) if weight is not None else None,
            ignore_index=ctx.options[0], reduction=ctx.options[1],
            label_smoothing=ctx.options[2])
        grads = torch.autograd.grad(loss, list(leaves.values()), grad_output.to(loss.dtype))
    by_id = dict(zip(leaves.keys(), grads))
    return (by_id.get(id(target)) if ctx.needs_input_grad[1] else None,
            by_id.get(id(weight)) if ctx.needs_input_grad[2] else None)


def _backward(ctx, grad_output, grad_lse):
    input, target, weight, lse = ctx.saved_tensors
    grad_target = grad_weight = None
    if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:  # before an in-place backward
        grad_target, grad_weight = _target_and_weight_grads(ctx, grad_output, input, target,
                                                            weight)
    grad = None
    if ctx.needs_input_grad[0]:
        if ctx.inplace_backward:
            _backward_inplace_op(grad_output, grad_lse, lse, input, target, weight, *ctx.options)
            grad = input
        else:
            grad = _backward_op(grad_output, grad_lse, lse, input, target, weight, *ctx.options)
    return grad, grad_target, grad_weight, None, None, None, None, None, None


_forward_op.register_autograd(_backward, setup_context=_setup_context)


def cross_entropy(input: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                  size_average: Optional[bool] = None, ignore_index: int = -100,
                  reduce: Optional[bool] = None, reduction: str = "mean",
                  label_smoothing: float = 0.0, *, inplace_backward: bool = False,
                  z_loss: float = 0.0, softcap: Optional[float] = None,
                  return_lse: bool = False):
    """``torch.nn.functional.cross_entropy`` computed by fastxent (same arguments, same result).

    ``inplace_backward=True``: backward writes the gradient over ``input``'s storage and bumps
    its version counter (see the module docstring).
    Extensions (keyword-only, as :func:`fastxent.cross_entropy`): ``z_loss`` adds
    ``z_loss * lse**2`` per row not ignored; ``softcap`` passes the logits through
    ``softcap * tanh(x / softcap)`` first; ``return_lse=True`` returns ``(loss, lse)`` with each
    row's log-sum-exp (float32 for 16-bit logits, else the logits' dtype), differentiable too.
    """
    if size_average is not None or reduce is not None:
        reduction = torch.nn._reduction.legacy_get_string(size_average, reduce)
    if (torch.is_grad_enabled() and weight is not None and weight.requires_grad
            and not target.is_floating_point()):
        # As torch: nll_loss is not differentiable with respect to the class weights.
        raise RuntimeError("fastxent.torch.cross_entropy: weight cannot require grad with "
                           "class-index targets (torch's nll_loss has no weight gradient either)")
    loss, lse = _forward_op(input, target, weight, int(ignore_index), reduction,
                            float(label_smoothing), float(z_loss),
                            0.0 if softcap is None else float(softcap), bool(inplace_backward))
    if not return_lse:
        return loss
    return loss, lse.to(torch.float64 if input.dtype == torch.float64 else torch.float32)


class CrossEntropyLoss(torch.nn.CrossEntropyLoss):
    """``torch.nn.CrossEntropyLoss`` computed by fastxent: same arguments and buffers, plus
    the keyword-only ``inplace_backward``, ``z_loss``, ``softcap`` and ``return_lse`` of
    :func:`cross_entropy`."""

    def __init__(self, weight: Optional[Tensor] = None, size_average=None,
                 ignore_index: int = -100, reduce=None, reduction: str = "mean",
                 label_smoothing: float = 0.0, *, inplace_backward: bool = False,
                 z_loss: float = 0.0, softcap: Optional[float] = None,
                 return_lse: bool = False) -> None:
        super().__init__(weight, size_average, ignore_index, reduce, reduction, label_smoothing)
        self.inplace_backward = inplace_backward
        self.z_loss = z_loss
        self.softcap = softcap
        self.return_lse = return_lse

    def forward(self, input: Tensor, target: Tensor):
        return cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing,
                             inplace_backward=self.inplace_backward, z_loss=self.z_loss,
                             softcap=self.softcap, return_lse=self.return_lse)

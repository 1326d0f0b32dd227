"""fastxent.distributed.cross_entropy on torch.distributed: the collectives and the autograd
function (imported only when that function is called, so fastxent needs no torch)."""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.distributed as dist

from . import _api
from ._shards import HEADER, gather_statistics
from .torch import _loss_like


def _all_gather(out, inp, group):
    # The concatenation of every rank's `inp` into the flat `out`, in group-rank order
    # (all_gather_single is all_gather_into_tensor's newer name).
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    gather(out, inp, group=group)


class _TorchCommunicator:
    """fastxent._shards' collectives over a torch.distributed group, on the logits' device
    (CPU tensors for gloo; CUDA tensors for NCCL)."""

    def __init__(self, group, device):
        self.group = group
        self.device = device
        self.size = dist.get_world_size(group)

    def gather_ints(self, values):
        send = torch.tensor(values, dtype=torch.int64, device=self.device)
        recv = send.new_empty(self.size * send.numel())
        _all_gather(recv, send, self.group)
        return recv.view(self.size, -1).tolist()

    def gather(self, stats, header, n):
        send = torch.zeros(n + HEADER, dtype=torch.float64, device=self.device)
        if stats is not None:
            send[:n] = stats.reshape(-1)
        send[n:] = torch.tensor(header, dtype=torch.float64)
        recv = send.new_empty(self.size * (n + HEADER))
        _all_gather(recv, send, self.group)
        return recv.view(self.size, n + HEADER)


class _Config(NamedTuple):
    group: Optional[object]
    vocab_start: int
    vocab_size: Optional[int]
    ignore_index: int
    reduction: str
    label_smoothing: float
    z_loss: float
    softcap: Optional[float]
    inplace_backward: bool


class _ShardedCrossEntropy(torch.autograd.Function):
    """(loss, float64 lse) of the whole vocabulary; backward: this shard's gradient slice from
    the saved statistics of every shard (O(world × rows)), without any communication."""

    @staticmethod
    def forward(ctx, local_logits, target, weight, cfg):
        comm = _TorchCommunicator(cfg.group, local_logits.device)
        all_stats, vocab_size = gather_statistics(comm, local_logits, target, cfg.vocab_start,
                                                  cfg.vocab_size, weight, cfg.ignore_index,
                                                  cfg.label_smoothing, cfg.softcap)
        cfg = cfg._replace(vocab_size=vocab_size)
        loss, lse = _api.loss_from_shard_statistics(
            local_logits, target, all_stats, cfg.vocab_start, vocab_size, weight,
            cfg.ignore_index, cfg.reduction, cfg.label_smoothing, axis=-1, z_loss=cfg.z_loss,
            softcap=cfg.softcap)
        ctx.save_for_backward(local_logits, target, weight, all_stats, lse)
        ctx.cfg = cfg
        ctx.set_materialize_grads(False)  # an unused lse gets no zeros-filled gradient
        return _loss_like(local_logits, loss), lse

    @staticmethod
    def backward(ctx, grad_loss, grad_lse):
        local_logits, target, weight, all_stats, lse = ctx.saved_tensors
        cfg = ctx.cfg
        grad = grad_target = None
        if ctx.needs_input_grad[1] and grad_loss is not None:  # before an in-place backward
            grad_target = _target_grad(local_logits, target, weight, lse, grad_loss, cfg)
        if ctx.needs_input_grad[0]:
            grad = _api.shard_backward(
                local_logits, target, all_stats, cfg.vocab_start, cfg.vocab_size,
                0.0 if grad_loss is None else grad_loss, weight, cfg.ignore_index,
                cfg.reduction, cfg.label_smoothing, axis=-1, z_loss=cfg.z_loss,
                softcap=cfg.softcap, lse_grad_output=grad_lse,
                out=local_logits if cfg.inplace_backward else None)
        return grad, grad_target, None, None


def _target_grad(local_logits, target, weight, lse, grad_loss, cfg):
    """∂loss/∂y_c of this shard's probability targets (soft-label distillation):
    (1 - ε)·w_c·(lse - cap(x_c)) per row, times the row's grad_output (the z-loss does not
    depend on y). Only the shard's logits and the gathered lse enter: no communication. It
    allocates N × V_local float64 temporaries, as fastxent.torch's rare path does."""
    x = local_logits.detach().double()
    if cfg.softcap:
        x = cfg.softcap * torch.tanh(x / cfg.softcap)
    grad = (lse.unsqueeze(-1) - x) * (1.0 - cfg.label_smoothing)
    if weight is not None:
        grad = grad * weight[cfg.vocab_start:cfg.vocab_start + x.shape[-1]].double()
    scale = grad_loss.double()
    if cfg.reduction == "none":
        scale = scale.unsqueeze(-1)
    elif cfg.reduction == "mean":
        scale = scale / max(lse.numel(), 1)  # probability targets: the mean over rows
    return (grad * scale).to(target.dtype)


def sharded_cross_entropy(local_logits, target, vocab_start, group, weight, ignore_index,
                          reduction, label_smoothing, vocab_size, z_loss, softcap, return_lse,
                          inplace_backward):
    """fastxent.distributed.cross_entropy (documented there)."""
    if not isinstance(local_logits, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError("local_logits, target: expected torch tensors, got "
                        f"{type(local_logits).__name__}, {type(target).__name__} (NumPy arrays: "
                        "fastxent.distributed.mpi_cross_entropy)")
    if torch.is_grad_enabled() and weight is not None and weight.requires_grad:
        # The weight is replicated: its gradient would need a collective in backward.
        raise RuntimeError("fastxent.distributed.cross_entropy: weight must not require grad "
                           "(its gradient is not computed); detach it")
    cfg = _Config(group, vocab_start, vocab_size, ignore_index, reduction, label_smoothing,
                  z_loss, softcap, bool(inplace_backward))  # values checked by fastxent._api
    loss, lse = _ShardedCrossEntropy.apply(local_logits, target, weight, cfg)
    if not return_lse:
        return loss
    # as fastxent.torch: float32 for 16-bit logits, else the logits' dtype
    return loss, lse.to(torch.float64 if local_logits.dtype == torch.float64 else torch.float32)

"""Vocabulary-parallel cross-entropy: the logits are sharded along the class axis across
processes (tensor parallelism: rank r holds ``logits[..., v0:v1]``, classes on the last axis),
and every rank gets the loss of the whole vocabulary and the gradient of its own shard.

Each rank reduces its shard to five float64 numbers per row (max, Σexp, the label-smoothing
sums, the target's logit if the target falls in the shard: fastxent's ``shard_statistics``).
ONE all-gather of these (world × rows × 5 float64, plus 3 header values per rank) replaces any
gather of the logits: rows × 40 bytes per rank instead of rows × V_local × itemsize. Every rank
then merges the statistics in rank order — the same bits everywhere, so the loss is replicated
— and writes its gradient slice from them. Results equal the unsharded op for every option.

Two front ends:

- :func:`cross_entropy` on ``torch.distributed`` (gloo on the CPU; NCCL works the same way
  once the shard pieces run on CUDA — they refuse CUDA arrays for now: the collectives already
  keep the statistics on the logits' device), with autograd.
- :func:`mpi_cross_entropy` / :func:`mpi_cross_entropy_with_grad` on an mpi4py communicator,
  for NumPy arrays (mpi4py is not imported here: the caller passes its communicator).

Index targets and ``weight`` (shape ``(vocab_size,)``) are global and the same on every rank;
probability targets are the rank's slice, like the logits. A rank whose own arguments are
wrong (say a probability target of the wrong shape) raises its error after the collective,
and every other rank raises a RuntimeError naming it, so no rank hangs in a collective.
"""

from __future__ import annotations

import numpy as np

from . import _api
from ._arrays import check_inplace
from ._shards import HEADER, gather_statistics

__all__ = ["cross_entropy", "mpi_cross_entropy", "mpi_cross_entropy_with_grad"]


def cross_entropy(local_logits, target, vocab_start, group=None, weight=None, ignore_index=-100,
                  reduction="mean", label_smoothing=0.0, *, vocab_size=None, z_loss=0.0,
                  softcap=None, return_lse=False, inplace_backward=False):
    """``torch.nn.functional.cross_entropy(logits, target, ...)`` of logits sharded over the
    ranks of ``group`` (default: the world) along their last axis.

    Parameters
    ----------
    local_logits : Tensor (..., V_local)
        This rank's classes ``[vocab_start, vocab_start + V_local)``: (N, V_local) or
        (B, T, V_local). float32, float64, float16 or bfloat16.
    target : Tensor
        Global class indices shaped like ``local_logits[..., 0]`` (the same on every rank), or
        this rank's slice of the class probabilities (``local_logits``' shape).
    vocab_start : int
        The first class this rank holds. The ranks' shards must tile ``[0, vocab_size)``.
    vocab_size : int, optional (keyword-only)
        The whole vocabulary; default: the sum of every rank's ``V_local`` (one more small
        collective per call: pass it to skip that). Checked against the shards either way.
    weight, ignore_index, reduction, label_smoothing, z_loss, softcap, return_lse :
        As :func:`fastxent.torch.cross_entropy` (``weight`` has the whole vocabulary's shape).
    inplace_backward : bool (keyword-only)
        Backward writes this rank's gradient over ``local_logits`` (see fastxent.torch).

    Returns
    -------
    The loss, replicated on every rank (and each row's log-sum-exp with ``return_lse=True``).
    Backward gives ``local_logits`` its own slice of the gradient, and probability targets that
    require grad theirs; nothing crosses ranks in backward (the forward's gathered statistics,
    O(world × rows), are saved for it). ``weight`` must not require grad.
    """
    from ._torch_shards import sharded_cross_entropy  # torch only when asked for

    return sharded_cross_entropy(local_logits, target, vocab_start, group, weight, ignore_index,
                                 reduction, label_smoothing, vocab_size, z_loss, softcap,
                                 return_lse, inplace_backward)


class _MpiCommunicator:
    """fastxent._shards' collectives over an mpi4py communicator (NumPy buffers)."""

    def __init__(self, comm):
        if not all(hasattr(comm, a) for a in ("Allgather", "Get_size")):
            raise TypeError("comm: expected an mpi4py communicator (e.g. MPI.COMM_WORLD), got "
                            f"{type(comm).__name__}")
        self.comm = comm
        self.size = comm.Get_size()

    def gather_ints(self, values):
        send = np.asarray(values, dtype=np.int64)
        recv = np.empty((self.size, send.size), dtype=np.int64)
        self.comm.Allgather(send, recv)
        return recv.tolist()

    def gather(self, stats, header, n):
        send = np.zeros(n + HEADER, dtype=np.float64)
        if stats is not None:
            send[:n] = np.asarray(stats).reshape(-1)  # torch CPU tensors too (shared memory)
        send[n:] = header
        recv = np.empty((self.size, n + HEADER), dtype=np.float64)
        self.comm.Allgather(send, recv)
        return recv


def _mpi_forward(local_logits, target, vocab_start, comm, weight, ignore_index, reduction,
                 label_smoothing, vocab_size, z_loss, softcap):
    all_stats, vocab_size = gather_statistics(_MpiCommunicator(comm), local_logits, target,
                                              vocab_start, vocab_size, weight, ignore_index,
                                              label_smoothing, softcap)
    loss, lse = _api.loss_from_shard_statistics(
        local_logits, target, all_stats, vocab_start, vocab_size, weight, ignore_index,
        reduction, label_smoothing, axis=-1, z_loss=z_loss, softcap=softcap)
    # lse in the loss's dtype, as fastxent.cross_entropy(return_lse=True) gives it
    lse = lse.astype(loss.dtype, copy=False) if isinstance(lse, np.ndarray) else lse.to(loss.dtype)
    return all_stats, vocab_size, loss, lse


def mpi_cross_entropy(local_logits, target, vocab_start, comm, weight=None, ignore_index=-100,
                      reduction="mean", label_smoothing=0.0, *, vocab_size=None, z_loss=0.0,
                      softcap=None, return_lse=False):
    """:func:`fastxent.cross_entropy` of NumPy logits sharded along their last axis over the
    ranks of the mpi4py communicator ``comm``: arguments as :func:`cross_entropy` (this
    module's). One ``comm.Allgather`` of rows × 5 float64 per rank (two calls when
    ``vocab_size`` is not given). The loss (and the lse, in the loss's dtype, with
    ``return_lse=True``) is the same on every rank."""
    _, _, loss, lse = _mpi_forward(local_logits, target, vocab_start, comm, weight,
                                   ignore_index, reduction, label_smoothing, vocab_size,
                                   z_loss, softcap)
    return (loss, lse) if return_lse else loss


def mpi_cross_entropy_with_grad(local_logits, target, vocab_start, comm, grad_output=1.0,
                                weight=None, ignore_index=-100, reduction="mean",
                                label_smoothing=0.0, *, vocab_size=None, z_loss=0.0,
                                softcap=None, return_lse=False, inplace=False, out=None):
    """``(loss, local_grad)`` (``(loss, local_grad, lse)`` with ``return_lse=True``): the loss
    of :func:`mpi_cross_entropy` and this rank's slice of its gradient, scaled by
    ``grad_output`` as :func:`fastxent.cross_entropy_with_grad`. ``inplace=True`` writes the
    gradient over ``local_logits`` (after the collective, which only reads statistics);
    ``out=`` into an existing array. The one collective is in the forward: the gradient needs
    no further communication."""
    check_inplace(local_logits, inplace, out)
    all_stats, vocab_size, loss, lse = _mpi_forward(
        local_logits, target, vocab_start, comm, weight, ignore_index, reduction,
        label_smoothing, vocab_size, z_loss, softcap)
    grad = _api.shard_backward(local_logits, target, all_stats, vocab_start, vocab_size,
                               grad_output, weight, ignore_index, reduction, label_smoothing,
                               axis=-1, z_loss=z_loss, softcap=softcap,
                               out=local_logits if inplace else out)
    return (loss, grad, lse) if return_lse else (loss, grad)

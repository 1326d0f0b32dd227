"""What the torch.distributed and MPI front ends of fastxent.distributed share: the one message
each rank sends (its shard's per-row statistics and a small header), and the checks run on it.

A rank's message is float64: its shard_statistics flattened (rows × 5), then HEADER values
(vocab_start, classes held, 1.0 if computing the statistics failed there). Every rank receives
every message, so every rank runs the same checks on the same data and raises the same error:
none is left waiting in a later collective.
"""

from __future__ import annotations

import math
from typing import Protocol

from . import _api
from ._arrays import as_integer

HEADER = 3  # vocab_start, local classes, failed flag (exact in float64: integers < 2**53)


class Communicator(Protocol):
    """One collective layer (torch.distributed or MPI)."""

    def gather_ints(self, values: list[int]) -> list[list[int]]:
        """Every rank's list of integers, in rank order."""

    def gather(self, stats, header: list[float], n: int):
        """Every rank's message as a (world, n + HEADER) float64 array of the caller's kind:
        ``stats`` (n values; None on a rank that failed: zeros are sent) then ``header``."""


def shard_layout(local_input) -> tuple[tuple, int]:
    """(rows shape, classes held): the class axis is the last one."""
    shape = tuple(getattr(local_input, "shape", ()))
    if not shape:
        raise ValueError("local_logits: expected an array with the classes on its last axis, "
                         f"got {type(local_input).__name__} of shape {shape}")
    return shape[:-1], int(shape[-1])


def gather_statistics(comm: Communicator, local_input, target, vocab_start, vocab_size, weight,
                      ignore_index, label_smoothing, softcap):
    """Every shard's statistics stacked in rank order (``all_stats`` of the core's
    loss_from_shard_statistics / shard_backward) and the vocabulary size: one collective of
    rows × 5 float64 per rank when ``vocab_size`` is given, plus one of a single integer per
    rank when it is None (the sum of the classes every rank holds)."""
    rows_shape, classes = shard_layout(local_input)
    vocab_start = as_integer(vocab_start, "vocab_start")
    if vocab_size is None:
        vocab_size = sum(v[0] for v in comm.gather_ints([classes]))
    vocab_size = as_integer(vocab_size, "vocab_size")
    n = math.prod(rows_shape) * 5
    stats, error = None, None
    try:
        stats = _api.shard_statistics(local_input, target, vocab_start, vocab_size, weight,
                                      ignore_index, label_smoothing, axis=-1, softcap=softcap)
    except (ValueError, TypeError, IndexError) as exc:  # reported after the collective
        error = exc
    gathered = comm.gather(stats, [float(vocab_start), float(classes), float(error is not None)],
                           n)
    headers = [[int(v) for v in row] for row in gathered[:, n:].tolist()]
    _raise_failures(headers, error)
    check_tiling(headers, vocab_size)
    all_stats = gathered[:, :n].reshape((len(headers),) + rows_shape + (5,))
    return all_stats, vocab_size


def _raise_failures(headers, error):
    """This rank's own error, else a RuntimeError naming the ranks that failed."""
    failed = [r for r, h in enumerate(headers) if h[2]]
    if error is not None:
        raise error
    if failed:
        raise RuntimeError(f"fastxent.distributed: rank(s) {failed} could not compute their "
                           "shard statistics (their own exception says why); every rank "
                           "raises, so none waits in a later collective")


def check_tiling(headers, vocab_size):
    """The shards (vocab_start, classes) of every rank must cover [0, vocab_size) exactly once,
    in any order (every rank merges the statistics in rank order: all get the same bits)."""
    shards = ", ".join(f"rank {r}: [{h[0]}, {h[0] + h[1]})" for r, h in enumerate(headers))
    expected = 0
    for start, classes, _ in sorted(headers):
        if start != expected:
            raise ValueError(f"vocab_start: the ranks' shards must tile the vocabulary "
                             f"[0, {vocab_size}) without gaps or overlaps, got {shards}")
        expected += classes
    if expected != vocab_size:
        raise ValueError(f"vocab_size={vocab_size}: the ranks' shards cover [0, {expected}) "
                         f"({shards})")

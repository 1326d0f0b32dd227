"""Linear cross-entropy: the loss of ``cross_entropy(hidden @ weight.T + bias, target)`` and its
gradients for hidden, weight and bias, without ever holding the N×V logits.

Rows are processed in chunks. For each chunk the array library's own matmul writes the chunk's
logits into one buffer reused by every chunk; fastxent's fused kernel turns them into their
gradient G in place (``cross_entropy_with_grad(..., inplace=True)``, also keeping each row's
float64 log-sum-exp for a backward that recomputes the chunks); G is multiplied back:
``grad_hidden[chunk] = G @ weight``, ``grad_weight += G.T @ hidden[chunk]``,
``grad_bias += G.sum(0)``. The mean's normaliser (Σ class_weight[t] over the rows not ignored, or
N for probability targets) depends only on the targets: it is computed before the chunks, so every
chunk's gradient carries the same global scale and the result does not depend on the chunking.

Extra memory of one call: the chunk's logits (``chunk_size × V``; by default no more than the
weight, see default_chunk_size), the outputs (the loss, and grad_hidden, grad_weight, grad_bias
when asked for), O(N) for the per-row lse, O(V) for the bias sums and, for NumPy, an 8 MiB
scratch block (NumPy has no in-place ``C += A @ B``). Never N×V.
"""

from __future__ import annotations

import math

import numpy as np

from . import _api
from ._arrays import is_torch
from ._linear_ops import ops_for

# chunk_size=None: as many rows as fit in min(MAX, max(MIN, the weight's bytes)) of logits, at
# least one row. The weight's gradient is returned anyway, so a chunk no larger than the weight
# at most doubles the memory the call needs beyond its outputs; MAX caps it for huge weights
# (256 MiB are 523 rows of a 128256-word vocabulary in float32, 1046 in bfloat16: plenty for
# the matrix products to run at full speed); MIN keeps small weights from getting chunks too
# short for efficient products.
MAX_CHUNK_BYTES = 256 << 20
MIN_CHUNK_BYTES = 16 << 20


def default_chunk_size(rows: int, classes: int, hidden_size: int, itemsize: int) -> int:
    """Rows per chunk when chunk_size is None: the most whose logits fit in the weight's size
    clamped to [MIN_CHUNK_BYTES, MAX_CHUNK_BYTES], at least 1, at most ``rows``."""
    budget = min(MAX_CHUNK_BYTES, max(MIN_CHUNK_BYTES, classes * hidden_size * itemsize))
    return max(1, min(max(rows, 1), budget // max(1, classes * itemsize)))


def _as_input(value, name: str):
    if isinstance(value, np.ndarray) or is_torch(value):
        return value.detach() if is_torch(value) else value
    if hasattr(type(value), "__dlpack__"):
        raise TypeError(f"{name}: linear_cross_entropy takes NumPy arrays or torch tensors, "
                        f"got {type(value).__name__}")
    return _api.as_array(value, name)


class Problem:
    """The checked arguments of one call, with hidden flattened to rows (N, H)."""

    def __init__(self, hidden, weight, target, bias, class_weight, ignore_index, reduction,
                 label_smoothing, chunk_size, z_loss=0.0, softcap=None):
        hidden = _as_input(hidden, "hidden")
        self.ops = ops = ops_for(hidden)
        lib = ops.library
        args = {"weight": _as_input(weight, "weight"), "target": _as_input(target, "target")}
        if bias is not None:
            args["bias"] = _as_input(bias, "bias")
        if class_weight is not None:
            args["class_weight"] = _as_input(class_weight, "class_weight")
        for name, a in args.items():
            if is_torch(a) != is_torch(hidden):
                raise TypeError(f"{name}: expected a {lib} array like hidden, got "
                                f"{type(a).__name__}")
            if is_torch(a) and a.device != hidden.device:
                raise ValueError(f"{name}: on {a.device}, hidden on {hidden.device}")
        weight, target = args["weight"], args["target"]
        bias, class_weight = args.get("bias"), args.get("class_weight")

        dtype = ops.dtype_name(hidden)
        if dtype not in ops.dtypes:
            raise TypeError(f"hidden: dtype {dtype} is not supported with {lib} inputs "
                            f"(expected one of {', '.join(ops.dtypes)})")
        for name, a in (("weight", weight), ("bias", bias)):
            if a is not None and ops.dtype_name(a) != dtype:
                raise TypeError(f"{name}: dtype {ops.dtype_name(a)} differs from hidden's "
                                f"{dtype} (the matrix products need one dtype)")
        if hidden.ndim < 1 or weight.ndim != 2:
            raise ValueError(f"hidden must be (..., H) and weight (V, H); got hidden "
                             f"{tuple(hidden.shape)}, weight {tuple(weight.shape)}")
        V, H = (int(d) for d in weight.shape)
        if int(hidden.shape[-1]) != H:
            raise ValueError(f"hidden: last dimension {hidden.shape[-1]} differs from "
                             f"weight's H={H} (weight is (V, H) = {tuple(weight.shape)})")
        if V < 1:
            raise ValueError(f"weight: needs at least one class (row), got shape "
                             f"{tuple(weight.shape)}")
        for name, a in (("bias", bias), ("class_weight", class_weight)):
            if a is not None and tuple(a.shape) != (V,):
                raise ValueError(f"{name}: expected shape ({V},) (one per row of weight), got "
                                 f"{tuple(a.shape)}")
        self.rows_shape = tuple(int(d) for d in hidden.shape[:-1])
        N = math.prod(self.rows_shape)

        self.is_prob = ops.dtype_name(target) in ("float16", "bfloat16", "float32", "float64")
        expected = self.rows_shape + ((V,) if self.is_prob else ())
        if tuple(target.shape) != expected:
            what = "class probabilities (hidden's rows, V)" if self.is_prob else \
                "class indices (hidden's shape without H)"
            raise ValueError(f"target: expected shape {expected} for {what}, got "
                             f"{tuple(target.shape)}")
        if chunk_size is not None:
            if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
                raise TypeError(f"chunk_size must be a positive integer or None, got "
                                f"{type(chunk_size).__name__}")
            if chunk_size < 1:
                raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.hidden = hidden.reshape(N, H)
        self.target = target.reshape((N, V) if self.is_prob else (N,))
        # The options' values (reduction's name, the ranges of label_smoothing, z_loss and
        # softcap, ignore_index with probability targets), the class weight and the target's
        # dtype are checked by the core, on zero rows: the errors are cross_entropy's own,
        # raised before any chunk runs.
        _api.cross_entropy(ops.empty((0, V), dtype, hidden), self.target[:0], class_weight,
                           ignore_index, reduction, label_smoothing, z_loss=z_loss,
                           softcap=softcap)
        self.weight, self.bias, self.class_weight = weight, bias, class_weight
        self.ignore_index, self.reduction = int(ignore_index), reduction
        self.label_smoothing, self.z_loss = float(label_smoothing), float(z_loss)
        self.softcap = None if softcap is None else float(softcap)
        self.dtype, self.N, self.V, self.H = dtype, N, V, H
        self.loss_dtype = "float64" if dtype == "float64" else "float32"
        itemsize = hidden.element_size() if is_torch(hidden) else hidden.itemsize
        self._denominator = None
        self.chunk = (default_chunk_size(N, V, H, itemsize) if chunk_size is None
                      else min(int(chunk_size), max(N, 1)))
        if not self.is_prob:
            self._check_index_targets()

    def _check_index_targets(self) -> None:
        t, ii = self.target, self.ignore_index
        bad = (t != ii) & ((t < 0) | (t >= self.V))
        i = self.ops.first_where(bad)
        if i is not None:
            pos = np.unravel_index(i, self.rows_shape) if self.rows_shape else ()
            raise IndexError(f"target[{', '.join(str(p) for p in pos)}] = {int(t[i])} is out "
                             f"of range: expected 0 <= target < {self.V} (the number of "
                             f"classes, weight's rows) or ignore_index={ii}")

    def chunk_options(self) -> dict:
        """The cross-entropy options of every chunk: "sum" replaces "mean" (the scale is
        global: grad_output carries 1/denominator, the summed loss is divided at the end)."""
        return dict(weight=self.class_weight, ignore_index=self.ignore_index,
                    reduction="none" if self.reduction == "none" else "sum",
                    label_smoothing=self.label_smoothing, z_loss=self.z_loss,
                    softcap=self.softcap)

    def mean_denominator(self) -> float:
        """Σ class_weight[t] over the rows not ignored (index targets), N (probabilities)."""
        if self._denominator is None:
            self._denominator = self._sum_of_target_weights()
        return self._denominator

    def _sum_of_target_weights(self) -> float:
        if self.is_prob:
            return float(self.N)
        keep = self.target != self.ignore_index
        if self.class_weight is None:
            return float(keep.sum())
        if isinstance(self.target, np.ndarray):
            return float(self.class_weight[self.target[keep]].sum(dtype=np.float64))
        # torch: a uint8 index tensor would be read as a mask; float64 sums like NumPy's
        return float(self.class_weight[self.target[keep].long()].double().sum())


def _grad_output_scale(p: Problem, grad_output):
    """What the kernel's grad_output is for every chunk: the scalar times 1/denominator for
    "mean" (0 when every row is ignored: torch's gradient is 0 there), the scalar for "sum";
    for "none" the per-row array flattened to rows (or the scalar)."""
    if p.reduction == "none":
        if isinstance(grad_output, (int, float)):
            return float(grad_output)
        go = _as_input(grad_output, "grad_output")
        if go.ndim == 0:
            return go
        if tuple(go.shape) != p.rows_shape:
            raise ValueError(f"grad_output: expected a scalar or shape {p.rows_shape} (the "
                             f"\"none\" loss), got {tuple(go.shape)}")
        return go.reshape(p.N)
    if is_torch(grad_output) or isinstance(grad_output, np.ndarray):
        if math.prod(grad_output.shape) != 1:
            raise ValueError(f"grad_output: expected a scalar for reduction={p.reduction!r}, "
                             f"got shape {tuple(grad_output.shape)}")
    scale = float(grad_output)
    if p.reduction == "mean":
        den = p.mean_denominator()
        scale = scale / den if den != 0 else 0.0
    return scale


class _Gradients:
    """grad_hidden, grad_weight, grad_bias of one call (those asked for), filled chunk by chunk
    from each chunk's gradient G of the logits."""

    def __init__(self, p: Problem, need):
        ops, N, V, H = p.ops, p.N, p.V, p.H
        need_h, need_w, need_b = need
        self.p = p
        self.hidden = ops.empty((N, H), p.dtype, p.hidden) if need_h else None
        self.weight = ops.zeros((V, H), p.dtype, p.hidden) if need_w else None
        # The bias gradient sums G over all rows: accumulated in float32 (float64 for float64).
        self.bias = ops.zeros((V,), p.loss_dtype, p.hidden) \
            if need_b and p.bias is not None else None

    @property
    def any(self) -> bool:
        return any(g is not None for g in (self.hidden, self.weight, self.bias))

    def add_chunk(self, g, i0: int, i1: int) -> None:
        """grad_hidden[i0:i1] = G @ weight, grad_weight += G.T @ hidden[i0:i1],
        grad_bias += G.sum(0)."""
        p = self.p
        if self.hidden is not None:
            p.ops.matmul(g, p.weight, out=self.hidden[i0:i1])
        if self.weight is not None:
            p.ops.add_matmul(self.weight, g.T, p.hidden[i0:i1])
        if self.bias is not None:
            p.ops.add_column_sums(self.bias, g)

    def results(self):
        p = self.p
        gh = None if self.hidden is None else self.hidden.reshape(p.rows_shape + (p.H,))
        gb = None if self.bias is None else p.ops.cast(self.bias, p.dtype)
        return gh, self.weight, gb


def _chunks(p: Problem):
    """(i0, i1, logits) per chunk: the logits of rows [i0, i1) in one buffer reused by every
    chunk (the caller turns them into their gradient before asking for the next)."""
    buf = p.ops.empty((min(p.chunk, p.N), p.V), p.dtype, p.hidden)
    for i0 in range(0, p.N, p.chunk):
        i1 = min(p.N, i0 + p.chunk)
        x = buf[: i1 - i0]
        p.ops.logits(p.hidden[i0:i1], p.weight, p.bias, out=x)
        yield i0, i1, x


def _row_slice(value, i0, i1):
    return value[i0:i1] if getattr(value, "ndim", 0) == 1 else value


def run(p: Problem, grad_output=None, need=(True, True, True)):
    """The forward chunk loop. Returns (loss, grad_hidden, grad_weight, grad_bias, lse):
    grad_output None computes the loss only, else also the gradients named by ``need``
    (hidden, weight, bias; the bias gradient only when there is a bias; the others None); lse is
    each row's log-sum-exp in float64, flat (N,), for :func:`backward`."""
    grads = _Gradients(p, need if grad_output is not None else (False, False, False))
    scale = _grad_output_scale(p, grad_output) if grads.any else None
    opts = p.chunk_options()
    if p.reduction == "none":
        losses = p.ops.empty((p.N,), p.loss_dtype, p.hidden)
    else:  # one sum per chunk, added in float64 at the end (pairwise for NumPy)
        losses = p.ops.zeros((-(-p.N // p.chunk),), "float64", p.hidden)
    lse = p.ops.empty((p.N,), "float64", p.hidden)
    for k, (i0, i1, x) in enumerate(_chunks(p)):
        t = p.target[i0:i1]
        if grads.any:
            loss, _, lse[i0:i1] = _api.with_grad_saving_lse(x, t, _row_slice(scale, i0, i1),
                                                            **opts)
            grads.add_chunk(x, i0, i1)
        else:
            loss, lse[i0:i1] = _api.forward_saving_lse(x, t, **opts)
        if p.reduction == "none":
            losses[i0:i1] = loss
        else:
            losses[k] = loss

    if p.reduction == "none":
        loss = losses.reshape(p.rows_shape)
    else:
        total = losses.sum()
        if p.reduction == "mean":
            den = p.mean_denominator()
            # All rows ignored: nan, as torch (0/0 without NumPy's division warning).
            total = total / den if den != 0 else total * math.nan
        loss = p.ops.cast(total, p.loss_dtype)
    return (loss, *grads.results(), lse)


def backward(p: Problem, grad_output, lse, lse_grad=None, need=(True, True, True)):
    """The gradients (hidden, weight, bias; those named by ``need``) of ``grad_output · loss +
    Σ lse_grad · lse`` from the float64 per-row ``lse`` :func:`run` returned: the chunks'
    logits are computed again and turned into their gradient with that lse (no statistics
    pass). ``lse_grad``: None or one value per row (shaped like the "none" loss)."""
    grads = _Gradients(p, need)
    scale = _grad_output_scale(p, grad_output)
    lse = lse.reshape(p.N)
    if lse_grad is not None:
        lse_grad = _as_input(lse_grad, "lse_grad").reshape(p.N)
    for i0, i1, x in _chunks(p):
        _api.backward_from_lse(x, p.target[i0:i1], _row_slice(scale, i0, i1), lse[i0:i1],
                               **p.chunk_options(), lse_grad_output=_row_slice(lse_grad, i0, i1),
                               out=x)
        grads.add_chunk(x, i0, i1)
    return grads.results()


def linear_cross_entropy(hidden, weight, target, bias=None, class_weight=None, ignore_index=-100,
                         reduction="mean", label_smoothing=0.0, *, chunk_size=None, z_loss=0.0,
                         softcap=None, return_lse=False):
    """``cross_entropy(hidden @ weight.T + bias, target, ...)`` without the N×V logits.

    Parameters
    ----------
    hidden : array (N, H) or (..., H)
        float32/float64 NumPy arrays, or torch tensors (also float16/bfloat16).
    weight : array (V, H)
        The output projection (one row per class), hidden's dtype.
    target : array
        Class indices shaped like hidden without H (any integer dtype), or class probabilities
        (..., V) (floating).
    bias : array (V,), optional
    class_weight, ignore_index, reduction, label_smoothing
        As ``weight``, ``ignore_index``, ``reduction``, ``label_smoothing`` of
        :func:`fastxent.cross_entropy` (the class weights are renamed: ``weight`` is the matrix).
    chunk_size : int, optional (keyword-only)
        Rows per chunk of logits; default: as many as fit in the weight's size in bytes,
        clamped to [16 MiB, 256 MiB] (so the chunk never outweighs the weight's gradient).
    z_loss, softcap, return_lse : keyword-only
        As in :func:`fastxent.cross_entropy`, applied to the logits ``hidden @ weight.T + bias``.

    Returns
    -------
    The loss as :func:`fastxent.cross_entropy` returns it for the logits (per row for "none",
    0-d otherwise; float32 for 16-bit inputs), in hidden's library; ``(loss, lse)`` with
    ``return_lse=True`` (lse per row, in the loss's dtype).
    """
    p = Problem(hidden, weight, target, bias, class_weight, ignore_index, reduction,
                label_smoothing, chunk_size, z_loss, softcap)
    loss, *_, lse = run(p)
    return (loss, _user_lse(p, lse)) if return_lse else loss


def _user_lse(p: Problem, lse):
    """The float64 per-row lse as return_lse gives it: the loss's dtype, the rows' shape."""
    return p.ops.cast(lse, p.loss_dtype).reshape(p.rows_shape)


def linear_cross_entropy_with_grad(hidden, weight, target, bias=None, class_weight=None,
                                   ignore_index=-100, reduction="mean", label_smoothing=0.0, *,
                                   grad_output=1.0, chunk_size=None, z_loss=0.0, softcap=None,
                                   return_lse=False):
    """Loss and gradients of :func:`linear_cross_entropy` in one chunked pass:
    ``(loss, grad_hidden, grad_weight, grad_bias)`` (grad_bias None without a bias), each
    gradient shaped and typed like its argument.

    ``grad_output`` (keyword-only) is the upstream gradient: a scalar for "sum"/"mean", a scalar
    or an array shaped like the "none" loss otherwise. Each chunk's logits become their
    gradient in place and are multiplied back into the three gradients, so the extra memory is
    one chunk of logits besides the gradients themselves. With ``return_lse=True`` the per-row
    log-sum-exp comes last: ``(loss, grad_hidden, grad_weight, grad_bias, lse)``.
    """
    p = Problem(hidden, weight, target, bias, class_weight, ignore_index, reduction,
                label_smoothing, chunk_size, z_loss, softcap)
    loss, gh, gw, gb, lse = run(p, grad_output)
    return (loss, gh, gw, gb, _user_lse(p, lse)) if return_lse else (loss, gh, gw, gb)

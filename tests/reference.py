"""Float64 NumPy reference for fastxent, written from DESIGN.md §1 (torch's semantics).

Everything is computed in float64 from the exact values of the inputs, vectorised over rows
(the class axis is moved last and the rest flattened to rows). Where torch's own arithmetic
differs from the plain formula on non-finite values the reference follows torch, because
torch is the contract:
  * the label-smoothing term is only added when smoothing > 0 and is combined as
    (1-ε)·nll + (ε/C)·smooth, so 0·inf gives nan exactly where torch gives nan;
  * probability targets form y'_c·log p_c, so y'_c = 0 at a -inf logit gives nan, as torch.
"""

import numpy as np

import functools

REDUCTIONS = ("none", "sum", "mean")


def _quiet(fn):
    """Non-finite inputs are part of the contract (inf - inf, log 0, 0 * inf give what torch
    gives); pytest runs with -W error, so NumPy's floating-point warnings are silenced here."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)

    return wrapper


def is_floating(dtype):
    """NumPy's floating dtypes and ml_dtypes' bfloat16 (which NumPy files under kind "V")."""
    dtype = np.dtype(dtype)
    return np.issubdtype(dtype, np.floating) or dtype.name == "bfloat16"


def _class_axis(ndim, axis):
    if axis is None:
        return 0 if ndim == 1 else 1
    return axis % ndim


def _lse_parts(x):
    """(m, log s) over the last axis, with m the row max (0 for rows without a finite max, so
    all -inf rows give lse = -inf and never compute -inf - -inf)."""
    m = np.max(x, axis=-1, keepdims=True) if x.shape[-1] else np.zeros(x.shape[:-1] + (1,))
    m = np.where(np.isfinite(m), m, 0.0)
    log_s = np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True))
    return m, log_s


def _log_softmax_last(x):
    m, log_s = _lse_parts(x)
    # (x - m) - log s, never (x - lse): that keeps the digits of logits near ±1e4.
    return (x - m) - log_s


@_quiet
def logsumexp(x, axis=-1):
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    m, log_s = _lse_parts(x)
    return (m + log_s)[..., 0]


@_quiet
def log_softmax(x, axis=-1):
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    return np.moveaxis(_log_softmax_last(x), -1, axis)


@_quiet
def softmax(x, axis=-1):
    return np.exp(log_softmax(x, axis))


def _rows(input, target, axis):
    """Return (x2d (R, C), target as rows, is_prob, loss shape for reduction "none", axis)."""
    x = np.asarray(input, dtype=np.float64)
    ax = _class_axis(x.ndim, axis)
    xl = np.moveaxis(x, ax, -1)
    rows_shape = xl.shape[:-1]
    C = x.shape[ax]
    t = np.asarray(target)
    is_prob = is_floating(t.dtype)
    if is_prob:
        assert t.shape == x.shape, "probability target must have the input's shape"
        tt = np.moveaxis(t.astype(np.float64), ax, -1).reshape(-1, C)
    else:
        assert t.shape == rows_shape, "index target: the input's shape without the class axis"
        tt = t.astype(np.int64).reshape(-1)
    return xl.reshape(-1, C), tt, is_prob, rows_shape, ax


def _weights(weight, C):
    return np.ones(C) if weight is None else np.asarray(weight, dtype=np.float64).reshape(C)


def _softcap(x2, softcap):
    """(capped logits, dy/dx): softcap·tanh(x/softcap), DESIGN.md's extension."""
    if not softcap:
        return x2, np.ones_like(x2)
    t = np.tanh(x2 / softcap)
    return softcap * t, 1.0 - t * t


def _z_loss(loss, grad, A, x2, keep, z_loss):
    """Adds z·lse² to the counted rows' loss and 2z·lse·p to their gradient (A is p's
    coefficient, so it grows by |2z·lse|)."""
    if not z_loss:
        return loss, grad, A
    m, log_s = _lse_parts(x2)
    lse = (m + log_s)[:, 0]
    coef = np.where(keep, 2.0 * z_loss * lse, 0.0)
    p = np.exp(_log_softmax_last(x2))
    return (loss + np.where(keep, z_loss * lse * lse, 0.0), grad + coef[:, None] * p,
            A + np.abs(coef))


def _parts(x2, t, is_prob, w, ignore_index, eps, z_loss=0.0, softcap=None):
    """Per-row loss, per-row gradient of that loss with respect to the logits before any
    softcap (before reduction scaling), the mask of counted rows and their target weight, and
    the gradient's two parts (of the capped logits' gradient): grad_j = p_j·A - B_j (A per row,
    B per entry, both >= 0 for non-negative weights, probabilities and z_loss·lse)."""
    x2, slope = _softcap(x2, softcap)
    loss, grad, keep, wt, A, B = _ce_parts(x2, t, is_prob, w, ignore_index, eps)
    loss, grad, A = _z_loss(loss, grad, A, x2, keep, z_loss)
    return loss, grad * slope, keep, wt, A, B


def _ce_parts(x2, t, is_prob, w, ignore_index, eps):
    R, C = x2.shape
    logp = _log_softmax_last(x2)
    p = np.exp(logp)
    if is_prob:
        if ignore_index >= 0:
            raise ValueError("ignore_index >= 0 is not supported with probability targets")
        y = t * (1.0 - eps) + eps / C if eps > 0 else t
        wy = w * y
        loss = -np.sum(logp * wy, axis=-1)
        A = np.sum(wy, axis=-1)
        grad = p * A[:, None] - wy
        return loss, grad, np.ones(R, bool), np.ones(R), A, wy
    keep = t != ignore_index
    tk = np.where(keep, t, 0)
    if np.any((tk < 0) | (tk >= C)):
        raise IndexError("target out of range")
    rows = np.arange(R)
    wt = np.where(keep, w[tk] if C else 0.0, 0.0)
    logp_t = logp[rows, tk] if C else np.zeros(R)
    nll = np.where(keep, -wt * logp_t, 0.0)
    grad = p.copy()
    grad[rows, tk] -= 1.0
    grad *= wt[:, None]
    loss, A, B = nll, wt.copy(), np.zeros_like(p)
    B[rows, tk] = wt
    if eps > 0:
        W = np.sum(w)
        smooth = np.where(keep, -np.sum(logp * w, axis=-1), 0.0)
        loss = (1.0 - eps) * nll + (eps / C) * smooth
        grad = (1.0 - eps) * grad + (eps / C) * (W * p - w)
        A = (1.0 - eps) * A + (eps / C) * W
        B = (1.0 - eps) * B + (eps / C) * w
    grad = np.where(keep[:, None], grad, 0.0)
    A = np.where(keep, A, 0.0)
    B = np.where(keep[:, None], B, 0.0)
    return loss, grad, keep, wt, A, B


def _denominator(is_prob, keep, wt):
    return float(keep.size) if is_prob else float(np.sum(wt[keep]))


@_quiet
def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, *, axis=None, z_loss=0.0, softcap=None,
                  with_magnitude=False):
    """Loss in float64: shaped like the rows for "none", 0-d for "sum"/"mean". with_magnitude:
    also return the size of the terms each value is made of (the scale of its rounding error,
    for tolerances)."""
    x2, t, is_prob, rows_shape, _ = _rows(input, target, axis)
    w = _weights(weight, x2.shape[1])
    loss, _, keep, wt, A, _ = _parts(x2, t, is_prob, w, ignore_index, float(label_smoothing),
                                     z_loss, softcap)
    # Error magnitude of a row's loss: every (lse - x_c) carries the absolute error of log s,
    # i.e. the relative error of s, weighted by A = the total weight of those terms. A softcap
    # adds an absolute error of a few ulp of the cap to every logit.
    mag = np.abs(loss) + A * (1.0 + (softcap or 0.0))
    if reduction == "none":
        out, mag = loss.reshape(rows_shape), mag.reshape(rows_shape)
    elif reduction == "sum":
        out, mag = np.asarray(np.sum(loss)), np.asarray(np.sum(mag))
    else:
        den = _denominator(is_prob, keep, wt)
        out, mag = np.asarray(np.sum(loss) / den), np.asarray(np.sum(mag) / den)
    return (out, mag) if with_magnitude else out


@_quiet
def cross_entropy_backward(input, target, grad_output=1.0, weight=None, ignore_index=-100,
                           reduction="mean", label_smoothing=0.0, *, axis=None, z_loss=0.0,
                           softcap=None, with_magnitude=False):
    """∂(grad_output · loss)/∂input in float64, shaped like the input (with_magnitude: also the
    size of the terms each entry is made of, as for cross_entropy)."""
    x2, t, is_prob, rows_shape, ax = _rows(input, target, axis)
    w = _weights(weight, x2.shape[1])
    _, grad, keep, wt, A, B = _parts(x2, t, is_prob, w, ignore_index, float(label_smoothing),
                                     z_loss, softcap)
    g = np.asarray(grad_output, dtype=np.float64)
    if reduction == "none":
        scale = np.broadcast_to(g, rows_shape).reshape(-1)
    else:
        assert g.size == 1
        scale = np.full(x2.shape[0], float(g.reshape(())))
        if reduction == "mean":
            den = _denominator(is_prob, keep, wt)
            # All rows ignored: torch's gradient is 0 (every row's gradient is 0 already).
            scale = scale / den if den != 0 else np.zeros_like(scale)
    grad = np.where(keep[:, None], grad * scale[:, None], 0.0)
    shape = tuple(rows_shape) + (x2.shape[1],)
    grad = np.moveaxis(grad.reshape(shape), -1, ax)
    if not with_magnitude:
        return grad
    # p_j·A - B_j cancels near p_t = 1: its rounding error scales with p_j·A + B_j (of the
    # capped logits: with a softcap, their few-ulp-of-the-cap error moves p_j by p_j·cap·ulp).
    xc = _softcap(x2, softcap)[0]
    mag = (np.exp(_log_softmax_last(xc)) * A[:, None] * (1.0 + (softcap or 0.0)) + B) \
        * np.abs(scale)[:, None]
    return grad, np.moveaxis(mag.reshape(shape), -1, ax)


@_quiet
def row_logsumexp(input, axis=None, softcap=None):
    """Each row's log-sum-exp (of the softcapped logits), shaped like the input without its
    class axis: what ``return_lse=True`` returns."""
    x = np.asarray(input, dtype=np.float64)
    ax = _class_axis(x.ndim, axis)
    xl = np.moveaxis(x, ax, -1)
    xc = _softcap(xl.reshape(-1, xl.shape[-1]), softcap)[0]
    m, log_s = _lse_parts(xc)
    return (m + log_s)[:, 0].reshape(xl.shape[:-1])


@_quiet
def row_entropy(input, axis=None, softcap=None):
    """Each row's softmax entropy -Σ p·log p (0·log 0 = 0 for masked classes), shaped like the
    input without its class axis."""
    x = np.asarray(input, dtype=np.float64)
    ax = _class_axis(x.ndim, axis)
    xl = np.moveaxis(x, ax, -1)
    logp = _log_softmax_last(_softcap(xl.reshape(-1, xl.shape[-1]), softcap)[0])
    p = np.exp(logp)
    terms = np.where(p > 0, p * logp, np.where(np.isnan(p), np.nan, 0.0))
    return (-np.sum(terms, axis=-1)).reshape(xl.shape[:-1])


@_quiet
def linear_cross_entropy(hidden, weight, target, bias=None, grad_output=1.0, class_weight=None,
                         ignore_index=-100, reduction="mean", label_smoothing=0.0, z_loss=0.0,
                         softcap=None, lse_grad=None):
    """The unchunked composition in float64: logits = hidden @ weight.T + bias over hidden's rows
    (its leading axes), their cross_entropy, and the gradient G of grad_output·loss (+ Σ
    lse_grad·lse when lse_grad, per row, is given) chained through the product: grad_hidden =
    G @ weight, grad_weight = G.T @ hidden (over all rows), grad_bias = G.sum(0). Returns
    {name: (value, magnitude)} for "loss", "lse" (per row), "hidden", "weight" and "bias": the
    magnitude chains the cross-entropy's (|G|'s term sizes) through the product with the other
    factor's absolute values, the size of the terms each entry sums."""
    h = np.asarray(hidden, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    rows_shape, H = h.shape[:-1], h.shape[-1]
    h2 = h.reshape(-1, H)
    logits = h2 @ w.T + (0.0 if bias is None else np.asarray(bias, np.float64))
    t = np.asarray(target)
    t2 = t.reshape(logits.shape if is_floating(t.dtype) else (-1,))
    go = np.asarray(grad_output, np.float64)
    if reduction == "none" and go.ndim:
        go = go.reshape(-1)
    kw = dict(weight=class_weight, ignore_index=ignore_index, reduction=reduction,
              label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap)
    loss, loss_mag = cross_entropy(logits, t2, **kw, with_magnitude=True)
    if reduction == "none":
        loss, loss_mag = loss.reshape(rows_shape), loss_mag.reshape(rows_shape)
    g, g_mag = cross_entropy_backward(logits, t2, go, **kw, with_magnitude=True)
    lse = row_logsumexp(logits, softcap=softcap)
    if lse_grad is not None:
        # ∂lse/∂x_j = p_j · (the cap's derivative 1 - tanh²(x_j / softcap), or 1)
        capped, dcap = _softcap(logits, softcap)
        term = np.asarray(lse_grad, np.float64).reshape(-1, 1) * softmax(capped) * dcap
        g, g_mag = g + term, g_mag + np.abs(term)
    return {
        "loss": (loss, loss_mag),
        "lse": (lse.reshape(rows_shape), np.abs(lse.reshape(rows_shape)) + 1),
        "hidden": ((g @ w).reshape(h.shape), (g_mag @ np.abs(w)).reshape(h.shape)),
        "weight": (g.T @ h2, g_mag.T @ np.abs(h2)),
        "bias": (g.sum(axis=0), g_mag.sum(axis=0)),
    }


# ---- binary cross-entropy with logits ------------------------------------------------------------
# torch's formula operation by operation (so non-finite logits give torch's NaNs), in float64:
#   loss = w·((1 - y)·x - lw·log σ(x)),  lw = (pw - 1)·y + 1,  log σ(x) = min(x, 0) - log1p(e)
#   ∂loss/∂x = w·((pw·y + 1 - y)·σ(x) - pw·y),  e = exp(-|x|), σ(x) = (x < 0 ? e : 1) / (1 + e)


def _bce_operands(input, target, weight, pos_weight):
    x = np.asarray(input, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    assert y.shape == x.shape, "target must have the input's shape"
    w = np.ones(()) if weight is None else np.asarray(weight, dtype=np.float64)
    pw = None if pos_weight is None else np.asarray(pos_weight, dtype=np.float64)
    return x, y, w, pw


@_quiet
def binary_cross_entropy_with_logits(input, target, weight=None, pos_weight=None,
                                     reduction="mean", *, with_magnitude=False):
    """Loss in float64 (the input's shape for "none", else 0-d). with_magnitude: also the size
    of the terms each value is made of, |w|·(|(1-y)·x| + |lw|·(|min(x, 0)| + log1p(e)))."""
    x, y, w, pw = _bce_operands(input, target, weight, pos_weight)
    log1p_e = np.log1p(np.exp(-np.abs(x)))
    log_sigmoid = np.minimum(x, 0.0) - log1p_e
    lw = np.ones_like(x) if pw is None else (pw - 1.0) * y + 1.0
    loss = ((1.0 - y) * x - lw * log_sigmoid) * w
    mag = np.abs(w) * (np.abs((1.0 - y) * x) + np.abs(lw) * (np.abs(np.minimum(x, 0.0)) + log1p_e))
    loss, mag = np.broadcast_to(loss, x.shape), np.broadcast_to(mag, x.shape)
    if reduction == "sum":
        loss, mag = np.asarray(np.sum(loss)), np.asarray(np.sum(mag))
    elif reduction == "mean":
        loss, mag = np.asarray(np.mean(loss)), np.asarray(np.mean(mag))
    return (loss, mag) if with_magnitude else loss


@_quiet
def binary_cross_entropy_with_logits_backward(input, target, grad_output=1.0, weight=None,
                                              pos_weight=None, reduction="mean", *,
                                              with_magnitude=False):
    """∂(grad_output · loss)/∂input in float64 (with_magnitude: also the size of its terms,
    |g·w|·(|σ·(pw·y + 1 - y)| + |pw·y|))."""
    x, y, w, pw = _bce_operands(input, target, weight, pos_weight)
    e = np.exp(-np.abs(x))
    sigmoid = np.where(x < 0, e, 1.0) / (1.0 + e)
    g = np.asarray(grad_output, dtype=np.float64)
    if reduction == "mean":
        g = g / x.size if x.size else g
    if pw is None:
        grad, mag = sigmoid - y, np.abs(sigmoid) + np.abs(y)
    else:
        t = pw * y
        grad = (t + 1.0 - y) * sigmoid - t
        mag = np.abs((t + 1.0 - y) * sigmoid) + np.abs(t)
    grad = np.broadcast_to(grad * g * w, x.shape)
    mag = np.broadcast_to(mag * np.abs(g * w), x.shape)
    return (grad, mag) if with_magnitude else grad

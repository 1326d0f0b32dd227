"""Test problems shared by the test modules: logits, targets, weights and option sets."""

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import pytest

DTYPES = (np.float32, np.float64)  # float16 / bfloat16 logits: test_low_precision.py
REDUCTIONS = ("none", "sum", "mean")
SMOOTHINGS = (0.0, 0.1, 1.0)
INT_DTYPES = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)

# How targets meet ignore_index: "default" keeps -100 and ignores no row; the others force
# about a quarter of the rows to ignore_index (-100, -1, or a class inside [0, C)).
IGNORE_MODES = ("default", "neg100", "neg1", "inrange")
PROB_IGNORE_MODES = ("default", "neg1")  # ignore_index >= 0 is an error with probabilities


@dataclass(frozen=True)
class Options:
    kind: str = "index"  # "index" (class indices) or "prob" (class probabilities)
    weight: bool = False
    ignore: str = "default"
    reduction: str = "mean"
    smoothing: float = 0.0

    @property
    def id(self):
        return (f"{self.kind}-{'w' if self.weight else 'now'}-ign_{self.ignore}-{self.reduction}"
                f"-ls{self.smoothing}")


def option_grid(kinds=("index", "prob"), reductions=REDUCTIONS, smoothings=SMOOTHINGS):
    """Every valid combination of the options, as pytest params."""
    out = []
    for kind in kinds:
        modes = IGNORE_MODES if kind == "index" else PROB_IGNORE_MODES
        for w, ign, red, ls in itertools.product((False, True), modes, reductions, smoothings):
            o = Options(kind, w, ign, red, ls)
            out.append(pytest.param(o, id=o.id))
    return out


def loss_dtype(dtype):
    """The dtype of a loss (and of logsumexp) for logits of `dtype`: float64 stays float64;
    float32, float16 and bfloat16 are computed, accumulated and returned in float32."""
    return np.dtype(np.float64 if np.dtype(dtype) == np.float64 else np.float32)


def ignore_index_for(mode, C):
    return {"default": -100, "neg100": -100, "neg1": -1, "inrange": C // 2}[mode]


def class_axis(ndim, axis):
    if axis is None:
        return 0 if ndim == 1 else 1
    return axis % ndim


@dataclass
class Problem:
    x: np.ndarray
    target: np.ndarray
    # weight, ignore_index, reduction, label_smoothing, axis
    kwargs: dict = field(default_factory=dict)
    C: int = 0
    rows_shape: tuple = ()

    @property
    def rows(self):
        return math.prod(self.rows_shape)

    def terms(self):
        """Terms summed into one loss value (for the float32 tolerance)."""
        if self.kwargs.get("reduction", "mean") == "none":
            return self.C
        return self.C + self.rows

    def grad_output_rows(self, rng):
        """A per-row grad_output (reduction "none"), in the input's dtype."""
        return rng.uniform(-2.0, 2.0, self.rows_shape).astype(self.x.dtype)


def make_logits(rng, shape, dtype, scale=3.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def make_index_target(rng, rows_shape, C, ignore_index=-100, frac_ignored=0.0, dtype=np.int64):
    t = np.asarray(rng.integers(0, C, size=rows_shape), dtype=np.int64)
    if frac_ignored:
        t[rng.random(rows_shape) < frac_ignored] = ignore_index
    return t.astype(dtype)


def make_prob_target(rng, shape, axis, dtype):
    y = rng.random(shape) ** 2
    y /= np.maximum(y.sum(axis=axis, keepdims=True), 1e-30)
    return y.astype(dtype)


def make_problem(rng, shape, dtype, opts, axis=None, scale=3.0, target_dtype=np.int64, x=None,
                 prob_dtype=None, weight_dtype=None):
    """Logits of `shape` (or the given `x`), targets and keyword arguments for `opts`.
    target_dtype is the dtype of index targets; probability targets and weights have the
    logits' dtype unless prob_dtype / weight_dtype say otherwise."""
    x = make_logits(rng, shape, dtype, scale) if x is None else x
    ax = class_axis(x.ndim, axis)
    C = x.shape[ax]
    rows_shape = x.shape[:ax] + x.shape[ax + 1:]
    ignore_index = ignore_index_for(opts.ignore, C)
    if opts.kind == "index":
        frac = 0.0 if opts.ignore == "default" else 0.25
        t = make_index_target(rng, rows_shape, C, ignore_index, frac, target_dtype)
    else:
        t = make_prob_target(rng, x.shape, ax, prob_dtype or x.dtype)
    wdt = weight_dtype or x.dtype
    kwargs = dict(ignore_index=ignore_index, reduction=opts.reduction,
                  label_smoothing=opts.smoothing, axis=axis,
                  weight=rng.uniform(0.25, 2.0, C).astype(wdt) if opts.weight else None)
    return Problem(x, t, kwargs, C, tuple(rows_shape))


# ---- linear cross-entropy: hidden (rows, H), weight (V, H), bias (V,) ---------------------------
# The products of these inputs are exact in the tested dtype, so the logits fastxent's chunks
# compute equal the float64 reference's and every difference measured is the cross-entropy's and
# the back-products' own rounding: float32/float64 entries are multiples of 1/8 in [-2, 2] (a
# product is a multiple of 1/64, at most 4: a sum of H <= 64 of them needs 15 bits) and the bias
# multiples of 1/64 in [-4, 4]; 16-bit entries are 0, ±1/4, ±1/2 (H <= 32: |sum| <= 8 in steps of
# 1/16) and the bias multiples of 1/16 below 7 in size, so a logit is k/16 with |k| < 256:
# 8 significant bits, exact in bfloat16 and float16.
_DYADIC = {2: (2, 4, 32, 112, 16), 4: (16, 8, 64, 256, 64), 8: (16, 8, 64, 256, 64)}


@dataclass
class LinearProblem:
    hidden: np.ndarray
    weight: np.ndarray
    bias: object
    target: np.ndarray
    kwargs: dict  # class_weight, ignore_index, reduction, label_smoothing

    @property
    def rows_shape(self):
        return self.hidden.shape[:-1]

    @property
    def rows(self):
        return math.prod(self.rows_shape)

    def terms(self):
        """Terms summed into one loss value (for the float32 tolerance)."""
        V = self.weight.shape[0]
        return V if self.kwargs["reduction"] == "none" else V + self.rows


def make_linear_problem(rng, rows_shape, H, V, dtype, opts, bias=True):
    """Exact-product inputs (above) of `dtype` (a NumPy dtype; bfloat16 from ml_dtypes) and the
    targets and options of `opts`."""
    dtype = np.dtype(dtype)
    k, den, max_h, kb, bden = _DYADIC[dtype.itemsize]
    assert H <= max_h, f"H={H}: products are no longer exact in {dtype}"
    hidden = (rng.integers(-k, k + 1, tuple(rows_shape) + (H,)) / den).astype(dtype)
    weight = (rng.integers(-k, k + 1, (V, H)) / den).astype(dtype)
    b = (rng.integers(-kb, kb + 1, V) / bden).astype(dtype) if bias else None
    ignore_index = ignore_index_for(opts.ignore, V)
    if opts.kind == "index":
        frac = 0.0 if opts.ignore == "default" else 0.25
        t = make_index_target(rng, tuple(rows_shape), V, ignore_index, frac)
    else:
        t = make_prob_target(rng, tuple(rows_shape) + (V,), -1, np.float32)
    kwargs = dict(ignore_index=ignore_index, reduction=opts.reduction,
                  label_smoothing=opts.smoothing,
                  class_weight=rng.uniform(0.25, 2.0, V).astype(np.float32) if opts.weight
                  else None)
    return LinearProblem(hidden, weight, b, t, kwargs)


# ---- binary cross-entropy with logits ------------------------------------------------------------

# How weight / pos_weight are given (each broadcast to the input's shape by the callee):
# None, the full shape, the last axis (C,), the first axis kept (N, 1, ...), 0-d.
BCE_WEIGHT_FORMS = ("none", "full", "last", "first", "scalar")


def bce_weight(rng, shape, form, lo, hi, dtype):
    """A weight of `form` for an input of `shape`, uniform in [lo, hi), or None."""
    if form == "none":
        return None
    wshape = {"full": shape, "last": shape[-1:], "scalar": (),
              "first": shape[:1] + (1,) * (len(shape) - 1)}[form] if shape else ()
    return rng.uniform(lo, hi, wshape).astype(dtype)


@dataclass
class BceProblem:
    x: np.ndarray
    target: np.ndarray
    kwargs: dict = field(default_factory=dict)  # weight, pos_weight, reduction

    def terms(self):
        """Terms summed into one loss value (for the float32 tolerance)."""
        return 1 if self.kwargs.get("reduction", "mean") == "none" else max(self.x.size, 1)

    def grad_outputs(self, rng):
        """The grad_output forms the reduction accepts, plus an elementwise one for "none"."""
        gos = [1.0, np.array(-0.75, dtype=self.x.dtype)]
        if self.kwargs.get("reduction", "mean") == "none":
            gos.append(rng.uniform(-2.0, 2.0, self.x.shape).astype(self.x.dtype))
        return gos


def make_bce_problem(rng, shape, dtype, reduction="mean", weight="none", pos_weight="none",
                     scale=4.0, target_dtype=None, x=None):
    """Logits of `shape` (or the given `x`), targets in [0, 1] (a third of them exactly 0 or 1,
    the binary case) and weights of the given forms, all in the logits' dtype unless
    target_dtype says otherwise."""
    x = np.asarray(make_logits(rng, shape, dtype, scale) if x is None else x)  # 0-d: an array
    shape = x.shape
    y = rng.random(shape)
    hard = rng.random(shape) < 1 / 3
    y = np.asarray(np.where(hard, np.round(y), y).astype(target_dtype or x.dtype))
    kwargs = dict(reduction=reduction,
                  weight=bce_weight(rng, shape, weight, 0.25, 2.0, x.dtype),
                  pos_weight=bce_weight(rng, shape, pos_weight, 0.1, 5.0, x.dtype))
    return BceProblem(x, y, kwargs)

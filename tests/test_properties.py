"""Property-based tests (hypothesis): random shapes (K-dim, any class axis), memory layouts
(transposed, sliced, reversed views), dtypes, options and values, against the float64
reference, plus invariants every input must satisfy:

* each row's gradient sums to zero. Derivation, for a row with softmax p (Σ_j p_j = 1), class
  weights w (W = Σ_c w_c) and smoothing ε:
    index target t:  g_j = (1-ε)·w_t·(p_j - [j=t]) + (ε/C)·(W·p_j - w_j)
                     Σ_j g_j = (1-ε)·w_t·(1 - 1) + (ε/C)·(W - W) = 0
    probabilities y: g_j = p_j·A - w_j·y'_j with A = Σ_c w_c·y'_c
                     Σ_j g_j = A - A = 0
  for any weights (label smoothing with weights included: the smoothing term's own weights
  sum to W on both sides), any targets (probabilities need not sum to 1) and any
  grad_output (a per-row factor). Ignored rows are all zeros. Only terms outside torch's
  cross-entropy (a z-loss adds 2·z·lse·p_j, a softcap multiplies entry j by its own tanh'
  factor) would break it.
* adding a constant to a row changes neither loss nor gradient (the values and shifts are
  dyadic, so x + c is exact in every dtype and the inputs really differ by c);
* the fused pass equals forward + backward, bitwise;
* reduction "sum" equals the sum of "none", and "mean" that sum over the mean's denominator.

The runs are derandomized (the same examples on every run, so CI is reproducible);
FASTXENT_PROPERTY_EXAMPLES sets the number of examples per property (default 120).
"""

import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastxent  # noqa: E402
import reference  # noqa: E402
from checks import check_entry_points  # noqa: E402
from conftest import assert_bitwise_equal, assert_close, ml_dtypes, store_tolerance, tolerance  # noqa: E402
from problems import IGNORE_MODES, PROB_IGNORE_MODES, Options, class_axis, loss_dtype, make_problem  # noqa: E402

EXAMPLES = int(os.environ.get("FASTXENT_PROPERTY_EXAMPLES", "120"))
PROFILE = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

DTYPES = [np.float64, np.float32, np.float16] + ([ml_dtypes.bfloat16] if ml_dtypes else [])


@st.composite
def layouts(draw, shape, dtype, values):
    """`values` (float64, `shape`) stored as `dtype` in one of several memory layouts."""
    kind = draw(st.sampled_from(["c", "transposed", "sliced", "reversed"]))
    a = values.astype(dtype)
    if kind == "transposed" and a.ndim > 1:
        perm = draw(st.permutations(range(a.ndim)))
        inverse = np.argsort(perm)
        return np.ascontiguousarray(a.transpose(perm)).transpose(inverse)
    if kind == "sliced":
        big = np.zeros(tuple(2 * n for n in a.shape), dtype)
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if kind == "reversed" and a.ndim:
        ax = draw(st.integers(0, a.ndim - 1))
        return np.flip(np.flip(a, ax).copy(), ax)
    return a


@st.composite
def problems(draw, dyadic=False, extensions=False):
    """A Problem (tests/problems.py) of random shape, class axis, layout, dtype and options;
    with `extensions`, also z_loss and softcap (which the row-sum and shift invariants do not
    survive: a z-loss adds 2·z·lse·p_j to a row's gradient, a softcap is no shift)."""
    dtype = draw(st.sampled_from(DTYPES))
    ndim = draw(st.integers(1, 4))
    shape = list(draw(st.lists(st.integers(0, 5), min_size=ndim, max_size=ndim)))
    axis = draw(st.one_of(st.none(), st.integers(-ndim, ndim - 1))) if ndim > 1 else None
    ax = class_axis(ndim, axis)
    shape[ax] = draw(st.sampled_from([1, 2, 3, 7, 8, 16, 17, 33, 100]))
    kind = draw(st.sampled_from(["index", "index", "prob"]))
    opts = Options(kind, draw(st.booleans()),
                   draw(st.sampled_from(IGNORE_MODES if kind == "index" else PROB_IGNORE_MODES)),
                   draw(st.sampled_from(["none", "sum", "mean"])),
                   draw(st.sampled_from([0.0, 0.0, 0.1, 1.0]) | st.floats(0.0, 1.0)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if dyadic:  # multiples of 1/4 in [-8, 8]: exact in every dtype, also after a shift
        values = rng.integers(-32, 33, shape) / 4.0
    else:
        values = rng.standard_normal(shape) * draw(st.sampled_from([0.5, 3.0, 20.0]))
    x = draw(layouts(tuple(shape), dtype, values))
    p = make_problem(rng, tuple(shape), dtype, opts, axis=axis, x=x)
    if extensions:
        p.kwargs["z_loss"] = draw(st.sampled_from([0.0, 0.0, 1e-3, 0.1]))
        p.kwargs["softcap"] = draw(st.sampled_from([None, None, 5.0, 30.0]))
    return p, rng


@PROFILE
@given(problems(extensions=True))
def test_agrees_with_the_reference(problem):
    """forward, backward (every grad_output form, out=, out=input) and with_grad (inplace
    too) against the float64 reference (tests/checks.py)."""
    p, rng = problem
    check_entry_points(p, rng)


def _grad(p, rng):
    go = p.grad_output_rows(rng) if p.kwargs["reduction"] == "none" else -1.5
    return fastxent.cross_entropy_backward(p.x, p.target, go, **p.kwargs), go


@PROFILE
@given(problems())
def test_gradient_rows_sum_to_zero(problem):
    p, rng = problem
    g, go = _grad(p, rng)
    _, mag = reference.cross_entropy_backward(p.x, p.target, go, **p.kwargs, with_magnitude=True)
    ax = class_axis(p.x.ndim, p.kwargs["axis"])
    g64 = g.astype(np.float64)
    total = np.sum(g64, axis=ax)
    # Each entry is within tolerance of its reference value, relative to the size of the terms
    # it is made of (an entry p_t·A - B_t cancels when p_t ~ 1), plus the one rounding of a
    # stored 16-bit value; the float64 sum of C entries adds nothing worth counting.
    rtol, atol = tolerance(p.x.dtype, p.C)
    rtol_store, atol_store = store_tolerance(p.x.dtype)
    bound = (np.sum(rtol * mag + rtol_store * np.abs(g64), axis=ax)
             + p.C * (atol * (np.max(mag) if mag.size else 0) + atol_store))
    assert np.all(np.abs(total) <= bound), (
        f"row sums {total[np.abs(total) > bound][:5]} exceed {bound[np.abs(total) > bound][:5]}")


@PROFILE
@given(problems(dyadic=True), st.integers(-8, 8))
def test_adding_a_constant_to_a_row_changes_nothing(problem, shift_scale):
    p, rng = problem
    ax = class_axis(p.x.ndim, p.kwargs["axis"])
    shape = list(p.x.shape)
    shape[ax] = 1
    shift = rng.integers(-2, 3, shape) * float(shift_scale)  # |x + c| <= 24: still exact
    shifted = (p.x.astype(np.float64) + shift).astype(p.x.dtype)
    assert np.array_equal(shifted.astype(np.float64), p.x.astype(np.float64) + shift)
    ref_loss, mag_loss = reference.cross_entropy(p.x, p.target, **p.kwargs, with_magnitude=True)
    loss = fastxent.cross_entropy(p.x, p.target, **p.kwargs)
    loss_shifted = fastxent.cross_entropy(shifted, p.target, **p.kwargs)
    # Both are within tolerance of the one reference value: so within twice of each other.
    assert_close(loss, ref_loss, loss_dtype(p.x.dtype), p.terms(), "loss", mag_loss)
    assert_close(loss_shifted, ref_loss, loss_dtype(p.x.dtype), p.terms(), "loss(x + c)",
                 mag_loss)
    g, go = _grad(p, rng)
    g_shifted = fastxent.cross_entropy_backward(shifted, p.target, go, **p.kwargs)
    ref_g, mag_g = reference.cross_entropy_backward(p.x, p.target, go, **p.kwargs,
                                                    with_magnitude=True)
    assert_close(g_shifted, ref_g, p.x.dtype, p.C, "grad(x + c)", mag_g)
    assert_close(g, ref_g, p.x.dtype, p.C, "grad", mag_g)


@PROFILE
@given(problems(extensions=True))
def test_fused_equals_forward_plus_backward(problem):
    p, rng = problem
    g, go = _grad(p, rng)
    loss, fused_g = fastxent.cross_entropy_with_grad(p.x, p.target, go, **p.kwargs)
    assert_bitwise_equal(loss, fastxent.cross_entropy(p.x, p.target, **p.kwargs), "loss")
    assert_bitwise_equal(fused_g, g, "grad")


@PROFILE
@given(problems(extensions=True))
def test_sum_is_the_sum_of_none_and_mean_its_average(problem):
    p, _ = problem
    kw = dict(p.kwargs)
    per_row = fastxent.cross_entropy(p.x, p.target, **dict(kw, reduction="none"))
    total = fastxent.cross_entropy(p.x, p.target, **dict(kw, reduction="sum"))
    mean = fastxent.cross_entropy(p.x, p.target, **dict(kw, reduction="mean"))
    _, mag = reference.cross_entropy(p.x, p.target, **dict(kw, reduction="sum"),
                                     with_magnitude=True)
    ldt = loss_dtype(p.x.dtype)
    # Summing the rows in float64 is far more exact than the float32 per-row values: the
    # comparison is at the loss's own tolerance for C + rows terms.
    assert_close(total, np.sum(per_row.astype(np.float64)), ldt, p.C + p.rows, "sum", mag)
    if reference.is_floating(p.target.dtype):
        den = float(p.rows)  # probability targets: the number of rows
    else:  # the summed weight of the rows not ignored
        w = np.ones(p.C) if kw["weight"] is None else kw["weight"].astype(np.float64)
        t = p.target.astype(np.int64)
        den = float(np.sum(w[t[t != kw["ignore_index"]]]))
    with np.errstate(all="ignore"):
        expected_mean = np.float64(total) / den
    assert_close(mean, expected_mean, ldt, p.C + p.rows, "mean",
                 np.abs(mag / den) if den else None)

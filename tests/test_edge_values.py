"""Edge values: -inf logits, huge logits, NaN rows, ignored and empty batches, one class."""

import numpy as np
import pytest

import fastxent
import reference
from checks import check_entry_points
from conftest import assert_close, tolerance
from problems import DTYPES, REDUCTIONS, Options, make_logits, make_problem

pytestmark = pytest.mark.every_isa  # each test once per CPU ISA (conftest.py)

EDGE_OPTIONS = [pytest.param(Options(kind, w, ign, red, ls), id=Options(kind, w, ign, red, ls).id)
                for kind, ign in (("index", "neg100"), ("prob", "default"))
                for w in (False, True) for red in REDUCTIONS for ls in (0.0, 0.1)]
INDEX_OPTIONS = [p for p in EDGE_OPTIONS if p.values[0].kind == "index"]


@pytest.mark.parametrize("opts", EDGE_OPTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_masked_vocabulary(dtype, opts, rng):
    """-inf logits (a masked vocabulary) get probability 0. Targets avoid masked classes; with
    smoothing the loss is inf (torch), and probability targets with y_c = 0 at a -inf logit
    give nan (torch forms 0 * -inf), which the reference reproduces."""
    x = make_logits(rng, (6, 40), dtype)
    masked = rng.random(40) < 0.4
    masked[[0, 1]] = [False, True]
    x[:, masked] = -np.inf
    p = make_problem(rng, None, dtype, opts, x=x)
    if opts.kind == "index":
        keep = p.target != -100
        p.target[keep] = rng.choice(np.flatnonzero(~masked), keep.sum())
    else:
        p.target[:, masked] = 0
    check_entry_points(p, rng)
    grad = fastxent.cross_entropy_backward(p.x, p.target, **p.kwargs)
    assert np.isfinite(grad).all()


@pytest.mark.parametrize("opts", INDEX_OPTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_minus_inf_at_target(dtype, opts, rng):
    """A -inf target logit gives an inf loss and a finite gradient."""
    p = make_problem(rng, (5, 9), dtype, Options("index", opts.weight, "default", opts.reduction,
                                                 opts.smoothing))
    p.x[[1, 3], p.target[[1, 3]]] = -np.inf
    check_entry_points(p, rng)
    loss = fastxent.cross_entropy(p.x, p.target, **dict(p.kwargs, reduction="none"))
    assert np.isinf(loss[[1, 3]]).all() and (loss[[1, 3]] > 0).all()
    assert np.isfinite(loss[[0, 2, 4]]).all()
    assert np.isfinite(fastxent.cross_entropy_backward(p.x, p.target, **p.kwargs)).all()


@pytest.mark.parametrize("offset", [1e4, -1e4, "mixed"])
@pytest.mark.parametrize("opts", [
    pytest.param(Options(), id="index"),
    pytest.param(Options("index", True, "neg100", "none", 0.1), id="index-all"),
    pytest.param(Options("prob", True, "default", "none", 0.1), id="prob")])
@pytest.mark.parametrize("C", [7, 1000])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_large_logits_keep_digits(dtype, C, opts, offset, rng):
    """Logits near ±1e4: a loss of a few units must keep float32's relative precision (computing
    lse = m + log s and subtracting x_t would lose ~1e-3 absolute)."""
    if offset == "mixed":
        x = rng.choice([-1e4, 1e4], (33, C)) + rng.standard_normal((33, C))
    else:
        x = offset + rng.standard_normal((33, C)) * 3
    p = make_problem(rng, None, dtype, opts, x=x.astype(dtype))
    check_entry_points(p, rng)
    loss = fastxent.cross_entropy(p.x, p.target, **dict(p.kwargs, reduction="none"))
    ref = reference.cross_entropy(p.x, p.target, **dict(p.kwargs, reduction="none"))
    counted = ref > 0.1
    assert counted.sum() > 5
    rel = np.abs(loss[counted] - ref[counted]) / ref[counted]
    assert rel.max() < 2 * tolerance(dtype, C)[0], rel.max()


@pytest.mark.parametrize("opts", EDGE_OPTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_nan_stays_in_its_row(dtype, opts, rng):
    """A NaN logit makes its row's loss and gradient NaN and nothing else (sum/mean: NaN)."""
    p = make_problem(rng, (5, 11), dtype, opts)
    if opts.kind == "index":
        p.target[2] = 4
    p.x[2, 7] = np.nan
    check_entry_points(p, rng)
    grad = fastxent.cross_entropy_backward(p.x, p.target, **p.kwargs)
    assert np.isnan(grad[2]).all()
    others = np.delete(grad, 2, axis=0)
    assert np.isfinite(others).all()
    loss = fastxent.cross_entropy(p.x, p.target, **p.kwargs)
    if opts.reduction == "none":
        assert np.isnan(loss[2]) and np.isfinite(np.delete(loss, 2)).all()
    else:
        assert np.isnan(loss)


@pytest.mark.parametrize("opts", EDGE_OPTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_row_of_only_minus_inf(dtype, opts, rng):
    """A row with every logit -inf has no softmax: its loss and gradient are NaN (torch:
    -inf - -inf), like a NaN row; other rows are unaffected."""
    p = make_problem(rng, (5, 11), dtype, opts)
    if opts.kind == "index":
        p.target[2] = 4
    p.x[2] = -np.inf
    check_entry_points(p, rng)
    loss, grad = fastxent.cross_entropy_with_grad(p.x, p.target, **dict(p.kwargs, reduction="none"))
    assert np.isnan(loss[2]) and np.isnan(grad[2]).all()
    assert np.isfinite(np.delete(grad, 2, axis=0)).all()


@pytest.mark.parametrize("opts", INDEX_OPTIONS)
@pytest.mark.parametrize("shape", [(6, 13), (2, 13, 3), (13,)])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_all_rows_ignored(dtype, shape, opts, rng):
    """Every row ignored: loss 0 (none, sum), nan (mean, as torch); gradient exactly 0."""
    p = make_problem(rng, shape, dtype, opts)
    p.target[...] = -100
    check_entry_points(p, rng)
    loss, grad = fastxent.cross_entropy_with_grad(p.x, p.target, **p.kwargs)
    if opts.reduction == "mean":
        assert loss.shape == () and np.isnan(loss)
    else:
        assert (loss == 0).all()
    assert (grad == 0).all()


@pytest.mark.parametrize("opts", EDGE_OPTIONS)
@pytest.mark.parametrize("shape", [(0, 7), (0, 7, 3), (2, 7, 0)])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_empty_batch(dtype, shape, opts, rng):
    """No rows: "none" is empty, "sum" is 0, "mean" is nan (torch); the gradient is empty."""
    p = make_problem(rng, shape, dtype, opts)
    check_entry_points(p, rng)
    loss, grad = fastxent.cross_entropy_with_grad(p.x, p.target, **p.kwargs)
    assert grad.shape == shape and grad.dtype == dtype
    if opts.reduction == "none":
        assert loss.shape == p.rows_shape
    else:
        assert loss.shape == () and (np.isnan(loss) if opts.reduction == "mean" else loss == 0)


@pytest.mark.parametrize("opts", EDGE_OPTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_one_class_is_exact(dtype, opts, rng):
    """C = 1: softmax is exactly 1, so every loss and the unsmoothed gradient are exactly 0
    (mean divides 0 by the kept weight: still 0)."""
    p = make_problem(rng, (7, 1), dtype, opts)
    if opts.kind == "prob":
        p.target[...] = 1
    loss, grad = fastxent.cross_entropy_with_grad(p.x, p.target, **p.kwargs)
    assert (loss == 0).all()
    if opts.smoothing == 0:
        assert (grad == 0).all()
    else:  # (1-ε)·w_t·(p-1) + ε·(W·p - w) cancels exactly only if both parts round alike
        _, mag = reference.cross_entropy_backward(p.x, p.target, **p.kwargs, with_magnitude=True)
        assert_close(grad, np.zeros(grad.shape), dtype, 1, "grad", mag)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_peaked_and_flat_rows(dtype, rng):
    """Very peaked (scale 1e3) and constant rows in one batch."""
    x = make_logits(rng, (8, 300), dtype, scale=1e3)
    x[4:] = 2.5
    p = make_problem(rng, None, dtype, Options("index", True, "neg100", "none", 0.1), x=x)
    check_entry_points(p, rng)

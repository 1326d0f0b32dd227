"""fastxent against the float64 NumPy reference over shapes, options, dtypes and seeds."""

import numpy as np
import pytest

import fastxent
import reference
from checks import check_entry_points
from conftest import assert_bitwise_equal, assert_close
from problems import (DTYPES, INT_DTYPES, REDUCTIONS, Options, make_logits, make_problem,
                      option_grid)

pytestmark = pytest.mark.every_isa  # each test once per CPU ISA (conftest.py)

CLASSES = (1, 2, 7, 16, 17, 31, 32, 33, 1000, 32000, 50257, 128256 + 1)
ROWS = (0, 1, 3, 4096)
# Three option sets for the shape sweep: torch's defaults, every index-target option at once,
# and weighted smoothed probabilities.
SWEEP_OPTIONS = [
    pytest.param(Options(), id="defaults"),
    pytest.param(Options("index", True, "neg100", "none", 0.1), id="index-all"),
    pytest.param(Options("prob", True, "neg1", "sum", 0.1), id="prob-all"),
]


@pytest.mark.parametrize("opts", option_grid())
@pytest.mark.parametrize("shape", [(5, 17), (3, 7, 2, 5), (16,)], ids=["2d", "kdim", "1d"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_every_option_combination(dtype, shape, opts, rng):
    check_entry_points(make_problem(rng, shape, dtype, opts), rng)


@pytest.mark.parametrize("opts", SWEEP_OPTIONS)
@pytest.mark.parametrize("C,rows", [  # 4096 x 50257: test_vocabulary_4096x50257 (slow)
    pytest.param(C, rows, id=f"{rows}x{C}") for C in CLASSES for rows in ROWS if rows * C < 10**7])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_shape_sweep(dtype, C, rows, opts, rng):
    check_entry_points(make_problem(rng, (rows, C), dtype, opts), rng, full=rows * C < 100_000)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("C", (3, 31, 32, 33, 1024 + 7))
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_seeds(dtype, C, seed):
    rng = np.random.default_rng(seed)
    opts = Options("index", True, "neg1", REDUCTIONS[seed % 3], (0.0, 0.1)[seed % 2])
    check_entry_points(make_problem(rng, (9, C), dtype, opts, scale=1.0 + 4 * seed), rng)


@pytest.mark.parametrize("opts", [
    pytest.param(Options(kind, True, ign, red, 0.1), id=f"{kind}-{red}")
    for kind, ign in (("index", "neg100"), ("prob", "default")) for red in REDUCTIONS])
@pytest.mark.parametrize("shape", [(2, 5, 3), (2, 5, 3, 4), (2, 5, 2, 3, 2), (0, 5, 3), (1, 17, 8),
                                   (3, 1000, 5)])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_kdim(dtype, shape, opts, rng):
    check_entry_points(make_problem(rng, shape, dtype, opts), rng)


@pytest.mark.parametrize("opts", [
    pytest.param(Options("index", True, "neg100", "mean", 0.1), id="index"),
    pytest.param(Options("prob", True, "default", "none", 0.1), id="prob")])
@pytest.mark.parametrize("shape,axis", [
    ((4, 6, 33), -1), ((4, 6, 33), 2), ((33, 5), 0), ((2, 3, 17, 4), 2), ((2, 3, 17, 4), -2),
    ((17,), -1), ((3, 4, 2, 9), -1)])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_axis(dtype, shape, axis, opts, rng):
    check_entry_points(make_problem(rng, shape, dtype, opts, axis=axis), rng)


@pytest.mark.parametrize("axis", [1, 2, -1, -2])
def test_axis_equals_moved_class_axis(axis, rng):
    """Choosing the class axis gives what moving it to position 1 (torch's layout) gives."""
    x = make_logits(rng, (3, 5, 7), np.float64)
    ax = axis % 3
    rows = tuple(s for i, s in enumerate(x.shape) if i != ax)
    t = rng.integers(0, x.shape[ax], rows)
    for fn in (fastxent.cross_entropy, fastxent.cross_entropy_backward):
        got = fn(x, t, reduction="sum", axis=axis)
        moved = fn(np.ascontiguousarray(np.moveaxis(x, ax, 1)), t, reduction="sum")
        assert_close(got, moved if got.ndim == 0 else np.moveaxis(moved, 1, ax), np.float64,
                     x.shape[ax], fn.__name__)


@pytest.mark.parametrize("tdtype", INT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_target_integer_dtypes(dtype, tdtype, rng):
    """Every integer target dtype gives the bytes int64 targets give; signed ones may hold a
    negative ignore_index, unsigned ones an in-range one."""
    signed = np.issubdtype(tdtype, np.signedinteger)
    opts = Options("index", True, "neg100" if signed else "inrange", "none", 0.1)
    p = make_problem(rng, (40, 100), dtype, opts, target_dtype=tdtype)
    t64 = p.target.astype(np.int64)
    assert (t64 == p.kwargs["ignore_index"]).any()
    for fn in (fastxent.cross_entropy, fastxent.cross_entropy_backward):
        assert_bitwise_equal(fn(p.x, p.target, **p.kwargs), fn(p.x, t64, **p.kwargs), fn.__name__)
    assert_close(fastxent.cross_entropy(p.x, p.target, **p.kwargs),
                 reference.cross_entropy(p.x, t64, **p.kwargs), dtype, p.C, "loss")


@pytest.mark.parametrize("wdtype", DTYPES, ids=["w32", "w64"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_weight_dtype_may_differ(dtype, wdtype, rng):
    """Weights of any floating dtype are read at their own precision."""
    p = make_problem(rng, (6, 19), dtype, Options("index", True, "neg100", "mean", 0.1))
    w = p.kwargs["weight"].astype(wdtype)
    kw = dict(p.kwargs, weight=w)
    assert_close(fastxent.cross_entropy(p.x, p.target, **kw),
                 reference.cross_entropy(p.x, p.target, **kw), dtype, p.terms(), "loss")
    assert_close(fastxent.cross_entropy_backward(p.x, p.target, **kw),
                 reference.cross_entropy_backward(p.x, p.target, **kw), dtype, p.C, "grad")


@pytest.mark.parametrize("go", [2, np.float32(0.5), np.float64(-3.0), np.array(1.25),
                                np.array(-0.5, dtype=np.float32)],
                         ids=["int", "np32", "np64", "0d", "0d-f32"])
def test_grad_output_scalar_forms(go, rng):
    """Python ints, NumPy scalars and 0-d arrays scale the gradient of any reduction."""
    for red in REDUCTIONS:
        p = make_problem(rng, (4, 9), np.float64, Options("index", True, "neg100", red, 0.1))
        assert_close(fastxent.cross_entropy_backward(p.x, p.target, go, **p.kwargs),
                     reference.cross_entropy_backward(p.x, p.target, float(go), **p.kwargs),
                     np.float64, p.C, f"grad {red}")


@pytest.mark.slow
@pytest.mark.parametrize("opts", [
    pytest.param(Options(), id="defaults"),
    pytest.param(Options("index", True, "neg100", "none", 0.1), id="index-all"),
    pytest.param(Options("prob", True, "neg1", "mean", 0.1), id="prob-all")])
def test_vocabulary_4096x50257(opts, rng):
    """GPT-2 vocabulary at batch 4096 in float32. Rows are independent, so the reference checks
    the per-row loss and gradient on row blocks at the start, middle and end; the reduction is
    checked against the float64 sum of fastxent's own per-row losses."""
    p = make_problem(rng, (4096, 50257), np.float32, opts)
    kw, none_kw = p.kwargs, dict(p.kwargs, reduction="none")
    go = p.grad_output_rows(rng) if opts.reduction == "none" else 1.0
    loss, grad = fastxent.cross_entropy_with_grad(p.x, p.target, go, **kw)
    loss_none = fastxent.cross_entropy(p.x, p.target, **none_kw)
    den = float(p.rows if opts.kind == "prob" else np.sum(p.target != kw["ignore_index"]))
    row_scale = go if opts.reduction == "none" else np.full(p.rows, go / den)
    for lo in (0, 2048 - 128, 4096 - 256):
        sl = slice(lo, lo + 256)
        ref, mag = reference.cross_entropy(p.x[sl], p.target[sl], **none_kw, with_magnitude=True)
        assert_close(loss_none[sl], ref, np.float32, p.C, f"loss rows {lo}+", mag)
        ref, mag = reference.cross_entropy_backward(p.x[sl], p.target[sl], row_scale[sl], **none_kw,
                                                    with_magnitude=True)
        assert_close(grad[sl], ref, np.float32, p.C, f"grad rows {lo}+", mag)
    own = loss_none.astype(np.float64)
    if opts.reduction == "mean":
        assert_close(loss, np.sum(own) / den, np.float32, p.C + p.rows, "mean of rows")
    else:
        assert_bitwise_equal(loss, loss_none, "with_grad loss vs cross_entropy")

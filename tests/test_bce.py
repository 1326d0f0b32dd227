"""binary_cross_entropy_with_logits and its gradient (torch's semantics) against the float64
reference (tests/reference.py) on every ISA: shapes from 0-d to K-dim, every dtype, weight and
pos_weight broadcast from every form, every reduction and grad_output form, strided views,
extreme logits, fused == separate, in place, and bitwise determinism across thread counts."""

import numpy as np
import pytest

import fastxent
import reference
from conftest import assert_bitwise_equal, assert_close, assert_same_buffer
from problems import BCE_WEIGHT_FORMS, REDUCTIONS, loss_dtype, make_bce_problem
from test_low_precision import dtype_of

pytestmark = pytest.mark.every_isa  # each test once per CPU ISA (conftest.py)

ANY_FLOAT = [pytest.param(n, id=n) for n in ("float32", "float64", "float16", "bfloat16")]
# Lengths around the vector widths and the kernels' 1024-value units, 0-d to 4-d.
SHAPES = [(), (1,), (7,), (17,), (33,), (1023,), (1025,), (3000,), (3, 5), (64, 33),
          (2, 1025), (5, 2049), (4, 3, 5, 2), (2, 3, 7, 11)]


def bce(p, **extra):
    return fastxent.binary_cross_entropy_with_logits(p.x, p.target, **{**p.kwargs, **extra})


def check_bce(p, rng, full=True):
    """forward, backward (each grad_output form, out=, out=input) and with_grad (inplace False
    and True) of problem `p` against the reference; fused results bitwise equal separate ones."""
    dt, x0 = p.x.dtype, p.x.copy()
    ldt = loss_dtype(dt)
    loss = bce(p)
    ref_loss, mag_loss = reference.binary_cross_entropy_with_logits(
        p.x, p.target, **p.kwargs, with_magnitude=True)
    assert_close(loss, ref_loss, ldt, p.terms(), "loss", mag_loss)

    gos = p.grad_outputs(rng) if full else p.grad_outputs(rng)[-1:]
    for go in gos:
        ref_grad, mag = reference.binary_cross_entropy_with_logits_backward(
            p.x, p.target, go, **p.kwargs, with_magnitude=True)
        grad = fastxent.binary_cross_entropy_with_logits_backward(p.x, p.target, go, **p.kwargs)
        assert_close(grad, ref_grad, dt, 1, f"backward(grad_output={go!r})", mag)

    l2, g2 = fastxent.binary_cross_entropy_with_logits_with_grad(p.x, p.target, go, **p.kwargs)
    assert_bitwise_equal(l2, loss, "with_grad loss vs forward")
    assert_bitwise_equal(g2, grad, "with_grad grad vs backward")
    assert_bitwise_equal(p.x, x0, "input after non-inplace calls")
    if not full:
        return

    out = np.full_like(p.x, np.nan)
    res = fastxent.binary_cross_entropy_with_logits_backward(p.x, p.target, go, **p.kwargs,
                                                              out=out)
    assert_same_buffer(res, out, "backward(out=buffer)")
    assert_bitwise_equal(out, grad, "backward(out=buffer)")

    xo = p.x.copy()
    res = fastxent.binary_cross_entropy_with_logits_backward(xo, p.target, go, **p.kwargs, out=xo)
    assert_same_buffer(res, xo, "backward(out=input)")
    assert_bitwise_equal(xo, grad, "backward(out=input)")

    xi = p.x.copy()
    l3, g3 = fastxent.binary_cross_entropy_with_logits_with_grad(xi, p.target, go, **p.kwargs,
                                                                 inplace=True)
    assert_same_buffer(g3, xi, "with_grad(inplace=True)")
    assert_bitwise_equal(l3, loss, "with_grad(inplace=True) loss")
    assert_bitwise_equal(xi, grad, "with_grad(inplace=True) grad")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)) or "0d")
@pytest.mark.parametrize("dtype", ANY_FLOAT)
def test_shapes_dtypes_reductions(cpu_isa, dtype, shape, reduction, rng):
    p = make_bce_problem(rng, shape, dtype_of(dtype), reduction, "full", "last")
    check_bce(p, rng)


@pytest.mark.parametrize("pos_weight", BCE_WEIGHT_FORMS)
@pytest.mark.parametrize("weight", BCE_WEIGHT_FORMS)
@pytest.mark.parametrize("shape", [(6, 37), (3, 4, 1030), (2049,)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_weight_broadcasting(cpu_isa, dtype, shape, weight, pos_weight, rng):
    for reduction in REDUCTIONS:
        p = make_bce_problem(rng, shape, np.dtype(dtype), reduction, weight, pos_weight)
        check_bce(p, rng, full=reduction == "none")


@pytest.mark.parametrize("dtype", ANY_FLOAT)
def test_mixed_operand_dtypes(cpu_isa, dtype, rng):
    """Targets, weights and grad_output of another floating dtype than the logits are read at
    their own precision."""
    x = make_bce_problem(rng, (9, 130), dtype_of(dtype)).x
    for other in ("float64", "float16", "float32", "bfloat16"):
        odt = dtype_of(other)
        p = make_bce_problem(rng, x.shape, x.dtype, "none", x=x, target_dtype=odt)
        p.kwargs["weight"] = rng.uniform(0.5, 2, x.shape[-1:]).astype(odt)
        p.kwargs["pos_weight"] = rng.uniform(0.5, 3, (9, 1)).astype(odt)
        go = rng.uniform(-1, 1, x.shape).astype(odt)
        ref_loss, mag_loss = reference.binary_cross_entropy_with_logits(
            p.x, p.target, **p.kwargs, with_magnitude=True)
        assert_close(bce(p), ref_loss, loss_dtype(x.dtype), 1, f"loss ({other})", mag_loss)
        ref, mag = reference.binary_cross_entropy_with_logits_backward(
            p.x, p.target, go, **p.kwargs, with_magnitude=True)
        grad = fastxent.binary_cross_entropy_with_logits_backward(p.x, p.target, go, **p.kwargs)
        assert_close(grad, ref, x.dtype, 1, f"grad ({other})", mag)


def strided_views(base):
    """(name, view) pairs of a (12, 40) base array: no view is C-contiguous."""
    return [("every_other_column", base[:, ::2]), ("transposed", base.T),
            ("reversed_rows", base[::-1]), ("negative_both", base[::-2, ::-3]),
            ("column", base[:, 5]), ("misaligned", misaligned(base)[:, 1:]),
            ("kdim_permuted", base.reshape(3, 4, 40).transpose(2, 0, 1))]


def misaligned(a):
    """A copy of `a` starting one element after an aligned boundary."""
    buf = np.empty(a.size + 1, a.dtype)[1:].reshape(a.shape)
    buf[...] = a
    return buf


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", ANY_FLOAT)
def test_strided_views(cpu_isa, dtype, reduction, rng):
    """Every operand strided (and differently so), read in place; outputs into strided views."""
    dt = dtype_of(dtype)
    xs = strided_views(make_bce_problem(rng, (12, 40), dt).x)
    ys = strided_views(rng.random((12, 40)).astype(np.float32))
    for (name, x), (_, y) in zip(xs, ys):
        ws = rng.uniform(0.5, 2, x.shape[-1:] if x.ndim else ())
        p = make_bce_problem(rng, x.shape, dt, reduction, x=x)
        p.target = y
        p.kwargs["pos_weight"] = np.broadcast_to(ws.astype(dt), x.shape)  # stride 0
        check_bce(p, rng, full=False)
        go = np.ones(()) if reduction != "none" else rng.uniform(-1, 1, x.shape)
        out = np.full(x.shape[::-1] + (2,), np.nan, dt)[..., 1].T  # strided, offset
        res = fastxent.binary_cross_entropy_with_logits_backward(p.x, p.target, go, **p.kwargs,
                                                                 out=out)
        assert_same_buffer(res, out, f"{name}: backward(out=strided)")
        ref, mag = reference.binary_cross_entropy_with_logits_backward(
            p.x, p.target, go, **p.kwargs, with_magnitude=True)
        assert_close(out, ref, dt, 1, f"{name}: backward into a strided out", mag)


EXTREMES = np.array([1e4, -1e4, np.inf, -np.inf, np.nan, 0.0, -0.0, 88.0, -88.0, 104.0, -104.0,
                     745.0, -745.0, 20.0, -20.0, 1e-30, 1e38, -1e38], np.float64)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", ANY_FLOAT)
def test_extreme_logits(cpu_isa, dtype, reduction, rng):
    """±1e4, ±inf, NaN, overflow thresholds of exp, each with targets 0, 1 and 0.3 and
    pos_weight: NaN where torch gives NaN (the formula, not the limit), finite values exact to
    the tolerance. (Values beyond a dtype's range become ±inf in it; ±1e38 keep a float32 loss
    finite: pos_weight·|x| below its largest value.)"""
    dt = dtype_of(dtype)
    with np.errstate(over="ignore"):
        x = np.repeat(EXTREMES, 3).astype(dt).reshape(-1, 3)
    y = np.tile([0.0, 1.0, 0.3], (x.shape[0], 1)).astype(dt)
    pw = np.array([1.0, 2.5, 0.5], dt)
    for kwargs in (dict(), dict(pos_weight=pw, weight=np.array(0.5, dt))):
        p = make_bce_problem(rng, x.shape, dt, reduction, x=x)
        p.target = y
        p.kwargs.update(kwargs)
        check_bce(p, rng)


def test_extreme_rows_in_long_vectors(cpu_isa, rng):
    """Extremes at every lane position of full vectors and tails: nothing leaks between lanes."""
    for n in (8, 16, 31, 1030):
        x = np.zeros(n, np.float32)
        y = rng.random(n).astype(np.float32)
        for v in (np.nan, np.inf, -np.inf, 1e4):
            for i in range(min(n, 20)):
                xi = x.copy()
                xi[i] = v
                got = fastxent.binary_cross_entropy_with_logits(xi, y, reduction="none")
                ref = reference.binary_cross_entropy_with_logits(xi, y, reduction="none")
                assert_close(got, ref, np.float32, 1, f"n={n} x[{i}]={v}")


def test_empty_and_mean_of_nothing(cpu_isa):
    x = np.zeros((0, 5), np.float32)
    assert np.isnan(fastxent.binary_cross_entropy_with_logits(x, x))  # mean of nothing: nan
    assert fastxent.binary_cross_entropy_with_logits(x, x, reduction="sum") == 0
    assert fastxent.binary_cross_entropy_with_logits(x, x, reduction="none").shape == (0, 5)
    loss, grad = fastxent.binary_cross_entropy_with_logits_with_grad(x, x)
    assert np.isnan(loss) and grad.shape == (0, 5)


def test_values_by_hand(cpu_isa):
    """Small cases with known values: loss(0, y) = log 2; σ(0) - y; pos_weight scales the
    positive term only."""
    x = np.zeros(4)
    y = np.array([0.0, 1.0, 0.5, 1.0])
    np.testing.assert_allclose(
        fastxent.binary_cross_entropy_with_logits(x, y, reduction="none"), np.log(2), rtol=1e-15)
    pw = np.array([3.0])
    np.testing.assert_allclose(
        fastxent.binary_cross_entropy_with_logits(x, y, pos_weight=pw, reduction="none"),
        np.log(2) * np.array([1.0, 3.0, 2.0, 3.0]), rtol=1e-15)
    np.testing.assert_allclose(
        fastxent.binary_cross_entropy_with_logits_backward(x, y, pos_weight=pw, reduction="sum"),
        np.array([0.5, -1.5, -0.5, -1.5]), rtol=1e-15)  # (pw·y + 1 - y)·σ - pw·y


SHAPES_THREADS = [(1, 262144), (262144,), (3, 100000), (4096, 300), (2000, 3, 7)]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES_THREADS, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_bitwise_identical_across_thread_counts(threads, dtype, shape, reduction, rng):
    p = make_bce_problem(rng, shape, dtype_of(dtype), reduction, "last", "first")
    go = 0.5 if reduction != "none" else rng.uniform(-1, 1, shape).astype(p.x.dtype)

    def run():
        loss, grad = fastxent.binary_cross_entropy_with_logits_with_grad(p.x, p.target, go,
                                                                         **p.kwargs)
        return {"forward": bce(p), "sum": bce(p, reduction="sum"),
                "backward": fastxent.binary_cross_entropy_with_logits_backward(
                    p.x, p.target, go, **p.kwargs),
                "with_grad loss": loss, "with_grad grad": grad}

    threads(1)
    one = run()
    for n in (2, 3):
        threads(n)
        many = run()
        for name in one:
            assert_bitwise_equal(many[name], one[name], f"{name} with {n} threads vs 1")

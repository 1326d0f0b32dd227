"""Non-contiguous and misaligned arrays are read (and written) in place: results must match
the same computation on contiguous copies, and in-place writes touch only the view."""

import numpy as np
import pytest

import fastxent
import reference
from checks import check_entry_points
from conftest import assert_bitwise_equal, assert_close
from problems import DTYPES, Options, make_logits, make_problem

pytestmark = pytest.mark.every_isa  # each test once per CPU ISA (conftest.py)

N, C = 12, 37


def _transposed(rng, dtype):
    return make_logits(rng, (C, N), dtype).T, None


def _class_stride_2(rng, dtype):
    return make_logits(rng, (N, 2 * C), dtype)[:, ::2], None


def _row_stride_3(rng, dtype):
    return make_logits(rng, (3 * N, C), dtype)[::3], None


def _reversed(rng, dtype):
    return make_logits(rng, (N, C), dtype)[::-1, ::-1], None


def _misaligned(rng, dtype):
    buf = np.empty(N * C + 1, dtype)[1:].reshape(N, C)
    buf[...] = make_logits(rng, (N, C), dtype)
    return buf, None


def _broadcast_rows(rng, dtype):
    return np.broadcast_to(make_logits(rng, (1, C), dtype), (N, C)), None


def _bvt_default_axis(rng, dtype):  # (B, V, T): the class axis 1 has stride T
    return make_logits(rng, (3, C, 4), dtype), None


def _btv_as_transposed_bvt(rng, dtype):  # a (B, T, V) view of (B, V, T) memory, axis=-1
    return make_logits(rng, (3, C, 4), dtype).transpose(0, 2, 1), -1


def _bvt_as_transposed_btv(rng, dtype):  # a (B, V, T) view of (B, T, V) memory, axis=1
    return make_logits(rng, (3, 4, C), dtype).transpose(0, 2, 1), 1


def _kdim_sliced(rng, dtype):
    return make_logits(rng, (4, C, 6, 5), dtype)[::2, :, 1::2, ::-2], None


LAYOUTS = [_transposed, _class_stride_2, _row_stride_3, _reversed, _misaligned, _broadcast_rows,
           _bvt_default_axis, _btv_as_transposed_bvt, _bvt_as_transposed_btv, _kdim_sliced]
OPTS = [pytest.param(Options("index", True, "neg100", "none", 0.1), id="index-none"),
        pytest.param(Options("index", True, "neg1", "mean", 0.1), id="index-mean"),
        pytest.param(Options("prob", True, "default", "sum", 0.1), id="prob-sum")]


@pytest.mark.parametrize("opts", OPTS)
@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda f: f.__name__[1:])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_strided_logits(dtype, layout, opts, rng):
    x, axis = layout(rng, dtype)
    p = make_problem(rng, None, dtype, opts, axis=axis, x=x)
    check_entry_points(p, rng)
    xc = np.ascontiguousarray(x)
    for fn in (fastxent.cross_entropy, fastxent.cross_entropy_backward):
        assert_close(fn(x, p.target, **p.kwargs), fn(xc, p.target, **p.kwargs), dtype,
                     p.terms(), f"{fn.__name__}: view vs contiguous copy")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_strided_target_weight_grad_output(dtype, rng):
    """Targets, weights, per-row grad_output and probability targets may be strided too."""
    x = make_logits(rng, (N, C), dtype)
    t = rng.integers(0, C, 2 * N)[::2]
    t_mis = np.empty(N + 1, np.int32)[1:]
    t_mis[...] = t
    w = rng.uniform(0.5, 2, 3 * C).astype(dtype)[::3]
    go = rng.uniform(-1, 1, 2 * N).astype(dtype)[::-2]
    kw = dict(weight=w, reduction="none", label_smoothing=0.1)
    ref_loss = reference.cross_entropy(x, t, **kw)
    ref_grad = reference.cross_entropy_backward(x, t, go, **kw)
    for target in (t, t_mis):
        assert_close(fastxent.cross_entropy(x, target, **kw), ref_loss, dtype, C, "loss")
        loss, grad = fastxent.cross_entropy_with_grad(x, target, go, **kw)
        assert_close(loss, ref_loss, dtype, C, "with_grad loss")
        assert_close(grad, ref_grad, dtype, C, "with_grad grad")
    y = rng.random((N, 2 * C)).astype(dtype)[:, 1::2]
    assert_close(fastxent.cross_entropy_backward(x, y, go, **kw),
                 reference.cross_entropy_backward(x, y, go, **kw), dtype, C, "prob grad")


@pytest.mark.parametrize("layout", [_transposed, _class_stride_2, _reversed, _misaligned,
                                    _bvt_as_transposed_btv, _kdim_sliced],
                         ids=lambda f: f.__name__[1:])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_inplace_on_a_view_writes_only_the_view(dtype, layout, rng):
    """inplace=True and out=input on a strided view: the view holds the gradient, memory outside
    the view (other columns, padding) keeps its bytes."""
    x, axis = layout(rng, dtype)
    base = x.base if x.base is not None else x
    while base.base is not None:
        base = base.base
    p = make_problem(rng, None, dtype, Options("index", True, "neg100", "mean", 0.1), axis=axis,
                     x=x)
    ref_loss = reference.cross_entropy(x, p.target, **p.kwargs)
    ref_grad = reference.cross_entropy_backward(x, p.target, **p.kwargs)
    before, first = base.copy(), x.copy()
    loss, grad = fastxent.cross_entropy_with_grad(x, p.target, inplace=True, **p.kwargs)
    assert np.shares_memory(grad, x)
    assert_close(loss, ref_loss, dtype, C + x.size // C, "loss")
    assert_close(x, ref_grad, dtype, C, "in-place gradient")
    x[...] = first  # restoring the view must restore every byte of the buffer
    assert_bitwise_equal(base, before, "memory outside the view after inplace=True")
    fastxent.cross_entropy_backward(x, p.target, **p.kwargs, out=x)
    assert_close(x, ref_grad, dtype, C, "out=input gradient")
    x[...] = first
    assert_bitwise_equal(base, before, "memory outside the view after out=input")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_strided_out_buffer(dtype, rng):
    """out= may be a strided view; the gaps between its elements are left alone."""
    p = make_problem(rng, (N, C), dtype, Options("index", True, "neg100", "sum", 0.1))
    store = np.full((N, 2 * C), 7.0, dtype)
    out = store[:, ::2]
    res = fastxent.cross_entropy_backward(p.x, p.target, **p.kwargs, out=out)
    assert np.shares_memory(res, store)
    assert_close(out, reference.cross_entropy_backward(p.x, p.target, **p.kwargs), dtype, C, "out")
    assert (store[:, 1::2] == 7.0).all()

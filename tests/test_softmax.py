"""logsumexp / log_softmax / softmax against the reference and torch, any axis and layout."""

import numpy as np
import pytest

import fastxent
import reference
from conftest import assert_close
from problems import DTYPES, make_logits

pytestmark = pytest.mark.every_isa  # each test once per CPU ISA (conftest.py)

FUNCS = ("logsumexp", "log_softmax", "softmax")


def check(x, axis, what=""):
    """All three functions of `x` over `axis` against the reference; returns the results."""
    n = x.shape[axis]
    out = {}
    for name in FUNCS:
        got = getattr(fastxent, name)(x, axis=axis)
        assert_close(got, getattr(reference, name)(x, axis), x.dtype, n, f"{name} {what}")
        out[name] = got
    return out


@pytest.mark.parametrize("shape", [(1,), (7,), (5, 1), (5, 16), (5, 17), (3, 1000), (1, 50257),
                                   (4, 5, 6), (2, 3, 4, 33), (0, 8)])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_every_axis(dtype, shape, rng):
    x = make_logits(rng, shape, dtype)
    for axis in range(-x.ndim, x.ndim):
        if shape[axis] == 0:
            continue  # an empty reduction axis is not a softmax
        check(x, axis, f"axis={axis}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_default_axis_is_last(dtype, rng):
    x = make_logits(rng, (3, 4, 9), dtype)
    for name in FUNCS:
        f = getattr(fastxent, name)
        assert_close(f(x), f(x, axis=-1), dtype, 9, name)
        assert_close(f(x), getattr(reference, name)(x, -1), dtype, 9, name)


@pytest.mark.parametrize("view", [
    lambda x: x.T, lambda x: x[:, ::2], lambda x: x[::-1, ::-3],
    lambda x: np.lib.stride_tricks.as_strided(x, (x.shape[0], 5), (x.strides[0], 0)),
], ids=["transposed", "sliced", "reversed", "zero-stride"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_strided(dtype, view, rng):
    x = view(make_logits(rng, (40, 60), dtype))
    for axis in (0, 1, -1):
        got = check(x, axis, "view")
        xc = np.ascontiguousarray(x)
        for name in FUNCS:
            assert_close(got[name], getattr(fastxent, name)(xc, axis=axis), dtype, x.shape[axis],
                         f"{name} view vs copy")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_misaligned(dtype, rng):
    buf = np.empty(6 * 35 + 1, dtype)[1:].reshape(6, 35)
    buf[...] = make_logits(rng, (6, 35), dtype)
    check(buf, -1, "misaligned")
    check(buf, 0, "misaligned")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_edge_values(dtype, rng):
    """-inf entries (probability 0), an all -inf row (lse -inf, softmax nan as torch), a NaN row,
    ±1e4 offsets (log_softmax keeps its digits) and a peaked row."""
    x = make_logits(rng, (7, 40), dtype)
    x[0, ::3] = -np.inf
    x[1] = -np.inf
    x[2, 5] = np.nan
    x[3] += 1e4
    x[4] -= 1e4
    x[5] *= 1e3
    x[6] = rng.choice([-1e4, 1e4], 40) + rng.standard_normal(40)
    got = {name: getattr(fastxent, name)(x) for name in FUNCS}
    for name in FUNCS:
        ref = getattr(reference, name)(x, -1)
        for i in range(x.shape[0]):  # row by row: each row's own scale sets the absolute term
            assert_close(got[name][i:i + 1], ref[i:i + 1], dtype, 40, f"{name} row {i}")
    assert (got["softmax"][0, ::3] == 0).all() and np.isneginf(got["log_softmax"][0, ::3]).all()
    assert np.isneginf(got["logsumexp"][1])
    assert np.isnan(got["softmax"][2]).all() and np.isnan(got["logsumexp"][2])
    assert np.isfinite(np.delete(got["softmax"], [1, 2], axis=0)).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_softmax_rows_sum_to_one(dtype, rng):
    x = make_logits(rng, (50, 1001), dtype, scale=10)
    s = fastxent.softmax(x).astype(np.float64).sum(axis=-1)
    assert np.abs(s - 1).max() < (1e-4 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("shape,axis", [((6, 33), -1), ((6, 33), 0), ((2, 7, 3, 5), 1),
                                        ((3, 50257), -1)])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_matches_torch(torch, dtype, shape, axis, rng):
    x = make_logits(rng, shape, dtype)
    x[0, ...] = x[0, ...] + 1e4
    xt = torch.tensor(x)
    n = 4 * shape[axis]
    for name in ("logsumexp", "log_softmax", "softmax"):
        assert_close(getattr(fastxent, name)(x, axis=axis),
                     getattr(torch, name)(xt, axis).numpy(), dtype, n, f"{name} vs torch")


def test_input_is_not_modified(rng):
    x = make_logits(rng, (4, 9), np.float32)
    x0 = x.copy()
    for name in FUNCS:
        getattr(fastxent, name)(x)
    assert np.array_equal(x, x0)

"""Results are bitwise identical for any thread count (DESIGN.md §3: block boundaries and merge
order do not depend on the number of threads)."""

import numpy as np
import pytest

import fastxent
from conftest import assert_bitwise_equal
from problems import Options, make_problem

pytestmark = pytest.mark.every_isa  # each test once per CPU ISA (conftest.py)

SHAPES = [(1, 262144), (3, 100000), (4096, 300), (2, 1000, 64), (5, 7)]
OPTS = [pytest.param(Options("index", True, "neg100", "mean", 0.1), id="index-mean"),
        pytest.param(Options("index", False, "default", "none", 0.0), id="index-none"),
        pytest.param(Options("prob", True, "default", "sum", 0.1), id="prob-sum")]


def every_entry_point(p):
    kw, x, t = p.kwargs, p.x, p.target
    ax = -1 if x.ndim == 1 else (kw["axis"] if kw["axis"] is not None else 1)
    go = np.linspace(-1, 1, p.rows).reshape(p.rows_shape).astype(x.dtype) \
        if kw["reduction"] == "none" else 0.5
    loss, grad = fastxent.cross_entropy_with_grad(x, t, go, **kw)
    xi = x.copy()
    loss_i, _ = fastxent.cross_entropy_with_grad(xi, t, go, inplace=True, **kw)
    return {
        "cross_entropy": fastxent.cross_entropy(x, t, **kw),
        "cross_entropy(mean)": fastxent.cross_entropy(x, t, **dict(kw, reduction="mean")),
        "cross_entropy(sum)": fastxent.cross_entropy(x, t, **dict(kw, reduction="sum")),
        "backward": fastxent.cross_entropy_backward(x, t, go, **kw),
        "with_grad loss": loss, "with_grad grad": grad,
        "inplace loss": loss_i, "inplace grad": xi,
        "logsumexp": fastxent.logsumexp(x, axis=ax),
        "log_softmax": fastxent.log_softmax(x, axis=ax),
        "softmax": fastxent.softmax(x, axis=ax),
    }


@pytest.mark.parametrize("opts", OPTS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_bitwise_identical_across_thread_counts(threads, dtype, shape, opts, rng):
    p = make_problem(rng, shape, dtype, opts)
    threads(1)
    assert fastxent.get_num_threads() == 1
    one = every_entry_point(p)
    for n in (2, 3):
        threads(n)
        assert fastxent.get_num_threads() == n
        many = every_entry_point(p)
        for name in one:
            assert_bitwise_equal(many[name], one[name], f"{name} with {n} threads vs 1")


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_one_huge_row_softmax_family(threads, dtype, seed):
    """Fewer rows than threads: the row is split in blocks whose partials merge; the result
    must not depend on how many threads took the blocks (several data sets, since a different
    merge shows in a few ulps of some values only)."""
    x = (np.random.default_rng(seed).standard_normal((1, 262144)) * (1 + 2 * seed)).astype(dtype)
    t = np.array([seed])
    results = {}
    for n in (1, 2, 3):
        threads(n)
        results[n] = [fastxent.logsumexp(x), fastxent.log_softmax(x), fastxent.softmax(x),
                      fastxent.cross_entropy(x, t, reduction="none"),
                      fastxent.cross_entropy_with_grad(x, t, label_smoothing=0.1)[1]]
    names = ["logsumexp", "log_softmax", "softmax", "cross_entropy", "with_grad grad"]
    for n in (2, 3):
        for name, a, b in zip(names, results[n], results[1]):
            assert_bitwise_equal(a, b, f"{name} with {n} threads vs 1")


def test_set_and_get_num_threads(threads):
    for n in (1, 3, 2):
        threads(n)
        assert fastxent.get_num_threads() == n
        assert fastxent.info()["num_threads"] == n

"""DESIGN.md's extensions beyond torch: z_loss, softcap and return_lse, in every NumPy entry
point, against the float64 reference and finite differences (the torch side:
test_torch_extensions.py)."""

import numpy as np
import pytest

import fastxent
import reference
from checks import check_entry_points
from conftest import assert_bitwise_equal, assert_close
from problems import DTYPES, Options, loss_dtype, make_logits, make_problem, option_grid

pytestmark = pytest.mark.every_isa  # each test once per CPU ISA (conftest.py)

EXTENSIONS = [
    pytest.param(dict(z_loss=1e-2), id="zloss"),
    pytest.param(dict(softcap=4.0), id="softcap"),
    pytest.param(dict(z_loss=0.3, softcap=1.5), id="both"),
]


def with_extensions(p, ext):
    p.kwargs.update(ext)
    return p


@pytest.mark.parametrize("ext", EXTENSIONS)
@pytest.mark.parametrize("opts", option_grid(smoothings=(0.0, 0.1)))
@pytest.mark.parametrize("shape", [(5, 17), (3, 7, 2, 5), (16,)], ids=["2d", "kdim", "1d"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_every_option_combination(dtype, shape, opts, ext, rng):
    check_entry_points(with_extensions(make_problem(rng, shape, dtype, opts), ext), rng)


@pytest.mark.parametrize("ext", EXTENSIONS)
@pytest.mark.parametrize("C,rows", [(1, 3), (2048, 2), (2048 + 5, 3), (50257, 4), (262144, 1)],
                         ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_block_boundaries_and_split_rows(dtype, C, rows, ext, rng):
    """Rows longer than one 2048-class block, and one long row split over threads."""
    p = make_problem(rng, (rows, C), dtype, Options("index", True, "neg100", "none", 0.1))
    check_entry_points(with_extensions(p, ext), rng, full=rows * C < 100_000)


@pytest.mark.parametrize("ext", EXTENSIONS)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision(dtype, ext, rng):
    """16-bit logits: float32 math, float32 loss, gradient rounded once to the input dtype."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    dt = np.dtype(getattr(ml_dtypes, dtype) if dtype == "bfloat16" else dtype)
    x = make_logits(rng, (6, 3001), np.float32).astype(dt)
    p = make_problem(rng, None, None, Options("index", True, "neg100", "mean", 0.1), x=x)
    check_entry_points(with_extensions(p, ext), rng)


@pytest.mark.parametrize("softcap", [None, 2.0])
@pytest.mark.parametrize("shape,axis", [((7, 300), None), ((3, 40, 5), None), ((4, 6, 33), -1),
                                        ((33,), None), ((0, 9), None)])
@pytest.mark.parametrize("dtype", DTYPES + (np.float16,), ids=["f32", "f64", "f16"])
def test_return_lse(dtype, shape, axis, softcap, rng):
    """Each row's log-sum-exp (ignored rows included), in the loss's dtype, from both the
    forward and the fused call, with the loss unchanged by asking for it."""
    p = make_problem(rng, shape, dtype, Options("index", False, "neg100", "none"), axis=axis)
    kw = dict(p.kwargs, softcap=softcap)
    ref = reference.row_logsumexp(p.x, axis, softcap)
    loss, lse = fastxent.cross_entropy(p.x, p.target, **kw, return_lse=True)
    assert lse.dtype == loss_dtype(dtype) and lse.shape == p.rows_shape
    assert_close(lse, ref, loss_dtype(dtype), p.C, "return_lse", np.abs(ref) + 1)
    assert_bitwise_equal(loss, fastxent.cross_entropy(p.x, p.target, **kw), "loss with lse")
    l2, g2, lse2 = fastxent.cross_entropy_with_grad(p.x, p.target, **kw, return_lse=True)
    assert_bitwise_equal(lse2, lse, "with_grad lse")
    assert_bitwise_equal(g2, fastxent.cross_entropy_backward(p.x, p.target, **kw), "grad")


@pytest.mark.every_isa(False)
@pytest.mark.parametrize("kind", ["index", "prob"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("ext", EXTENSIONS)
def test_gradient_matches_finite_differences(ext, reduction, kind, rng):
    """Central differences of the loss (float64) against the analytic gradient, which is with
    respect to the logits before the softcap."""
    p = make_problem(rng, (3, 6), np.float64, Options(kind, True, "default", reduction, 0.1))
    kw = dict(p.kwargs, **ext)
    go = p.grad_output_rows(rng) if reduction == "none" else np.float64(0.7)

    def objective(x):
        return float(np.sum(fastxent.cross_entropy(x, p.target, **kw) * go))

    h = 1e-6
    numeric = np.zeros_like(p.x)
    for idx in np.ndindex(p.x.shape):
        up, down = p.x.copy(), p.x.copy()
        up[idx] += h
        down[idx] -= h
        numeric[idx] = (objective(up) - objective(down)) / (2 * h)
    analytic = fastxent.cross_entropy_backward(p.x, p.target, go, **kw)
    # central differences: O(h²) truncation plus O(ε/h) rounding of the loss (~1e-10 here)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_softcap_of_extreme_logits(dtype, rng):
    """±inf → ±softcap (finite: no longer masked), ±1e4 → about ±softcap, NaN stays NaN in
    its row; the loss and gradient match the reference."""
    x = make_logits(rng, (5, 40), dtype)
    x[0, :5] = -np.inf
    x[1, 3] = np.inf
    x[2, :] = 1e4
    x[2, 7] = -1e4
    x[3, 9] = np.nan
    t = np.array([0, 3, 7, 9, 1])
    for red in ("none", "sum"):
        kw = dict(reduction=red, softcap=3.0)
        ref, mag = reference.cross_entropy(x, t, **kw, with_magnitude=True)
        assert_close(fastxent.cross_entropy(x, t, **kw), ref, dtype, 40, "loss", mag)
        gref, gmag = reference.cross_entropy_backward(x, t, 1.0, **kw, with_magnitude=True)
        assert_close(fastxent.cross_entropy_backward(x, t, **kw), gref, dtype, 40, "grad", gmag)
    loss = fastxent.cross_entropy(x, t, reduction="none", softcap=3.0)
    assert np.isfinite(loss[[0, 1, 2, 4]]).all() and np.isnan(loss[3])


def test_z_loss_adds_lse_squared_per_counted_row(rng):
    """The definition: z·lse² on each row not ignored, divided by the mean's normaliser."""
    x = make_logits(rng, (8, 50), np.float64)
    t = rng.integers(0, 50, 8)
    t[[1, 5]] = -100
    w = rng.uniform(0.5, 2.0, 50)
    lse = reference.logsumexp(x)
    base = fastxent.cross_entropy(x, t, w, reduction="none")
    got = fastxent.cross_entropy(x, t, w, reduction="none", z_loss=0.25)
    keep = t != -100
    np.testing.assert_allclose(got, base + np.where(keep, 0.25 * lse**2, 0.0), rtol=1e-12)
    mean = fastxent.cross_entropy(x, t, w, z_loss=0.25)
    np.testing.assert_allclose(mean, got.sum() / w[t[keep]].sum(), rtol=1e-12)


@pytest.mark.every_isa(False)
@pytest.mark.parametrize("shape", [(1, 262144), (64, 5000)], ids=["split-row", "rows"])
def test_bitwise_identical_for_any_thread_count(shape, rng, threads):
    x = make_logits(rng, shape, np.float32)
    t = rng.integers(0, shape[1], shape[0])
    kw = dict(reduction="none", label_smoothing=0.1, z_loss=1e-3, softcap=5.0)
    results = []
    for n in (1, 2):
        fastxent.set_num_threads(n)
        loss, lse = fastxent.cross_entropy(x, t, **kw, return_lse=True)
        results.append((loss, lse, fastxent.cross_entropy_backward(x, t, **kw),
                        *fastxent.cross_entropy_with_grad(x, t, **kw, return_lse=True)))
    for a, b in zip(*results):
        assert_bitwise_equal(a, b, f"{shape}: 1 vs 2 threads")


@pytest.mark.every_isa(False)
@pytest.mark.parametrize("name,value,exc,match", [
    ("z_loss", -1.0, ValueError, "z_loss must be a finite number >= 0"),
    ("z_loss", float("nan"), ValueError, "z_loss must be a finite number >= 0"),
    ("z_loss", float("inf"), ValueError, "z_loss must be a finite number >= 0"),
    ("z_loss", "big", TypeError, "z_loss must be a number"),
    ("softcap", -2.0, ValueError, "softcap must be a finite number > 0"),
    ("softcap", float("inf"), ValueError, "softcap must be a finite number > 0"),
    ("softcap", float("nan"), ValueError, "softcap must be a finite number > 0"),
    ("softcap", [1.0], TypeError, "softcap must be a number"),
])
def test_bad_extension_values_are_clear_errors_before_any_write(name, value, exc, match, rng):
    x = make_logits(rng, (4, 9), np.float32)
    x0 = x.copy()
    t = rng.integers(0, 9, 4)
    for call in (lambda: fastxent.cross_entropy(x, t, **{name: value}),
                 lambda: fastxent.cross_entropy_backward(x, t, **{name: value}, out=x),
                 lambda: fastxent.cross_entropy_with_grad(x, t, **{name: value}, inplace=True)):
        with pytest.raises(exc, match=match):
            call()
    assert_bitwise_equal(x, x0, "logits after failed in-place calls")

"""The gradient from a saved per-row log-sum-exp (the torch autograd path) equals the gradient
that recomputes the row statistics, for every target kind and option."""

import numpy as np
import pytest

import fastxent
from fastxent import _api


@pytest.mark.parametrize("ext", [{}, dict(z_loss=0.01, softcap=30.0)], ids=["plain", "ext"])
@pytest.mark.parametrize("prob", [False, True])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("offset", [0.0, 1e4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_from_saved_lse_matches(prob, reduction, smoothing, offset, dtype, ext):
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((5, 3000)) * 4 + offset).astype(dtype)
    if prob:
        t = rng.random((5, 3000)).astype(dtype)
    else:
        t = rng.integers(0, 3000, 5)
        t[1] = -100
    w = (rng.random(3000) + 0.5).astype(dtype)
    options = (w, -100, reduction, smoothing, ext.get("z_loss", 0.0), ext.get("softcap"))
    loss, lse = _api.forward_saving_lse(x, t, *options)
    assert lse.dtype == np.float64 and lse.shape == (5,)
    np.testing.assert_array_equal(loss, fastxent.cross_entropy(x, t, *options[:4], **ext))
    capped = x.astype(np.float64)
    if "softcap" in ext:
        capped = ext["softcap"] * np.tanh(capped / ext["softcap"])
    # every row's, the ignored one's too
    np.testing.assert_allclose(lse, fastxent.logsumexp(capped),
                               rtol=1e-12 if dtype == np.float64 else 2e-6)
    want = fastxent.cross_entropy_backward(x, t, 1.0, *options[:4], **ext)
    got = _api.backward_from_lse(x, t, 1.0, lse, *options)
    scale = np.abs(want).max()
    tol = 1e-12 if dtype == np.float64 else 2e-6
    assert np.abs(got - want).max() <= tol * scale


def test_saved_lse_shape_is_checked():
    x = np.zeros((4, 5), np.float32)
    t = np.array([0, 1, 2, 3])
    with pytest.raises(ValueError, match="lse"):
        _api.backward_from_lse(x, t, 1.0, np.zeros(3), None, -100, "mean", 0.0)

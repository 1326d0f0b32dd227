"""Central finite differences of fastxent's own float64 loss against cross_entropy_backward
(independent of the reference: checks that the gradient is the derivative of the loss)."""

import numpy as np
import pytest

import fastxent
from problems import Options, make_problem

pytestmark = pytest.mark.every_isa  # each test once per CPU ISA (conftest.py)

H = 1e-6  # central differences: truncation ~H²·f''' ~ 1e-12, rounding ~u·|f|/H ~ 1e-10


def numerical_grad(f, x):
    g = np.empty_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)  # x is contiguous: views
    for i in range(flat.size):
        v = flat[i]
        flat[i] = v + H
        up = f(x)
        flat[i] = v - H
        down = f(x)
        flat[i] = v
        gflat[i] = (up - down) / (2 * H)
    return g


OPTS = [pytest.param(Options(kind, w, ign, red, ls), id=Options(kind, w, ign, red, ls).id)
        for kind, ign in (("index", "neg100"), ("prob", "default"))
        for red in ("sum", "mean", "none") for w in (False, True) for ls in (0.0, 0.1, 1.0)]


@pytest.mark.parametrize("opts", OPTS)
@pytest.mark.parametrize("shape,axis", [((4, 6), None), ((2, 5, 3), None), ((7,), None),
                                        ((2, 3, 4), -1)], ids=["2d", "kdim", "1d", "axis-1"])
def test_backward_is_the_derivative_of_the_loss(shape, axis, opts, rng):
    p = make_problem(rng, shape, np.float64, opts, axis=axis)
    if opts.kind == "index":
        p.target.reshape(-1)[0] = 0  # at least one counted row
    kw = p.kwargs
    go = p.grad_output_rows(rng) if opts.reduction == "none" else np.asarray(0.7)

    def f(x):
        return float(np.sum(go * fastxent.cross_entropy(x, p.target, **kw)))

    num = numerical_grad(f, p.x.copy())
    grad = fastxent.cross_entropy_backward(p.x, p.target, go, **kw)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-8)
    assert np.abs(grad).max() > 1e-3  # a real gradient, not all zeros

"""One check of every cross-entropy entry point of fastxent against tests/reference.py."""

import numpy as np

import fastxent
import reference
from conftest import assert_bitwise_equal, assert_close, assert_same_buffer
from problems import loss_dtype


def grad_outputs(p, rng):
    """The grad_output forms every reduction accepts, plus a per-row array for "none"."""
    dt = p.x.dtype
    gos = [1.0, np.array(-0.75, dtype=dt)]
    if p.kwargs["reduction"] == "none":
        gos.append(p.grad_output_rows(rng))
    return gos


def check_entry_points(p, rng, full=True):
    """forward, backward (each grad_output form, out=, out=input) and with_grad (inplace False
    and True) of problem `p` against the float64 reference. full=False checks forward,
    backward and with_grad once each (for large inputs). Gradients have the logits' dtype,
    losses loss_dtype() of it (float32 for 16-bit logits)."""
    kw, dt, x0 = p.kwargs, p.x.dtype, p.x.copy()
    ldt = loss_dtype(dt)
    loss = fastxent.cross_entropy(p.x, p.target, **kw)
    ref_loss, mag_loss = reference.cross_entropy(p.x, p.target, **kw, with_magnitude=True)
    assert_close(loss, ref_loss, ldt, p.terms(), "cross_entropy", mag_loss)

    gos = grad_outputs(p, rng) if full else grad_outputs(p, rng)[-1:]
    for go in gos:
        ref_grad, mag = reference.cross_entropy_backward(p.x, p.target, go, **kw,
                                                         with_magnitude=True)
        grad = fastxent.cross_entropy_backward(p.x, p.target, go, **kw)
        assert_close(grad, ref_grad, dt, p.C, f"cross_entropy_backward(grad_output={go!r})", mag)
    go = gos[-1]

    l2, g2 = fastxent.cross_entropy_with_grad(p.x, p.target, go, **kw)
    assert_close(l2, ref_loss, ldt, p.terms(), "cross_entropy_with_grad loss", mag_loss)
    assert_close(g2, ref_grad, dt, p.C, "cross_entropy_with_grad grad", mag)
    assert_bitwise_equal(p.x, x0, "input after non-inplace calls")
    if not full:
        return

    out = np.full_like(p.x, np.nan)
    res = fastxent.cross_entropy_backward(p.x, p.target, go, **kw, out=out)
    assert_same_buffer(res, out, "backward(out=buffer)")
    assert_close(out, ref_grad, dt, p.C, "cross_entropy_backward(out=buffer)", mag)

    xo = p.x.copy()
    res = fastxent.cross_entropy_backward(xo, p.target, go, **kw, out=xo)
    assert_same_buffer(res, xo, "backward(out=input)")
    assert_close(xo, ref_grad, dt, p.C, "cross_entropy_backward(out=input)", mag)

    xi = p.x.copy()
    l3, g3 = fastxent.cross_entropy_with_grad(xi, p.target, go, **kw, inplace=True)
    assert_same_buffer(g3, xi, "with_grad(inplace=True)")
    assert_close(l3, ref_loss, ldt, p.terms(), "cross_entropy_with_grad(inplace=True) loss",
                 mag_loss)
    assert_close(xi, ref_grad, dt, p.C, "cross_entropy_with_grad(inplace=True) grad", mag)

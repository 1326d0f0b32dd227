"""cross_entropy_with_grad(out=...): the fused pass writing into a caller's existing buffer."""

import numpy as np
import pytest

import fastxent


def _problem(seed=0, shape=(6, 37)):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    t = rng.integers(0, shape[1], shape[0])
    return x, t


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_out_equals_fresh_gradient_bitwise(reduction, smoothing):
    x, t = _problem()
    loss, grad = fastxent.cross_entropy_with_grad(x, t, reduction=reduction,
                                                  label_smoothing=smoothing)
    buf = np.full_like(x, np.nan)
    loss2, grad2 = fastxent.cross_entropy_with_grad(x, t, reduction=reduction,
                                                    label_smoothing=smoothing, out=buf)
    assert grad2 is buf
    np.testing.assert_array_equal(loss2, loss)
    np.testing.assert_array_equal(buf, grad)


def test_out_strided_view_leaves_the_rest_untouched():
    x, t = _problem()
    big = np.full((x.shape[0], 2 * x.shape[1]), 7.0, np.float32)
    view = big[:, ::2]
    fastxent.cross_entropy_with_grad(x, t, out=view)
    np.testing.assert_array_equal(view, fastxent.cross_entropy_backward(x, t))
    assert (big[:, 1::2] == 7.0).all()


def test_out_torch_tensor():
    torch = pytest.importorskip("torch")
    x, t = _problem()
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)
    buf = torch.empty_like(xt)
    version = buf._version
    loss, grad = fastxent.cross_entropy_with_grad(xt, tt, out=buf)
    assert grad is buf and buf._version > version
    np.testing.assert_array_equal(buf.numpy(), fastxent.cross_entropy_backward(x, t))


def test_out_may_be_the_input_itself():
    x, t = _problem()
    want = fastxent.cross_entropy_backward(x, t)
    loss, grad = fastxent.cross_entropy_with_grad(x, t, out=x)
    assert grad is x
    np.testing.assert_array_equal(x, want)


def test_out_errors_leave_the_buffer_untouched():
    x, t = _problem()
    buf = np.full_like(x, 3.0)
    with pytest.raises(ValueError, match="out"):
        fastxent.cross_entropy_with_grad(x, t, out=buf, inplace=True)
    with pytest.raises(ValueError, match="out"):
        fastxent.cross_entropy_with_grad(x, t, out=np.empty((6, 36), np.float32))
    with pytest.raises(ValueError, match="out"):
        fastxent.cross_entropy_with_grad(x, t, out=np.empty_like(x, dtype=np.float64))
    with pytest.raises(ValueError, match="out"):  # overlaps the input without being it
        fastxent.cross_entropy_with_grad(x[:, 1:], t, out=x[:, :-1])
    bad = t.copy()
    bad[-1] = 99
    with pytest.raises(IndexError, match=r"target\[5\] = 99"):
        fastxent.cross_entropy_with_grad(x, bad, out=buf)
    assert (buf == 3.0).all()

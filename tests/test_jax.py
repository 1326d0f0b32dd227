"""JAX arrays in, JAX arrays out (DLPack both ways, no copy of the logits). Skipped when JAX is
not installed (CI installs the CPU wheel from PyPI: pip install jax)."""

import numpy as np
import pytest

import fastxent

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

X = (np.arange(60, dtype=np.float64).reshape(6, 10) % 7 - 3) / 2
T = np.array([0, 9, 4, 4, 1, 7])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_jax_in_jax_out(dtype):
    x = jnp.asarray(X, dtype=dtype)
    t = jnp.asarray(T)
    xn = np.asarray(x)  # same values, as NumPy (ml_dtypes for bfloat16)
    loss = fastxent.cross_entropy(x, t, reduction="none", label_smoothing=0.1)
    assert isinstance(loss, jax.Array)
    np.testing.assert_array_equal(
        np.asarray(loss), fastxent.cross_entropy(xn, T, reduction="none", label_smoothing=0.1))
    loss, grad = fastxent.cross_entropy_with_grad(x, t)
    assert isinstance(loss, jax.Array) and isinstance(grad, jax.Array)
    assert grad.dtype == x.dtype and grad.shape == x.shape
    np.testing.assert_array_equal(np.asarray(grad), fastxent.cross_entropy_backward(xn, T))
    for fn in (fastxent.logsumexp, fastxent.softmax, fastxent.log_softmax):
        out = fn(x)
        assert isinstance(out, jax.Array)
        np.testing.assert_array_equal(np.asarray(out), fn(xn))


def test_jax_float64():
    if not hasattr(jax, "enable_x64"):
        pytest.skip("this JAX has no jax.enable_x64 context manager")
    with jax.enable_x64(True):
        x = jnp.asarray(X, dtype="float64")
        loss = fastxent.cross_entropy(x, jnp.asarray(T))
        assert isinstance(loss, jax.Array) and loss.dtype == jnp.float64
        np.testing.assert_array_equal(np.asarray(loss), fastxent.cross_entropy(X, T))


def test_jax_strided_view():
    x = jnp.asarray(X, dtype="float32").T  # (10, 6): JAX materialises the transpose
    t = jnp.asarray(np.arange(10) % 6)
    np.testing.assert_array_equal(
        np.asarray(fastxent.cross_entropy(x, t, reduction="none")),
        fastxent.cross_entropy(np.asarray(x), np.asarray(t), reduction="none"))


def test_jax_inplace_is_refused():
    with pytest.raises(TypeError, match="inplace"):
        fastxent.cross_entropy_with_grad(jnp.asarray(X, dtype="float32"), jnp.asarray(T),
                                         inplace=True)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_binary_cross_entropy_jax_in_jax_out(dtype):
    x = jnp.asarray(X, dtype=dtype)
    y = jnp.asarray((X > 0).astype(np.float32))
    pw = jnp.asarray(np.linspace(0.5, 2, 10), dtype="float32")
    xn, yn, pwn = np.asarray(x), np.asarray(y), np.asarray(pw)
    loss = fastxent.binary_cross_entropy_with_logits(x, y, pos_weight=pw, reduction="none")
    assert isinstance(loss, jax.Array)
    np.testing.assert_array_equal(np.asarray(loss), fastxent.binary_cross_entropy_with_logits(
        xn, yn, pos_weight=pwn, reduction="none"))
    loss, grad = fastxent.binary_cross_entropy_with_logits_with_grad(x, y, pos_weight=pw)
    assert isinstance(loss, jax.Array) and isinstance(grad, jax.Array)
    assert grad.dtype == x.dtype and grad.shape == x.shape
    np.testing.assert_array_equal(np.asarray(grad),
                                  fastxent.binary_cross_entropy_with_logits_backward(
                                      xn, yn, pos_weight=pwn))
    with pytest.raises(TypeError, match="inplace"):
        fastxent.binary_cross_entropy_with_logits_with_grad(x, y, inplace=True)

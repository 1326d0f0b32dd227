"""64-bit sizes: inputs of more than 2^31 elements give the right loss and gradient, and every
size or stride computation that would overflow 64 bits is a ValueError naming the argument
(cpp/src/core/views.cc check_view, cpp/bindings/dlpack.cc), never a wrapped offset.

The large input is built so that a cheap reference exists for every row: row r holds the same
C values as every other row, rotated by r (x[r, c] = base[(c + r) mod C]). All rows share one
log-sum-exp, and row r's target logit is base[(t_r + r) mod C]; an offset that wrapped at 2^31
elements would read another rotation and show in the loss and in the sampled gradient rows.
"""

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

import fastxent
import reference
from conftest import assert_close
from dlpack_producer import Producer

C = 65536
ROWS = 32769  # ROWS · C = 2^31 + 2^16 elements; the last row starts at element 2^31


def _available_bytes():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@pytest.fixture(scope="module")
def rotations():
    """(view, base, target): a (ROWS, C) float16 view whose row r is base rotated by r, laid
    over 2·C values (overlapping rows: 256 KiB of memory for 2^31 elements), and targets."""
    rng = np.random.default_rng(64)
    base = (rng.standard_normal(C) * 2).astype(np.float16)
    ext = np.concatenate([base, base])
    view = as_strided(ext, (ROWS, C), (ext.itemsize, ext.itemsize), writeable=False)
    target = rng.integers(0, C, ROWS)
    return view, base, target


def _reference_rows(base, target):
    """Per-row losses in float64: lse(base) - base[(t_r + r) mod C]."""
    lse = float(reference.logsumexp(base.astype(np.float64)))
    return lse - base.astype(np.float64)[(target + np.arange(ROWS)) % C]


def test_more_than_2_31_elements_read_through_a_strided_view(rotations):
    """Forward over 2^31 + 2^16 elements (row offsets r · 1 element, so the element count, not
    the byte offsets, is what exceeds 32 bits): every row's loss, and logsumexp."""
    view, base, target = rotations
    assert view.size > 2**31
    loss = fastxent.cross_entropy(view, target, reduction="none")
    assert_close(loss, _reference_rows(base, target), np.float32, C, "per-row loss",
                 np.abs(_reference_rows(base, target)) + 1)
    lse = fastxent.logsumexp(view[::4096], axis=1)  # 9 rows: the same value for each
    assert_close(lse, np.full(lse.shape, float(reference.logsumexp(base.astype(np.float64)))),
                 np.float32, C, "logsumexp")


@pytest.mark.skipif((_available_bytes() or 0) < 7 * 2**30,
                    reason="needs about 4.3 GiB of free memory for a 2^31-element array")
def test_more_than_2_31_elements_in_one_buffer(rotations):
    """A real (ROWS, C) float16 buffer, 4.3 GiB: the byte offsets of the last row exceed 2^32.
    Loss and gradient in one pass, in place (so the peak stays at one copy); the loss is
    checked whole, the gradient on sampled rows including those around element 2^31."""
    view, base, target = rotations
    x = np.empty((ROWS, C), np.float16)
    try:
        x[...] = view
        sample = sorted({0, 1, 2, ROWS // 2, ROWS - 3, ROWS - 2, ROWS - 1}
                        | set(np.random.default_rng(1).integers(0, ROWS, 10).tolist()))
        logits = x[sample].copy()
        loss, grad = fastxent.cross_entropy_with_grad(x, target, inplace=True)
        assert grad is x
        rows = _reference_rows(base, target)
        assert_close(loss, np.mean(rows), np.float32, C + ROWS, "mean loss",
                     np.mean(np.abs(rows) + 1))
        # Sampled gradient rows against the reference on those rows alone: the mean's 1/ROWS
        # is the grad_output of their "sum".
        ref, mag = reference.cross_entropy_backward(logits, target[sample], 1.0 / ROWS,
                                                    reduction="sum", with_magnitude=True)
        assert_close(x[sample], ref, np.float16, C, "sampled gradient rows", mag)
    finally:
        del x


# ---- overflow: a clear ValueError, never a wrapped size ------------------------------------------


def _huge_strides(a):
    """`a` seen with a stride whose byte extent overflows 64 bits (no memory behind it)."""
    return as_strided(a, (3,) + a.shape[1:], (2**62,) + a.strides[1:])


X = np.zeros((4, 5), np.float32)
T = np.zeros(4, np.int64)


@pytest.mark.parametrize("call,name", [
    (lambda: fastxent.cross_entropy(_huge_strides(X), T[:3]), "input"),
    (lambda: fastxent.cross_entropy(X, _huge_strides(T)), "target"),
    (lambda: fastxent.cross_entropy(X, T, weight=_huge_strides(np.ones(5))), "weight"),
    (lambda: fastxent.cross_entropy_backward(X, T, _huge_strides(np.ones(4, np.float32)),
                                             reduction="none"), "grad_output"),
    (lambda: fastxent.cross_entropy_backward(X[:3], T[:3], out=_huge_strides(X)), "out"),
    (lambda: fastxent.softmax(_huge_strides(X)), "input"),
    (lambda: fastxent.log_softmax(X[:3], out=_huge_strides(X)), "out"),
], ids=["input", "target", "weight", "grad_output", "out", "softmax", "log_softmax_out"])
def test_byte_extent_overflow_is_a_value_error(call, name):
    with pytest.raises(ValueError, match=f"{name}.*overflows 64 bits"):
        call()


@pytest.mark.parametrize("kw", [
    {"shape": (2**32, 2**32, 4), "strides": (0, 0, 0)},  # 2^66 elements, strides given
    {"shape": (2**32, 2**32, 4), "strides": None},       # the compact strides overflow too
], ids=["strided", "compact"])
def test_element_count_overflow_is_a_value_error(kw):
    p = Producer(np.zeros(4, np.float32), **kw)
    with pytest.raises(ValueError, match="input.*element count overflows 64 bits"):
        fastxent.logsumexp(p)
    p.check_consumed()


def test_dlpack_shape_without_a_shape_pointer():
    p = Producer(np.zeros((2, 3), np.float32), null_shape=True)
    with pytest.raises(ValueError, match="input.*no shape"):
        fastxent.logsumexp(p)
    p.check_consumed()


def test_bce_grad_output_overflow_is_a_value_error():
    """The same overflow through BCE's backward (found by the fuzz under UBSan: its overlap
    test computed grad_output's byte extent before anything bounded it)."""
    x = np.zeros((4, 5), np.float32)
    go = _huge_strides(np.ones((4, 5), np.float32))[:, :5]
    with pytest.raises(ValueError, match="grad_output.*overflows 64 bits"):
        fastxent.binary_cross_entropy_with_logits_backward(x[:3], x[:3], go, reduction="none")

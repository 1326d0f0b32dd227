"""Every bad input raises ValueError / TypeError / IndexError naming the argument, before any
output is written (DESIGN.md §5)."""

import re

import numpy as np
import pytest

import fastxent
from conftest import assert_bitwise_equal

ENTRY_POINTS = {
    "cross_entropy": lambda x, t, **kw: fastxent.cross_entropy(x, t, **kw),
    "backward": lambda x, t, **kw: fastxent.cross_entropy_backward(x, t, **kw),
    "with_grad": lambda x, t, **kw: fastxent.cross_entropy_with_grad(x, t, **kw),
}
entry_points = pytest.mark.parametrize("call", ENTRY_POINTS.values(), ids=ENTRY_POINTS.keys())


def x45(dtype=np.float32):
    return (np.arange(20, dtype=np.float64).reshape(4, 5) / 7).astype(dtype)


T4 = np.array([0, 1, 2, 3])


# ---- IndexError: a target out of range names its value and position -------------------------

@entry_points
@pytest.mark.parametrize("shape,index,value,where", [
    ((4, 5), (2,), 5, "2"),
    ((4, 5), (1,), -3, "1"),
    ((2, 5, 3), (1, 2), 7, "1, 2"),
    ((2, 5, 3, 4), (1, 0, 3), 9, "1, 0, 3"),
    ((3, 5), (2,), 100, "2"),
], ids=["too-big", "negative", "kdim", "kdim3", "last-row"])
def test_target_out_of_range(call, shape, index, value, where):
    x = np.zeros(shape, np.float32)
    t = np.zeros(shape[:1] + shape[2:], np.int64)
    t[index] = value
    with pytest.raises(IndexError, match="target") as e:
        call(x, t)
    msg = str(e.value)
    assert str(value) in msg, msg
    assert re.search(r"[\[(]" + re.escape(where) + r",?[\])]", msg), msg


@entry_points
def test_target_out_of_range_one_dim(call):
    with pytest.raises(IndexError, match="target") as e:
        call(np.zeros(5, np.float64), np.array(9))
    assert "9" in str(e.value)


@entry_points
def test_target_huge_uint64_is_printed_exactly(call):
    t = np.array([0, 2**63 + 5, 1, 2], np.uint64)
    with pytest.raises(IndexError, match="9223372036854775813"):
        call(x45(), t)


@entry_points
def test_default_ignore_index_is_out_of_range_when_another_is_chosen(call):
    """With ignore_index=2, a target of -100 is just a negative class."""
    with pytest.raises(IndexError, match=r"target.*-100|-100.*target"):
        call(x45(), np.array([0, -100, 1, 2]), ignore_index=2)


# ---- ValueError: shapes and option values ----------------------------------------------------

VALUE_ERRORS = [
    ("target-short", "target", lambda: (x45(), np.array([0, 1, 2]), {})),
    ("target-extra-dim", "target", lambda: (x45(), T4[:, None], {})),
    ("target-kdim", "target", lambda: (np.zeros((2, 5, 4), np.float32), np.zeros((2, 3), np.int64),
                                       {})),
    ("target-for-1d", "target", lambda: (np.zeros(5), np.array([1]), {})),
    ("reduction", "reduction", lambda: (x45(), T4, {"reduction": "avg"})),
    ("reduction-case", "reduction", lambda: (x45(), T4, {"reduction": "Mean"})),
    ("smoothing-negative", "label_smoothing", lambda: (x45(), T4, {"label_smoothing": -0.1})),
    ("smoothing-above-1", "label_smoothing", lambda: (x45(), T4, {"label_smoothing": 1.5})),
    ("smoothing-nan", "label_smoothing", lambda: (x45(), T4, {"label_smoothing": float("nan")})),
    ("weight-long", "weight", lambda: (x45(), T4, {"weight": np.ones(6, np.float32)})),
    ("weight-short", "weight", lambda: (x45(), T4, {"weight": np.ones(4, np.float32)})),
    ("weight-2d", "weight", lambda: (x45(), T4, {"weight": np.ones((5, 1), np.float32)})),
    ("axis-too-big", "axis", lambda: (x45(), T4, {"axis": 2})),
    ("axis-too-small", "axis", lambda: (x45(), T4, {"axis": -3})),
    ("axis-1d", "axis", lambda: (np.zeros(5), np.array(1), {"axis": 1})),
    ("ignore-index-prob", "ignore_index", lambda: (x45(), np.full((4, 5), 0.2, np.float32),
                                                   {"ignore_index": 0})),
    ("input-0d", "input", lambda: (np.array(1.0), np.array(0), {})),
]


@entry_points
@pytest.mark.parametrize("make,match", [pytest.param(m, a, id=i) for i, a, m in VALUE_ERRORS])
def test_value_errors(call, make, match):
    x, t, kw = make()
    with pytest.raises(ValueError, match=match):
        call(x, t, **kw)


@entry_points
@pytest.mark.parametrize("t", [np.zeros((4, 6), np.float32), np.zeros(4, np.float32),
                               np.zeros((4, 5, 1), np.float64)], ids=["4x6", "rows", "4x5x1"])
def test_floating_target_of_another_shape(call, t):
    """A floating target is a probability target only with the input's shape."""
    with pytest.raises((ValueError, TypeError), match="target"):
        call(x45(), t)


# ---- TypeError: unsupported dtypes -----------------------------------------------------------

@entry_points
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_, np.complex64,
                                   np.complex128])
def test_logits_must_be_floating(call, dtype):
    with pytest.raises(TypeError, match="input"):
        call(np.zeros((4, 5), dtype), T4)


@entry_points
@pytest.mark.parametrize("t", [np.zeros(4, np.bool_), np.zeros(4, np.complex64),
                               np.array(["a"] * 4)],
                         ids=["bool", "complex", "str"])
def test_target_dtype(call, t):
    with pytest.raises(TypeError, match="target"):
        call(x45(), t)


@entry_points
def test_integer_weight(call):
    with pytest.raises(TypeError, match="weight"):
        call(x45(), T4, weight=np.ones(5, np.int64))


# ---- backward: grad_output and out -----------------------------------------------------------

@pytest.mark.parametrize("go", [np.ones(5, np.float32), np.ones((4, 1), np.float32),
                                np.ones(3, np.float32)], ids=["long", "2d", "short"])
@pytest.mark.parametrize("fn", [fastxent.cross_entropy_backward, fastxent.cross_entropy_with_grad],
                         ids=["backward", "with_grad"])
def test_grad_output_shape(fn, go):
    with pytest.raises(ValueError, match="grad_output"):
        fn(x45(), T4, go, reduction="none")


@pytest.mark.parametrize("out", [
    np.zeros((4, 6), np.float32), np.zeros((5, 4), np.float32), np.zeros(20, np.float32),
    np.zeros((4, 5), np.float64), np.zeros((4, 5), np.int32)],
    ids=["shape", "transposed-shape", "flat", "dtype", "int"])
def test_out_shape_and_dtype(out):
    with pytest.raises(ValueError, match="out"):
        fastxent.cross_entropy_backward(x45(), T4, out=out)


def test_out_read_only():
    out = np.zeros((4, 5), np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        fastxent.cross_entropy_backward(x45(), T4, out=out)


def test_out_partially_overlapping_the_input():
    """out must be the input itself (same data and strides) or not overlap it."""
    x = x45()
    with pytest.raises(ValueError, match="out"):
        fastxent.cross_entropy_backward(x, T4, out=x[::-1])


def test_inplace_on_read_only_input():
    x = x45()
    x.flags.writeable = False
    with pytest.raises(ValueError, match="input|inplace"):
        fastxent.cross_entropy_with_grad(x, T4, inplace=True)


# ---- softmax family ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["logsumexp", "log_softmax", "softmax"])
def test_softmax_family_errors(name):
    f = getattr(fastxent, name)
    with pytest.raises(ValueError, match="axis"):
        f(x45(), axis=2)
    with pytest.raises(ValueError, match="axis"):
        f(x45(), axis=-3)
    with pytest.raises(TypeError, match=r"\bx\b|input"):
        f(np.zeros((4, 5), np.int64))
    with pytest.raises(TypeError, match=r"\bx\b|input"):
        f(np.zeros((4, 5), np.complex128))


# ---- validation happens before any write ------------------------------------------------------

def _bad_last_target(shape):
    t = np.zeros(shape[:1] + shape[2:], np.int64)
    t.reshape(-1)[-1] = shape[1]  # the very last row's target is C: out of range
    return t


BAD_CALLS = {
    "with_grad-inplace":
        lambda x, t, **kw: fastxent.cross_entropy_with_grad(x, t, inplace=True, **kw),
    "backward-out-input": lambda x, t, **kw: fastxent.cross_entropy_backward(x, t, out=x, **kw),
}


@pytest.mark.parametrize("call", BAD_CALLS.values(), ids=BAD_CALLS.keys())
@pytest.mark.parametrize("shape", [(4, 5), (4096, 257), (1, 262144), (8, 33, 16)])
def test_failed_inplace_call_leaves_input_untouched(call, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    x0 = x.copy()
    with pytest.raises(IndexError, match="target"):
        call(x, _bad_last_target(shape))
    assert_bitwise_equal(x, x0, "input after a failed in-place call")
    with pytest.raises(ValueError, match="label_smoothing"):
        call(x, np.zeros(shape[:1] + shape[2:], np.int64), label_smoothing=2.0)
    with pytest.raises(ValueError, match="grad_output"):
        call(x, np.zeros(shape[:1] + shape[2:], np.int64), reduction="none",
             grad_output=np.ones(x.size // shape[1] + 1, np.float32))
    assert_bitwise_equal(x, x0, "input after failed in-place calls")


def test_failed_call_leaves_out_untouched():
    x = np.random.default_rng(1).standard_normal((512, 100)).astype(np.float32)
    out = np.full_like(x, 3.0)
    with pytest.raises(IndexError, match="target"):
        fastxent.cross_entropy_backward(x, _bad_last_target(x.shape), out=out)
    assert (out == 3.0).all()


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_misaligned_arrays_are_refused(dtype):
    """An array over an unaligned buffer (NumPy allows it) would be read through misaligned
    typed pointers: refused, for logits and outputs alike, and nothing is written."""
    item = np.dtype(dtype).itemsize
    raw = bytearray(20 * item + 1)
    x = np.frombuffer(raw, dtype, 20, offset=1).reshape(4, 5)
    assert x.__array_interface__["data"][0] % item
    with pytest.raises(ValueError, match="input.*not aligned"):
        fastxent.cross_entropy(x, T4)
    with pytest.raises(ValueError, match="input.*not aligned"):
        fastxent.softmax(x)
    before = bytes(raw)
    with pytest.raises(ValueError, match="out.*not aligned"):
        fastxent.cross_entropy_backward(x45(dtype), T4, out=x)
    assert bytes(raw) == before

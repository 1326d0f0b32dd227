"""binary_cross_entropy_with_logits: every bad input raises ValueError / TypeError naming the
argument, before any output is written (DESIGN.md §5)."""

import numpy as np
import pytest

import fastxent
from conftest import assert_bitwise_equal

ENTRY_POINTS = {
    "forward": fastxent.binary_cross_entropy_with_logits,
    "backward": fastxent.binary_cross_entropy_with_logits_backward,
    "with_grad": fastxent.binary_cross_entropy_with_logits_with_grad,
}
entry_points = pytest.mark.parametrize("call", ENTRY_POINTS.values(), ids=ENTRY_POINTS.keys())


def x34(dtype=np.float32):
    return (np.arange(12, dtype=np.float64).reshape(3, 4) / 5 - 1).astype(dtype)


def y34(dtype=np.float32):
    return np.linspace(0, 1, 12).reshape(3, 4).astype(dtype)


ERRORS = [
    # (id, exception, pattern, input, target, kwargs)
    ("target-shape", ValueError, r"target: expected the input's shape \(3, 4\).*\(4,\)",
     x34, lambda: y34()[0], {}),
    ("target-transposed", ValueError, r"target.*\(4, 3\)", x34, lambda: y34().T, {}),
    ("target-int", TypeError, r"target: expected floating targets.*int64", x34,
     lambda: np.zeros((3, 4), np.int64), {}),
    ("target-bool", TypeError, r"target.*bool", x34, lambda: np.zeros((3, 4), bool), {}),
    ("input-int", TypeError, r"input: expected a floating dtype.*int32",
     lambda: np.zeros((3, 4), np.int32), y34, {}),
    ("weight-shape", ValueError,
     r"weight: shape \(3,\) cannot be broadcast to the input's shape \(3, 4\)", x34, y34,
     {"weight": np.ones(3)}),
    ("weight-more-dims", ValueError, r"weight: shape \(2, 3, 4\) cannot be broadcast", x34, y34,
     {"weight": np.ones((2, 3, 4))}),
    ("weight-int", TypeError, r"weight: expected a floating dtype", x34, y34,
     {"weight": np.ones(4, np.int64)}),
    ("pos_weight-shape", ValueError,
     r"pos_weight: shape \(5,\) cannot be broadcast to the input's shape \(3, 4\)", x34, y34,
     {"pos_weight": np.ones(5)}),
    ("pos_weight-column", ValueError, r"pos_weight: shape \(2, 1\) cannot be broadcast", x34,
     y34, {"pos_weight": np.ones((2, 1))}),
    ("pos_weight-int", TypeError, r"pos_weight: expected a floating dtype", x34, y34,
     {"pos_weight": np.ones(4, np.int8)}),
    ("reduction", ValueError, r"reduction", x34, y34, {"reduction": "avg"}),
    ("reduction-type", TypeError, r"reduction must be a string", x34, y34, {"reduction": 1}),
    ("target-list-ragged", TypeError, r"target", x34, lambda: [[0.0], [1.0, 0.0]], {}),
]


@entry_points
@pytest.mark.parametrize("exc,pattern,make_x,make_t,kwargs",
                         [pytest.param(*e[1:], id=e[0]) for e in ERRORS])
def test_bad_arguments(call, exc, pattern, make_x, make_t, kwargs):
    x = make_x()
    x0 = x.copy()
    with pytest.raises(exc, match=pattern):
        call(x, make_t(), **kwargs)
    assert_bitwise_equal(x, x0, "input after a failed call")


GRAD_OUTPUT_ERRORS = [
    ("sum-array", "sum", lambda: np.ones(3), r"grad_output: expected a scalar for reduction 'sum'"),
    ("mean-array", "mean", lambda: np.ones((3, 4)),
     r"grad_output: expected a scalar for reduction 'mean'"),
    ("none-shape", "none", lambda: np.ones((4, 3)),
     r"grad_output: expected a scalar or the loss's shape \(3, 4\)"),
]


@pytest.mark.parametrize("reduction,make_go,pattern",
                         [pytest.param(*e[1:], id=e[0]) for e in GRAD_OUTPUT_ERRORS])
def test_bad_grad_output(reduction, make_go, pattern):
    for call in (fastxent.binary_cross_entropy_with_logits_backward,
                 fastxent.binary_cross_entropy_with_logits_with_grad):
        x = x34()
        with pytest.raises(ValueError, match=pattern):
            call(x, y34(), make_go(), reduction=reduction, **({"inplace": True} if call is
                 fastxent.binary_cross_entropy_with_logits_with_grad else {}))
        assert_bitwise_equal(x, x34(), "input after a failed in-place call")
    with pytest.raises(TypeError, match="grad_output: expected a floating dtype"):
        fastxent.binary_cross_entropy_with_logits_backward(x34(), y34(), np.array(1))


OUT_ERRORS = [
    ("shape", lambda x: np.empty((4, 3), x.dtype), r"out: expected shape \(3, 4\)"),
    ("dtype", lambda x: np.empty((3, 4), np.float64), r"out: expected dtype float32"),
    ("read-only", lambda x: np.broadcast_to(np.empty(4, x.dtype), (3, 4)), r"out.*read-only"),
    ("overlapping", lambda x: np.lib.stride_tricks.as_strided(np.empty(12, x.dtype), (3, 4),
                                                               (4, 4)), r"out.*overlap"),
    ("target", None, r"out shares memory with target"),
]


@pytest.mark.parametrize("make_out,pattern", [pytest.param(*e[1:], id=e[0]) for e in OUT_ERRORS])
def test_bad_out(make_out, pattern):
    x, y = x34(), y34()
    out = y if make_out is None else make_out(x)
    y0 = y.copy()
    for call in (fastxent.binary_cross_entropy_with_logits_backward,
                 fastxent.binary_cross_entropy_with_logits_with_grad):
        with pytest.raises(ValueError, match=pattern):
            call(x, y, out=out)
    assert_bitwise_equal(y, y0, "target after a failed call")


def test_out_sharing_weight_or_part_of_input_is_refused():
    x, y = x34(), y34()
    w = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="out shares memory with weight"):
        fastxent.binary_cross_entropy_with_logits_backward(x, y, weight=w, out=w)
    with pytest.raises(ValueError, match="out shares memory with pos_weight"):
        fastxent.binary_cross_entropy_with_logits_backward(x, y, pos_weight=w, out=w)
    big = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match="out shares memory with input without being exactly"):
        fastxent.binary_cross_entropy_with_logits_backward(big[:3], y, out=big[1:])


def test_inplace_needs_a_writable_array():
    with pytest.raises(TypeError, match="input: inplace=True needs a NumPy array"):
        fastxent.binary_cross_entropy_with_logits_with_grad([[0.0, 1.0]], [[0.0, 1.0]],
                                                            inplace=True)
    x = x34()
    x.flags.writeable = False
    with pytest.raises(ValueError, match="input is read-only"):
        fastxent.binary_cross_entropy_with_logits_with_grad(x, y34(), inplace=True)
    with pytest.raises(ValueError, match="either inplace=True or out="):
        fastxent.binary_cross_entropy_with_logits_with_grad(x34(), y34(), inplace=True,
                                                            out=np.empty((3, 4), np.float32))


def test_vector_log1p_domain():
    from fastxent import _core

    x = np.array([0.0, 0.5, 1.0, 1.5], np.float32)
    with pytest.raises(ValueError, match=r"x: vector_log1p is defined on \[0, 1\].*index 3"):
        _core.vector_log1p(x, np.empty_like(x))
    with pytest.raises(ValueError, match="index 0"):
        _core.vector_log1p(-x[1:2], np.empty(1, np.float32))

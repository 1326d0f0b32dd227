"""Turning user inputs into arrays the core accepts, and allocating outputs (NumPy for now)."""

from __future__ import annotations

import numpy as np

_LOW_PRECISION = {"bfloat16"}


def _numpy_dtype(name: str) -> np.dtype:
    if name in _LOW_PRECISION:
        import ml_dtypes  # noqa: PLC0415  (only needed for bfloat16 arrays, which imply it)

        return np.dtype(getattr(ml_dtypes, name))
    return np.dtype(name)


def numpy_alloc(shape: tuple, dtype: str) -> np.ndarray:
    """Output allocator handed to the core: an uninitialised C-contiguous NumPy array."""
    return np.empty(shape, dtype=_numpy_dtype(dtype))


def as_array(value, name: str) -> np.ndarray:
    """A NumPy view of `value` without copying when it already is an array."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected an array, got bool")
    try:
        return np.asarray(value)
    except Exception as exc:  # e.g. ragged lists
        raise TypeError(f"{name}: cannot be converted to an array ({exc})") from exc


def as_grad_output(value) -> np.ndarray:
    """grad_output: a Python number becomes a 0-d float64 array."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return np.asarray(float(value))
    return as_array(value, "grad_output")


def check_axis(axis) -> int | None:
    if axis is None:
        return None
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an integer or None, got {type(axis).__name__}")
    return int(axis)

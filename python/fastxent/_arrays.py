"""Turning user inputs into arrays the core accepts, and allocating outputs with the library the
inputs came from: NumPy in → NumPy out, torch in → torch out (same device), JAX in → JAX out,
CuPy in → CuPy out (same device).

NumPy arrays reach the core through the buffer protocol; every other array (torch, JAX, CuPy,
...) through DLPack, parsed in C++ (cpp/bindings/dlpack.cc). Nothing here copies an array.

CUDA arrays run on the caller's current stream: torch's (torch.cuda.current_stream) for torch
tensors, CuPy's for CuPy arrays, the legacy default stream for other DLPack producers. The stream
goes to the core as an integer in DLPack's convention (1 = legacy default stream), which also
passes it to the producers' __dlpack__(stream=...)."""

from __future__ import annotations

import sys

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


def is_torch(value) -> bool:
    torch = sys.modules.get("torch")  # never import torch just to look
    return torch is not None and isinstance(value, torch.Tensor)


def _is_jax(value) -> bool:
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(value, jax.Array)


def is_cupy(value) -> bool:
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(value, cupy.ndarray)


# DLPack device types of memory only a CUDA device reads (kDLCUDA, kDLCUDAManaged).
_CUDA_DEVICE_TYPES = (2, 13)


def cuda_device(value):
    """The CUDA device index `value` lives on, or None for host memory (and non-arrays)."""
    if is_torch(value):
        return value.device.index if value.device.type == "cuda" else None
    if not has_dlpack(value) or isinstance(value, np.ndarray):
        return None
    try:
        kind, index = value.__dlpack_device__()
        kind, index = int(kind), int(index)
    except Exception:  # noqa: BLE001  a misbehaving producer: the core asks again and reports
        return None    # it as a TypeError naming the argument (cpp/bindings/dlpack.cc)
    return index if kind in _CUDA_DEVICE_TYPES else None


def _legacy_if_default(handle: int) -> int:
    # DLPack reserves 0 (ambiguous); the default stream of torch and CuPy is the legacy one (1).
    return 1 if handle == 0 else int(handle)


def has_dlpack(value) -> bool:
    t = type(value)
    return hasattr(t, "__dlpack__") and hasattr(t, "__dlpack_device__")


def as_array(value, name: str):
    """`value` as the core reads it, never copied when it already is an array: NumPy arrays and
    DLPack arrays pass through (torch tensors detached: same storage, no autograd history)."""
    if isinstance(value, np.ndarray):
        return value
    if is_torch(value) or is_cupy(value):
        return value.detach() if value.requires_grad else value
    if has_dlpack(value):
        return value
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected an array, got bool")
    try:
        return np.asarray(value)
    except Exception as exc:  # e.g. ragged lists
        raise TypeError(f"{name}: cannot be converted to an array ({exc})") from exc


def as_grad_output(value):
    """grad_output: a Python number becomes a 0-d float64 array."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return np.asarray(float(value))
    return as_array(value, "grad_output")


def check_inplace(input, inplace, out) -> None:
    """The checks of a with_grad call's output choice, before anything is computed."""
    if inplace and not (isinstance(input, np.ndarray) or is_torch(input) or is_cupy(input)):
        raise TypeError("input: inplace=True needs a NumPy array, a torch tensor or a CuPy array "
                        f"to write the gradient into, got {type(input).__name__}")
    if inplace and out is not None:
        raise ValueError("out: give either inplace=True or out=, not both")


def as_out(out):
    """An out= argument as the core reads it (None stays None). It must be an array already:
    a list would be converted into a new array, written, and the list left as it was."""
    if out is not None and not (isinstance(out, np.ndarray) or is_torch(out) or has_dlpack(out)):
        raise TypeError(f"out: expected an array to write into, got {type(out).__name__}")
    return None if out is None else as_array(out, "out")


def mark_written(value) -> None:
    """After fastxent wrote into a torch tensor (out=, inplace=True) behind autograd's back:
    bump its version counter, so autograd refuses a backward that saved the old values."""
    if is_torch(value) and not value.is_inference():  # inference tensors have no counter
        import torch  # noqa: PLC0415

        torch.autograd.graph.increment_version(value)


class Outputs:
    """Where the results of one call are allocated: `alloc(shape, dtype_name)` goes to the core;
    `wrap(result)` turns what the core filled in into the caller's kind of array; `stream` is the
    CUDA stream of the call (0 for host arrays)."""

    def __init__(self, like):
        self.alloc = numpy_alloc
        self.wrap = _identity
        self.stream = 0
        device = cuda_device(like)
        if is_torch(like):
            import torch  # noqa: PLC0415  (already imported: `like` is a tensor)

            where = like.device
            if device is not None:
                self.stream = _legacy_if_default(torch.cuda.current_stream(where).cuda_stream)

            def torch_alloc(shape, dtype):
                return torch.empty(shape, dtype=getattr(torch, dtype), device=where)

            self.alloc = torch_alloc
        elif is_cupy(like):
            self.alloc, self.stream = _cupy_alloc(like)
        elif device is not None:
            # Another DLPack producer's CUDA array: read on the legacy default stream, which is
            # passed to its __dlpack__; results need a library that allocates CUDA memory.
            self.stream = 1
            self.alloc = _no_cuda_alloc(type(like).__name__, device)
        elif _is_jax(like):
            # JAX arrays are immutable: the core writes into NumPy buffers, which JAX then
            # adopts through DLPack (zero-copy on the CPU when aligned, as NumPy's are; a
            # bfloat16 output is copied once, NumPy having no DLPack code for it).
            self.wrap = _to_jax


def _cupy_alloc(like):
    import cupy  # noqa: PLC0415  (already imported: `like` is a CuPy array)

    device = like.device
    with device:
        stream = _legacy_if_default(cupy.cuda.get_current_stream().ptr)

    def alloc(shape, dtype):
        if dtype in _LOW_PRECISION:
            raise TypeError(f"CuPy has no {dtype} arrays: use torch for {dtype} on CUDA")
        with device:
            return cupy.empty(shape, dtype=dtype)

    return alloc, stream


def _no_cuda_alloc(kind: str, device: int):
    def alloc(shape, dtype):
        raise TypeError(
            f"input: a {kind} on CUDA device {device} can be read, but fastxent allocates results "
            "for CUDA arrays with torch or CuPy only; pass a torch tensor or a CuPy array "
            "(torch.from_dlpack / cupy.from_dlpack convert without a copy)")

    return alloc


def _identity(result):
    return result


def _to_jax(result):
    import jax  # noqa: PLC0415

    if isinstance(result, tuple):
        return tuple(_to_jax(r) for r in result)
    if isinstance(result, np.ndarray):
        if result.dtype.name == "bfloat16":  # NumPy cannot export ml_dtypes through DLPack
            return jax.numpy.asarray(result)
        return jax.dlpack.from_dlpack(result)
    return result


def as_number(value, name: str) -> float:
    if isinstance(value, (str, bytes)):  # float() would parse them
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}") from None


def as_integer(value, name: str) -> int:
    # bool is an int to Python but no index, nor a count
    if isinstance(value, (bool, np.bool_)) or not hasattr(value, "__index__"):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    value = int(value.__index__())
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"{name}={value} does not fit in 64 bits")
    return value


def as_reduction(reduction) -> str:
    """The reduction's type; its value ("none"/"sum"/"mean") is the core's to check."""
    if not isinstance(reduction, str):
        raise TypeError(f"reduction must be a string, got {type(reduction).__name__}")
    # The core reads UTF-8: a lone surrogate cannot be encoded, and is no valid name anyway.
    return reduction.encode("utf-8", "backslashreplace").decode("utf-8")


def check_axis(axis) -> int | None:
    if axis is None:
        return None
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an integer or None, got {type(axis).__name__}")
    if not -(2**31) <= axis < 2**31:  # the core's range check takes a C int
        raise ValueError(f"axis={axis} is out of range")
    return int(axis)

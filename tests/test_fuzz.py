"""No crash on any input: a seeded fuzz of the Python API with hostile arguments.

Each case builds a valid problem (random shape, class axis, layout, dtype, target kind and
options), then replaces up to three of its arguments with hostile ones: wrong types, shapes and
dtypes, NaN/inf options, huge or negative ignore_index, read-only or overlapping output
buffers, zero / negative / overflowing strides, empty arrays, objects whose __dlpack__ or
__dlpack_device__ misbehaves (raises, returns garbage, a capsule of the wrong name, an already
consumed capsule, a DLPack tensor with hostile fields). Every argument carries what it means
to the float64 reference (tests/reference.py), or INVALID when it means nothing. Then:

* the call returns a result: every argument had a meaning, and the result equals the
  reference's within the tolerance table of conftest.py;
* or it raises TypeError / ValueError / IndexError with a short message (not one of pybind11's
  argument dumps), and every array argument — the logits of an in-place call, an out= buffer
  — holds the bytes it held before;
* DLPack tensors handed over are released exactly once either way;
* the process never crashes (which the sanitizer run, .ci/sanitize, turns into a check of
  every memory access).
test_fuzz_shards does the same for the vocabulary-shard pieces (hostile vocab_start,
vocab_size and stacked statistics).

FASTXENT_FUZZ_CASES (default 10000, what CI runs) and FASTXENT_FUZZ_SEED (default 0) pick the
campaign; the count is printed in the run's summary.
"""

import ctypes
import os
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import as_strided

import fastxent
import reference
from conftest import assert_close, ml_dtypes
from dlpack_producer import IS_COPIED, READ_ONLY, Producer, _capsule_new
from problems import INT_DTYPES, class_axis, loss_dtype

CASES = int(os.environ.get("FASTXENT_FUZZ_CASES", "10000"))
SEED = int(os.environ.get("FASTXENT_FUZZ_SEED", "0"))
INVALID = object()  # an argument that means nothing: the call must raise

FLOATS = [np.float32, np.float64, np.float16] + ([ml_dtypes.bfloat16] if ml_dtypes else [])
ENTRY_POINTS = ("cross_entropy", "cross_entropy_lse", "statistics", "backward",
                "backward_out", "with_grad", "with_grad_out", "with_grad_inplace", "logsumexp",
                "log_softmax", "softmax", "log_softmax_out", "softmax_out")
CE_OPTIONS = ("weight", "ignore_index", "reduction", "label_smoothing", "axis", "z_loss",
              "softcap")
FORWARD_ONLY = ("cross_entropy", "cross_entropy_lse", "statistics")


@dataclass
class Arg:
    """One argument: the value passed and what it means to the reference (INVALID: nothing).
    `writable` is False for values that may be read but never written (read-only, elements
    overlapping in memory, a list, an out= sharing part of the logits); `producers` are the
    DLPack producers behind it, checked for exactly-once release."""
    value: object
    meaning: object
    writable: bool = True
    producers: list = field(default_factory=list)
    aliases_input: bool = False  # an out= sharing memory with the input (while it is one)

    def __repr__(self):  # pytest prints arguments of failing frames: never read a fake view
        return f"Arg({_describe(self.value)})"


@dataclass
class Case:
    entry: str
    args: dict  # name -> Arg: input, target, grad_output, out and the options
    mutations: list = field(default_factory=list)


# ---- a valid problem ---------------------------------------------------------------------------


def _layout(rng, a):
    """`a`'s values in another memory layout: C order, Fortran order, negative strides, every
    other element of a larger buffer, or a misaligned buffer (which fastxent refuses)."""
    kind = rng.choice(["c", "c", "f", "neg", "sliced", "unaligned"])
    if a.ndim == 0 or kind == "c":
        return a
    if kind == "f":
        return np.asfortranarray(a)
    if kind == "neg":
        ax = int(rng.integers(a.ndim))
        return np.flip(np.flip(a, ax).copy(), ax)
    if kind == "sliced":
        big = np.zeros(tuple(2 * n + 1 for n in a.shape), a.dtype)
        view = big[tuple(slice(1, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    raw = bytearray(a.nbytes + 1)  # one byte off: no element is aligned
    view = np.frombuffer(raw, a.dtype, a.size, offset=1).reshape(a.shape)
    view[...] = a
    return view


def _logits(rng, shape, dtype):
    x = rng.standard_normal(shape) * rng.choice([1.0, 3.0, 30.0])
    if x.size and rng.random() < 0.1:
        flat = x.reshape(-1)
        k = int(rng.integers(1, 4))
        flat[rng.integers(0, x.size, k)] = rng.choice([-np.inf, np.nan, 1e4, -1e4], k)
    return _layout(rng, x.astype(dtype))


def _valid_case(rng):
    entry = ENTRY_POINTS[int(rng.integers(len(ENTRY_POINTS)))]
    ndim = int(rng.choice([1, 2, 2, 2, 3, 4]))
    shape = [int(rng.choice([0, 1, 2, 3, 5, 8])) for _ in range(ndim)]
    dtype = FLOATS[int(rng.integers(len(FLOATS)))]
    softmax = entry in ("logsumexp", "log_softmax", "softmax", "log_softmax_out", "softmax_out")
    axis = -1 if softmax else None
    if ndim > 1 and rng.random() < 0.4:
        axis = int(rng.integers(-ndim, ndim))
    ax = axis % ndim if softmax else class_axis(ndim, axis)
    shape[ax] = int(rng.choice([1, 2, 3, 7, 16, 17, 33]))
    x = _logits(rng, tuple(shape), dtype)
    args = {"input": Arg(x, x)}
    if softmax:
        args["axis"] = Arg(axis, axis)
        if entry.endswith("_out"):
            out = _layout(rng, np.full(x.shape, np.nan, dtype))
            args["out"] = Arg(out, out)
        return Case(entry, args)

    C = shape[ax]
    rows_shape = tuple(shape[:ax] + shape[ax + 1:])
    prob = rng.random() < 0.3
    ignore_index = -100
    if prob:
        y = rng.random(x.shape) ** 2
        y /= np.maximum(y.sum(axis=ax, keepdims=True), 1e-30)
        t = _layout(rng, y.astype(FLOATS[int(rng.integers(len(FLOATS)))]))
        if rng.random() < 0.3:
            ignore_index = -int(rng.integers(1, 2**62))
    else:
        tdt = INT_DTYPES[int(rng.integers(len(INT_DTYPES)))]
        t = rng.integers(0, C, rows_shape).astype(tdt)
        if rng.random() < 0.5 and t.size:
            ignore_index = int(rng.integers(0, min(C + 3, int(np.iinfo(tdt).max))))
            t.reshape(-1)[rng.random(t.size) < 0.3] = ignore_index
        t = _layout(rng, t)
    args["target"] = Arg(t, t)
    w = None
    if rng.random() < 0.4:
        w = rng.uniform(0.25, 2.0, C).astype(FLOATS[int(rng.integers(len(FLOATS)))])
    reduction = str(rng.choice(["none", "sum", "mean"]))
    smoothing = float(rng.choice([0.0, 0.0, 0.1, 1.0, rng.random()]))
    z_loss = float(rng.choice([0.0, 0.0, 0.0, 1e-3, 0.1]))
    softcap = rng.choice([None, None, None, 5.0, 30.0])
    for name, value in (("weight", w), ("ignore_index", ignore_index),
                        ("reduction", reduction), ("label_smoothing", smoothing),
                        ("axis", axis), ("z_loss", z_loss), ("softcap", softcap)):
        args[name] = Arg(value, value)
    if entry not in FORWARD_ONLY:
        r = rng.random()
        if reduction == "none" and r < 0.5:
            go = rng.uniform(-2, 2, rows_shape).astype(dtype)
        elif r < 0.8:
            go = float(rng.uniform(-2, 2))
        else:
            go = np.asarray(rng.uniform(-2, 2), FLOATS[int(rng.integers(len(FLOATS)))])
        args["grad_output"] = Arg(go, go)
    if entry.endswith("_out"):
        out = _layout(rng, np.full(x.shape, np.nan, dtype))
        args["out"] = Arg(out, out)
    if entry == "with_grad_inplace":
        args["input"] = Arg(x, x.copy())  # the meaning of the logits, before they are overwritten
    return Case(entry, args)


# ---- hostile arguments -------------------------------------------------------------------------


class _Weird:
    def __repr__(self):
        return "<weird>"


def _garbage(rng):
    choices = [None, "abc", b"xyz", {}, _Weird(), 3.5, 1j, [[1.0, 2.0], [3.0]], np.array("s"),
               np.zeros((2, 3), np.complex64), np.zeros((2, 3), object),
               np.zeros((2, 3), "datetime64[s]"), np.zeros((2, 3), ">f4"), np.float32(1.0),
               np.zeros((1,) * 17 + (2,), np.float32), np.zeros((2, 0), np.float32),
               np.zeros((2, 3), np.bool_)]
    return choices[int(rng.integers(len(choices)))]


def _overflowing_strides(a):
    """A view of `a` whose byte extent overflows 64 bits (reading it would fault)."""
    shape = (3,) + a.shape[1:] if a.ndim else (3,)
    strides = (2**62,) + a.strides[1:] if a.ndim else (2**62,)
    return as_strided(a, shape, strides)


def _real(a):
    """False for the views of _overflowing_strides: they point at no memory, and not even the
    test may read them."""
    return max(map(abs, a.strides), default=0) < 2**40


def _overlapping(a):
    """A writable view of `a`'s first element repeated (zero strides): fine to read."""
    return as_strided(a, a.shape, (0,) * a.ndim)


class BadDevice:
    """__dlpack_device__ misbehaves in one of several ways."""

    def __init__(self, how, array):
        self.how, self.array = how, array

    def __dlpack_device__(self):
        if self.how == "raises":
            raise RuntimeError("device lookup failed")
        return {"none": None, "short": (1,), "str": ("cpu", 0), "huge": (2**40, 0),
                "list": [1, 0], "cuda": (2, 0), "opencl": (4, 0)}[self.how]

    def __dlpack__(self, **kw):
        return self.array.__dlpack__(**kw)


class BadExport:
    """__dlpack__ misbehaves: raises, returns garbage, a capsule named otherwise, or one that
    was consumed already."""

    def __init__(self, how, array):
        self.how, self.array = how, array
        self._keep = ctypes.c_double(0)

    def __dlpack_device__(self):
        return (1, 0)

    def __dlpack__(self, **kw):
        if self.how == "raises":
            raise BufferError("cannot export")
        if self.how == "raises_value":
            raise ValueError("bad stream")
        if self.how == "none":
            return None
        if self.how == "int":
            return 42
        if self.how == "wrong_name":
            return _capsule_new(ctypes.addressof(self._keep), b"not_a_tensor", None)
        if self.how == "consumed":
            capsule = self.array.__dlpack__()
            np.from_dlpack(_Holder(capsule))  # NumPy consumes (renames) it
            return capsule
        raise AssertionError(self.how)


class _Holder:
    def __init__(self, capsule):
        self.capsule = capsule

    def __dlpack__(self, **kw):
        return self.capsule

    def __dlpack_device__(self):
        return (1, 0)


def _producer(rng, a):
    """A ctypes DLPack producer over `a` with one hostile field (or none): (object, meaning,
    writable)."""
    base = a
    if a.dtype.byteorder == ">":  # DLPack has no byte order: export the values natively
        base = a.astype(a.dtype.newbyteorder("="))
    if a.dtype.name == "bfloat16" or not (base.flags.c_contiguous or base.flags.f_contiguous):
        base = np.ascontiguousarray(base)
    how = str(rng.choice(["valid", "legacy", "null_strides", "readonly", "copied", "version",
                          "dtype", "lanes", "device", "ndim17", "ndim_neg", "null_shape",
                          "neg_shape", "overflow_shape", "overflow_stride", "null_data"]))
    nd = max(base.ndim, 1)
    kw = {
        "valid": {}, "legacy": {"legacy": True}, "null_strides": {"strides": None},
        "readonly": {"flags": READ_ONLY}, "copied": {"flags": IS_COPIED},
        "version": {"version": (int(rng.choice([0, 2, 99])), 0)},
        "dtype": {"dtype": (int(rng.choice([3, 5, 7, 200])), 32, 1)},
        "lanes": {"dtype": (2, 32, 4)},
        "device": {"device": (int(rng.choice([4, 7, 14, 1000])), 0)},
        "ndim17": {"ndim": 17}, "ndim_neg": {"ndim": -1}, "null_shape": {"null_shape": True},
        "neg_shape": {"shape": (-1,) * nd, "strides": (1,) * nd},
        "overflow_shape": {"shape": (2**40,) * 3, "strides": (0,) * 3},
        "overflow_stride": {"shape": (3,) * nd, "strides": (2**61,) * nd},
        "null_data": {"shape": (2, 3), "strides": (3, 1), "null_data": True},
    }[how]
    if how == "null_strides":
        base = np.ascontiguousarray(base)
    p = Producer(base, **kw)
    if how in ("valid", "legacy", "null_strides") or how == "null_shape" and base.ndim == 0:
        return p, base, True
    if how == "readonly":
        return p, base, False
    return p, INVALID, False


def _dlpack_hostile(rng, a):
    r = rng.random()
    if r < 0.5:
        return _producer(rng, a)
    if r < 0.75:
        how = str(rng.choice(["raises", "none", "short", "str", "huge", "list", "cuda",
                              "opencl"]))
        inner = np.zeros((2, 3), np.float32)
        # "cuda": the tensor exported is a CPU one, and the tensor is what the consumer reads
        return BadDevice(how, inner), inner if how == "cuda" else INVALID, how == "cuda"
    how = str(rng.choice(["raises", "raises_value", "none", "int", "wrong_name", "consumed"]))
    return BadExport(how, np.zeros((2, 3), np.float32)), INVALID, False


def _torch_of(a):
    torch = sys.modules.get("torch")
    if (torch is None or a.dtype.name == "bfloat16" or a.dtype.byteorder == ">"
            or not a.flags.aligned or not a.flags.writeable or min(a.strides, default=0) < 0):
        return None
    return torch.from_numpy(a)


def _array_mutation(rng, name, a):
    """A hostile or unusual replacement for the array argument `a`."""
    r = rng.random()
    if r < 0.15:
        v = _garbage(rng)
        if v is None:  # no weight, no out: fine; no target, grad_output or input: not
            return Arg(v, v if name in ("out", "weight", "pos_weight") else INVALID)
        if isinstance(v, (float, np.floating)):  # a 0-d array (fine as grad_output only)
            return Arg(v, np.asarray(v) if name != "out" else INVALID)
        if isinstance(v, np.ndarray) and v.dtype in (np.float32,) and v.ndim < 17:
            return Arg(v, v)  # an empty array: the call decides
        return Arg(v, INVALID)
    if r < 0.3:
        p, meaning, writable = _dlpack_hostile(rng, a)
        return Arg(p, meaning, writable, [p])
    if r < 0.4:
        v = _overflowing_strides(a)  # fine when empty: there is nothing to read
        return Arg(v, np.zeros(v.shape, v.dtype) if v.size == 0 else INVALID, v.size == 0)
    if r < 0.5:
        v = _overlapping(a)  # writable only when no element is repeated
        return Arg(v, np.array(v), v.size <= 1)
    if r < 0.6 and a.dtype.name != "bfloat16":
        lst = a.tolist()
        return Arg(lst, np.asarray(lst), False)
    if r < 0.7:
        t = _torch_of(a)
        return Arg(t, a) if t is not None else Arg(a, a)
    if r < 0.8:
        ro = a.copy()
        ro.flags.writeable = False
        return Arg(ro, ro, False)
    if r < 0.9:  # another shape
        shape = a.shape[:-1] if a.ndim and rng.random() < 0.5 else a.shape + (2,)
        b = np.zeros(shape, a.dtype)
        return Arg(b, b)
    dt = [np.int32, np.int64, np.uint8, np.float64, np.float32, np.bool_][int(rng.integers(6))]
    b = (a.astype(np.float32) if a.dtype.name == "bfloat16" else a).astype(dt)
    if name == "target" and b.size and b.dtype.kind in "iu":  # and a value out of range
        info = np.iinfo(b.dtype)
        b.reshape(-1)[0] = _pick(rng, [max(-5, info.min), min(10**6, info.max), info.max])
    return Arg(b, b)


def _pick(rng, values):
    return values[int(rng.integers(len(values)))]


def _mutate(rng, case):
    """Replaces one argument of `case` with a hostile (or merely unusual) value."""
    args = case.args
    names = [n for n in args if args[n].value is not None or n in ("weight", "out", "softcap")]
    name = _pick(rng, names + ["input", "input", "inplace"])
    case.mutations.append(name)
    value = args[name].value if name in args else None
    if name == "inplace":
        case.entry = {"with_grad": "with_grad_inplace",
                      "with_grad_out": "with_grad_out+inplace"}.get(case.entry, case.entry)
    elif name == "out" and rng.random() < 0.3:
        x = args["input"].value
        if isinstance(x, np.ndarray) and x.ndim and x.flags.writeable and _real(x):
            if rng.random() < 0.5:  # out= the logits themselves: an in-place result
                args[name] = Arg(x, x)
            else:  # the same memory seen through another view: only empty or one row is fine
                fine = x.shape[0] <= 1 or x.size == 0
                args[name] = Arg(x[::-1], x if fine else INVALID, fine, aliases_input=True)
    elif isinstance(value, np.ndarray) and _real(value) and (
            value.dtype.kind in "fiub" or value.dtype.name == "bfloat16"):
        args[name] = _array_mutation(rng, name, value)
        out = args.get("out")
        if name == "input" and out is not None and out.aliases_input:
            # The logits the out= view shared memory with are no argument any more.
            args["out"] = Arg(out.value, out.value.copy(), True)
    elif name == "weight":  # None now
        C = _classes(case)
        v = _pick(rng, [np.full(C, np.nan, np.float32), -np.ones(C), np.ones(C + 1),
                        np.ones((C, 1)), np.arange(C), list(np.ones(C))])
        args[name] = Arg(v, np.asarray(v))
    elif name == "ignore_index":
        v = _pick(rng, [2**63, -(2**63) - 1, -(2**63), 2**62, 1.5, "3", None, True,
                        np.int64(-1), np.uint64(2**64 - 1), np.int8(3), float("nan")])
        ok = isinstance(v, (int, np.integer)) and not isinstance(v, bool) \
            and -(2**63) <= int(v) < 2**63
        args[name] = Arg(v, int(v) if ok else INVALID)
    elif name == "reduction":
        v = _pick(rng, ["MEAN", "", "mean\0", "\ud800", None, b"mean", 1, "sum ", "none"])
        args[name] = Arg(v, v if v in ("none", "sum", "mean") else INVALID)
    elif name == "label_smoothing":
        v = _pick(rng, [float("nan"), float("inf"), -float("inf"), -0.1, 1.0000001, "0.1", None,
                        1j, np.float32(0.25), 1, 0, np.float64(1e-30), 1e-20])
        ok = isinstance(v, (int, float, np.floating)) and not isinstance(v, bool) \
            and 0 <= float(v) <= 1
        args[name] = Arg(v, float(v) if ok else INVALID)
    elif name == "z_loss":
        v = _pick(rng, [float("nan"), float("inf"), -1e-3, "0.1", None, 1j, np.float32(0.5), 2])
        ok = isinstance(v, (int, float, np.floating)) and 0 <= float(v) < float("inf")
        args[name] = Arg(v, float(v) if ok else INVALID)
    elif name == "softcap":  # None now
        v = _pick(rng, [0.0, -1.0, float("nan"), float("inf"), "5", 1e-30, np.float64(2.0), 7])
        ok = isinstance(v, (int, float, np.floating)) and 0 <= float(v) < float("inf")
        args[name] = Arg(v, (float(v) or None) if ok else INVALID)
    elif name == "axis":
        v = _pick(rng, [2**40, -100, 1.0, "1", True, np.int64(-1), 2**31, -(2**31) - 1, 7])
        ok = isinstance(v, (int, np.integer)) and not isinstance(v, bool)
        args[name] = Arg(v, int(v) if ok else INVALID)
    elif name == "grad_output":  # a Python float now
        v = _pick(rng, [float("nan"), float("inf"), None, "1", [1.0], np.int64(2), 7])
        valid = isinstance(v, float) or v == 7 or isinstance(v, list)
        args[name] = Arg(v, np.asarray(v, np.float64) if valid else INVALID)


def _classes(case):
    """The number of classes of the problem (3 when the input or axis was made invalid)."""
    x, axis = _meaning(case, "input"), _meaning(case, "axis")
    if not isinstance(x, np.ndarray) or x.ndim == 0 or not isinstance(axis, (int, type(None))):
        return 3
    return x.shape[class_axis(x.ndim, axis)] if -x.ndim <= (axis or 0) < x.ndim else 3


# ---- running a case ----------------------------------------------------------------------------


def _value(case, name, default=None):
    return case.args[name].value if name in case.args else default


def _call(case):
    a = case.args
    x, e = a["input"].value, case.entry
    if e in ("logsumexp", "log_softmax", "softmax"):
        return getattr(fastxent, e)(x, axis=_value(case, "axis"))
    if e in ("log_softmax_out", "softmax_out"):
        return getattr(fastxent, e[:-4])(x, axis=_value(case, "axis"), out=_value(case, "out"))
    opts = {n: a[n].value for n in CE_OPTIONS if n in a}
    t = a["target"].value
    if e == "cross_entropy":
        return fastxent.cross_entropy(x, t, **opts)
    if e == "cross_entropy_lse":
        return fastxent.cross_entropy(x, t, **opts, return_lse=True)
    if e == "statistics":
        return fastxent.cross_entropy_statistics(x, t, **opts)
    go = _value(case, "grad_output", 1.0)
    if e == "backward":
        return fastxent.cross_entropy_backward(x, t, go, **opts)
    if e == "backward_out":
        return fastxent.cross_entropy_backward(x, t, go, **opts, out=_value(case, "out"))
    if e == "with_grad":
        return fastxent.cross_entropy_with_grad(x, t, go, **opts)
    if e == "with_grad_out":
        return fastxent.cross_entropy_with_grad(x, t, go, **opts, out=_value(case, "out"))
    if e == "with_grad_inplace":
        return fastxent.cross_entropy_with_grad(x, t, go, **opts, inplace=True)
    if e == "with_grad_out+inplace":
        return fastxent.cross_entropy_with_grad(x, t, go, **opts, inplace=True,
                                                out=_value(case, "out"))
    raise AssertionError(e)


def _snapshot(value):
    torch = sys.modules.get("torch")
    if isinstance(value, np.ndarray):
        return value.tobytes() if _real(value) else None
    if torch is not None and isinstance(value, torch.Tensor):
        return value.detach().numpy().tobytes()
    if isinstance(value, Producer):
        return value.array.tobytes()
    return None


def _same(before, value):
    return before == _snapshot(value)


def _np(result):
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(result, torch.Tensor):
        return result.numpy()
    if isinstance(result, (Producer, BadDevice)):  # out= a producer: the result is in its array
        return result.array
    return result


def _meaning(case, name):
    return case.args[name].meaning if name in case.args else None


def _check_result(case, result):
    """The call succeeded: every argument must mean something, and the result must be the
    reference's."""
    for name, arg in case.args.items():
        assert arg.meaning is not INVALID, f"{name}={arg.value!r} was accepted"
    e = case.entry
    if e == "with_grad_out+inplace":
        assert case.args["out"].value is None, "inplace=True and out= were both accepted"
        e = case.entry = "with_grad_inplace"  # out=None: inplace alone
    written = "input" if e == "with_grad_inplace" else "out" if e.endswith("_out") else None
    if written and written in case.args:
        w = case.args[written]
        assert w.writable or w.meaning is None, f"{written}={w.value!r} was written"
        if e == "with_grad_inplace":
            torch = sys.modules.get("torch")
            assert isinstance(w.value, np.ndarray) or (
                torch is not None and isinstance(w.value, torch.Tensor)), "inplace into a non-array"
    x = np.asarray(_meaning(case, "input"))
    dt = x.dtype
    if e in ("logsumexp", "log_softmax", "softmax", "log_softmax_out", "softmax_out"):
        axis = _meaning(case, "axis")
        name = e.replace("_out", "")
        ref = getattr(reference, name)(x, axis)
        got = np.asarray(_np(result))
        n = x.shape[axis] if x.ndim else 1
        assert_close(got, ref, loss_dtype(dt) if name == "logsumexp" else dt, n, e)
        return
    t = np.asarray(_meaning(case, "target"))
    w = _meaning(case, "weight")
    kw = dict(weight=None if w is None else np.asarray(w),
              ignore_index=_meaning(case, "ignore_index"),
              reduction=_meaning(case, "reduction"),
              label_smoothing=_meaning(case, "label_smoothing"), axis=_meaning(case, "axis"),
              z_loss=_meaning(case, "z_loss"), softcap=_meaning(case, "softcap"))
    C = x.shape[class_axis(x.ndim, kw["axis"])]
    rows = x.size // C
    terms = C if kw["reduction"] == "none" else C + rows
    ldt = loss_dtype(dt)
    if e in FORWARD_ONLY:
        ref, mag = reference.cross_entropy(x, t, **kw, with_magnitude=True)
        parts = list(result) if e != "cross_entropy" else [result]
        assert_close(np.asarray(_np(parts[0])), ref, ldt, terms, e, mag)
        if e == "cross_entropy":
            return
        lse = reference.row_logsumexp(x, kw["axis"], kw["softcap"])
        # lse = m + log s: near 0 it is a difference, whose error scales with |m| and log C.
        with np.errstate(all="ignore"):
            big = np.max(np.abs(np.where(np.isfinite(x), x, 0).astype(np.float64)),
                         axis=class_axis(x.ndim, kw["axis"]))
        assert_close(np.asarray(_np(parts[1])), lse, ldt, C, e + " lse",
                     np.abs(lse) + big + np.log(C) + 1)
        if e == "statistics":
            _check_statistics(x, kw, C, ldt, [np.asarray(_np(v)) for v in parts[2:]])
        return
    go = np.asarray(_meaning(case, "grad_output"))
    ref_g, mag_g = reference.cross_entropy_backward(x, t, go, **kw, with_magnitude=True)
    grad = result if e in ("backward", "backward_out") else result[1]
    grad = np.asarray(_np(grad))
    if not np.isfinite(go.astype(np.float64)).all():
        # An infinite upstream gradient: inf·p_j·A - inf·B_j is NaN where the reference's
        # inf·(p_j·A - B_j) is ±inf (and torch's own log_softmax backward gives NaN at the
        # target class): only where NaN is not allowed is checked.
        assert grad.shape == ref_g.shape and grad.dtype == dt, e
        bad = ~np.isnan(grad.astype(np.float64)) & np.isnan(ref_g)
        assert not bad.any(), f"{e}: a finite gradient where the reference is NaN"
    else:
        assert_close(grad, ref_g, dt, C, e + " grad", mag_g)
    if e not in ("backward", "backward_out"):
        ref, mag = reference.cross_entropy(x, t, **kw, with_magnitude=True)
        assert_close(np.asarray(_np(result[0])), ref, ldt, terms, e + " loss", mag)


def _check_statistics(x, kw, C, ldt, stats):
    """argmax (a row's largest logit; a NaN's index in a row with NaN) and entropy."""
    argmax, entropy = stats
    # H = log s + Σ p_j·(m - x_j): log s of s = 1 + tiny rounds at 1 ulp of 1, so a nearly
    # certain row's entropy has an absolute (not relative) error of a few ulp of 1.
    ref = reference.row_entropy(x, kw["axis"], kw["softcap"])
    assert_close(entropy, ref, ldt, C, "statistics entropy", np.abs(ref) + 1)
    rows = np.moveaxis(x.astype(np.float64), class_axis(x.ndim, kw["axis"]), -1)
    rows = rows.reshape(-1, C)
    picked = np.take_along_axis(rows, argmax.reshape(-1, 1).astype(np.int64), 1)[:, 0]
    with np.errstate(all="ignore"):
        best = np.where(np.isnan(rows).any(axis=1), np.nan, rows.max(axis=1, initial=-np.inf))
    same = (picked == best) | (np.isnan(picked) & np.isnan(best))
    if kw["softcap"] is None:  # a cap can tie distinct logits: then any of them may win
        assert same.all(), "statistics argmax is not the row's largest logit"


def _misaligned(case):
    """Whether an array argument starts at an address that is no multiple of its item size
    (the "unaligned" layout): fastxent refuses those."""
    for arg in case.args.values():
        a = arg.value.array if isinstance(arg.value, Producer) else arg.value
        if isinstance(a, np.ndarray) and a.__array_interface__["data"][0] % a.itemsize:
            return True
    return False


def _check_error(case, exc, before):
    assert isinstance(exc, (TypeError, ValueError, IndexError)), (
        f"{type(exc).__name__}: {exc}")
    msg = str(exc)
    if "not aligned" in msg:
        assert _misaligned(case), msg
    assert msg and len(msg) < 2000, msg
    for dump in ("incompatible function arguments", "incompatible constructor arguments",
                 "Unable to cast"):
        assert dump not in msg, msg
    for name, snap in before.items():
        assert _same(snap, case.args[name].value), f"{name} was modified by a failed call"


def run_case(case):
    """Returns "ok" or the exception type's name; raises AssertionError on a violation."""
    for arg in case.args.values():  # what the arguments mean, before anything is written
        if isinstance(arg.meaning, np.ndarray):
            arg.meaning = arg.meaning.copy()
    before = {n: s for n, a in case.args.items() if (s := _snapshot(a.value)) is not None}
    try:
        with np.errstate(all="ignore"):
            result = _call(case)
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001  (every exception is checked just below)
        _check_error(case, exc, before)
        outcome = type(exc).__name__
    else:
        _check_result(case, result)
        outcome = "ok"
    for arg in case.args.values():
        for p in arg.producers:
            if isinstance(p, Producer) and p.exported:
                p.check_consumed()
    return outcome


def _describe(value):
    """A failing case's argument for the report (never reading a view with no memory)."""
    if isinstance(value, np.ndarray):
        head = f"ndarray{value.shape} {value.dtype} strides={value.strides}"
        return head + (f" {value.tolist()}" if _real(value) and value.size <= 64 else "")
    return repr(value)[:200]


def make_case(rng):
    with np.errstate(all="ignore"):  # casts of NaN / inf logits to integers, on purpose
        case = _valid_case(rng)
        for _ in range(int(rng.choice([0, 1, 1, 1, 2, 3]))):
            _mutate(rng, case)
    return case


def test_fuzz(measurement):
    rng = np.random.default_rng(SEED)
    outcomes = {}
    for i in range(CASES):
        case = make_case(rng)
        try:
            outcome = run_case(case)
        except AssertionError as exc:
            # "from None": pytest would print the arguments of every frame of the chained
            # tracebacks, and printing a view with overflowing strides reads no real memory.
            args = {n: _describe(a.value) for n, a in case.args.items()}
            raise AssertionError(f"fuzz case {i} (seed {SEED}): {case.entry} mutated "
                                 f"{case.mutations}: {args}\n{exc}") from None
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert outcomes.get("ok", 0) > CASES // 10, outcomes  # the valid cases are checked too
    measurement(f"fuzz: {CASES} cases (seed {SEED}): " +
                ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))


def test_unmutated_cases_succeed():
    """The problems the fuzz starts from are all valid: without a mutation every call works
    (so the fuzz's hostile arguments are what its exceptions come from)."""
    rng = np.random.default_rng(SEED + 1)
    refused = 0
    for i in range(300):
        case = _valid_case(rng)
        outcome = run_case(case)
        if outcome == "ValueError" and _misaligned(case):  # checked by _check_error
            refused += 1
            continue
        assert outcome == "ok", (i, case.entry)
    assert refused < 150


# ---- the vocabulary-shard pieces ----------------------------------------------------------------


def _shard_case(rng):
    """A valid two-shard problem (index targets, classes on the last axis) and the hostile
    replacement, if any, of vocab_start, vocab_size or the stacked statistics."""
    rows, V = int(rng.integers(0, 6)), int(rng.integers(2, 40))
    split = int(rng.integers(1, V))
    dtype = FLOATS[int(rng.integers(len(FLOATS)))]
    x = _logits(rng, (rows, V), dtype)
    t = rng.integers(0, V, rows)
    w = rng.uniform(0.5, 2.0, V) if rng.random() < 0.5 else None
    kw = dict(weight=w, label_smoothing=float(rng.choice([0.0, 0.1])), axis=-1,
              softcap=rng.choice([None, 5.0]))
    what = str(rng.choice(["none", "none", "start", "size", "stats"]))
    bad = None
    if what == "start":
        bad = _pick(rng, [-1, V, 2**63 - 1, -(2**63), 2**64, 1.5, True, None, np.int64(split)])
    elif what == "size":
        bad = _pick(rng, [0, -1, split, 2**63 - 1, 2**64, 2.0, False, "9", np.uint64(V)])
    elif what == "stats":
        bad = _pick(rng, ["nan", "shape", "dtype", "strides", "list", "garbage"])
    return x, t, split, V, kw, what, bad


def _run_shard_case(x, t, split, V, kw, what, bad):
    """Returns "ok" or the exception's type name; raises AssertionError on a violation."""
    shards = [(x[:, :split], 0), (x[:, split:], split)]
    start1, size = split, V
    if what == "start":
        start1 = bad
    if what == "size":
        size = bad
    try:
        with np.errstate(all="ignore"):
            stats = np.stack([_api_shard_statistics(xs, t, a if a == 0 else start1, size, kw)
                              for xs, a in shards])
            if what == "stats":
                stats = _hostile_stats(stats, bad)
            loss, _ = fastxent._api.loss_from_shard_statistics(
                shards[1][0], t, stats, start1, size, reduction="sum", **kw)
            grad = fastxent._api.shard_backward(shards[1][0], t, stats, start1, size, 1.0,
                                                reduction="sum", **kw)
    except (TypeError, ValueError, IndexError) as exc:
        msg = str(exc)
        assert msg and "incompatible" not in msg and "Unable to cast" not in msg, msg
        return type(exc).__name__
    # Accepted. Another vocab_start or vocab_size describes another problem that no shard can
    # tell apart from this one (the other shards' classes are elsewhere), and NaN statistics
    # flow: only the shapes are checked then. Otherwise the result must be the reference's.
    assert np.shape(loss) == () and grad.shape == shards[1][0].shape, (np.shape(loss), grad.shape)
    if what in ("start", "size") or (what == "stats" and bad == "nan"):
        return "ok"
    kw_ref = dict(kw, reduction="sum")
    ldt, gdt = loss_dtype(x.dtype), x.dtype
    f32_stats = what == "stats" and bad == "dtype"  # taken as given: float32 digits
    if f32_stats:  # (16-bit gradients keep their own rounding on top)
        ldt, gdt = np.float32, np.float32 if x.dtype == np.float64 else x.dtype
    ref, mag = reference.cross_entropy(x, t, **kw_ref, with_magnitude=True)
    assert_close(np.asarray(loss), ref, ldt, V + len(t), "sharded loss", mag,
                 check_dtype=not f32_stats)
    ref_g, mag_g = reference.cross_entropy_backward(x, t, 1.0, **kw_ref, with_magnitude=True)
    assert_close(grad, ref_g[:, split:], gdt, V, "shard gradient", mag_g[:, split:],
                 check_dtype=not f32_stats)
    return "ok"


def _api_shard_statistics(xs, t, start, size, kw):
    return fastxent._api.shard_statistics(xs, t, start, size, kw["weight"],
                                          label_smoothing=kw["label_smoothing"],
                                          axis=kw["axis"], softcap=kw["softcap"])


def _hostile_stats(stats, how):
    if how == "nan":
        return np.full_like(stats, np.nan)
    if how == "shape":
        return stats[:, :, :-1]
    if how == "dtype":
        return stats.astype(np.float32)
    if how == "strides":
        return as_strided(stats, (3,) + stats.shape[1:], (2**62,) + stats.strides[1:])
    if how == "list":
        return stats.tolist()  # converted to an array: fine to read
    return object()


def test_fuzz_shards(measurement):
    rng = np.random.default_rng(SEED + 2)
    cases = max(CASES // 5, 100)
    outcomes = {}
    for i in range(cases):
        case = _shard_case(rng)
        try:
            outcome = _run_shard_case(*case)
        except AssertionError as exc:
            x, t, split, V, kw, what, bad = case
            raise AssertionError(f"shard fuzz case {i}: x {x.shape} {x.dtype}, split {split} "
                                 f"of {V}, {what}={bad!r}\n{exc}") from None
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert outcomes.get("ok", 0) > cases // 4, outcomes
    measurement(f"shard fuzz: {cases} cases (seed {SEED + 2}): " +
                ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))


# ---- binary cross-entropy with logits -----------------------------------------------------------

BCE_ENTRIES = ("forward", "backward", "backward_out", "with_grad", "with_grad_out",
               "with_grad_inplace")


def _bce_case(rng):
    """A valid BCE problem (any shape and layout; weight and pos_weight broadcast over the last
    axis or given whole), then up to three hostile arguments, as for the softmax entry points."""
    entry = BCE_ENTRIES[int(rng.integers(len(BCE_ENTRIES)))]
    shape = tuple(int(rng.choice([0, 1, 2, 3, 7, 17])) for _ in range(int(rng.integers(0, 4))))
    dtype = FLOATS[int(rng.integers(len(FLOATS)))]
    x = _logits(rng, shape, dtype)
    y = _layout(rng, rng.random(shape).astype(FLOATS[int(rng.integers(len(FLOATS)))]))
    args = {"input": Arg(x, x), "target": Arg(y, y)}
    C = shape[-1] if shape else 1
    for name in ("weight", "pos_weight"):
        r = rng.random()
        v = None if r < 0.5 else rng.uniform(0.25, 2.0, (C,) if r < 0.8 else shape)
        args[name] = Arg(v, v)
    reduction = str(rng.choice(["none", "sum", "mean"]))
    args["reduction"] = Arg(reduction, reduction)
    if entry != "forward":
        go = (rng.uniform(-2, 2, shape).astype(dtype) if reduction == "none" and rng.random() < 0.5
              else float(rng.uniform(-2, 2)))
        args["grad_output"] = Arg(go, go)
    if entry.endswith("_out"):
        out = _layout(rng, np.full(shape, np.nan, dtype))
        args["out"] = Arg(out, out)
    case = Case(entry, args)
    with np.errstate(all="ignore"):
        for _ in range(int(rng.choice([0, 1, 1, 2, 3]))):
            name = _pick(rng, list(args) + ["input", "inplace"])
            case.mutations.append(name)
            value = args[name].value if name in args else None
            if name == "inplace":
                case.entry = {"with_grad": "with_grad_inplace"}.get(case.entry, case.entry)
            elif name == "reduction":
                v = _pick(rng, ["MEAN", "", "mean\0", None, b"sum", "sum ", "none"])
                args[name] = Arg(v, v if v == "none" else INVALID)
            elif isinstance(value, np.ndarray) and _real(value) and (
                    value.dtype.kind in "fiub" or value.dtype.name == "bfloat16"):
                args[name] = _array_mutation(rng, name, value)
    return case


def _call_bce(case):
    a, e = case.args, case.entry
    x, t = a["input"].value, a["target"].value
    kw = {n: a[n].value for n in ("weight", "pos_weight", "reduction")}
    if e == "forward":
        return fastxent.binary_cross_entropy_with_logits(x, t, **kw)
    go = a["grad_output"].value
    if e.startswith("backward"):
        return fastxent.binary_cross_entropy_with_logits_backward(
            x, t, go, **kw, out=a["out"].value if "out" in a else None)
    return fastxent.binary_cross_entropy_with_logits_with_grad(
        x, t, go, **kw, inplace=e == "with_grad_inplace",
        out=a["out"].value if "out" in a else None)


def _check_bce_result(case, result):
    for name, arg in case.args.items():
        assert arg.meaning is not INVALID, f"{name}={_describe(arg.value)} was accepted"
    e = case.entry
    written = "input" if e == "with_grad_inplace" else "out" if e.endswith("_out") else None
    if written and case.args[written].meaning is not None:
        assert case.args[written].writable, f"{written}={_describe(case.args[written].value)} " \
                                            "was written"
    x = np.asarray(_meaning(case, "input"))
    kw = {n: _meaning(case, n) for n in ("weight", "pos_weight", "reduction")}
    kw = {n: (np.asarray(v) if isinstance(v, list) else v) for n, v in kw.items()}
    n = max(x.size, 1)
    if e == "forward":
        ref, mag = reference.binary_cross_entropy_with_logits(x, _meaning(case, "target"), **kw,
                                                              with_magnitude=True)
        assert_close(np.asarray(_np(result)), ref, loss_dtype(x.dtype), n, "bce loss", mag)
        return
    go = np.asarray(_meaning(case, "grad_output"))
    grad = np.asarray(_np(result if e.startswith("backward") else result[1]))
    ref_g, mag_g = reference.binary_cross_entropy_with_logits_backward(
        x, _meaning(case, "target"), go, **kw, with_magnitude=True)
    if np.isfinite(go.astype(np.float64)).all():
        assert_close(grad, ref_g, x.dtype, 1, "bce grad", mag_g)
    if e.startswith("with_grad"):
        ref, mag = reference.binary_cross_entropy_with_logits(x, _meaning(case, "target"), **kw,
                                                              with_magnitude=True)
        assert_close(np.asarray(_np(result[0])), ref, loss_dtype(x.dtype), n, "bce loss", mag)


def test_fuzz_bce(measurement):
    """binary_cross_entropy_with_logits and its backward / with_grad under the same hostile
    arguments: a clear exception (arrays intact) or the reference's result."""
    rng = np.random.default_rng(SEED + 3)
    cases = max(CASES // 2, 100)
    outcomes = {}
    for i in range(cases):
        case = _bce_case(rng)
        for arg in case.args.values():
            if isinstance(arg.meaning, np.ndarray):
                arg.meaning = arg.meaning.copy()
        before = {k: s for k, a in case.args.items() if (s := _snapshot(a.value)) is not None}
        try:
            try:
                with np.errstate(all="ignore"):
                    result = _call_bce(case)
            except (TypeError, ValueError, IndexError) as exc:
                _check_error(case, exc, before)
                outcome = type(exc).__name__
            else:
                with warnings.catch_warnings():  # the reference's mean of an empty array
                    warnings.simplefilter("ignore", RuntimeWarning)
                    _check_bce_result(case, result)
                outcome = "ok"
        except AssertionError as exc:
            args = {k: _describe(a.value) for k, a in case.args.items()}
            raise AssertionError(f"bce fuzz case {i}: {case.entry} mutated {case.mutations}: "
                                 f"{args}\n{exc}") from None
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert outcomes.get("ok", 0) > cases // 10, outcomes
    measurement(f"bce fuzz: {cases} cases (seed {SEED + 3}): " +
                ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))

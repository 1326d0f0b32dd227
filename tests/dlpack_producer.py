"""A DLPack producer written with ctypes from the specification, so every field a consumer must
honour can be set by hand (byte_offset, NULL strides or shape, flags, version, device, dtype
codes, ndim) and every call of the deleter is counted. Used by test_dlpack.py (the protocol)
and test_fuzz.py (hostile producers)."""

import ctypes

class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


DELETER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32),
                ("manager_ctx", ctypes.c_void_p), ("deleter", DELETER),
                ("flags", ctypes.c_uint64), ("dl_tensor", DLTensor)]


class DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", DELETER)]


_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.restype = ctypes.py_object
_capsule_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
_capsule_name = ctypes.pythonapi.PyCapsule_GetName
_capsule_name.restype = ctypes.c_char_p
_capsule_name.argtypes = [ctypes.py_object]

READ_ONLY, IS_COPIED = 1, 2
_CODES = {"i": 0, "u": 1, "f": 2, "c": 5, "b": 6}
_VERSIONED, _LEGACY = b"dltensor_versioned", b"dltensor"


class Producer:
    """Exports `array`'s memory (or the part given by `offset`/`shape`/`strides`, counted in
    elements from its start) through DLPack; counts deleter calls per exported tensor."""

    def __init__(self, array, *, legacy=False, flags=0, version=(1, 0), device=(1, 0),
                 dtype=None, offset=0, shape=None, strides="numpy", ndim=None,
                 null_shape=False, null_data=False):
        self.array = array  # the memory: kept alive by the producer
        self.legacy, self.flags, self.version, self.device = legacy, flags, version, device
        item = array.itemsize
        if dtype is None:
            kind = array.dtype.kind
            dtype = (4 if array.dtype.name == "bfloat16" else _CODES[kind], 8 * item, 1)
        self.dtype = dtype
        self.offset = offset
        self.shape = array.shape if shape is None else shape
        if strides == "numpy":
            strides = tuple(s // item for s in array.strides)
        self.strides = strides  # None: compact row-major (NULL)
        # ndim: a value other than len(shape) (the shape and stride arrays are then padded with
        # ones to it, so a consumer reading ndim entries stays inside them); null_shape: a NULL
        # shape pointer, which no valid producer sends for ndim > 0.
        self.ndim = len(self.shape) if ndim is None else ndim
        self.null_shape, self.null_data = null_shape, null_data  # NULL data pointer
        self.exported, self.deleted, self.capsules = [], {}, []

    def __dlpack_device__(self):
        return self.device

    def __dlpack__(self, *, max_version=None, copy=None, stream=None):
        versioned = not self.legacy and max_version is not None and max_version[0] >= 1
        m = DLManagedTensorVersioned() if versioned else DLManagedTensor()
        t = m.dl_tensor
        t.data = None if self.null_data else self.array.ctypes.data
        t.byte_offset = self.offset * self.array.itemsize
        t.device = DLDevice(*self.device)
        t.ndim = self.ndim
        t.dtype = DLDataType(*self.dtype)
        n = max(len(self.shape), self.ndim, 1)
        shape = (ctypes.c_int64 * n)(*self.shape, *[1] * (n - len(self.shape)))
        if not self.null_shape:
            t.shape = shape
        strides = None
        if self.strides is not None:
            strides = (ctypes.c_int64 * n)(*self.strides, *[1] * (n - len(self.strides)))
            t.strides = strides
        addr = ctypes.addressof(m)

        def deleter(ptr):
            self.deleted[ptr] = self.deleted.get(ptr, 0) + 1

        cb = DELETER(deleter)
        m.deleter = cb
        if versioned:
            m.major, m.minor = self.version
            m.flags = self.flags
        name = _VERSIONED if versioned else _LEGACY
        self.exported.append((m, shape, strides, cb, name))  # kept alive for the test's span
        capsule = _capsule_new(addr, name, None)  # no destructor: only the consumer frees
        self.capsules.append(capsule)
        return capsule

    def check_consumed(self):
        """Every export was consumed (capsule renamed) and released exactly once."""
        assert self.exported, "nothing was exported"
        for (m, *_, name), capsule in zip(self.exported, self.capsules):
            assert _capsule_name(capsule) == b"used_" + name
            assert self.deleted.get(ctypes.addressof(m)) == 1, "deleter not called exactly once"


class LegacyOnly(Producer):
    """A pre-1.0 producer: __dlpack__ takes no max_version."""

    def __dlpack__(self, stream=None):  # noqa: D105
        return Producer.__dlpack__(self)


class DLPackOnly:
    """Wraps an array so that only its DLPack protocol is visible (no buffer protocol): the
    bindings must read it through a capsule."""

    def __init__(self, a):
        self.a = a

    def __dlpack__(self, **kw):
        return self.a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()

"""DLPack in the bindings (cpp/bindings/dlpack.cc): any object with __dlpack__ /
__dlpack_device__ is read without a copy, and the results come back as the caller's kind of
array (NumPy in → NumPy out, torch in → torch out).

`Producer` (tests/dlpack_producer.py) is a DLPack producer written with ctypes from the
specification, so every field the consumer must honour can be set by hand and every call of the
deleter is counted: the consumer must rename each capsule it takes and call its deleter exactly
once, also when it then raises.
"""

import sys

import numpy as np
import pytest

import fastxent
from dlpack_producer import (_LEGACY, _VERSIONED, IS_COPIED, READ_ONLY, DLPackOnly, LegacyOnly,
                             Producer, _capsule_name)


def x45(dtype=np.float32):
    return (np.arange(20, dtype=np.float64).reshape(4, 5) % 7 - 3).astype(dtype)


T4 = np.array([0, 4, 2, 1])

# ---- the protocol -------------------------------------------------------------------------------


@pytest.mark.parametrize("cls,kw", [(Producer, {}), (Producer, {"legacy": True}),
                                    (LegacyOnly, {})], ids=["versioned", "legacy", "pre-1.0"])
def test_every_entry_point_consumes_and_releases(cls, kw):
    x = x45()
    px, pt = cls(x, **kw), cls(T4, **kw)
    loss = fastxent.cross_entropy(px, pt, reduction="none")
    np.testing.assert_array_equal(loss, fastxent.cross_entropy(x, T4, reduction="none"))
    assert isinstance(loss, np.ndarray)  # an unknown producer gets NumPy results
    grad = fastxent.cross_entropy_backward(px, pt)
    np.testing.assert_array_equal(grad, fastxent.cross_entropy_backward(x, T4))
    loss2, grad2 = fastxent.cross_entropy_with_grad(px, pt)
    np.testing.assert_array_equal(grad2, grad)
    np.testing.assert_array_equal(fastxent.logsumexp(px), fastxent.logsumexp(x))
    np.testing.assert_array_equal(fastxent.softmax(px), fastxent.softmax(x))
    px.check_consumed()
    pt.check_consumed()


def test_the_legacy_capsule_is_used_when_asked():
    p = Producer(x45(), legacy=True)
    fastxent.cross_entropy(p, T4)
    assert p.exported[0][-1] == _LEGACY
    q = Producer(x45())
    fastxent.cross_entropy(q, T4)
    assert q.exported[0][-1] == _VERSIONED


def test_byte_offset_and_null_strides():
    """Rows 1..3 of a (4, 5) array: data at the start, byte_offset = one row; no strides."""
    x = x45()
    p = Producer(x, offset=5, shape=(3, 5), strides=None)
    np.testing.assert_array_equal(fastxent.cross_entropy(p, T4[1:], reduction="none"),
                                  fastxent.cross_entropy(x[1:], T4[1:], reduction="none"))
    p.check_consumed()


@pytest.mark.parametrize("view", ["transposed", "reversed", "step", "zero-stride"])
def test_strides_in_elements(view):
    base = np.random.default_rng(0).standard_normal((6, 10))
    x = {"transposed": np.asfortranarray(base), "reversed": base[::-1, ::-1],
         "step": base[::2, ::3], "zero-stride": np.broadcast_to(base[:1], (6, 10))}[view]
    t = np.arange(x.shape[0]) % x.shape[1]
    p = Producer(x)
    np.testing.assert_array_equal(fastxent.cross_entropy(p, t, reduction="none"),
                                  fastxent.cross_entropy(x, t, reduction="none"))
    np.testing.assert_array_equal(fastxent.cross_entropy_backward(p, t),
                                  fastxent.cross_entropy_backward(x, t))


def test_writes_go_into_the_exported_memory():
    x = x45()
    out = np.zeros_like(x)
    p = Producer(out)
    result = fastxent.cross_entropy_backward(x, T4, out=p)
    assert result is p
    np.testing.assert_array_equal(out, fastxent.cross_entropy_backward(x, T4))
    p.check_consumed()


def test_read_only_flag():
    x = x45()
    out = np.zeros_like(x)
    p = Producer(out, flags=READ_ONLY)
    with pytest.raises(ValueError, match="out.*read-only"):
        fastxent.cross_entropy_backward(x, T4, out=p)
    assert not out.any()
    p.check_consumed()
    r = Producer(x, flags=READ_ONLY)  # read-only logits are fine to read
    fastxent.cross_entropy(r, T4)
    r.check_consumed()


def test_numpy_read_only_array_through_dlpack():
    """NumPy signals read-only only through the versioned capsule."""

    out = np.zeros((4, 5), np.float32)
    out.flags.writeable = False
    before = sys.getrefcount(out)
    with pytest.raises(ValueError, match="read-only"):
        fastxent.cross_entropy_backward(x45(), T4, out=DLPackOnly(out))
    assert sys.getrefcount(out) == before  # NumPy's deleter ran: its reference is gone
    x = x45()
    before = sys.getrefcount(x)
    for _ in range(100):
        fastxent.cross_entropy(DLPackOnly(x), T4)
    assert sys.getrefcount(x) == before


# ---- dtypes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, "bfloat16"])
def test_logit_dtypes(dtype):
    if dtype == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        dtype = ml_dtypes.bfloat16
    x = x45(dtype)
    p = Producer(x)
    np.testing.assert_array_equal(fastxent.cross_entropy_backward(p, T4),
                                  fastxent.cross_entropy_backward(x, T4))
    p.check_consumed()


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                   np.uint32, np.uint64])
def test_every_integer_target_dtype(dtype):
    p = Producer(T4.astype(dtype))
    np.testing.assert_array_equal(fastxent.cross_entropy(x45(), p, reduction="none"),
                                  fastxent.cross_entropy(x45(), T4, reduction="none"))
    p.check_consumed()


@pytest.mark.parametrize("dtype,match", [
    ((5, 64, 1), "complex64"), ((2, 32, 2), "float32x2"), ((2, 8, 1), "float8"),
    ((3, 64, 1), "opaque64"), ((9, 8, 1), "code 9")],
    ids=["complex", "lanes", "float8", "opaque", "unknown"])
def test_unsupported_dtypes_release_the_tensor(dtype, match):
    p = Producer(x45(), dtype=dtype)
    with pytest.raises(TypeError, match=f"input: unsupported dtype.*{match}"):
        fastxent.cross_entropy(p, T4)
    p.check_consumed()


def test_bool_target_is_rejected():
    p = Producer(np.array([True, False, True, False]))
    with pytest.raises(TypeError, match="target"):
        fastxent.cross_entropy(x45(), p)
    p.check_consumed()


# ---- devices, versions, bad producers ---------------------------------------------------------


def test_cuda_array_in_a_cpu_build():
    p = Producer(x45(), device=(2, 0))
    with pytest.raises(TypeError, match="input.*CUDA"):
        fastxent.cross_entropy(p, T4)
    p.check_consumed()


def test_unknown_device_is_refused_before_export():
    p = Producer(x45(), device=(8, 0))  # Metal
    with pytest.raises(TypeError, match="input.*device type 8"):
        fastxent.cross_entropy(p, T4)
    assert not p.exported


def test_unsupported_major_version_is_released():
    p = Producer(x45(), version=(2, 0))
    with pytest.raises(TypeError, match="input.*DLPack 2.0"):
        fastxent.cross_entropy(p, T4)
    p.check_consumed()


def test_a_copy_is_refused():
    p = Producer(x45(), flags=IS_COPIED)
    with pytest.raises(TypeError, match="input.*copy"):
        fastxent.cross_entropy(p, T4)
    p.check_consumed()


def test_too_many_dimensions():
    x = np.zeros((1,) * 17 + (3,), np.float32)
    p = Producer(x)
    with pytest.raises(ValueError, match="input.*dimensions"):
        fastxent.logsumexp(p)
    p.check_consumed()


def test_bad_producers():
    class NotACapsule:
        def __dlpack__(self, **kw):
            return 42

        def __dlpack_device__(self):
            return (1, 0)

    class Failing(NotACapsule):
        def __dlpack__(self, **kw):
            raise BufferError("no export today")

    with pytest.raises(TypeError, match="input.*not a DLPack capsule"):
        fastxent.cross_entropy(NotACapsule(), T4)
    with pytest.raises(TypeError, match="input.*no export today"):
        fastxent.cross_entropy(Failing(), T4)


def test_a_consumed_capsule_is_not_read_twice():
    p = Producer(x45())
    capsule = p.__dlpack__(max_version=(1, 0))
    fastxent.cross_entropy(p, T4)  # consumes a fresh export

    class Replay:
        def __dlpack__(self, **kw):
            return p.capsules[1]  # already renamed "used_dltensor_versioned"

        def __dlpack_device__(self):
            return (1, 0)

    with pytest.raises(TypeError, match="input.*used_dltensor_versioned"):
        fastxent.cross_entropy(Replay(), T4)
    assert _capsule_name(capsule) == _VERSIONED  # never handed to fastxent: untouched


# ---- torch in → torch out (the NumPy-facing API) ----------------------------------------------


def test_torch_in_torch_out(torch):
    x = torch.tensor(x45())
    t = torch.tensor(T4)
    loss = fastxent.cross_entropy(x, t, reduction="none")
    assert isinstance(loss, torch.Tensor) and loss.device == x.device
    np.testing.assert_array_equal(loss.numpy(),
                                  fastxent.cross_entropy(x45(), T4, reduction="none"))
    for result in [fastxent.cross_entropy_backward(x, t), *fastxent.cross_entropy_with_grad(x, t),
                   fastxent.logsumexp(x), fastxent.log_softmax(x), fastxent.softmax(x)]:
        assert isinstance(result, torch.Tensor)
    np.testing.assert_array_equal(fastxent.softmax(x).numpy(), fastxent.softmax(x45()))


@pytest.mark.parametrize("tdtype", ["float16", "bfloat16", "float32", "float64"])
def test_torch_logit_dtypes(torch, tdtype):
    """Bitwise the NumPy path on the same values (DLPack code 4 is bfloat16)."""
    np_dtype = tdtype
    if tdtype == "bfloat16":
        np_dtype = pytest.importorskip("ml_dtypes").bfloat16
    xn = x45(np_dtype)
    x = torch.tensor(x45(np.float64)).to(getattr(torch, tdtype))
    grad = fastxent.cross_entropy_backward(x, torch.tensor(T4))
    assert grad.dtype == x.dtype
    ref = fastxent.cross_entropy_backward(xn, T4)
    np.testing.assert_array_equal(grad.view(torch.int16 if x.itemsize == 2 else x.dtype).numpy()
                                  .view(ref.dtype), ref)


@pytest.mark.parametrize("tdtype", ["int8", "int16", "int32", "int64", "uint8", "uint16",
                                    "uint32", "uint64"])
def test_torch_integer_targets(torch, tdtype):
    t = torch.tensor(T4).to(getattr(torch, tdtype))
    np.testing.assert_array_equal(
        fastxent.cross_entropy(torch.tensor(x45()), t, reduction="none").numpy(),
        fastxent.cross_entropy(x45(), T4, reduction="none"))


def test_torch_strided_and_offset_views(torch):
    base = torch.randn(9, 14, dtype=torch.float64)
    x = base[1::2, 3::2]  # storage offset and strides
    t = torch.tensor([0, 1, 5, 2])
    np.testing.assert_array_equal(fastxent.cross_entropy_backward(x, t).numpy(),
                                  fastxent.cross_entropy_backward(x.numpy(), t.numpy()))


def test_torch_requires_grad_input_and_inplace(torch):
    x = torch.tensor(x45(), requires_grad=True)
    fastxent.cross_entropy(x, torch.tensor(T4))  # read through a detached view
    y = torch.tensor(x45())
    ptr = y.data_ptr()
    loss, grad = fastxent.cross_entropy_with_grad(y, torch.tensor(T4), inplace=True)
    assert grad is y and y.data_ptr() == ptr
    np.testing.assert_array_equal(y.numpy(), fastxent.cross_entropy_backward(x45(), T4))
    out = torch.empty(4, 5)
    assert fastxent.cross_entropy_backward(x45(), T4, out=out) is out


def test_torch_read_only_tensor_is_refused_as_output(torch):
    out = torch.zeros(4, 5)
    out_np = out.numpy()
    out_np.flags.writeable = False  # a read-only NumPy view of the same memory
    with pytest.raises(ValueError, match="read-only"):
        fastxent.cross_entropy_backward(x45(), T4, out=out_np)


def test_inplace_needs_a_writable_kind(torch):
    with pytest.raises(TypeError, match="input.*inplace|inplace.*input"):
        fastxent.cross_entropy_with_grad(Producer(x45()), T4, inplace=True)

"""Shared fixtures, the one tolerance table of the test suite, and the per-ISA runs."""

import math
import zlib

import numpy as np
import pytest

import fastxent
from fastxent import _core

try:
    import ml_dtypes
except ImportError:  # bfloat16 tests skip themselves (test_low_precision.py)
    ml_dtypes = None

# ---------------------------------------------------------------------------------------------
# Tolerances: ONE table, per dtype of the value compared (that of the logits for gradients and
# softmax outputs; float32 for the loss of float16/bfloat16 logits).
#
# Every comparison is against tests/reference.py evaluated in float64 on the *same* input
# values (a float32 input is widened exactly), so the only error measured is fastxent's own
# arithmetic. A value passes when
#       |got - ref| <= rtol(n) * mag + atol * max(mag)
# where n is the number of terms summed into one value (C for a row, C + rows for a reduced
# loss) and mag is the size of the terms the value is made of (reference.py's with_magnitude:
# a gradient entry p_j·A - B_j has mag p_j·A + B_j, so the entry at the target, which cancels
# when p_t ~ 1, is held to the size of its terms while every small p_j keeps a relative
# bound). Without a magnitude, mag = |ref| and the absolute term uses the array's largest
# finite |ref| (softmax family, fastxent-vs-fastxent comparisons).
#
#   float64: unit roundoff u = 1.1e-16. exp/log cost a few ulp, rounding x_j - m (|x_j - m| up
#     to 745) costs 745u = 8e-14 in exp(), the blocked sum of n terms at most n·u (5e-12 at
#     n = 5e4). rtol = 1e-10 covers these with margin. atol = 1e-15: the residue of 0·(...)
#     terms and underflow; without magnitudes 1e-12 of the largest value.
#   float32 (fastxent computes and accumulates in float32): u = 6e-8. Rounding x_j - m before
#     exp() errs by u·|x_j - m| <= 104u = 6e-6 relative (p_j below e^-104 is 0 in float32),
#     exp/log add a few ulp, and a blocked/pairwise sum of n terms adds an error growing like
#     sqrt(n)·u for independent roundings. So rtol(n) = 8e-6 + 1e-7·sqrt(n): 8e-6 at C = 2,
#     1.1e-5 at C = 1000, 3e-5 at C = 50257. atol = 1e-7 (about 2u) for flushed denormals and
#     0·(...) residues; without magnitudes, rtol(n) of the largest value. A kernel that formed
#     lse = m + log s and then subtracted a logit near 1e4 errs by ~1e-3: far outside.
#   float16 / bfloat16 (rows keyed by the dtype of the *value*: a loss or logsumexp of 16-bit
#     logits is float32 and uses the float32 row): fastxent widens the logits exactly, computes
#     in float32 and rounds each gradient / log_softmax / softmax value once to the 16-bit
#     output (round-to-nearest-even). So the float32 terms above apply unchanged, and the one
#     rounding of the stored value adds at most half an ulp of the output, relative to the value
#     itself (not to its magnitude: a cancelled gradient entry is stored to its own precision):
#       rtol_store = 1 ulp at the bottom of a binade = 2^-10 (float16, 10 stored bits) or 2^-7
#       (bfloat16, 7 stored bits), twice the half-ulp rounding bound 2^-11 / 2^-8, which leaves
#       room for the float32 error moving a value across a rounding boundary;
#       atol_store = half the spacing of the subnormal grid, where the relative bound stops:
#       float16's grid is 2^-24 (values below 2^-14 = 6.1e-5 are subnormal, which gradients
#       divided by a batch size reach easily), so 2^-25 = 3e-8; bfloat16 has float32's
#       exponent range, grid 2^-133, so 2^-134 (the float32 atol already covers it).
#   rtol_store = atol_store = 0 for float32/float64: their outputs are the computed values.
# ---------------------------------------------------------------------------------------------
_F32 = dict(rtol=8e-6, rtol_per_sqrt_n=1e-7, atol=1e-7, atol_no_mag=None)
TOLERANCES = {
    np.dtype(np.float64): dict(rtol=1e-10, rtol_per_sqrt_n=0.0, atol=1e-15, atol_no_mag=1e-12,
                               rtol_store=0.0, atol_store=0.0),
    np.dtype(np.float32): dict(_F32, rtol_store=0.0, atol_store=0.0),
    np.dtype(np.float16): dict(_F32, rtol_store=2.0**-10, atol_store=2.0**-25),
}
if ml_dtypes is not None:
    TOLERANCES[np.dtype(ml_dtypes.bfloat16)] = dict(_F32, rtol_store=2.0**-7,
                                                    atol_store=2.0**-134)


def tolerance(dtype, n=1, magnitude=True):
    """(rtol, atol) for values of `dtype` each produced by summing about `n` terms; atol is a
    fraction of the largest magnitude (of the largest |value| when magnitude is False). The
    16-bit rows add store_tolerance(dtype) on top."""
    t = TOLERANCES[np.dtype(dtype)]
    rtol = t["rtol"] + t["rtol_per_sqrt_n"] * math.sqrt(max(n, 1))
    atol = t["atol"] if magnitude else (t["atol_no_mag"] or rtol)
    return rtol, atol


def store_tolerance(dtype):
    """(rtol of |value|, absolute) for rounding a computed value once to `dtype`."""
    t = TOLERANCES[np.dtype(dtype)]
    return t["rtol_store"], t["atol_store"]


def assert_close(got, ref, dtype, n=1, what="value", magnitude=None, check_dtype=True,
                 rounded_terms=0, rounded_scale=0.0):
    """Compare `got` (fastxent, a value of dtype `dtype`) with the float64 reference `ref`.

    Shapes must be equal, the result dtype must be `dtype` (check_dtype), NaNs must sit in the
    same places, infinities must be equal (sign included), and finite values must agree within
    tolerance(dtype, n) relative to `magnitude`, plus store_tolerance(dtype) relative to the
    value (see the table above).

    rounded_terms: a value summed from terms that were rounded to `dtype` before the sum (a
    matrix product of 16-bit operands, a 16-bit running sum) carries, for each of the
    `rounded_terms` roundings, store_tolerance relative to its terms: rtol_store·magnitude +
    atol_store·rounded_scale, where rounded_scale (scalar or per value) bounds the sum of the
    absolute values of the factors multiplying the rounded terms (0 for float32/float64).
    """
    assert isinstance(got, np.ndarray), f"{what}: expected an ndarray, got {type(got).__name__}"
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != reference {ref.shape}"
    if check_dtype:
        assert got.dtype == np.dtype(dtype), f"{what}: dtype {got.dtype} != {np.dtype(dtype)}"
    g = got.astype(np.float64)
    nan_g, nan_r = np.isnan(g), np.isnan(ref)
    assert np.array_equal(nan_g, nan_r), (
        f"{what}: NaN at {np.argwhere(nan_g != nan_r)[:5].tolist()} differs "
        f"(got NaNs {int(nan_g.sum())}, reference NaNs {int(nan_r.sum())})")
    inf_r = np.isinf(ref)
    assert np.array_equal(g[inf_r], ref[inf_r]) and not np.isinf(g[~inf_r]).any(), (
        f"{what}: infinities differ: got {g[inf_r | np.isinf(g)][:5]} "
        f"reference {ref[inf_r | np.isinf(g)][:5]}")
    fin = np.isfinite(ref)
    if not fin.any():
        return
    rtol, atol = tolerance(dtype, n, magnitude is not None)
    rtol_store, atol_store = store_tolerance(dtype)
    mag = np.abs(ref[fin]) if magnitude is None else np.asarray(magnitude, np.float64)[fin]
    scale = float(np.max(mag))
    err = np.abs(g[fin] - ref[fin])
    bound = rtol * mag + atol * scale + rtol_store * np.abs(ref[fin]) + atol_store
    if rounded_terms:
        rounded = np.broadcast_to(np.asarray(rounded_scale, np.float64), ref.shape)[fin]
        bound = bound + rounded_terms * (rtol_store * mag + atol_store * rounded)
    bad = err > bound
    if bad.any():
        i = int(np.argmax(err - bound))
        idx = np.argwhere(fin)[i].tolist()
        store = (f", stored: {rtol_store:.2e} of |value| + {atol_store:.2e}"
                 if rtol_store or atol_store else "")
        raise AssertionError(
            f"{what}: {int(bad.sum())}/{bad.size} values out of tolerance (rtol={rtol:.2e} of "
            f"magnitude, atol={atol:.2e}*{scale:.3e}{store}); worst at {idx}: got "
            f"{g[fin][i]!r}, reference {ref[fin][i]!r}, magnitude {mag[i]!r}")


def assert_bitwise_equal(a, b, what="value"):
    """Same shape, dtype and bytes (NaNs included)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (
        f"{what}: {a.shape}/{a.dtype} vs {b.shape}/{b.dtype}")
    same = np.ascontiguousarray(a).view(np.uint8) == np.ascontiguousarray(b).view(np.uint8)
    assert same.all(), f"{what}: bytes differ ({int((~same).sum())} bytes)"


def assert_same_buffer(result, buffer, what="result"):
    """`result` is `buffer` written in place (same memory, shape and dtype); empty arrays share
    no memory, so for them the data pointer is compared."""
    assert isinstance(result, np.ndarray), f"{what}: not an ndarray"
    assert result.shape == buffer.shape and result.dtype == buffer.dtype, what
    if buffer.size:
        assert np.shares_memory(result, buffer), f"{what}: not written into the given buffer"
    else:
        assert result.__array_interface__["data"][0] == buffer.__array_interface__["data"][0], what


@pytest.fixture
def rng(request):
    """A generator seeded from the test's id, so every test draws its own reproducible data."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)


@pytest.fixture(scope="session")
def torch():
    """torch if importable (CPU), else the test is skipped; torch is installed in CI."""
    return pytest.importorskip("torch")


@pytest.fixture
def threads():
    """Yields fastxent.set_num_threads and restores the thread count afterwards."""
    before = fastxent.get_num_threads()
    try:
        yield fastxent.set_num_threads
    finally:
        fastxent.set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# Every ISA runs the parity suite (STYLE.md §4). A module marked `pytestmark =
# pytest.mark.every_isa` has each of its tests collected once per instruction set this CPU
# offers (fastxent._core.available_cpu_isas(), e.g. avx512, avx2, scalar), with the ISA as the
# first part of the test id (test_x[avx2-f32-...]); the autouse fixture below switches the
# kernels with fastxent._core.set_cpu_isa for the test and restores the previous choice after.
# A test of such a module opts out with @pytest.mark.every_isa(False) and runs on the ISA the
# process picked (FASTXENT_ISA or CPUID), like every test of an unmarked module.
# ---------------------------------------------------------------------------------------------
CPU_ISAS = tuple(_core.available_cpu_isas())


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "every_isa(enabled=True): run each test once per available CPU ISA")


def pytest_generate_tests(metafunc):
    marker = metafunc.definition.get_closest_marker("every_isa")
    if marker is not None and (marker.args[:1] or (True,))[0]:
        metafunc.parametrize("cpu_isa", CPU_ISAS, indirect=True, ids=str)


@pytest.fixture(autouse=True)
def cpu_isa(request):
    """The ISA the test runs on: the parametrized one (every_isa modules), switched on for the
    test and restored afterwards; else the process default, left alone."""
    before = _core.cpu_isa()
    isa = getattr(request, "param", None)
    if isa is None:
        yield before
        return
    _core.set_cpu_isa(isa)
    try:
        assert _core.cpu_isa() == fastxent.info()["isa"] == isa
        yield isa
    finally:
        _core.set_cpu_isa(before)


# ---------------------------------------------------------------------------------------------
# Measurements worth seeing on every run (the vector exp's ulp errors per ISA): a test calls
# measurement("line") and the line is printed in a section at the end of the run.
# ---------------------------------------------------------------------------------------------
_MEASUREMENTS = []


@pytest.fixture
def measurement(record_property):
    """measurement(line): print `line` in the run's summary (and record it in JUnit XML)."""
    def add(line):
        _MEASUREMENTS.append(line)
        record_property("measurement", line)
    return add


def pytest_terminal_summary(terminalreporter):
    if _MEASUREMENTS:
        terminalreporter.section("measurements")
        for line in _MEASUREMENTS:
            terminalreporter.write_line(line)

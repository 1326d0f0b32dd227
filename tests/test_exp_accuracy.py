"""Accuracy of the kernels' vector exp, fastxent._core.vector_exp(x, out), on every ISA.

Every softmax, loss and gradient value goes through this exp, so its error bounds the float32
and float64 rows of the tolerance table (conftest.py). Error is measured in ulp of the output
type at the exact value: |got - exp(x)| / ulp(exp(x)), ulp(y) = 2^(floor(log2 y) - 23) for
float32 (2^-149 below 2^-126: the subnormal grid), 2^(floor(log2 y) - 52) for float64 (2^-1074
below 2^-1022). The reference is exp in float64 for float32 results (its own error is 2^-29 of
a float32 ulp) and in np.longdouble (x87 80-bit, 11 more bits) for float64 results.

Inputs: float32, every 61st bit pattern of [-104, 89] (36.7 million values; 61 is prime, so
every residue of the low mantissa bits is visited) plus edges; float64, 4 million random values
over [-746, 710] (weighted to [-1, 1] and to the subnormal results) plus edges. Edges: ±0,
±tiny, the points (k + 1/2)·ln 2 where the range reduction switches n (|r| largest) and their
neighbours, the overflow and underflow thresholds.

Measured maximum error in ulp (x86-64, glibc libm for the scalar ISA), and the bound asserted:

    ISA      float32 normal  float32 subnormal  float64 normal  float64 subnormal
    avx512   1.246           0.760              0.876 (0.890)   0.888
    avx2     1.246           0.760              0.876 (0.890)   0.888
    scalar   0.502 (libm)    0.500              0.506 (libm)    0.501
    bound    2               1                  1.5             1

(in parentheses: the maximum over 40 million further random values. normal: results >= the
smallest normal; subnormal: results below it, the error counted on the subnormal grid.) The
avx512/avx2 kernels build 2^n·e^r with Cephes' minimax polynomial (float32) or the Taylor
series to r^13 (float64) and scale by 2^n with gradual underflow: none of the ISAs flushes
subnormal results to zero. Exact cases: exp(±0) = exp(±tiny) = 1, exp(-inf) = 0,
exp(+inf) = inf, NaN -> NaN, exactly 0 for x < -104 (float32) / x <= -746 (float64), inf for
x >= 88.7229 / 709.79. (exp(x) rounds to 0 below -103.972 / -745.133; between there and
-104 / -746 the subnormal bound allows 0 or the smallest subnormal.) The measured maxima are
also printed at the end of the run (conftest.py's measurement fixture) and in every assertion
message.
"""

import math

import numpy as np
import pytest

from fastxent import _core

pytestmark = pytest.mark.every_isa  # each test once per CPU ISA (conftest.py)

BOUND_NORMAL = {np.float32: 2.0, np.float64: 1.5}  # ulp, results >= the smallest normal
BOUND_SUBNORMAL = 1.0  # ulp of the subnormal grid
F32_STRIDE = 61
F32_CHUNK = 1 << 22
FMAX32, FMAX64 = float(np.finfo(np.float32).max), float(np.finfo(np.float64).max)


def vexp(x):
    out = np.full_like(x, 12345.0)
    _core.vector_exp(x, out)
    return out


def ulp_errors(got, ref, dtype):
    """(ulp error, subnormal mask) of `got` against `ref` (float64 or longdouble), on the
    finite results of at most the largest finite value of `dtype`."""
    info = np.finfo(dtype)
    _, e = np.frexp(ref)  # ref = m·2^e, m in [0.5, 1): floor(log2 ref) = e - 1
    exp_min, mant = int(np.log2(info.smallest_normal)), info.nmant
    ulp = np.ldexp(np.ones_like(ref), np.maximum(e - 1, exp_min) - mant)
    err = np.abs(got.astype(ref.dtype) - ref) / ulp
    return err.astype(np.float64), ref < info.smallest_normal


def range_reduction_edges(dtype, kmin, kmax):
    """x = (k + 1/2)·ln 2, where n = round(x·log2 e) switches, and 3 neighbours each side."""
    x = ((np.arange(kmin, kmax) + 0.5) * math.log(2)).astype(dtype)
    return np.concatenate([x] + [np.nextafter(x, s * np.inf, dtype=dtype) for s in (-1, 1)]
                          + [x + d * np.spacing(np.abs(x)) for d in (-3, -2, 2, 3)])


def edge_values(dtype):
    t = np.finfo(dtype)
    tiny = [0.0, -0.0, float(t.smallest_subnormal), float(t.smallest_normal), 1e-30, 2.0**-25,
            2.0**-60, 1.0, 0.5, 2.0, 10.0, 20.0, 50.0, 80.0]
    x = np.array(tiny + [-v for v in tiny], dtype)
    if dtype == np.float32:
        thresholds = [88.72283, 88.7228391, 88.72284, -87.33654, -87.336548, -103.278929,
                      -103.972077, -103.97208, -103.99, -104.0]
        edges = range_reduction_edges(dtype, -150, 128)
    else:
        thresholds = [709.782712893384, 709.78271289338397, -708.3964185322641, -744.44007,
                      -745.1332191019411, -745.13321910194122, -745.2, -745.9]
        edges = range_reduction_edges(dtype, -1075, 1024)
    x = np.concatenate([x, np.array(thresholds, dtype), edges])
    lo, hi = (-104, 89) if dtype == np.float32 else (-746, 710)
    return x[(x >= lo) & (x <= hi)]


class Worst:
    """Running maximum of the ulp error over chunks, remembering its x."""

    def __init__(self):
        self.err, self.x = 0.0, None

    def update(self, err, x, mask):
        if mask.any():
            i = int(np.argmax(np.where(mask, err, -1.0)))
            if err[i] > self.err:
                self.err, self.x = float(err[i]), x[i]


def check_chunk(x, got, ref, dtype, normal, subnormal, overflow):
    """Record the chunk's worst errors; overflowing results (above the largest finite value)
    must be inf or that largest value, and no finite x may give NaN."""
    assert not np.isnan(got).any(), f"exp gives NaN at x = {x[np.isnan(got)][:5]}"
    big = ref > np.finfo(dtype).max
    fine = np.isinf(got[big]) | (got[big] == np.finfo(dtype).max)
    assert fine.all(), f"exp overflows to {got[big][~fine][:5]} at x = {x[big][~fine][:5]}"
    err, sub = ulp_errors(np.where(big, 0, got), np.where(big, 0, ref), dtype)
    assert not np.isinf(got[~big]).any(), f"exp gives inf at x = {x[~big & np.isinf(got)][:5]}"
    normal.update(err, x, ~big & ~sub)
    subnormal.update(err, x, ~big & sub)
    overflow |= bool(big.any())
    return overflow


def assert_bounds(isa, dtype, normal, subnormal, measurement):
    name = np.dtype(dtype).name
    line = (f"vector_exp {isa:7s} {name}: max {normal.err:.3f} ulp (normal results, at x = "
            f"{normal.x!r}), {subnormal.err:.3f} ulp of the subnormal grid (at x = "
            f"{subnormal.x!r})")
    measurement(line)
    assert normal.err <= BOUND_NORMAL[dtype], f"{line}; bound {BOUND_NORMAL[dtype]} ulp"
    assert subnormal.err <= BOUND_SUBNORMAL, f"{line}; bound {BOUND_SUBNORMAL} ulp"


def test_float32_sweep(cpu_isa, measurement):
    """Every 61st float32 in [-104, 89], and the edges, against exp in float64."""
    lo, hi = np.array([-104.0, 89.0], np.float32).view(np.uint32)
    bits = [(np.uint32(0x80000000), lo), (np.uint32(0), hi)]  # negatives, then positives
    normal, subnormal, overflow = Worst(), Worst(), False
    chunks = [edge_values(np.float32)]
    for start, stop in bits:
        for b in range(int(start), int(stop) + 1, F32_CHUNK * F32_STRIDE):
            end = min(b + F32_CHUNK * F32_STRIDE, int(stop) + 1)
            chunks.append(np.arange(b, end, F32_STRIDE, dtype=np.uint32).view(np.float32))
    count = 0
    for x in chunks:
        got = vexp(x)
        ref = np.exp(x.astype(np.float64))
        overflow = check_chunk(x, got, ref, np.float32, normal, subnormal, overflow)
        count += x.size
    assert count > 36_000_000 and overflow
    assert_bounds(cpu_isa, np.float32, normal, subnormal, measurement)


@pytest.fixture(scope="module")
def float64_sample():
    """4 million float64 x and exp(x) in long double."""
    if np.finfo(np.longdouble).nmant < 63:
        pytest.skip("np.longdouble is no wider than float64 here: no reference for float64 exp")
    rng = np.random.default_rng(20240607)
    x = np.concatenate([rng.uniform(-746.0, 710.0, 2_500_000), rng.uniform(-1.0, 1.0, 500_000),
                        rng.uniform(-0.35, 0.35, 250_000) * rng.random(250_000) ** 8,
                        rng.uniform(-746.0, -708.0, 500_000), rng.uniform(700, 710, 250_000),
                        edge_values(np.float64)])
    with np.errstate(over="ignore"):
        return x, np.exp(x.astype(np.longdouble))


def test_float64_sample(cpu_isa, measurement, float64_sample):
    x, ref = float64_sample
    normal, subnormal = Worst(), Worst()
    overflow = check_chunk(x, vexp(x), ref, np.float64, normal, subnormal, False)
    assert overflow
    assert_bounds(cpu_isa, np.float64, normal, subnormal, measurement)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_exact_cases(cpu_isa, dtype):
    t = np.finfo(dtype)
    small = 2.0 ** -(t.nmant + 3)  # exp(±small) = 1 ± small rounds to 1
    one = np.array([0.0, -0.0, t.smallest_subnormal, -t.smallest_subnormal, small, -small], dtype)
    assert (vexp(one) == 1).all(), vexp(one)
    if dtype == np.float32:
        zero = [-np.inf, -t.max, -1e30, -1000.0, -105.0, -104.00001, np.nextafter(
            np.float32(-104), np.float32(-np.inf))]
        inf = [np.inf, t.max, 1e30, 1000.0, 89.0, 88.8, 88.73, 88.7229]
    else:
        zero = [-np.inf, -t.max, -1e300, -1e4, -750.0, -746.0, np.nextafter(-746.0, -np.inf),
                -745.2]
        inf = [np.inf, t.max, 1e300, 1e4, 711.0, 710.0, 709.8, 709.79]
    zero, inf = np.array(zero, dtype), np.array(inf, dtype)
    got = vexp(zero)
    assert (got == 0).all() and not np.signbit(got).any(), dict(zip(zero.tolist(), got.tolist()))
    got = vexp(inf)
    assert np.isposinf(got).all(), dict(zip(inf.tolist(), got.tolist()))
    bits = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FA00000, 0xFFFFFFFF], np.uint32) \
        if dtype == np.float32 else \
        np.array([0x7FF8000000000000, 0xFFF8000000000000, 0x7FF0000000000001,
                  0xFFFFFFFFFFFFFFFF], np.uint64)
    nan = bits.view(dtype)
    assert np.isnan(vexp(nan)).all(), vexp(nan)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_lanes_and_tails_agree(cpu_isa, dtype, rng):
    """A value's exp does not depend on its position: any length (vector tails), any start
    (misaligned), same bits as in one long call."""
    x = np.concatenate([rng.uniform(-110, 90, 97), [np.nan, -np.inf, np.inf, 0.0]]).astype(dtype)
    full = vexp(x)
    for n in range(0, 41):
        assert np.array_equal(vexp(x[:n].copy()), full[:n], equal_nan=True), n
    for off in range(1, 9):
        buf = np.empty(x.size + off, dtype)[off:]
        buf[...] = x
        assert np.array_equal(vexp(buf), full, equal_nan=True), off
    two_d = vexp(x[:100].reshape(10, 10))
    assert np.array_equal(two_d.reshape(-1), full[:100], equal_nan=True)


def test_argument_errors(cpu_isa):
    x = np.zeros(8, np.float32)
    with pytest.raises(TypeError, match="x: expected float32 or float64"):
        _core.vector_exp(x.astype(np.float16), x.astype(np.float16))
    with pytest.raises(ValueError, match="out"):
        _core.vector_exp(x, np.zeros(7, np.float32))
    with pytest.raises(ValueError, match="out"):
        _core.vector_exp(x, np.zeros(8, np.float64))
    with pytest.raises(ValueError, match="x: must be C-contiguous"):
        _core.vector_exp(np.zeros(16, np.float32)[::2], x)

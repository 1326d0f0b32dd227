"""Accuracy of the binary cross-entropy kernels' vector log1p, fastxent._core.vector_log1p(x,
out), on every ISA, over its whole domain [0, 1] (the kernels take log1p(exp(-|x|)) of logits).

Error in ulp of the output type at the exact value, as tests/test_exp_accuracy.py measures the
exp (its ulp_errors and Worst are reused): the reference is log1p in float64 for float32 results
and in np.longdouble (x87 80-bit) for float64 results. The results never fall below the
smallest normal except where log1p(x) = x (tiny x), which must then be exact.

Inputs: float32, every 61st bit pattern of [0, 1] (17.5 million values, every residue of the low
mantissa bits) plus edges; float64, 4 million random values (uniform, and log-uniform down to
1e-300) plus edges. Edges: 0, the smallest subnormal and normal, powers of two, 1 and its
neighbour, the points where s = x / (2 + x) crosses a binade.

Measured maximum error in ulp (x86-64; libm's log1pf / log1p on the scalar ISA), and the bound
asserted:

    ISA      float32   float64
    avx512   1.943     1.962
    avx2     1.943     1.962
    scalar   0.797     0.832
    bound    2.5       2.5

The SIMD result is t + t·z·Q(z) with t = 2x / (2 + x) = 2s: t carries two roundings (2 + x and
the division), each up to half an ulp relative to t, and the final fused multiply-add one more,
so about 2 ulp at the bottom of a binade; the correction t·z·Q is at most 4% of the result, so
its own error stays far below an ulp (see cpp/src/cpu/log1p_poly.h). In the loss, log1p(e) is
summed with terms of its own size or larger, so 2 ulp is a 2.4e-7 relative error there, well
inside the float32 row of the tolerance table. The maxima are also printed at the end of the run.
"""

import numpy as np
import pytest

from fastxent import _core
from test_exp_accuracy import Worst, ulp_errors

pytestmark = pytest.mark.every_isa  # each test once per CPU ISA (conftest.py)

BOUND = 2.5  # ulp
STRIDE = 61
CHUNK = 1 << 22


def vlog1p(x):
    out = np.full_like(x, 12345.0)
    _core.vector_log1p(x, out)
    return out


def edges(dtype):
    t = np.finfo(dtype)
    powers = 2.0 ** -np.arange(0, 60)
    x = np.concatenate([[0.0, t.smallest_subnormal, t.smallest_normal, 1.0, 1e-30, 1e-10],
                        powers, [np.nextafter(dtype(1), dtype(0))],
                        # s = x / (2 + x) = 2^-k  <=>  x = 2^(1-k) / (1 - 2^-k)
                        [2.0 ** (1 - k) / (1 - 2.0 ** -k) for k in range(2, 30)]]).astype(dtype)
    return np.concatenate([x, np.nextafter(x, dtype(1)), np.nextafter(x, dtype(0))])


def check(x, got, ref, dtype, worst):
    assert not np.isnan(got).any(), f"log1p gives NaN at x = {x[np.isnan(got)][:5]}"
    err, sub = ulp_errors(got, ref, dtype)
    # Below the smallest normal log1p(x) = x exactly (the result is x rounded, i.e. x).
    assert np.array_equal(got[sub], x[sub]), f"log1p(x) != x for subnormal x {x[sub][:5]}"
    worst.update(err, x, ~sub)


def report(isa, dtype, worst, measurement):
    line = (f"vector_log1p {isa:7s} {np.dtype(dtype).name}: max {worst.err:.3f} ulp over [0, 1] "
            f"(at x = {worst.x!r})")
    measurement(line)
    assert worst.err <= BOUND, f"{line}; bound {BOUND} ulp"


def test_float32_sweep(cpu_isa, measurement):
    hi = int(np.array(1.0, np.float32).view(np.uint32))
    worst, count = Worst(), 0
    chunks = [edges(np.float32)]
    chunks += [np.arange(b, min(b + CHUNK * STRIDE, hi + 1), STRIDE, dtype=np.uint32)
               .view(np.float32) for b in range(0, hi + 1, CHUNK * STRIDE)]
    for x in chunks:
        x = x[(x >= 0) & (x <= 1)]
        check(x, vlog1p(x), np.log1p(x.astype(np.float64)), np.float32, worst)
        count += x.size
    assert count > 17_000_000
    report(cpu_isa, np.float32, worst, measurement)


def test_float64_sample(cpu_isa, measurement):
    if np.finfo(np.longdouble).nmant < 63:
        pytest.skip("np.longdouble is no wider than float64 here: no reference for float64")
    rng = np.random.default_rng(20241123)
    x = np.concatenate([rng.random(3_000_000), 10.0 ** rng.uniform(-300, 0, 1_000_000),
                        edges(np.float64)])
    x = x[(x >= 0) & (x <= 1)]
    worst = Worst()
    check(x, vlog1p(x), np.log1p(x.astype(np.longdouble)), np.float64, worst)
    report(cpu_isa, np.float64, worst, measurement)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_exact_cases_and_tails(cpu_isa, dtype, rng):
    """log1p(0) = 0 exactly, NaN gives NaN, and a value's result does not depend on its lane
    position (tails, misaligned starts)."""
    x = np.array([0.0, np.nan, 1.0], dtype)
    got = vlog1p(x)
    assert got[0] == 0 and not np.signbit(got[0]) and np.isnan(got[1])
    x = rng.random(67).astype(dtype)
    full = vlog1p(x)
    for n in range(0, 40):
        assert np.array_equal(vlog1p(x[:n].copy()), full[:n]), n
    for off in range(1, 9):
        buf = np.empty(x.size + off, dtype)[off:]
        buf[...] = x
        assert np.array_equal(vlog1p(buf), full), off

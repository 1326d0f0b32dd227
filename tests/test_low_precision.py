"""float16 and bfloat16 logits (DESIGN.md §3: computed and accumulated in float32).

fastxent widens 16-bit logits exactly to float32 and computes as for float32 logits. Losses and
logsumexp come back in float32; gradients, log_softmax and softmax in the logits' dtype, each
value rounded once from float32 (round-to-nearest-even; a gradient entry at the target is
formed in float32 before that rounding). Three kinds of check:

  * against tests/reference.py evaluated in float64 on the exact (widened) input values, with
    the float16/bfloat16 rows of the tolerance table in conftest.py (the float32 error plus
    one rounding of the stored value);
  * bitwise against fastxent's own float32 result on the widened logits, rounded once by
    NumPy's / ml_dtypes' round-to-nearest-even cast: the whole contract in one comparison
    (computed in float32 from the widened values, one rounding, to nearest even);
  * against torch (test_matches_torch), whose CPU kernels store log_softmax and the lse they
    subtract in the 16-bit dtype: the bound there models that (see _torch_bounds).

Probability targets, weights and grad_output may be of another float dtype than the logits;
each is read at its own precision.
"""

import dataclasses

import numpy as np
import pytest

import fastxent
import reference
from checks import check_entry_points, grad_outputs
from conftest import assert_close, assert_same_buffer, store_tolerance
from problems import REDUCTIONS, Options, loss_dtype, make_logits, make_problem, option_grid
from test_strided import LAYOUTS
from test_threads import every_entry_point

pytestmark = pytest.mark.every_isa  # each test once per CPU ISA (conftest.py)

LOW = [pytest.param("float16", id="f16"), pytest.param("bfloat16", id="bf16")]
ANY_FLOAT = ("float16", "bfloat16", "float32", "float64")
SWEEP_OPTIONS = [
    pytest.param(Options(), id="defaults"),
    pytest.param(Options("index", True, "neg100", "none", 0.1), id="index-all"),
    pytest.param(Options("prob", True, "neg1", "sum", 0.1), id="prob-all"),
]


def dtype_of(name):
    """np.dtype for a dtype name; bfloat16 comes from ml_dtypes (skipped when missing)."""
    if name == "bfloat16":
        return np.dtype(pytest.importorskip("ml_dtypes").bfloat16)
    return np.dtype(name)


def as_float32(p):
    """Problem `p` with its logits widened (exactly) to float32; targets, weights and options
    are the very same objects."""
    return dataclasses.replace(p, x=p.x.astype(np.float32))


def assert_rounded_once(got, f32, what):
    """`got` (16-bit) is `f32` (fastxent's float32 result on the widened input) rounded to
    nearest even: same shape and dtype, same bits except that any NaN matches any NaN."""
    assert got.shape == f32.shape and f32.dtype == np.float32, what
    want = f32.astype(got.dtype)
    a = np.ascontiguousarray(got).view(np.uint16)
    b = np.ascontiguousarray(want).view(np.uint16)
    same = (a == b) | (np.isnan(got.astype(np.float32)) & np.isnan(f32))
    if not same.all():
        i = tuple(np.argwhere(~same)[0])
        raise AssertionError(
            f"{what}: {int((~same).sum())}/{same.size} values are not the float32 result "
            f"rounded to nearest even; first at {list(i)}: got {got[i]!r} "
            f"(bits {a[i]:#06x}), float32 {f32[i]!r} rounds to {want[i]!r} (bits {b[i]:#06x})")


def check_rounded_once(p, rng):
    """Every entry point of the 16-bit problem `p` against the float32 problem on the widened
    logits: losses bitwise equal (both float32), 16-bit outputs the float32 ones rounded once."""
    q, kw = as_float32(p), p.kwargs
    for go in grad_outputs(p, rng):
        l16, g16 = fastxent.cross_entropy_with_grad(p.x, p.target, go, **kw)
        l32, g32 = fastxent.cross_entropy_with_grad(q.x, q.target, go, **kw)
        assert l16.dtype == np.float32 and np.array_equal(l16, l32, equal_nan=True), (
            f"with_grad loss: {l16!r} != float32 path {l32!r}")
        assert_rounded_once(g16, g32, f"with_grad grad (grad_output={go!r})")
        assert_rounded_once(fastxent.cross_entropy_backward(p.x, p.target, go, **kw), g32,
                            f"backward (grad_output={go!r})")
        xi = p.x.copy()
        fastxent.cross_entropy_with_grad(xi, p.target, go, inplace=True, **kw)
        assert_rounded_once(xi, g32, "with_grad(inplace=True)")
    l16 = fastxent.cross_entropy(p.x, p.target, **kw)
    assert np.array_equal(l16, fastxent.cross_entropy(q.x, q.target, **kw), equal_nan=True)


# --- against the float64 reference, and rounded once from float32 ------------------------------

@pytest.mark.parametrize("opts", option_grid())
@pytest.mark.parametrize("shape", [(5, 17), (3, 7, 2, 5), (16,)], ids=["2d", "kdim", "1d"])
@pytest.mark.parametrize("dtype", LOW)
def test_every_option_combination(dtype, shape, opts, rng):
    p = make_problem(rng, shape, dtype_of(dtype), opts)
    check_entry_points(p, rng)
    check_rounded_once(p, rng)


@pytest.mark.parametrize("opts", SWEEP_OPTIONS)
@pytest.mark.parametrize("C,rows", [
    pytest.param(C, rows, id=f"{rows}x{C}")
    for C in (1, 7, 8, 15, 16, 17, 31, 32, 33, 1000, 50257) for rows in (1, 3, 64)
    if rows * C < 200_000])
@pytest.mark.parametrize("dtype", LOW)
def test_shape_sweep(dtype, C, rows, opts, rng):
    """Row lengths around the 8- and 16-lane conversions and vectors, and large vocabularies."""
    p = make_problem(rng, (rows, C), dtype_of(dtype), opts)
    check_entry_points(p, rng, full=rows * C < 20_000)
    check_rounded_once(p, rng)


@pytest.mark.parametrize("opts", [
    pytest.param(Options("index", True, "neg100", "mean", 0.1), id="index"),
    pytest.param(Options("prob", True, "default", "none", 0.1), id="prob")])
@pytest.mark.parametrize("shape,axis", [((2, 5, 3, 4), None), ((3, 1000, 5), None),
                                        ((4, 6, 33), -1), ((2, 3, 17, 4), -2), ((17,), -1)])
@pytest.mark.parametrize("dtype", LOW)
def test_kdim_and_axis(dtype, shape, axis, opts, rng):
    p = make_problem(rng, shape, dtype_of(dtype), opts, axis=axis)
    check_entry_points(p, rng)
    check_rounded_once(p, rng)


@pytest.mark.parametrize("opts", [
    pytest.param(Options("index", True, "neg100", "none", 0.1), id="index-none"),
    pytest.param(Options("prob", True, "default", "sum", 0.1), id="prob-sum")])
@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda f: f.__name__[1:])
@pytest.mark.parametrize("dtype", LOW)
def test_strided_logits(dtype, layout, opts, rng):
    """Transposed, sliced, reversed, misaligned (one 2-byte element off), broadcast,
    (B, V, T) / (B, T, V) and K-dim sliced views are read in place."""
    x, axis = layout(rng, dtype_of(dtype))
    p = make_problem(rng, None, x.dtype, opts, axis=axis, x=x)
    check_entry_points(p, rng)
    check_rounded_once(p, rng)


@pytest.mark.parametrize("other", ANY_FLOAT)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("dtype", LOW)
def test_probability_targets_of_another_dtype(dtype, smoothing, other, rng):
    """Probability targets of any float dtype with 16-bit logits (float32 targets with bfloat16
    logits, ...): read at their own precision."""
    opts = Options("prob", True, "default", "none", smoothing)
    p = make_problem(rng, (6, 33), dtype_of(dtype), opts, prob_dtype=dtype_of(other))
    assert p.target.dtype == dtype_of(other)
    check_entry_points(p, rng)
    check_rounded_once(p, rng)


@pytest.mark.parametrize("other", ANY_FLOAT)
@pytest.mark.parametrize("dtype", LOW)
def test_weight_and_grad_output_of_another_dtype(dtype, other, rng):
    """Weights and a per-row grad_output of any float dtype."""
    for red in REDUCTIONS:
        p = make_problem(rng, (7, 19), dtype_of(dtype), Options("index", True, "neg1", red, 0.1),
                         weight_dtype=dtype_of(other))
        go = rng.uniform(-2, 2, p.rows_shape).astype(dtype_of(other)) if red == "none" else \
            np.asarray(-1.25, dtype_of(other))
        ref_loss, mag_loss = reference.cross_entropy(p.x, p.target, **p.kwargs,
                                                     with_magnitude=True)
        ref_grad, mag = reference.cross_entropy_backward(p.x, p.target, go, **p.kwargs,
                                                         with_magnitude=True)
        loss, grad = fastxent.cross_entropy_with_grad(p.x, p.target, go, **p.kwargs)
        assert_close(loss, ref_loss, np.float32, p.terms(), f"loss {red}", mag_loss)
        assert_close(grad, ref_grad, p.x.dtype, p.C, f"grad {red}", mag)
        assert_close(fastxent.cross_entropy_backward(p.x, p.target, go, **p.kwargs), ref_grad,
                     p.x.dtype, p.C, f"backward {red}", mag)


@pytest.mark.parametrize("shape", [(1, 262144), (3, 100000), (2, 1000, 64)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", LOW)
def test_bitwise_identical_across_thread_counts(threads, dtype, shape, rng):
    """As test_threads.py for 16-bit logits: one huge row split in blocks, a few long rows, a
    K-dim layout; every entry point gives the same bits with 1, 2 and 3 threads."""
    p = make_problem(rng, shape, dtype_of(dtype), Options("index", True, "neg100", "mean", 0.1))
    threads(1)
    one = every_entry_point(p)
    for n in (2, 3):
        threads(n)
        for name, got in every_entry_point(p).items():
            assert np.array_equal(np.ascontiguousarray(got).view(np.uint8),
                                  np.ascontiguousarray(one[name]).view(np.uint8)), (
                f"{name} with {n} threads vs 1")


# --- edge values -------------------------------------------------------------------------------

def _masked(x, p):
    x[:, [1, 4]] = -np.inf
    if p.target.dtype.kind in "iu":
        p.target[(p.target == 1) | (p.target == 4)] = 0


def _minus_inf_target(x, p):
    if p.target.dtype.kind in "iu":
        p.target[2] = 3
    x[2, 3] = -np.inf


def _nan_row(x, p):
    if p.target.dtype.kind in "iu":
        p.target[1] = 0
    x[1, 5] = np.nan


def _all_minus_inf_row(x, p):
    x[3] = -np.inf


def _huge(x, p):  # ±1e4: float16 spacing 8 there, bfloat16 64; the loss keeps its digits
    x += np.where(np.arange(x.shape[0]) % 2, 1e4, -1e4)[:, None].astype(x.dtype)


def _near_float16_max(x, p):  # logits near ±6e4: x_j - m reaches -1.2e5, beyond float16
    x[...] = (np.sign(x.astype(np.float32)) * 6e4).astype(x.dtype)


def _all_ignored(x, p):
    if p.target.dtype.kind in "iu":
        p.target[...] = -100


def _peaked(x, p):  # p_j down to e^-100: 16-bit softmax and gradients underflow to 0
    x *= x.dtype.type(30)


@pytest.mark.parametrize("opts", [
    pytest.param(Options(kind, True, ign, red, ls), id=f"{kind}-{red}-ls{ls}")
    for kind, ign in (("index", "neg100"), ("prob", "default"))
    for red in REDUCTIONS for ls in (0.0, 0.1)])
@pytest.mark.parametrize("edit", [_masked, _minus_inf_target, _nan_row, _all_minus_inf_row,
                                  _huge, _near_float16_max, _all_ignored, _peaked],
                         ids=lambda f: f.__name__[1:])
@pytest.mark.parametrize("dtype", LOW)
def test_edge_values(dtype, edit, opts, rng):
    p = make_problem(rng, (6, 9), dtype_of(dtype), opts)
    edit(p.x, p)
    if reference.is_floating(p.target.dtype) and edit is _masked:
        p.target[:, 4] = 0  # y = 0 at a -inf logit: 0 * -inf is nan in torch and the reference
    check_entry_points(p, rng)
    check_rounded_once(p, rng)


@pytest.mark.parametrize("dtype", LOW)
def test_empty_and_one_class(dtype, rng):
    for shape in ((0, 7), (0, 7, 3), (2, 7, 0)):
        p = make_problem(rng, shape, dtype_of(dtype), Options("index", True, "neg100", "sum"))
        loss, grad = fastxent.cross_entropy_with_grad(p.x, p.target, **p.kwargs)
        assert loss == 0 and loss.dtype == np.float32
        assert grad.shape == shape and grad.dtype == p.x.dtype
    p = make_problem(rng, (7, 1), dtype_of(dtype), Options("index", True, "neg100", "none"))
    loss, grad = fastxent.cross_entropy_with_grad(p.x, p.target, **p.kwargs)
    assert (loss == 0).all() and (grad == 0).all()


@pytest.mark.parametrize("dtype", LOW)
def test_target_term_formed_before_rounding(dtype):
    """x = [10, 0, 0], target 0: p_0 = 0.99990920 and the gradient p_0 - 1 = -9.0792e-5. Rounding
    p_0 to 16 bits first would give 1 and a gradient of exactly 0; formed in float32 (absolute
    error a few 2^-24, p_0 being near 1) and then rounded, it keeps its digits."""
    dt = dtype_of(dtype)
    x = np.array([[10.0, 0.0, 0.0]], dt)
    ref = float(reference.cross_entropy_backward(x, np.array([0]))[0, 0])
    assert float(np.float32(1 + ref).astype(dt)) == 1  # p_0 itself rounds to 1 in 16 bits
    for grad in (fastxent.cross_entropy_backward(x, np.array([0])),
                 fastxent.cross_entropy_with_grad(x, np.array([0]))[1]):
        assert grad.dtype == dt
        bound = store_tolerance(dt)[0] * abs(ref) + 4 * 2.0**-24
        assert abs(float(grad[0, 0]) - ref) <= bound, (float(grad[0, 0]), ref)


def test_float16_outputs_round_past_its_range(rng):
    """x = [-6e4, 6e4]: log_softmax[0] = -1.2e5 is beyond float16 and rounds to -inf, softmax is
    exactly [0, 1]; the loss, being float32, is the finite 1.2e5 (torch returns a float16 inf)."""
    x = np.array([[-6e4, 6e4], [6e4, -6e4]], np.float16)
    t = np.array([0, 0])
    assert fastxent.log_softmax(x)[0].tolist() == [-np.inf, 0.0]
    assert fastxent.softmax(x).tolist() == [[0.0, 1.0], [1.0, 0.0]]
    loss, grad = fastxent.cross_entropy_with_grad(x, t, reduction="none")
    assert loss.dtype == np.float32 and loss.tolist() == [120000.0, 0.0]
    assert grad.tolist() == [[-1.0, 1.0], [0.0, 0.0]]


# --- logsumexp / log_softmax / softmax -----------------------------------------------------------

FUNCS = ("logsumexp", "log_softmax", "softmax")


def check_softmax_family(x, axis, what=""):
    """The three functions of 16-bit `x` over `axis`: logsumexp in float32, the others in x's
    dtype, against the reference and rounded once from the float32 path."""
    n = x.shape[axis]
    x32 = x.astype(np.float32)
    for name in FUNCS:
        f = getattr(fastxent, name)
        got, f32 = f(x, axis=axis), f(x32, axis=axis)
        out_dt = np.dtype(np.float32) if name == "logsumexp" else x.dtype
        assert_close(got, getattr(reference, name)(x, axis), out_dt, n, f"{name} {what}")
        if name == "logsumexp":
            assert np.array_equal(got, f32, equal_nan=True), f"{name} {what}: != float32 path"
        else:
            assert_rounded_once(got, f32, f"{name} {what}")


@pytest.mark.parametrize("shape", [(1,), (7,), (5, 1), (5, 16), (5, 17), (3, 1000), (1, 50257),
                                   (4, 5, 6), (2, 3, 4, 33)])
@pytest.mark.parametrize("dtype", LOW)
def test_softmax_family_every_axis(dtype, shape, rng):
    x = make_logits(rng, shape, dtype_of(dtype))
    for axis in range(-x.ndim, x.ndim):
        check_softmax_family(x, axis, f"axis={axis}")


@pytest.mark.parametrize("dtype", LOW)
def test_softmax_family_views_edges_and_out(dtype, rng):
    """Strided and misaligned views, -inf / NaN / ±1e4 rows, and out= buffers (strided too)."""
    dt = dtype_of(dtype)
    x = make_logits(rng, (40, 60), dt)
    for view in (x.T, x[:, ::2], x[::-1, ::-3]):
        for axis in (0, -1):
            check_softmax_family(view, axis, "view")
    buf = np.empty(6 * 35 + 1, dt)[1:].reshape(6, 35)
    buf[...] = make_logits(rng, (6, 35), dt)
    check_softmax_family(buf, -1, "misaligned")
    e = make_logits(rng, (5, 40), dt)
    e[0, ::3] = -np.inf
    e[1] = -np.inf
    e[2, 5] = np.nan
    e[3] += dt.type(1e4)
    e[4] -= dt.type(1e4)
    for i in range(5):  # row by row: each row's own scale sets the absolute term
        check_softmax_family(e[i:i + 1], -1, f"edge row {i}")
    for name in ("log_softmax", "softmax"):
        store = np.full((40, 120), 7.0, dt)
        out = store[:, ::2]
        res = getattr(fastxent, name)(x, out=out)
        assert_same_buffer(res, out, f"{name}(out=strided)")
        assert_rounded_once(out, getattr(fastxent, name)(x.astype(np.float32)), f"{name} out=")
        assert (store[:, 1::2] == 7.0).all()


# --- torch ---------------------------------------------------------------------------------------

def _to_torch(torch, a):
    a = np.ascontiguousarray(a)
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.uint16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def _torch_bounds(p, go, u):
    """How far torch's loss and gradient may be from the float64 reference (fastxent's own error
    is far smaller). torch's CPU log_softmax for 16-bit input accumulates in float32 but rounds
    lse = m + log s to the 16-bit dtype before subtracting it, and stores log p_j there: each
    log p_j is off by up to u·(|lse| + |log p_j|) (bitwise checked: a bfloat16 row with
    log p_t = -0.0016 and lse = 9.19 gives log p_t = 0). The loss, a weighted sum of -log p_c,
    is thus off by u·(loss magnitude)·(1 + |lse|) per row; the gradient p_j·A - B_j recovers p_j
    as exp(log p_j), off by u·p_j·A·(|lse| + |log p_j|), plus its own rounding."""
    kw, x, t = p.kwargs, p.x, p.target
    none_kw = dict(kw, reduction="none")
    ax = -1 if x.ndim == 1 else (kw["axis"] if kw["axis"] is not None else 1)
    lse = np.abs(reference.logsumexp(x, ax))
    _, mag_rows = reference.cross_entropy(x, t, **none_kw, with_magnitude=True)
    _, mag_loss = reference.cross_entropy(x, t, **kw, with_magnitude=True)
    row = mag_rows * (1 + lse)
    if kw["reduction"] == "none":
        loss_bound = row
    else:  # reduced like the reference's own magnitude (sum, or sum / the mean's denominator)
        loss_bound = np.sum(row) * (float(mag_loss) / np.sum(mag_rows) if np.sum(mag_rows) else 1)
    _, mag = reference.cross_entropy_backward(x, t, go, **kw, with_magnitude=True)
    grad_bound = mag * (1 + np.expand_dims(lse, ax) + np.abs(reference.log_softmax(x, ax)))
    return u * loss_bound, u * grad_bound


def _assert_within(got, want, bound, floor, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, what
    assert np.array_equal(np.isnan(got), np.isnan(want)), f"{what}: NaNs differ"
    fin = np.isfinite(want)
    assert np.array_equal(got[~fin], want[~fin]), f"{what}: infinities differ"
    err = np.abs(got - want)[fin]
    b = np.broadcast_to(bound, got.shape)[fin] + floor
    if (err > b).any():
        i = int(np.argmax(err - b))
        raise AssertionError(f"{what}: {int((err > b).sum())}/{err.size} values differ by more "
                             f"than the bound; worst: fastxent {got[fin][i]!r}, torch "
                             f"{want[fin][i]!r}, bound {b[i]!r}")


TORCH_OPTIONS = {"defaults": Options(), "index-all": Options("index", True, "neg100", "none", 0.1),
                 "index-sum": Options("index", False, "neg1", "sum", 0.0),
                 "prob-all": Options("prob", True, "default", "mean", 0.1),
                 "prob-none": Options("prob", False, "default", "none", 0.0)}
# Not with float16, 1000+ classes and smoothing: torch holds the smoothing term
# sum_c w_c·log p_c in float16, which then exceeds 65504, and its loss is inf (fastxent's float32
# loss is finite and matches the reference: test_shape_sweep).
TORCH_CASES = [
    pytest.param(dtype, shape, opts, id=f"{dtype_id}-{'x'.join(map(str, shape))}-{name}")
    for dtype, dtype_id in (("float16", "f16"), ("bfloat16", "bf16"))
    for shape in ((6, 11), (2, 5, 3, 4), (16, 1000), (2, 50257))
    for name, opts in TORCH_OPTIONS.items()
    if not (dtype == "float16" and shape[1] >= 1000 and opts.smoothing)]


@pytest.mark.parametrize("dtype,shape,opts", TORCH_CASES)
def test_matches_torch(torch, dtype, shape, opts, rng):
    """fastxent's loss (float32) and gradient (16-bit) against torch's (both 16-bit), within the
    error torch's own 16-bit storage of log_softmax explains (_torch_bounds) with u = one ulp
    of the dtype, and, for float16, two subnormal steps (2^-23) absolute: torch rounds its
    intermediate products (y_j·grad_output, ...) to float16 as well."""
    dt = dtype_of(dtype)
    p = make_problem(rng, shape, dt, opts)
    go = p.grad_output_rows(rng) if opts.reduction == "none" else np.asarray(-1.5, dt)
    F = torch.nn.functional
    xt = _to_torch(torch, p.x).requires_grad_(True)
    tt = _to_torch(torch, p.target.astype(np.int64) if p.target.dtype.kind in "iu" else p.target)
    kw = dict(p.kwargs)
    kw.pop("axis")
    w = kw.pop("weight")
    loss_t = F.cross_entropy(xt, tt, weight=None if w is None else _to_torch(torch, w), **kw)
    assert loss_t.dtype == xt.dtype  # torch keeps the 16-bit dtype; fastxent returns float32
    loss_t.backward(_to_torch(torch, go).reshape(loss_t.shape))
    t_loss = loss_t.detach().float().numpy()
    t_grad = xt.grad.float().numpy()
    u = store_tolerance(dt)[0]
    floor = 2.0**-23 if dt == np.float16 else 0.0
    loss_bound, grad_bound = _torch_bounds(p, go, u)
    loss, grad = fastxent.cross_entropy_with_grad(p.x, p.target, go, **p.kwargs)
    assert loss.dtype == loss_dtype(dt) and grad.dtype == dt
    _assert_within(loss, t_loss, loss_bound, 0.0, "with_grad loss vs torch")
    _assert_within(grad, t_grad, grad_bound, floor, "with_grad grad vs torch")
    _assert_within(fastxent.cross_entropy(p.x, p.target, **p.kwargs), t_loss, loss_bound, 0.0,
                   "cross_entropy vs torch")
    _assert_within(fastxent.cross_entropy_backward(p.x, p.target, go, **p.kwargs), t_grad,
                   grad_bound, floor, "cross_entropy_backward vs torch")


@pytest.mark.parametrize("shape,axis", [((6, 33), -1), ((6, 33), 0), ((2, 7, 3, 5), 1),
                                        ((3, 50257), -1)])
@pytest.mark.parametrize("dtype", LOW)
def test_softmax_family_matches_torch(torch, dtype, shape, axis, rng):
    """softmax agrees with torch's to one ulp (torch computes it in float32 and rounds it once
    too); log_softmax to the bound of _torch_bounds (torch rounds the lse it subtracts);
    logsumexp, float32 here and 16-bit in torch, to u·(|m| + |log s| + |lse|): torch forms
    m + log(sum(exp(x - m))) with 16-bit intermediates, so an lse near 0 still carries the
    rounding of m and log s."""
    dt = dtype_of(dtype)
    x = make_logits(rng, shape, dt)
    xt = _to_torch(torch, x)
    u = store_tolerance(dt)[0]
    floor = 2.0**-24 if dt == np.float16 else 0.0
    lse = reference.logsumexp(x, axis)
    logp = reference.log_softmax(x, axis)
    _assert_within(fastxent.softmax(x, axis=axis), torch.softmax(xt, axis).float().numpy(),
                   u * np.exp(logp), floor, "softmax vs torch")
    _assert_within(fastxent.log_softmax(x, axis=axis),
                   torch.log_softmax(xt, axis).float().numpy(),
                   u * (np.abs(np.expand_dims(lse, axis)) + np.abs(logp)), 0.0,
                   "log_softmax vs torch")
    m = np.max(x.astype(np.float64), axis=axis)
    _assert_within(fastxent.logsumexp(x, axis=axis), torch.logsumexp(xt, axis).float().numpy(),
                   u * (np.abs(m) + np.abs(lse - m) + np.abs(lse)), 0.0, "logsumexp vs torch")

"""fastxent.linear_cross_entropy(_with_grad) on NumPy arrays against the unchunked float64
composition (reference.linear_cross_entropy: logits = hidden @ weight.T + bias, then the
reference cross-entropy and its gradient chained through the product).

Tolerances come from conftest's table. The inputs make every logit exact in the tested dtype
(problems.make_linear_problem), so the forward's error is the cross-entropy's alone: rtol(V +
rows) for a reduced loss, as for cross_entropy. A gradient entry is a sum of n products G·factor
where each G carries the cross-entropy gradient's error, rtol(V) of its magnitude, and the
product adds its own rounding, about u·sqrt(n) of the same magnitude for BLAS's blocked sums
(below 1e-7·sqrt(n) in float32). As 8e-6 + 1e-7·(sqrt(V) + sqrt(n)) <= rtol(2·(V + n)), the
gradients are held to tolerance(dtype, 2·(V + n)) of the chained magnitude (n = V for
grad_hidden, the rows for grad_weight and grad_bias).
"""

import numpy as np
import pytest

import fastxent
import reference
from conftest import assert_close
from problems import Options, loss_dtype, make_linear_problem, option_grid

DTYPES = (np.float32, np.float64)


def grad_terms(name, V, rows):
    return 2 * (V + (V if name == "hidden" else rows))


def check_linear(p, grad_output=1.0, chunk_size=None):
    """Loss of linear_cross_entropy and loss + gradients of linear_cross_entropy_with_grad
    against the reference; returns the with_grad results."""
    dt, V = p.hidden.dtype, p.weight.shape[0]
    ref = reference.linear_cross_entropy(p.hidden, p.weight, p.target, p.bias, grad_output,
                                         **p.kwargs)
    before = [a.copy() for a in (p.hidden, p.weight, p.target)]
    loss = fastxent.linear_cross_entropy(p.hidden, p.weight, p.target, p.bias, **p.kwargs,
                                         chunk_size=chunk_size)
    assert_close(loss, ref["loss"][0], loss_dtype(dt), p.terms(), "loss", ref["loss"][1])
    out = fastxent.linear_cross_entropy_with_grad(p.hidden, p.weight, p.target, p.bias,
                                                  **p.kwargs, grad_output=grad_output,
                                                  chunk_size=chunk_size)
    assert_close(out[0], ref["loss"][0], loss_dtype(dt), p.terms(), "with_grad loss",
                 ref["loss"][1])
    for name, got in zip(("hidden", "weight", "bias"), out[1:]):
        if name == "bias" and p.bias is None:
            assert got is None
            continue
        assert_close(got, ref[name][0], dt, grad_terms(name, V, p.rows), f"grad_{name}",
                     ref[name][1])
    for a, b in zip(before, (p.hidden, p.weight, p.target)):
        assert np.array_equal(a, b), "an input was modified"
    return out


# ---- every option, one shape split into uneven chunks -----------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("opts", option_grid())
def test_options(opts, dtype, rng):
    p = make_linear_problem(rng, (29,), 16, 37, dtype, opts)
    go = (rng.integers(-8, 9, p.rows_shape) / 4).astype(dtype) if opts.reduction == "none" \
        else -0.75
    check_linear(p, go, chunk_size=8)


# ---- shapes and chunkings ---------------------------------------------------------------------

SHAPES = [  # (rows, H, V, chunk_size)
    ((1,), 4, 7, None), ((1,), 4, 7, 1), ((37,), 16, 50, 1), ((37,), 16, 50, 5),
    ((37,), 16, 50, 36), ((37,), 16, 50, 37), ((37,), 16, 50, 1000), ((64,), 64, 1000, 10),
    ((100,), 8, 2, 7), ((3,), 32, 50257, 2), ((2, 9), 12, 33, 4), ((4, 3, 5), 8, 17, 7),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("rows,H,V,chunk", SHAPES,
                         ids=[f"{'x'.join(map(str, r))}-H{h}-V{v}-c{c}" for r, h, v, c in SHAPES])
@pytest.mark.parametrize("opts", [Options("index", True, "neg100", "mean", 0.1),
                                  Options("prob", False, "default", "sum", 0.0),
                                  Options("index", False, "inrange", "none", 0.0)],
                         ids=lambda o: o.id)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_shapes_and_chunks(rows, H, V, chunk, opts, dtype, bias, rng):
    p = make_linear_problem(rng, rows, H, V, dtype, opts, bias=bias)
    go = (rng.integers(-8, 9, rows) / 4).astype(dtype) if opts.reduction == "none" else 1.0
    check_linear(p, go, chunk_size=chunk)


@pytest.mark.parametrize("seed", range(5))
def test_seeds_default_chunking(seed):
    rng = np.random.default_rng(seed)
    p = make_linear_problem(rng, (int(rng.integers(1, 300)),), int(rng.integers(1, 65)),
                            int(rng.integers(2, 3000)), np.float32,
                            Options("index", bool(seed % 2), "neg100", "mean", 0.1 * seed))
    check_linear(p)


def test_chunking_does_not_change_the_result(rng):
    """Same loss and gradients whatever the chunk size (the mean's scale is global)."""
    p = make_linear_problem(rng, (50,), 16, 40, np.float64,
                            Options("index", True, "neg100", "mean", 0.2))
    whole = fastxent.linear_cross_entropy_with_grad(p.hidden, p.weight, p.target, p.bias,
                                                    **p.kwargs)
    for chunk in (1, 3, 49):
        parts = fastxent.linear_cross_entropy_with_grad(p.hidden, p.weight, p.target, p.bias,
                                                        **p.kwargs, chunk_size=chunk)
        for a, b in zip(whole, parts):
            np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-16)


def test_grad_output_forms(rng):
    p = make_linear_problem(rng, (12,), 8, 20, np.float64, Options(reduction="none"))
    full = check_linear(p, np.full(12, 0.5), chunk_size=5)
    scalar = fastxent.linear_cross_entropy_with_grad(p.hidden, p.weight, p.target, p.bias,
                                                     **p.kwargs, grad_output=0.5, chunk_size=5)
    for a, b in zip(full, scalar):
        np.testing.assert_allclose(b, a, rtol=1e-14)


def test_all_rows_ignored(rng):
    p = make_linear_problem(rng, (6,), 8, 10, np.float32, Options())
    p.target[:] = -100
    loss, gh, gw, gb = fastxent.linear_cross_entropy_with_grad(p.hidden, p.weight, p.target,
                                                               p.bias, chunk_size=4)
    assert np.isnan(loss) and loss.dtype == np.float32  # torch: nan for an all-ignored mean
    assert not gh.any() and not gw.any() and not gb.any()


def test_empty_batch(rng):
    h = np.zeros((0, 4), np.float32)
    w = np.ones((5, 4), np.float32)
    t = np.zeros(0, np.int64)
    loss, gh, gw, gb = fastxent.linear_cross_entropy_with_grad(h, w, t, np.zeros(5, np.float32),
                                                               reduction="sum")
    assert loss == 0 and gh.shape == (0, 4) and not gw.any() and not gb.any()
    assert np.isnan(fastxent.linear_cross_entropy(h, w, t))


def test_strided_inputs(rng):
    """Transposed / sliced arrays are read as they are (NumPy's matmul takes any strides)."""
    p = make_linear_problem(rng, (20,), 16, 30, np.float64, Options(weight=True))
    w_t = np.asfortranarray(p.weight)  # a (V, H) view of an (H, V) C array
    h_s = np.repeat(p.hidden, 2, axis=0)[::2]
    got = fastxent.linear_cross_entropy_with_grad(h_s, w_t, p.target, p.bias, **p.kwargs,
                                                  chunk_size=6)
    ref = fastxent.linear_cross_entropy_with_grad(p.hidden, p.weight, p.target, p.bias,
                                                  **p.kwargs, chunk_size=6)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-16)


def test_torch_tensors_in_torch_out(torch, rng):
    p = make_linear_problem(rng, (10,), 8, 12, np.float32, Options(reduction="none"))
    args = [torch.from_numpy(a) for a in (p.hidden, p.weight, p.target, p.bias)]
    loss, gh, gw, gb = fastxent.linear_cross_entropy_with_grad(*args, chunk_size=3,
                                                               reduction="none")
    assert all(isinstance(a, torch.Tensor) for a in (loss, gh, gw, gb))
    ref = reference.linear_cross_entropy(p.hidden, p.weight, p.target, p.bias, reduction="none")
    assert_close(loss.numpy(), ref["loss"][0], np.float32, p.terms(), "loss", ref["loss"][1])
    for name, got in zip(("hidden", "weight", "bias"), (gh, gw, gb)):
        assert_close(got.numpy(), ref[name][0], np.float32, grad_terms(name, 12, 10),
                     f"grad_{name}", ref[name][1])


# ---- errors: named arguments, raised before anything is computed ------------------------------

def _args(**over):
    a = dict(hidden=np.zeros((4, 3), np.float32), weight=np.zeros((5, 3), np.float32),
             target=np.array([0, 1, 2, 4]), bias=None)
    a.update(over)
    return a


@pytest.mark.parametrize("over,exc,match", [
    (dict(weight=np.zeros((5, 2), np.float32)), ValueError, r"hidden: last dimension 3.*H=2"),
    (dict(weight=np.zeros(5, np.float32)), ValueError, r"weight \(V, H\)"),
    (dict(bias=np.zeros(4, np.float32)), ValueError, r"bias: expected shape \(5,\)"),
    (dict(target=np.array([0, 1, 2])), ValueError, r"target: expected shape \(4,\)"),
    (dict(target=np.zeros((4, 4), np.float32)), ValueError, r"target: expected shape \(4, 5\)"),
    (dict(target=np.array([0, 1, 5, 2])), IndexError, r"target\[2\] = 5 is out of range"),
    (dict(target=np.array([0, -3, 1, 2])), IndexError, r"target\[1\] = -3"),
    (dict(hidden=np.zeros((4, 3), np.float64)), TypeError, r"weight: dtype float32 differs"),
    (dict(bias=np.zeros(5, np.float64)), TypeError, r"bias: dtype float64 differs"),
    (dict(hidden=np.zeros((4, 3), np.float16), weight=np.zeros((5, 3), np.float16)), TypeError,
     r"hidden: dtype float16 is not supported with NumPy"),
    (dict(hidden=np.zeros((4, 3), np.int32), weight=np.zeros((5, 3), np.int32)), TypeError,
     r"hidden: dtype int32"),
    (dict(reduction="avg"), ValueError, r"reduction"),
    (dict(label_smoothing=-0.1), ValueError, r"label_smoothing"),
    (dict(class_weight=np.ones(4, np.float32)), ValueError, r"class_weight: expected shape"),
    (dict(chunk_size=0), ValueError, r"chunk_size must be >= 1"),
    (dict(chunk_size=2.5), TypeError, r"chunk_size must be a positive integer"),
    (dict(weight=np.zeros((0, 3), np.float32), target=np.full(4, -100)), ValueError,
     r"weight: needs at least one class"),
], ids=["H", "weight-1d", "bias-shape", "target-shape", "prob-shape", "range", "negative",
        "weight-dtype", "bias-dtype", "f16-numpy", "int", "reduction", "smoothing",
        "class-weight", "chunk0", "chunk-float", "no-classes"])
def test_errors(over, exc, match):
    a = _args(**over)
    with pytest.raises(exc, match=match):
        fastxent.linear_cross_entropy_with_grad(**a)
    with pytest.raises(exc, match=match):
        fastxent.linear_cross_entropy(**a)


def test_error_position_is_in_the_batch_not_the_chunk():
    t = np.zeros((3, 4), np.int64)
    t[2, 1] = 99
    with pytest.raises(IndexError, match=r"target\[2, 1\] = 99"):
        fastxent.linear_cross_entropy(np.zeros((3, 4, 2), np.float32),
                                      np.zeros((5, 2), np.float32), t, chunk_size=2)


def test_grad_output_errors():
    a = _args(target=np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"grad_output: expected a scalar for reduction='mean'"):
        fastxent.linear_cross_entropy_with_grad(**a, grad_output=np.ones(4))
    with pytest.raises(ValueError, match=r"grad_output: expected a scalar or shape \(4,\)"):
        fastxent.linear_cross_entropy_with_grad(**a, reduction="none", grad_output=np.ones(3))


def test_mixed_libraries_are_refused(torch):
    a = _args(target=np.array([0, 1, 2, 3]))
    a["weight"] = torch.zeros(5, 3)
    with pytest.raises(TypeError, match=r"weight: expected a NumPy array like hidden"):
        fastxent.linear_cross_entropy(**a)


# ---- DESIGN.md's extensions: z_loss, softcap, return_lse ---------------------------------------

EXTENSIONS = [pytest.param(dict(z_loss=1e-2), id="zloss"),
              pytest.param(dict(softcap=4.0), id="softcap"),
              pytest.param(dict(z_loss=0.3, softcap=1.5), id="both")]


@pytest.mark.parametrize("ext", EXTENSIONS)
@pytest.mark.parametrize("opts", option_grid(reductions=("none", "mean"), smoothings=(0.0, 0.1)))
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_extensions(dtype, opts, ext, rng):
    p = make_linear_problem(rng, (21,), 16, 30, dtype, opts)
    p.kwargs.update(ext)
    go = (rng.integers(-8, 9, p.rows_shape) / 4).astype(dtype) if opts.reduction == "none" \
        else 0.5
    check_linear(p, go, chunk_size=6)
    ref = reference.linear_cross_entropy(p.hidden, p.weight, p.target, p.bias, go, **p.kwargs)
    loss, lse = fastxent.linear_cross_entropy(p.hidden, p.weight, p.target, p.bias, **p.kwargs,
                                              chunk_size=6, return_lse=True)
    assert_close(lse, ref["lse"][0], loss_dtype(dtype), 30, "lse", ref["lse"][1])
    out = fastxent.linear_cross_entropy_with_grad(p.hidden, p.weight, p.target, p.bias,
                                                  **p.kwargs, grad_output=go, chunk_size=6,
                                                  return_lse=True)
    assert len(out) == 5
    assert_close(out[4], ref["lse"][0], loss_dtype(dtype), 30, "with_grad lse", ref["lse"][1])
    assert_close(out[0], ref["loss"][0], loss_dtype(dtype), p.terms(), "with_grad loss",
                 ref["loss"][1])


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_extension_values_are_checked(dtype):
    a = _args(hidden=np.zeros((4, 3), dtype), weight=np.zeros((5, 3), dtype),
              target=np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="z_loss"):
        fastxent.linear_cross_entropy(**a, z_loss=-1.0)
    with pytest.raises(ValueError, match="softcap"):
        fastxent.linear_cross_entropy_with_grad(**a, softcap=-2.0)

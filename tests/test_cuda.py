"""The CUDA path: every entry point, dtype, layout and option on torch CUDA tensors (and CuPy
arrays when CuPy is installed), fastxent.torch autograd on CUDA, errors, CUDA graphs, streams and
determinism, all against the float64 reference (tests/reference.py) with the one tolerance table
of conftest.py, exactly as the CPU tests.

Marked `gpu`; skipped unless this build has the CUDA kernels, a CUDA device is present and torch
can use it. (tests/test_cuda_status.py covers what runs without a GPU.)
"""

import numpy as np
import pytest

import fastxent
import reference
from conftest import assert_bitwise_equal, assert_close
from problems import Options, loss_dtype, make_logits, make_problem, option_grid

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not (fastxent.cuda_available() and torch.cuda.is_available()),
                       reason="needs fastxent built with CUDA, a CUDA device and CUDA torch"),
]

try:
    import ml_dtypes
except ImportError:
    ml_dtypes = None

DTYPES = ["float32", "float64", "float16", "bfloat16"]
DEV = "cuda"


def np_dtype(name):
    if name == "bfloat16":
        if ml_dtypes is None:
            pytest.skip("bfloat16 needs ml_dtypes")
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def to_cuda(a):
    """A CUDA tensor with exactly the values (and dtype) of NumPy array `a` (None stays None)."""
    if a is None:
        return None
    a = np.asarray(a)
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(np.ascontiguousarray(a).view(np.int16)).view(torch.bfloat16).to(DEV)
    return torch.from_numpy(np.ascontiguousarray(a)).to(DEV)


def to_numpy(t):
    """NumPy array with exactly the values and dtype of tensor `t` (bfloat16 → ml_dtypes)."""
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.contiguous().view(torch.int16).numpy().view(np_dtype("bfloat16"))
    return t.numpy()


def cuda_kwargs(p):
    kw = dict(p.kwargs)
    kw["weight"] = to_cuda(kw["weight"])
    return kw


def check_entry_points_cuda(p, rng, full=True):
    """checks.check_entry_points on CUDA: forward, backward (each grad_output form, out=,
    out=input) and with_grad (inplace False and True), results on the input's device."""
    kw, dt = cuda_kwargs(p), p.x.dtype
    ldt = loss_dtype(dt)
    x, t = to_cuda(p.x), to_cuda(p.target)
    x0 = x.clone()
    loss = fastxent.cross_entropy(x, t, **kw)
    assert isinstance(loss, torch.Tensor) and loss.device == x.device
    ref_loss, mag_loss = reference.cross_entropy(p.x, p.target, **p.kwargs, with_magnitude=True)
    assert_close(to_numpy(loss), ref_loss, ldt, p.terms(), "cuda cross_entropy", mag_loss)

    gos = [1.0, np.array(-0.75, dtype=dt), "device scalar"]
    if p.kwargs["reduction"] == "none":
        gos.append(p.grad_output_rows(rng))
    if not full:
        gos = gos[-1:]
    for go in gos:
        go_np = np.array(0.5, dtype=dt) if isinstance(go, str) else go
        go_dev = (to_cuda(go_np) if isinstance(go, str) or np.ndim(go) > 0 else go)
        ref_grad, mag = reference.cross_entropy_backward(p.x, p.target, go_np, **p.kwargs,
                                                         with_magnitude=True)
        grad = fastxent.cross_entropy_backward(x, t, go_dev, **kw)
        assert grad.device == x.device and grad.dtype == x.dtype
        assert_close(to_numpy(grad), ref_grad, dt, p.C, f"cuda backward(grad_output={go!r})", mag)

    l2, g2 = fastxent.cross_entropy_with_grad(x, t, go_dev, **kw)
    assert_close(to_numpy(l2), ref_loss, ldt, p.terms(), "cuda with_grad loss", mag_loss)
    assert_close(to_numpy(g2), ref_grad, dt, p.C, "cuda with_grad grad", mag)
    assert_bitwise_equal(to_numpy(x), to_numpy(x0), "input after non-inplace calls")
    if not full:
        return

    out = torch.full_like(x, float("nan"))
    res = fastxent.cross_entropy_backward(x, t, go_dev, **kw, out=out)
    assert res is out
    assert_close(to_numpy(out), ref_grad, dt, p.C, "cuda backward(out=buffer)", mag)

    xo = x.clone()
    fastxent.cross_entropy_backward(xo, t, go_dev, **kw, out=xo)
    assert_close(to_numpy(xo), ref_grad, dt, p.C, "cuda backward(out=input)", mag)

    xi = x.clone()
    l3, g3 = fastxent.cross_entropy_with_grad(xi, t, go_dev, **kw, inplace=True)
    assert g3 is xi
    assert_close(to_numpy(l3), ref_loss, ldt, p.terms(), "cuda inplace loss", mag_loss)
    assert_close(to_numpy(xi), ref_grad, dt, p.C, "cuda inplace grad", mag)


# ---- every option, every dtype ----------------------------------------------------------------


@pytest.mark.parametrize("opts", option_grid())
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_option_combination(dtype, opts, rng):
    p = make_problem(rng, (37, 19), np_dtype(dtype), opts)
    check_entry_points_cuda(p, rng)


# Row lengths around the warp / block / split boundaries of the engine (warp per row up to
# 1024 classes, a block per row above, chunks of 16384 classes for few long rows).
SHAPES = [(1, 1), (5, 3), (3, 31), (7, 32), (2, 33), (9, 1024), (4, 1025), (3, 4097),
          (300, 10), (2, 32768), (3, 50257), (1, 128257), (65, 40000)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", [Options("index", True, "neg100", "mean", 0.1),
                                  Options("prob", True, "default", "none", 0.1),
                                  Options("index", False, "default", "none", 0.0)],
                         ids=lambda o: o.id)
def test_shape_sweep(dtype, shape, opts, rng):
    p = make_problem(rng, shape, np_dtype(dtype), opts)
    check_entry_points_cuda(p, rng, full=shape[0] * shape[1] < 200_000)


@pytest.mark.parametrize("shape,axis", [((4, 7, 5), None), ((2, 3, 4, 5), None), ((3, 5, 8), -1),
                                        ((6, 2, 1100), -1), ((2, 40000, 2), 1)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", [Options("index", True, "neg1", "none", 0.1),
                                  Options("prob", False, "default", "mean", 0.0)],
                         ids=lambda o: o.id)
def test_kdim_and_axis(dtype, shape, axis, opts, rng):
    p = make_problem(rng, shape, np_dtype(dtype), opts, axis=axis)
    check_entry_points_cuda(p, rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["columns", "transposed", "misaligned", "row_stride"])
def test_strided_and_misaligned_logits(dtype, layout, rng):
    base = to_cuda(make_logits(rng, (40, 1030), np_dtype(dtype)))
    x = {"columns": base[:, ::2], "transposed": base[:20, :40].t(),
         "misaligned": base.reshape(-1)[1:1 + 39 * 1029].reshape(39, 1029),
         "row_stride": base[::2, 3:]}[layout]
    t = torch.randint(0, x.shape[1], (x.shape[0],), device=DEV)
    xn = to_numpy(x)
    for red in ("none", "mean"):
        loss, grad = fastxent.cross_entropy_with_grad(x, t, reduction=red, label_smoothing=0.2)
        ref_loss = reference.cross_entropy(xn, t.cpu().numpy(), reduction=red, label_smoothing=0.2)
        ref_grad, mag = reference.cross_entropy_backward(xn, t.cpu().numpy(), reduction=red,
                                                         label_smoothing=0.2, with_magnitude=True)
        assert_close(to_numpy(loss), ref_loss, loss_dtype(xn.dtype), x.shape[1] + x.shape[0],
                     f"{layout} loss")
        assert_close(to_numpy(grad), ref_grad, xn.dtype, x.shape[1], f"{layout} grad", mag)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target_dtype", [torch.int64, torch.int32, torch.uint8, torch.int16])
def test_target_dtypes(dtype, target_dtype, rng):
    p = make_problem(rng, (50, 200), np_dtype(dtype), Options("index", False, "default", "sum"))
    loss = fastxent.cross_entropy(to_cuda(p.x), to_cuda(p.target).to(target_dtype),
                                  reduction="sum")
    assert_close(to_numpy(loss), reference.cross_entropy(p.x, p.target, reduction="sum"),
                 loss_dtype(p.x.dtype), p.terms(), "loss")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("other", ["float32", "float64", "float16", "bfloat16"])
def test_operands_of_another_dtype(dtype, other, rng):
    """Probability targets, weights and grad_output in another floating dtype."""
    p = make_problem(rng, (30, 70), np_dtype(dtype), Options("prob", True, "default", "none", 0.1),
                     prob_dtype=np_dtype(other), weight_dtype=np_dtype(other))
    go = p.grad_output_rows(rng).astype(np_dtype(other))
    grad = fastxent.cross_entropy_backward(to_cuda(p.x), to_cuda(p.target), to_cuda(go),
                                           **cuda_kwargs(p))
    ref, mag = reference.cross_entropy_backward(p.x, p.target, go, **p.kwargs, with_magnitude=True)
    assert_close(to_numpy(grad), ref, p.x.dtype, p.C, "grad", mag)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(40, 30), (5, 3000), (2, 40000)], ids=str)
@pytest.mark.parametrize("opts", [Options("index", True, "neg100", "mean", 0.1),
                                  Options("prob", True, "default", "none", 0.1)],
                         ids=lambda o: o.id)
def test_backward_from_saved_lse(dtype, shape, opts, rng):
    """fastxent.torch's backward: the gradient from the float64 per-row lse of the forward (and
    from that lse rounded to float32)."""
    from fastxent import _api  # noqa: PLC0415

    p = make_problem(rng, shape, np_dtype(dtype), opts)
    kw = cuda_kwargs(p)
    args = (kw["weight"], kw["ignore_index"], kw["reduction"], kw["label_smoothing"])
    x, t = to_cuda(p.x), to_cuda(p.target)
    loss, lse = _api.forward_saving_lse(x, t, *args)
    assert lse.dtype == torch.float64 and lse.shape == shape[:1]
    go = p.grad_output_rows(rng) if opts.reduction == "none" else np.asarray(1.5, p.x.dtype)
    ref, mag = reference.cross_entropy_backward(p.x, p.target, go, **p.kwargs, with_magnitude=True)
    for saved in (lse, lse.float()):
        grad = _api.backward_from_lse(x, t, to_cuda(go), saved, *args)
        assert_close(to_numpy(grad), ref, p.x.dtype, p.C, f"grad from a {saved.dtype} lse", mag)


# ---- the extensions: z_loss, softcap, return_lse -------------------------------------------------

EXTENSIONS = [
    pytest.param(dict(z_loss=1e-2), id="zloss"),
    pytest.param(dict(softcap=4.0), id="softcap"),
    pytest.param(dict(z_loss=0.3, softcap=1.5), id="both"),
]


@pytest.mark.parametrize("ext", EXTENSIONS)
@pytest.mark.parametrize("opts", option_grid(reductions=("none", "mean"), smoothings=(0.0, 0.1)))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_extensions_every_option(dtype, opts, ext, rng):
    p = make_problem(rng, (9, 37), np_dtype(dtype), opts)
    p.kwargs.update(ext)
    check_entry_points_cuda(p, rng)


@pytest.mark.parametrize("ext", EXTENSIONS)
@pytest.mark.parametrize("shape", [(4, 5), (3, 3001), (2, 40000)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_extensions_shapes_and_dtypes(dtype, shape, ext, rng):
    p = make_problem(rng, shape, np_dtype(dtype), Options("index", True, "neg100", "none", 0.1))
    p.kwargs.update(ext)
    check_entry_points_cuda(p, rng, full=shape[1] < 10_000)


@pytest.mark.parametrize("ext", EXTENSIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_return_lse_and_its_gradient(dtype, ext, rng):
    """return_lse=True (ignored rows' lse included) and autograd through both outputs, against
    fastxent's CPU path on the same values (itself checked against the reference by
    test_extensions.py / test_torch_extensions.py)."""
    fxt = pytest.importorskip("fastxent.torch")
    opts = Options("index", True, "neg100", "mean", 0.1)
    p = make_problem(rng, (40, 1500), np_dtype(dtype), opts)
    p.kwargs.update(ext)
    kw = dict(p.kwargs)
    kw.pop("axis")
    r = rng.uniform(-1, 1, 40)
    results = []
    for dev in ("cpu", DEV):
        x = to_cuda(p.x).to(dev).requires_grad_()
        w = to_cuda(kw["weight"]).to(dev)
        loss, lse = fxt.cross_entropy(x, to_cuda(p.target).to(dev), **dict(kw, weight=w),
                                      return_lse=True)
        (loss * 0.7 + (lse * torch.from_numpy(r).to(dev, lse.dtype)).sum()).backward()
        results.append([to_numpy(v) for v in (loss, lse, x.grad)])
    for what, cpu, gpu in zip(("loss", "lse", "grad"), *results):
        assert_close(gpu, cpu.astype(np.float64), gpu.dtype, 4 * p.C, f"cuda vs cpu {what}",
                     check_dtype=False)


# ---- edge values --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C", [5, 3000, 40000])
def test_edge_values(dtype, C, rng):
    """-inf (masked) logits, a -inf target logit, a NaN row, an all -inf row, ±1e4 logits and
    an ignored row, in the warp, block and split paths."""
    x = make_logits(rng, (8, C), np.float64)
    x[0, : C // 2] = -np.inf
    x[1, :] = -np.inf
    x[2, 1] = np.nan
    x[3] += 1e4
    x[4] -= 1e4
    t = rng.integers(0, C, 8)
    t[0] = C - 1
    t[5] = -100
    x[6, t[6]] = -np.inf
    x = x.astype(np_dtype(dtype))
    for kw in (dict(reduction="none"), dict(reduction="none", label_smoothing=0.1)):
        loss, grad = fastxent.cross_entropy_with_grad(to_cuda(x), to_cuda(t), **kw)
        assert_close(to_numpy(loss), reference.cross_entropy(x, t, **kw), loss_dtype(x.dtype), C,
                     f"loss {kw}")
        ref, mag = reference.cross_entropy_backward(x, t, **kw, with_magnitude=True)
        assert_close(to_numpy(grad), ref, x.dtype, C, f"grad {kw}", mag)
    check_softmax_family(x, -1)


def test_all_rows_ignored_gives_nan_mean():
    x = torch.randn(4, 6, device=DEV)
    t = torch.full((4,), -100, device=DEV)
    loss, grad = fastxent.cross_entropy_with_grad(x, t)
    assert torch.isnan(loss).item() and torch.count_nonzero(grad).item() == 0


def test_empty_batch(rng):
    x = torch.empty(0, 5, device=DEV)
    t = torch.empty(0, dtype=torch.int64, device=DEV)
    assert fastxent.cross_entropy(x, t, reduction="sum").item() == 0
    assert torch.isnan(fastxent.cross_entropy(x, t)).item()
    assert fastxent.cross_entropy_backward(x, t).shape == (0, 5)


# ---- the softmax family -----------------------------------------------------------------------


def check_softmax_family(x, axis, what=""):
    xd = to_cuda(x)
    n = x.shape[axis]
    assert_close(to_numpy(fastxent.logsumexp(xd, axis)), reference.logsumexp(x, axis),
                 loss_dtype(x.dtype), n, f"logsumexp {what}")
    assert_close(to_numpy(fastxent.log_softmax(xd, axis)), reference.log_softmax(x, axis), x.dtype,
                 n, f"log_softmax {what}")
    assert_close(to_numpy(fastxent.softmax(xd, axis)), reference.softmax(x, axis), x.dtype, n,
                 f"softmax {what}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (5, 33), (3, 1025, 2), (2, 70000), (500, 3)], ids=str)
def test_softmax_family(dtype, shape, rng):
    x = make_logits(rng, shape, np_dtype(dtype))
    for axis in range(-len(shape), len(shape)):
        check_softmax_family(x, axis, f"axis={axis}")


def test_softmax_in_place_and_out(rng):
    x = make_logits(rng, (6, 2000), np.float32)
    xd = to_cuda(x)
    out = torch.empty_like(xd)
    assert fastxent.softmax(xd, out=out) is out
    fastxent.log_softmax(xd, out=xd)
    assert_close(to_numpy(out), reference.softmax(x), np.float32, 2000, "softmax out=")
    assert_close(to_numpy(xd), reference.log_softmax(x), np.float32, 2000, "log_softmax in place")


# ---- errors -------------------------------------------------------------------------------------


def test_bad_target_raises_before_writing(rng):
    x = torch.randn(4, 3, 5, device=DEV)
    t = torch.randint(0, 3, (4, 5), device=DEV)
    t[2, 3] = 7
    x0 = x.clone()
    with pytest.raises(IndexError, match=r"target\[2, 3\] = 7 is out of range"):
        fastxent.cross_entropy_with_grad(x, t, inplace=True)
    assert torch.equal(x, x0)
    t[2, 3] = -5
    t[1, 0] = 3
    with pytest.raises(IndexError, match=r"target\[1, 0\] = 3"):
        fastxent.cross_entropy(x, t)


def test_mixed_devices():
    x = torch.randn(4, 5, device=DEV)
    t = torch.randint(0, 5, (4,))
    with pytest.raises(ValueError, match="target is on cpu but the input is on cuda:0"):
        fastxent.cross_entropy(x, t)
    with pytest.raises(ValueError, match="weight is on cpu"):
        fastxent.cross_entropy(x, t.to(DEV), weight=torch.ones(5))
    with pytest.raises(ValueError, match="grad_output is on cpu"):
        fastxent.cross_entropy_backward(x, t.to(DEV), torch.ones(4), reduction="none")
    with pytest.raises(ValueError, match="out is on cpu"):
        fastxent.cross_entropy_backward(x, t.to(DEV), out=torch.empty(4, 5))
    with pytest.raises(ValueError, match="target is on cuda:0 but the input is on cpu"):
        fastxent.cross_entropy(x.cpu(), t.to(DEV))


def test_cpu_only_entry_points_refuse_cuda_inputs():
    """Evaluation statistics, vocabulary shards and BCE are not in the CUDA kernels yet: a
    clear TypeError, nothing computed."""
    x = torch.randn(4, 6, device=DEV)
    t = torch.randint(0, 6, (4,), device=DEV)
    with pytest.raises(TypeError, match="forward_statistics .* CPU only"):
        fastxent.cross_entropy_statistics(x, t)
    with pytest.raises(TypeError, match="vocab_size: vocabulary-sharded inputs run on the CPU"):
        fastxent._api.shard_statistics(x, t, 6, 12)
    with pytest.raises(TypeError, match="input: expected a CPU array .*no CUDA kernels"):
        fastxent.binary_cross_entropy_with_logits(x, torch.rand(4, 6, device=DEV))


# ---- streams, graphs, determinism ---------------------------------------------------------------


def test_runs_on_the_current_stream(rng):
    """Work queued on a side stream before the call must be seen by the kernels (they run on
    torch's current stream), and results are ready on that stream."""
    s = torch.cuda.Stream()
    x = make_logits(rng, (256, 4000), np.float32)
    t = rng.integers(0, 4000, 256)
    with torch.cuda.stream(s):
        xd = torch.zeros(256, 4000, device=DEV)
        torch.cuda._sleep(10_000_000)  # keeps the stream busy: a launch elsewhere would race
        xd.copy_(to_cuda(x), non_blocking=True)
        loss, grad = fastxent.cross_entropy_with_grad(xd, to_cuda(t), reduction="none")
    s.synchronize()
    assert_close(to_numpy(loss), reference.cross_entropy(x, t, reduction="none"), np.float32, 4000,
                 "loss on a side stream")


def test_graph_capture_and_replay(rng):
    """Inside a CUDA graph capture the host-side target check is skipped (nothing may wait):
    valid targets give the right result on replay, a bad target gives NaN instead of raising."""
    x = to_cuda(make_logits(rng, (64, 500), np.float32))
    t = torch.randint(0, 500, (64,), device=DEV)
    fastxent.cross_entropy_with_grad(x, t)  # warm-up outside the capture
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    g = torch.cuda.CUDAGraph()
    with torch.cuda.stream(s), torch.cuda.graph(g):
        loss, grad = fastxent.cross_entropy_with_grad(x, t, reduction="none")
    for _ in range(2):
        x.copy_(torch.randn_like(x))
        g.replay()
        torch.cuda.synchronize()
        xn, tn = to_numpy(x), t.cpu().numpy()
        assert_close(to_numpy(loss), reference.cross_entropy(xn, tn, reduction="none"), np.float32,
                     500, "replayed loss")
    t[5] = 600  # out of range, seen only by the replay
    g.replay()
    torch.cuda.synchronize()
    assert torch.isnan(loss[5]).item() and torch.isnan(grad[5]).all().item()
    assert torch.isfinite(loss[:5]).all().item()


@pytest.mark.parametrize("shape", [(4096, 50), (1000, 5000), (3, 100003)], ids=str)
def test_deterministic(shape, rng):
    x = to_cuda(make_logits(rng, shape, np.float32))
    t = torch.randint(0, shape[1], shape[:1], device=DEV)
    w = torch.rand(shape[1], device=DEV)
    first = fastxent.cross_entropy_with_grad(x, t, weight=w, label_smoothing=0.1)
    for _ in range(3):
        again = fastxent.cross_entropy_with_grad(x, t, weight=w, label_smoothing=0.1)
        for a, b in zip(first, again):
            assert_bitwise_equal(to_numpy(a), to_numpy(b), "repeat")


# ---- fastxent.torch on CUDA ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", [Options("index", True, "neg100", "mean", 0.1),
                                  Options("index", False, "default", "none", 0.0),
                                  Options("prob", True, "default", "sum", 0.2)],
                         ids=lambda o: o.id)
@pytest.mark.parametrize("inplace", [False, True])
def test_torch_autograd(dtype, opts, inplace, rng):
    fxt = pytest.importorskip("fastxent.torch")
    p = make_problem(rng, (33, 1500), np_dtype(dtype), opts)
    kw = cuda_kwargs(p)
    kw.pop("axis")
    x = to_cuda(p.x).requires_grad_()
    x_in = x * 1 if inplace else x  # an intermediate: inplace_backward overwrites it
    loss = fxt.cross_entropy(x_in, to_cuda(p.target), **kw, inplace_backward=inplace)
    assert loss.device == x.device and loss.dtype == x.dtype
    go = (p.grad_output_rows(rng) if opts.reduction == "none" else np.asarray(0.7, p.x.dtype))
    loss.backward(to_cuda(go))
    ref_loss, mag_loss = reference.cross_entropy(p.x, p.target, **p.kwargs, with_magnitude=True)
    ref_grad, mag = reference.cross_entropy_backward(p.x, p.target, go, **p.kwargs,
                                                     with_magnitude=True)
    assert_close(to_numpy(loss), ref_loss, p.x.dtype, 4 * p.terms(), "autograd loss", mag_loss,
                 check_dtype=False)
    assert_close(to_numpy(x.grad), ref_grad, p.x.dtype, 4 * p.C, "autograd grad", mag)


def test_torch_gradcheck_float64(rng):
    fxt = pytest.importorskip("fastxent.torch")
    x = torch.randn(5, 7, dtype=torch.float64, device=DEV, requires_grad=True)
    t = torch.randint(0, 7, (5,), device=DEV)
    w = torch.rand(7, dtype=torch.float64, device=DEV) + 0.5
    assert torch.autograd.gradcheck(
        lambda v: fxt.cross_entropy(v, t, weight=w, label_smoothing=0.1), (x,))


def test_torch_module_matches_torch(rng):
    fxt = pytest.importorskip("fastxent.torch")
    x = torch.randn(64, 1000, device=DEV, requires_grad=True)
    t = torch.randint(0, 1000, (64,), device=DEV)
    ours = fxt.CrossEntropyLoss(label_smoothing=0.1)(x, t)
    ours.backward()
    g = x.grad.clone()
    x.grad = None
    theirs = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(x, t)
    theirs.backward()
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g, x.grad, rtol=1e-5, atol=1e-7)


# ---- CuPy ---------------------------------------------------------------------------------------


def test_cupy_arrays(rng):
    cupy = pytest.importorskip("cupy")
    p = make_problem(rng, (20, 300), np.float32, Options("index", True, "neg100", "none", 0.1))
    x, t = cupy.asarray(p.x), cupy.asarray(p.target)
    w = cupy.asarray(p.kwargs["weight"])
    kw = dict(p.kwargs, weight=w)
    loss, grad = fastxent.cross_entropy_with_grad(x, t, **kw)
    assert isinstance(loss, cupy.ndarray) and isinstance(grad, cupy.ndarray)
    assert_close(cupy.asnumpy(loss), reference.cross_entropy(p.x, p.target, **p.kwargs),
                 np.float32, p.C, "cupy loss")
    ref, mag = reference.cross_entropy_backward(p.x, p.target, **p.kwargs, with_magnitude=True)
    assert_close(cupy.asnumpy(grad), ref, np.float32, p.C, "cupy grad", mag)

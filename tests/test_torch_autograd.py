"""fastxent.torch against torch: loss and input.grad for every dtype, shape and option set,
gradcheck, torch.compile, no_grad, inplace_backward, CrossEntropyLoss and the custom ops.

Parity: torch's own F.cross_entropy, evaluated in float64 on the same (widened) input values, is
the reference; fastxent.torch's result (in the logits' dtype, as torch returns it) must match it
within the one tolerance table of conftest.py, row = the logits' dtype (16-bit rows include the
rounding of the stored loss/gradient), with the term magnitudes of tests/reference.py.
"""

import inspect

import numpy as np
import pytest

import reference
from conftest import assert_close
from problems import Options, make_problem, option_grid

torch = pytest.importorskip("torch")
fxt = pytest.importorskip("fastxent.torch")
F = torch.nn.functional

DTYPES = {
    "f32": (torch.float32, np.float32),
    "f64": (torch.float64, np.float64),
    "f16": (torch.float16, np.float16),
    "bf16": (torch.bfloat16, "bfloat16"),
}


def _np_dtype(name):
    dt = DTYPES[name][1]
    if dt == "bfloat16":
        mld = pytest.importorskip("ml_dtypes")
        return np.dtype(mld.bfloat16)
    return np.dtype(dt)


def _tensor(a, tdtype):
    """A torch tensor of `tdtype` holding exactly the values of NumPy array `a`."""
    a = np.asarray(a)
    if a.dtype.kind in "iu":
        return torch.from_numpy(a.astype(np.int64))
    return torch.from_numpy(a.astype(np.float64)).to(tdtype)


def _to_numpy(t, np_dtype):
    return t.detach().to(torch.float64).numpy().astype(np_dtype)


def _torch_kwargs(p):
    kw = dict(p.kwargs)
    kw.pop("axis")
    return kw


def _run(fn, p, tdtype, go):
    """loss and input.grad of fn (torch or fastxent.torch) on problem p in dtype tdtype."""
    kw = _torch_kwargs(p)
    w = kw.pop("weight")
    x = _tensor(p.x, tdtype).requires_grad_()
    t = _tensor(p.target, tdtype)
    loss = fn(x, t, weight=None if w is None else _tensor(w, tdtype), **kw)
    loss.backward(_tensor(go, tdtype).expand(loss.shape))
    return loss, x.grad


def check_parity(name, shape, opts, rng):
    tdtype, np_dtype = DTYPES[name][0], _np_dtype(name)
    p = make_problem(rng, shape, np_dtype, opts)
    go = (p.grad_output_rows(rng) if opts.reduction == "none"
          else np.asarray(-1.5, dtype=np_dtype))
    loss, grad = _run(fxt.cross_entropy, p, tdtype, go)
    assert loss.dtype == tdtype and grad.dtype == tdtype and grad.shape == p.x.shape
    ref_loss, ref_grad = _run(F.cross_entropy, p, torch.float64, go)  # torch, in float64
    _, mag_loss = reference.cross_entropy(p.x, p.target, **p.kwargs, with_magnitude=True)
    _, mag = reference.cross_entropy_backward(p.x, p.target, go, **p.kwargs, with_magnitude=True)
    assert_close(_to_numpy(loss, np_dtype), ref_loss.detach().numpy(), np_dtype, 4 * p.terms(),
                 "loss vs torch", mag_loss)
    assert_close(_to_numpy(grad, np_dtype), ref_grad.numpy(), np_dtype, 4 * p.C,
                 "input.grad vs torch", mag)


@pytest.mark.parametrize("opts", option_grid(smoothings=(0.0, 0.1)))
@pytest.mark.parametrize("shape", [(6, 11), (2, 5, 3, 4), (13,)], ids=["2d", "kdim", "1d"])
@pytest.mark.parametrize("name", ["f32", "f64"])
def test_parity(name, shape, opts, rng):
    check_parity(name, shape, opts, rng)


@pytest.mark.parametrize("opts", [
    pytest.param(Options(), id="defaults"),
    pytest.param(Options("index", True, "neg100", "none", 0.1), id="index-all"),
    pytest.param(Options("index", False, "inrange", "sum", 0.0), id="index-sum"),
    pytest.param(Options("prob", True, "neg1", "mean", 0.1), id="prob-all")])
@pytest.mark.parametrize("shape", [(6, 11), (2, 5, 3, 4), (3, 1000)], ids=["2d", "kdim", "3x1000"])
@pytest.mark.parametrize("name", ["f16", "bf16", "f32", "f64"])
def test_parity_dtypes(name, shape, opts, rng):
    check_parity(name, shape, opts, rng)


@pytest.mark.parametrize("layout", ["transposed", "sliced", "channels_last", "expanded_rows"])
@pytest.mark.parametrize("name", ["f32", "bf16"])
def test_non_contiguous(name, layout, rng):
    """Strided logits are read as they are; the gradient has the view's shape (and values)."""
    tdtype = DTYPES[name][0]
    base = (torch.randn(8, 12, 5, dtype=torch.float64) * 3).to(tdtype)
    if layout == "transposed":
        x = base[:, :, 0].T.contiguous().T  # column-major (8, 12)
    elif layout == "sliced":
        x = base[1::2, ::3, 2]  # (4, 4), strides (120, 15)
    elif layout == "channels_last":
        x = base.permute(0, 2, 1).contiguous().permute(0, 2, 1)  # (8, 12, 5), class axis strided
    else:
        x = base[:1, :, 0].expand(6, 12)  # zero row stride
    assert not x.is_contiguous()
    C = x.shape[1]
    t = torch.from_numpy(rng.integers(0, C, (x.shape[0],) + tuple(x.shape[2:])))
    xa = x.detach().requires_grad_()
    xb = x.detach().contiguous().requires_grad_()
    la = fxt.cross_entropy(xa, t, label_smoothing=0.1)
    lb = F.cross_entropy(xb.double(), t, label_smoothing=0.1)
    la.backward()
    lb.backward()
    np_dtype = _np_dtype(name)
    assert_close(_to_numpy(la, np_dtype), lb.detach().numpy(), np_dtype, 4 * (C + 64),
                 "strided loss", np.abs(lb.detach().numpy()) + 1)
    assert_close(_to_numpy(xa.grad, np_dtype), xb.grad.double().numpy(), np_dtype, 4 * C,
                 "strided grad", np.abs(xb.grad.double().numpy()) + 1.0 / x.shape[0])


# ---- gradcheck (float64 finite differences) --------------------------------------------------

@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("case", ["2d", "kdim", "1d", "prob", "weight-ls", "strided", "ignore"])
def test_gradcheck(case, reduction):
    g = torch.Generator().manual_seed(hash((case, reduction)) % 2**31)
    shape = {"kdim": (3, 5, 2, 2), "1d": (6,)}.get(case, (4, 6))
    x = torch.randn(shape, dtype=torch.float64, generator=g) * 2
    C = shape[0] if len(shape) == 1 else shape[1]
    rows = () if len(shape) == 1 else (shape[0],) + shape[2:]
    t = torch.randint(0, C, rows, generator=g)
    kw = dict(reduction=reduction)
    if case == "prob":
        t = torch.softmax(torch.randn(shape, dtype=torch.float64, generator=g), dim=1)
    if case == "weight-ls":
        kw.update(weight=torch.rand(C, dtype=torch.float64, generator=g) + 0.5,
                  label_smoothing=0.2)
    if case == "ignore":
        t[0] = 2
        kw.update(ignore_index=2)
    if case == "strided":
        x = torch.randn(8, 12, dtype=torch.float64, generator=g)
        t = torch.randint(0, 6, (4,), generator=g)

        def fn(x):
            return fxt.cross_entropy(x[::2, ::2], t, **kw)
    else:
        def fn(x):
            return fxt.cross_entropy(x, t, **kw)
    x.requires_grad_()
    assert torch.autograd.gradcheck(fn, (x,))


# ---- modes: no_grad, requires_grad=False, in-place backward ----------------------------------

def _problem(n=6, c=9, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(n, c, dtype=dtype, generator=g) * 3,
            torch.randint(0, c, (n,), generator=g))


def test_no_grad_and_requires_grad_false():
    x, t = _problem()
    ref = F.cross_entropy(x, t)
    loss = fxt.cross_entropy(x, t)
    assert loss.grad_fn is None and not loss.requires_grad
    torch.testing.assert_close(loss, ref)
    xr = x.clone().requires_grad_()
    with torch.no_grad():
        loss = fxt.cross_entropy(xr, t, reduction="none")
    assert loss.grad_fn is None and not loss.requires_grad
    torch.testing.assert_close(loss, F.cross_entropy(x, t, reduction="none"))


def test_target_of_another_integer_dtype():
    x, t = _problem()
    xr = x.clone().requires_grad_()
    fxt.cross_entropy(xr, t.to(torch.int32)).backward()
    xs = x.clone().requires_grad_()
    F.cross_entropy(xs, t).backward()
    torch.testing.assert_close(xr.grad, xs.grad)


def _lm_head(inplace):
    g = torch.Generator().manual_seed(1)
    h = torch.randn(5, 8, generator=g).requires_grad_()
    w = torch.randn(11, 8, generator=g).requires_grad_()
    t = torch.randint(0, 11, (5,), generator=g)
    logits = h @ w.T
    loss = fxt.cross_entropy(logits, t, label_smoothing=0.1, inplace_backward=inplace)
    return h, w, t, logits, loss


def test_inplace_backward_matches_and_writes_into_the_logits():
    h0, w0, _, logits0, loss0 = _lm_head(False)
    loss0.backward()
    h1, w1, _, logits1, loss1 = _lm_head(True)
    version = logits1._version
    ptr = logits1.data_ptr()
    captured = {}
    logits1.register_hook(lambda g: captured.setdefault("grad", g))
    loss1.backward()
    torch.testing.assert_close(loss1, loss0)
    torch.testing.assert_close(h1.grad, h0.grad)
    torch.testing.assert_close(w1.grad, w0.grad)
    assert logits1._version > version, "the in-place backward must bump the version counter"
    assert captured["grad"].data_ptr() == ptr, "the gradient must live in the logits' storage"
    torch.testing.assert_close(captured["grad"], logits1)  # the logits now hold the gradient


def test_inplace_backward_misuse_is_caught():
    """A second backward, or another user of the logits that saved them, raises."""
    _, _, _, _, loss = _lm_head(True)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    h, w, t, logits, _ = _lm_head(False)
    other = (logits ** 2).sum()  # pow saves the logits; its backward runs after ours
    total = other + fxt.cross_entropy(logits, t, inplace_backward=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        total.backward()


def test_inplace_backward_into_overlapping_logits_is_refused():
    h = torch.randn(1, 12, requires_grad=True)
    loss = fxt.cross_entropy(h.expand(6, 12), torch.arange(6), inplace_backward=True)
    with pytest.raises(ValueError, match="inplace_backward.*overlap"):
        loss.backward()


# ---- torch.compile ----------------------------------------------------------------------------

@pytest.mark.parametrize("inplace", [False, True], ids=["", "inplace_backward"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_torch_compile_fullgraph(reduction, inplace):
    torch._dynamo.reset()
    x, t = _problem(8, 33)
    w = torch.rand(33) + 0.5

    def step(x, t, w):
        return fxt.cross_entropy(x * 2, t, weight=w, label_smoothing=0.1, reduction=reduction,
                                 inplace_backward=inplace)

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    xa = x.clone().requires_grad_()
    xb = x.clone().requires_grad_()
    la, lb = compiled(xa, t, w), step(xb, t, w)
    la.sum().backward()
    lb.sum().backward()
    torch.testing.assert_close(la, lb)
    torch.testing.assert_close(xa.grad, xb.grad)


# torch's inductor imports torch.utils.mkldnn, which warns about its own use of torch.jit.
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_torch_compile_module_inductor():
    torch._dynamo.reset()
    x, t = _problem(8, 33)
    model = torch.nn.Linear(33, 17)
    crit = fxt.CrossEntropyLoss(label_smoothing=0.05)
    t = t % 17

    def step(x, t):
        return crit(model(x), t)

    compiled = torch.compile(step, fullgraph=True)
    loss = compiled(x, t)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    F.cross_entropy(model(x), t, label_smoothing=0.05).backward()
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(g, p.grad)


# ---- nn.Module, signatures, custom ops ----------------------------------------------------------

def test_cross_entropy_loss_module():
    x, t = _problem()
    w = torch.rand(9) + 0.5
    ours = fxt.CrossEntropyLoss(weight=w, ignore_index=3, reduction="sum", label_smoothing=0.2)
    theirs = torch.nn.CrossEntropyLoss(weight=w, ignore_index=3, reduction="sum",
                                       label_smoothing=0.2)
    assert isinstance(ours, torch.nn.Module)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    la, lb = ours(xa, t), theirs(xb, t)
    la.backward()
    lb.backward()
    torch.testing.assert_close(la, lb)
    torch.testing.assert_close(xa.grad, xb.grad)
    assert ours.double().weight.dtype == torch.float64


def test_signatures_match_torch():
    def params(fn):
        return [(p.name, p.default, p.kind) for p in inspect.signature(fn).parameters.values()]

    # torch's parameters, then fastxent's keyword-only extras
    extras = [("inplace_backward", False), ("z_loss", 0.0), ("softcap", None),
              ("return_lse", False)]
    extras = [(name, default, inspect.Parameter.KEYWORD_ONLY) for name, default in extras]
    ours = params(fxt.cross_entropy)
    assert ours[:-4] == params(F.cross_entropy)
    assert ours[-4:] == extras
    ours = params(fxt.CrossEntropyLoss.__init__)
    assert ours[:-4] == params(torch.nn.CrossEntropyLoss.__init__)
    assert ours[-4:] == extras


def test_legacy_reduction_arguments():
    x, t = _problem()
    with pytest.warns(UserWarning):
        ours = fxt.cross_entropy(x, t, reduce=False)
    torch.testing.assert_close(ours, F.cross_entropy(x, t, reduction="none"))


def test_custom_ops_pass_opcheck():
    x, t = _problem()
    xr = x.clone().requires_grad_()
    # (..., label_smoothing, z_loss, softcap, inplace_backward)
    for args in [(x, t, None, -100, "mean", 0.0, 0.0, 0.0, False),
                 (xr, t, torch.rand(9), 2, "none", 0.1, 1e-3, 5.0, False),
                 (xr, torch.softmax(x, 1), None, -100, "sum", 0.0, 0.0, 2.0, False)]:
        torch.library.opcheck(torch.ops.fastxent.cross_entropy.default, args)
    go = torch.tensor(1.0)
    _, lse = torch.ops.fastxent.cross_entropy(x, t, None, -100, "mean", 0.0, 0.0, 0.0, False)
    assert lse.dtype == torch.float64 and lse.shape == t.shape
    for grad_lse in (None, torch.rand(lse.shape, dtype=torch.float64)):
        torch.library.opcheck(torch.ops.fastxent.cross_entropy_backward.default,
                              (go, grad_lse, lse, x, t, None, -100, "mean", 0.0, 1e-3, 3.0),
                              test_utils=("test_schema", "test_faketensor"))
        torch.library.opcheck(torch.ops.fastxent.cross_entropy_backward_.default,
                              (go, grad_lse, lse, x.clone(), t, None, -100, "mean", 0.0, 1e-3,
                               3.0), test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_backward_uses_the_saved_lse(offset):
    """The backward reads the per-row log-sum-exp the forward saved (O(rows), float64, exact
    enough for logits near 1e4) and gives torch's gradient."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(6, 3000, generator=gen) * 4 + offset
    t = torch.randint(0, 3000, (6,), generator=gen)
    t[2] = -100
    xs, xr = x.clone().requires_grad_(), x.double().requires_grad_()
    loss = fxt.cross_entropy(xs, t, label_smoothing=0.1)
    saved = [v for v in loss.grad_fn.saved_tensors if v is not None and v.dtype == torch.float64]
    assert len(saved) == 1 and saved[0].shape == (6,)
    loss.backward()
    torch.nn.functional.cross_entropy(xr, t, label_smoothing=0.1).backward()
    torch.testing.assert_close(xs.grad.double(), xr.grad, rtol=0, atol=1e-7)


def test_errors_are_torch_like():
    x, t = _problem()
    with pytest.raises(ValueError, match="reduction"):
        fxt.cross_entropy(x, t, reduction="avg")
    with pytest.raises(IndexError, match="target"):
        fxt.cross_entropy(x, t + 9)
    with pytest.raises(TypeError, match="input"):
        fxt.cross_entropy(x.to(torch.int64), t)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("inplace", [False, True])
def test_probability_target_and_weight_gradients(reduction, inplace):
    """Soft targets and class weights get torch's gradients (also with an in-place backward,
    which must not clobber the logits before they are used)."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(5, 7, dtype=torch.float64, generator=gen)
    y = torch.softmax(torch.randn(5, 7, dtype=torch.float64, generator=gen), 1)
    w = torch.rand(7, dtype=torch.float64, generator=gen) + 0.5
    g = torch.rand(5 if reduction == "none" else (), dtype=torch.float64, generator=gen)
    grads = []
    for fn in (lambda *a, **k: fxt.cross_entropy(*a, inplace_backward=inplace, **k),
               torch.nn.functional.cross_entropy):
        xs, ys, ws = (v.clone().requires_grad_() for v in (x, y, w))
        loss = fn(xs * 1, ys, ws, reduction=reduction, label_smoothing=0.1)
        loss.backward(g)
        grads.append((xs.grad, ys.grad, ws.grad))
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_weight_gradient_with_index_targets_is_refused_like_torch():
    x, t = _problem()
    w = torch.ones(9, requires_grad=True)
    with pytest.raises(RuntimeError, match="weight"):
        torch.nn.functional.cross_entropy(x, t, weight=w)
    with pytest.raises(RuntimeError, match="weight"):
        fxt.cross_entropy(x, t, weight=w)
    with torch.no_grad():
        fxt.cross_entropy(x, t, weight=w)


def test_inference_mode():
    x, t = _problem()
    with torch.inference_mode():
        loss = fxt.cross_entropy(x, t)
        import fastxent

        out = torch.empty_like(x)
        fastxent.cross_entropy_backward(x, t, out=out)
    torch.testing.assert_close(loss, F.cross_entropy(x, t))


def test_out_and_inplace_bump_the_version_counter():
    import fastxent

    x, t = _problem()
    out = torch.empty_like(x)
    v = out._version
    fastxent.cross_entropy_backward(x, t, out=out)
    assert out._version > v
    y = x.clone()
    v = y._version
    fastxent.cross_entropy_with_grad(y, t, inplace=True)
    assert y._version > v

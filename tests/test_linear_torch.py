"""fastxent.torch.linear_cross_entropy: autograd against torch's F.linear + F.cross_entropy
(float64: the same semantics for every option) and against the float64 reference composition
for every dtype (float32, bfloat16, float16: the products in the input dtype), requires_grad on
any subset of hidden/weight/bias, gradcheck, torch.compile and the custom ops' checks.

Tolerances: as tests/test_linear.py (exact-product inputs; gradients held to tolerance(dtype,
2·(V + n)) of the chained magnitude). 16-bit gradients carry roundings of their terms to the
16-bit dtype before being summed (assert_close's rounded_terms): the gradient G of the logits is
stored in the input dtype (1), the backward multiplies the saved gradients by grad_output in that
dtype (1), and grad_weight, accumulated chunk by chunk with addmm_ in the weight's dtype, rounds
its partial sum at most twice per chunk (the product, the sum).
"""

import math

import numpy as np
import pytest

import reference
from conftest import assert_close
from problems import Options, make_linear_problem, option_grid

torch = pytest.importorskip("torch")
fxt = pytest.importorskip("fastxent.torch")
F = torch.nn.functional
ml_dtypes = pytest.importorskip("ml_dtypes")

TORCH_DTYPES = {"f32": (torch.float32, np.float32), "f64": (torch.float64, np.float64),
                "bf16": (torch.bfloat16, ml_dtypes.bfloat16), "f16": (torch.float16, np.float16)}


def tensors(p, tdtype, grads=(True, True, True)):
    """hidden, weight, bias as leaves of `tdtype` (requires_grad per `grads`), target, and the
    cross-entropy keyword arguments with a class weight tensor."""
    def leaf(a, g):
        if a is None:
            return None
        return torch.from_numpy(a.astype(np.float64)).to(tdtype).requires_grad_(g)

    h, w, b = (leaf(a, g) for a, g in zip((p.hidden, p.weight, p.bias), grads))
    t = torch.from_numpy(p.target)
    kw = dict(p.kwargs)
    if kw["class_weight"] is not None:
        kw["class_weight"] = torch.from_numpy(kw["class_weight"])
    return h, w, b, t, kw


def grad_terms(name, V, rows):
    return 2 * (V + (V if name == "hidden" else rows))


def backward(loss, p, tdtype, rng):
    """loss.backward(grad_output) with a dyadic grad_output (exact in every dtype); returns it."""
    if p.kwargs["reduction"] == "none":
        go = rng.integers(-8, 9, p.rows_shape) / 4
    else:
        go = np.asarray(-0.75)
    loss.backward(torch.from_numpy(go).to(tdtype))
    return go


# ---- float64: the same numbers as torch's composition, for every option -----------------------

@pytest.mark.parametrize("opts", option_grid())
def test_parity_with_torch(opts, rng):
    p = make_linear_problem(rng, (23,), 12, 31, np.float64, opts)
    h, w, b, t, kw = tensors(p, torch.float64)
    if opts.kind == "prob":
        t = t.double()
    if kw["class_weight"] is not None:
        kw["class_weight"] = kw["class_weight"].double()
    loss = fxt.linear_cross_entropy(h, w, t, b, **kw, chunk_size=5)
    go = backward(loss, p, torch.float64, rng)
    ours = [loss.detach()] + [a.grad.clone() for a in (h, w, b)]
    for a in (h, w, b):
        a.grad = None
    cw = kw.pop("class_weight")
    theirs = F.cross_entropy(F.linear(h, w, b), t, cw, **kw)
    theirs.backward(torch.from_numpy(go))
    ref = reference.linear_cross_entropy(p.hidden, p.weight, p.target, p.bias, go, **p.kwargs)
    assert_close(ours[0].numpy(), theirs.detach().numpy(), np.float64, p.terms(), "loss",
                 ref["loss"][1])
    for name, got, leaf in zip(("hidden", "weight", "bias"), ours[1:], (h, w, b)):
        assert_close(got.numpy(), leaf.grad.numpy(), np.float64, grad_terms(name, 31, 23),
                     f"grad_{name}", ref[name][1])


# ---- every dtype against the reference -------------------------------------------------------

CASES = [  # rows, H, V, chunk
    ((33,), 16, 40, 8), ((5,), 32, 1000, 2), ((2, 7), 8, 17, None), ((64,), 16, 3, 64),
]


@pytest.mark.parametrize("dt", TORCH_DTYPES)
@pytest.mark.parametrize("rows,H,V,chunk", CASES,
                         ids=[f"{'x'.join(map(str, r))}-H{h}-V{v}-c{c}" for r, h, v, c in CASES])
@pytest.mark.parametrize("opts", [Options("index", True, "neg100", "mean", 0.1),
                                  Options("index", False, "inrange", "none", 0.0),
                                  Options("prob", True, "default", "sum", 0.2)],
                         ids=lambda o: o.id)
def test_dtypes_against_reference(dt, rows, H, V, chunk, opts, rng):
    tdtype, ndtype = TORCH_DTYPES[dt]
    p = make_linear_problem(rng, rows, H, V, ndtype, opts)
    h, w, b, t, kw = tensors(p, tdtype)
    loss = fxt.linear_cross_entropy(h, w, t, b, **kw, chunk_size=chunk)
    assert loss.dtype == tdtype  # as torch: the loss in the logits' dtype
    go = backward(loss, p, tdtype, rng)
    ref = reference.linear_cross_entropy(p.hidden, p.weight, p.target, p.bias, go, **p.kwargs)

    def np_(x):
        return x.detach().float().numpy() if tdtype in (torch.bfloat16, torch.float16) \
            else x.detach().numpy()

    # the loss is computed in float32 (loss_dtype) and rounded once to the logits' dtype
    assert_close(np_(loss), ref["loss"][0], np.dtype(ndtype), p.terms(), "loss",
                 ref["loss"][1], check_dtype=False)
    rows_n = math.prod(rows)
    chunks = -(-rows_n // (chunk or rows_n))
    scale = {"hidden": np.abs(p.weight.astype(np.float64)).sum(0),
             "weight": np.abs(p.hidden.astype(np.float64)).reshape(-1, H).sum(0),
             "bias": float(rows_n)}
    rounded = {"hidden": 2, "weight": 2 + 2 * chunks, "bias": 2}
    for name, leaf in (("hidden", h), ("weight", w), ("bias", b)):
        assert leaf.grad.dtype == tdtype
        assert_close(np_(leaf.grad), ref[name][0], np.dtype(ndtype), grad_terms(name, V, rows_n),
                     f"grad_{name}", ref[name][1], check_dtype=False,
                     rounded_terms=rounded[name], rounded_scale=scale[name])


# ---- autograd details -----------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("grads", [(True, False, False), (False, True, False),
                                   (False, False, True), (True, True, False),
                                   (False, False, False)], ids=lambda g: "".join("hwb"[i] for i in range(3) if g[i]) or "none")
def test_requires_grad_subsets(grads, reduction, rng):
    p = make_linear_problem(rng, (9,), 8, 11, np.float64, Options(reduction=reduction))
    h, w, b, t, kw = tensors(p, torch.float64, grads)
    loss = fxt.linear_cross_entropy(h, w, t, b, **kw, chunk_size=4)
    assert loss.requires_grad == any(grads)
    if not any(grads):
        return
    go = backward(loss, p, torch.float64, rng)
    ref = reference.linear_cross_entropy(p.hidden, p.weight, p.target, p.bias, go, **p.kwargs)
    for name, leaf, g in zip(("hidden", "weight", "bias"), (h, w, b), grads):
        if not g:
            assert leaf.grad is None
            continue
        assert_close(leaf.grad.numpy(), ref[name][0], np.float64, grad_terms(name, 11, 9),
                     f"grad_{name}", ref[name][1])


def test_no_grad_computes_the_loss_only(rng):
    p = make_linear_problem(rng, (9,), 8, 11, np.float32, Options())
    h, w, b, t, kw = tensors(p, torch.float32)
    with torch.no_grad():
        loss = fxt.linear_cross_entropy(h, w, t, b, **kw)
    assert not loss.requires_grad
    ref = reference.linear_cross_entropy(p.hidden, p.weight, p.target, p.bias, **p.kwargs)
    assert_close(loss.numpy(), ref["loss"][0], np.float32, p.terms(), "loss", ref["loss"][1])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_gradcheck(reduction, bias):
    gen = torch.Generator().manual_seed(3)
    h = torch.randn(7, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(6, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, generator=gen, requires_grad=True) if bias else None
    t = torch.tensor([0, 5, -100, 2, 3, 1, 5])
    cw = torch.rand(6, dtype=torch.float64, generator=gen) + 0.5

    def f(*args):
        return fxt.linear_cross_entropy(*args[:2], t, *args[2:], class_weight=cw,
                                        reduction=reduction, label_smoothing=0.1, chunk_size=3)

    inputs = (h, w) + ((b,) if bias else ())
    assert torch.autograd.gradcheck(f, inputs)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_inplace_backward(reduction, rng):
    """inplace_backward=True: the same gradients, scaled in place (the memory it saves:
    test_linear_memory.py); a second backward through the graph is refused, where the default
    allows it."""
    p = make_linear_problem(rng, (9,), 8, 11, np.float32, Options(reduction=reduction))
    h, w, b, t, kw = tensors(p, torch.float32)
    loss = fxt.linear_cross_entropy(h, w, t, b, **kw, inplace_backward=True)
    loss.backward(torch.tensor(-0.75), retain_graph=True)
    ref = reference.linear_cross_entropy(p.hidden, p.weight, p.target, p.bias, -0.75, **p.kwargs)
    for name, leaf in (("hidden", h), ("weight", w), ("bias", b)):
        assert_close(leaf.grad.numpy(), ref[name][0], np.float32, grad_terms(name, 11, 9),
                     f"grad_{name}", ref[name][1])
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    default = fxt.linear_cross_entropy(h, w, t, b, **kw)
    default.backward(retain_graph=True)
    default.backward()


def test_default_chunk_size():
    """Chunks of logits no larger than the weight, within [16 MiB, 256 MiB], at least a row."""
    from fastxent._linear import default_chunk_size

    assert default_chunk_size(4096, 128256, 2048, 4) == 523  # 256 MiB // (128256 · 4 B)
    assert default_chunk_size(4096, 128256, 2048, 2) == 1046
    assert default_chunk_size(1024, 32000, 256, 4) == 256  # the weight's 32.8 MB
    assert default_chunk_size(10**6, 1000, 16, 4) == 4194  # the 16 MiB floor
    assert default_chunk_size(100, 1000, 16, 4) == 100  # one chunk
    assert default_chunk_size(5, 10**9, 4, 4) == 1
    assert default_chunk_size(0, 10, 4, 4) == 1


def test_module(rng):
    p = make_linear_problem(rng, (10,), 8, 12, np.float32, Options("index", True, "neg100"))
    h, w, b, t, kw = tensors(p, torch.float32)
    crit = fxt.LinearCrossEntropyLoss(kw["class_weight"], ignore_index=kw["ignore_index"],
                                      chunk_size=3)
    assert "class_weight" in dict(crit.named_buffers())
    loss = crit(h, w, t, b)
    loss.backward()
    ref = reference.linear_cross_entropy(p.hidden, p.weight, p.target, p.bias, **p.kwargs)
    assert_close(loss.detach().numpy(), ref["loss"][0], np.float32, p.terms(), "loss",
                 ref["loss"][1])
    assert_close(w.grad.numpy(), ref["weight"][0], np.float32, grad_terms("weight", 12, 10),
                 "grad_weight", ref["weight"][1])


@pytest.mark.parametrize("reduction,inplace", [("mean", False), ("mean", True), ("none", False)])
def test_torch_compile_fullgraph(reduction, inplace, rng):
    p = make_linear_problem(rng, (12,), 8, 20, np.float32, Options(reduction=reduction))
    h, w, b, t, kw = tensors(p, torch.float32)
    h2, w2, b2 = (a.detach().clone().requires_grad_() for a in (h, w, b))

    def step(h, w, b):
        return fxt.linear_cross_entropy(h, w, t, b, **kw, chunk_size=5,
                                        inplace_backward=inplace).sum() * 0.5

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    la, lb = compiled(h, w, b), step(h2, w2, b2)
    la.backward()
    lb.backward()
    torch.testing.assert_close(la, lb, rtol=0, atol=0)
    for x, y in ((h, h2), (w, w2), (b, b2)):
        torch.testing.assert_close(x.grad, y.grad, rtol=0, atol=0)


def test_custom_ops_pass_opcheck(rng):
    p = make_linear_problem(rng, (6,), 4, 7, np.float32, Options("index", True, "neg100"))
    h, w, b, t, kw = tensors(p, torch.float32, (False, False, False))
    cw = kw["class_weight"]
    for args in [(h, w, t, b, cw, -100, "mean", 0.1, 0.0, 0.0, 4, True, True, True, False),
                 (h, w, t, None, None, -100, "sum", 0.0, 0.1, 2.0, None, False, True, False,
                  True),
                 (h, w, t, b, cw, -100, "none", 0.0, 0.0, 0.0, 2, False, False, False, False)]:
        torch.library.opcheck(torch.ops.fastxent.linear_cross_entropy.default, args,
                              test_utils=("test_schema", "test_faketensor"))
    _, lse, *_ = torch.ops.fastxent.linear_cross_entropy(
        h, w, t, b, cw, -100, "none", 0.0, 0.0, 0.0, 4, False, False, False, False)
    assert lse.dtype == torch.float64 and lse.shape == (6,)
    go = torch.rand(6)
    for grad_lse in (None, torch.rand(6, dtype=torch.float64)):
        torch.library.opcheck(torch.ops.fastxent.linear_cross_entropy_backward.default,
                              (go, grad_lse, lse, h, w, t, b, cw, -100, "none", 0.0, 0.0, 0.0, 4,
                               True, True, True),
                              test_utils=("test_schema", "test_faketensor"))


def test_target_and_class_weight_cannot_require_grad(rng):
    p = make_linear_problem(rng, (4,), 4, 5, np.float32, Options("prob", True))
    h, w, b, t, kw = tensors(p, torch.float32)
    with pytest.raises(RuntimeError, match="target cannot require grad"):
        fxt.linear_cross_entropy(h, w, t.requires_grad_(), b)
    with pytest.raises(RuntimeError, match="class_weight cannot require grad"):
        fxt.linear_cross_entropy(h, w, t.detach(), b,
                                 class_weight=kw["class_weight"].requires_grad_())


def test_errors_name_the_argument():
    h, w = torch.zeros(4, 3), torch.zeros(5, 2)
    with pytest.raises(ValueError, match=r"hidden: last dimension 3"):
        fxt.linear_cross_entropy(h, w, torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match=r"weight: dtype bfloat16 differs"):
        fxt.linear_cross_entropy(h, torch.zeros(5, 3, dtype=torch.bfloat16),
                                 torch.zeros(4, dtype=torch.long))


# ---- DESIGN.md's extensions: z_loss, softcap, return_lse (differentiable) ---------------------

EXTENSIONS = [pytest.param(dict(z_loss=1e-2), id="zloss"),
              pytest.param(dict(softcap=4.0), id="softcap"),
              pytest.param(dict(z_loss=0.3, softcap=1.5), id="both")]


@pytest.mark.parametrize("ext", EXTENSIONS)
@pytest.mark.parametrize("dt", ["f32", "f64", "bf16"])
@pytest.mark.parametrize("opts", [Options("index", True, "neg100", "mean", 0.1),
                                  Options("prob", False, "default", "none", 0.0)],
                         ids=lambda o: o.id)
@pytest.mark.parametrize("lse_used", [False, True], ids=["loss", "loss+lse"])
def test_extensions_against_reference(opts, dt, ext, lse_used, rng):
    """loss (+ Σ c·lse when the returned lse is used: its gradient flows through a recomputing
    backward) and the three gradients against the reference."""
    tdtype, ndtype = TORCH_DTYPES[dt]
    p = make_linear_problem(rng, (13,), 16, 24, ndtype, opts)
    p.kwargs.update(ext)
    h, w, b, t, kw = tensors(p, tdtype)
    loss, lse = fxt.linear_cross_entropy(h, w, t, b, **kw, chunk_size=4, return_lse=True)
    assert lse.dtype == (torch.float32 if dt == "bf16" else tdtype) and lse.shape == (13,)
    go = rng.integers(-8, 9, 13) / 4 if opts.reduction == "none" else np.asarray(0.5)
    c = rng.integers(-8, 9, 13) / 8 if lse_used else None
    total = (loss * torch.from_numpy(go).to(tdtype)).sum()
    if lse_used:
        total = total + (lse * torch.from_numpy(c).to(lse.dtype)).sum()
    total.backward()
    ref = reference.linear_cross_entropy(p.hidden, p.weight, p.target, p.bias, go, **p.kwargs,
                                         lse_grad=c)
    nd = np.dtype(ndtype)

    def np_(x):
        return x.detach().float().numpy() if dt == "bf16" else x.detach().numpy()

    assert_close(np_(loss), ref["loss"][0], nd, p.terms(), "loss", ref["loss"][1],
                 check_dtype=False)
    assert_close(np_(lse), ref["lse"][0], np.float32 if dt == "bf16" else nd, 24, "lse",
                 ref["lse"][1], check_dtype=False)
    scale = {"hidden": np.abs(p.weight.astype(np.float64)).sum(0),
             "weight": np.abs(p.hidden.astype(np.float64)).sum(0), "bias": 13.0}
    rounded = {"hidden": 2, "weight": 2 + 2 * 4, "bias": 2}
    for name, leaf in (("hidden", h), ("weight", w), ("bias", b)):
        assert_close(np_(leaf.grad), ref[name][0], nd, grad_terms(name, 24, 13), f"grad_{name}",
                     ref[name][1], check_dtype=False, rounded_terms=rounded[name],
                     rounded_scale=scale[name])


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradcheck_extensions_and_lse(reduction):
    gen = torch.Generator().manual_seed(5)
    h = torch.randn(6, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(7, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(7, dtype=torch.float64, generator=gen, requires_grad=True)
    t = torch.tensor([0, 6, -100, 2, 3, 1])

    def f(h, w, b):
        loss, lse = fxt.linear_cross_entropy(h, w, t, b, reduction=reduction, z_loss=0.1,
                                             softcap=2.0, chunk_size=4, return_lse=True)
        return loss, lse

    assert torch.autograd.gradcheck(f, (h, w, b))


def test_compile_with_extensions(rng):
    p = make_linear_problem(rng, (12,), 8, 20, np.float32, Options())
    h, w, b, t, kw = tensors(p, torch.float32)
    h2, w2, b2 = (a.detach().clone().requires_grad_() for a in (h, w, b))

    def step(h, w, b):
        loss, lse = fxt.linear_cross_entropy(h, w, t, b, **kw, chunk_size=5, z_loss=1e-3,
                                             softcap=3.0, return_lse=True)
        return loss + 0.1 * lse.sum()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    la, lb = compiled(h, w, b), step(h2, w2, b2)
    la.backward()
    lb.backward()
    torch.testing.assert_close(la, lb, rtol=0, atol=0)
    for x, y in ((h, h2), (w, w2), (b, b2)):
        torch.testing.assert_close(x.grad, y.grad, rtol=0, atol=0)

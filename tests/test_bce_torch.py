"""fastxent.torch.binary_cross_entropy_with_logits / BCEWithLogitsLoss against torch: loss,
input.grad and target.grad for every dtype, shape, weight form and reduction; gradcheck in
float64; torch.compile (fullgraph); the module, signatures, custom ops and errors.

Parity: torch's own F.binary_cross_entropy_with_logits evaluated in float64 on the same
(widened) values is the reference, compared with the tolerance table of conftest.py (row = the
result's dtype) and the term magnitudes of tests/reference.py.
"""

import inspect

import numpy as np
import pytest

import reference
from conftest import assert_close
from problems import BCE_WEIGHT_FORMS, REDUCTIONS, make_bce_problem
from test_torch_autograd import DTYPES, _np_dtype, _tensor, _to_numpy

torch = pytest.importorskip("torch")
fxt = pytest.importorskip("fastxent.torch")
F = torch.nn.functional


def _run(fn, p, tdtype, go, target_grad=False):
    """loss, input.grad and target.grad (or None) of fn on problem p in dtype tdtype."""
    x = _tensor(p.x, tdtype).requires_grad_()
    y = _tensor(p.target, tdtype).requires_grad_(target_grad)
    w, pw = (None if p.kwargs[k] is None else _tensor(p.kwargs[k], tdtype)
             for k in ("weight", "pos_weight"))
    loss = fn(x, y, w, reduction=p.kwargs["reduction"], pos_weight=pw)
    loss.backward(_tensor(go, tdtype).expand(loss.shape))
    return loss, x.grad, y.grad


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(), (13,), (6, 37), (2, 3, 5, 4), (3, 1100)],
                         ids=lambda s: "x".join(map(str, s)) or "0d")
@pytest.mark.parametrize("name", DTYPES)
def test_parity(name, shape, reduction, rng):
    tdtype, np_dtype = DTYPES[name][0], _np_dtype(name)
    for weight, pos_weight in (("none", "none"), ("full", "last"), ("first", "scalar")):
        p = make_bce_problem(rng, shape, np_dtype, reduction, weight, pos_weight)
        go = (rng.uniform(-2, 2, shape).astype(np_dtype) if reduction == "none"
              else np.asarray(-1.5, np_dtype))
        loss, grad, grad_t = _run(fxt.binary_cross_entropy_with_logits, p, tdtype, go, True)
        assert loss.dtype == tdtype and grad.dtype == tdtype and grad.shape == p.x.shape
        ref_loss, ref_grad, ref_grad_t = _run(F.binary_cross_entropy_with_logits, p,
                                              torch.float64, go, True)
        _, mag_loss = reference.binary_cross_entropy_with_logits(p.x, p.target, **p.kwargs,
                                                                 with_magnitude=True)
        _, mag = reference.binary_cross_entropy_with_logits_backward(
            p.x, p.target, go, **p.kwargs, with_magnitude=True)
        what = f"{weight}/{pos_weight}"
        assert_close(_to_numpy(loss, np_dtype), ref_loss.detach().numpy(), np_dtype,
                     4 * p.terms(), f"loss vs torch ({what})", mag_loss)
        assert_close(_to_numpy(grad, np_dtype), ref_grad.numpy(), np_dtype, 4,
                     f"input grad vs torch ({what})", mag)
        # The target's gradient is torch's own (computed at the working dtype).
        ours_t = _run(F.binary_cross_entropy_with_logits, p, tdtype, go, True)[2]
        torch.testing.assert_close(grad_t, ours_t, equal_nan=True)
        assert ref_grad_t is not None


def test_non_contiguous_and_broadcast_operands(rng):
    base = torch.randn(10, 24, dtype=torch.float64) * 4
    for view in (lambda t: t[:, ::3], lambda t: t.T, lambda t: t.flip(0)[::2],
                 lambda t: t.reshape(2, 5, 24).permute(2, 0, 1)):
        x = view(base)
        y = torch.rand_like(x)
        pw = torch.rand(x.shape[-1], dtype=torch.float64).expand(x.shape)  # stride 0
        xa = view(base.clone()).requires_grad_()  # a non-contiguous leaf
        xb = x.clone().requires_grad_()
        la = fxt.binary_cross_entropy_with_logits(xa, y, pos_weight=pw, reduction="none")
        lb = F.binary_cross_entropy_with_logits(xb, y, pos_weight=pw, reduction="none")
        go = torch.randn_like(la)
        la.backward(go)
        lb.backward(go)
        torch.testing.assert_close(la, lb, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("forms", [("none", "none"), ("full", "last"), ("first", "full")],
                         ids=lambda f: "-".join(f))
def test_gradcheck(forms, reduction, rng):
    p = make_bce_problem(rng, (4, 6), np.dtype(np.float64), reduction, *forms, scale=3.0)
    x = torch.from_numpy(p.x).requires_grad_()
    y = torch.from_numpy(p.target).requires_grad_()
    w, pw = (None if p.kwargs[k] is None else torch.from_numpy(np.asarray(p.kwargs[k]))
             for k in ("weight", "pos_weight"))

    def fn(x, y):
        return fxt.binary_cross_entropy_with_logits(x, y, w, reduction=reduction, pos_weight=pw)

    assert torch.autograd.gradcheck(fn, (x, y))


def test_strided_gradcheck():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(8, 12, dtype=torch.float64, generator=g).requires_grad_()
    y = torch.rand(4, 6, dtype=torch.float64, generator=g)
    assert torch.autograd.gradcheck(
        lambda x: fxt.binary_cross_entropy_with_logits(x[::2, ::2], y, reduction="sum"), (x,))


def test_result_dtypes_are_torchs():
    """torch's loss has the target's dtype, the gradient the input's."""
    for xd, yd in ((torch.float32, torch.float64), (torch.float64, torch.float32),
                   (torch.float32, torch.float16), (torch.bfloat16, torch.float32),
                   (torch.bfloat16, torch.bfloat16)):
        x = torch.randn(3, 4, dtype=xd)
        y = torch.rand(3, 4, dtype=yd)
        w = torch.rand(4, dtype=torch.float64)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ours = fxt.binary_cross_entropy_with_logits(xa, y, w, pos_weight=w)
        theirs = F.binary_cross_entropy_with_logits(xb, y, w, pos_weight=w)
        assert ours.dtype == theirs.dtype == yd
        ours.backward()
        theirs.backward()
        assert xa.grad.dtype == xb.grad.dtype == xd
        # Values: torch in float64 on the same values (torch's 16-bit arithmetic is coarser).
        x64 = x.double().requires_grad_()
        ref = F.binary_cross_entropy_with_logits(x64, y.double(), w, pos_weight=w)
        ref.backward()
        tol = 1e-2 if torch.float16 in (xd, yd) or torch.bfloat16 in (xd, yd) else 1e-6
        torch.testing.assert_close(ours.double(), ref, rtol=tol, atol=tol)
        torch.testing.assert_close(xa.grad.double(), x64.grad, rtol=tol, atol=tol)


def test_extreme_logits_match_torch():
    v = torch.tensor([1e4, -1e4, float("inf"), float("-inf"), float("nan"), 0.0, 100.0, -100.0],
                     dtype=torch.float64)
    x = v.repeat_interleave(3).reshape(-1, 3)
    y = torch.tensor([0.0, 1.0, 0.3], dtype=torch.float64).expand(x.shape)
    pw = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    for dtype in (torch.float32, torch.float64):
        xa = x.to(dtype).requires_grad_()
        xb = x.to(dtype).requires_grad_()
        la = fxt.binary_cross_entropy_with_logits(xa, y.to(dtype), pos_weight=pw.to(dtype),
                                                  reduction="none")
        lb = F.binary_cross_entropy_with_logits(xb, y.to(dtype), pos_weight=pw.to(dtype),
                                                reduction="none")
        la.sum().backward()
        lb.sum().backward()
        torch.testing.assert_close(la, lb, equal_nan=True)
        torch.testing.assert_close(xa.grad, xb.grad, equal_nan=True)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_torch_compile_fullgraph(reduction):
    torch._dynamo.reset()
    x = torch.randn(8, 33)
    y = torch.rand(8, 33)
    pw = torch.rand(33) + 0.5

    def step(x, y, pw):
        return fxt.binary_cross_entropy_with_logits(x * 2, y, reduction=reduction, pos_weight=pw)

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    la, lb = compiled(xa, y, pw), step(xb, y, pw)
    la.sum().backward()
    lb.sum().backward()
    torch.testing.assert_close(la, lb)
    torch.testing.assert_close(xa.grad, xb.grad)


# torch's inductor imports torch.utils.mkldnn, which warns about its own use of torch.jit.
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_torch_compile_module_inductor():
    torch._dynamo.reset()
    x = torch.randn(8, 33)
    y = (torch.rand(8, 17) > 0.5).float()
    model = torch.nn.Linear(33, 17)
    crit = fxt.BCEWithLogitsLoss(pos_weight=torch.rand(17) + 0.5)

    def step(x, y):
        return crit(model(x), y)

    loss = torch.compile(step, fullgraph=True)(x, y)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ref = torch.nn.BCEWithLogitsLoss(pos_weight=crit.pos_weight)(model(x), y)
    ref.backward()
    torch.testing.assert_close(loss, ref)
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(g, p.grad)


def test_module_matches_torch():
    x, y = torch.randn(6, 9), torch.rand(6, 9)
    w, pw = torch.rand(6, 1) + 0.5, torch.rand(9) + 0.5
    ours = fxt.BCEWithLogitsLoss(weight=w, reduction="sum", pos_weight=pw)
    theirs = torch.nn.BCEWithLogitsLoss(weight=w, reduction="sum", pos_weight=pw)
    assert isinstance(ours, torch.nn.Module)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    la, lb = ours(xa, y), theirs(xb, y)
    la.backward()
    lb.backward()
    torch.testing.assert_close(la, lb)
    torch.testing.assert_close(xa.grad, xb.grad)
    assert ours.double().pos_weight.dtype == torch.float64


def test_signatures_match_torch():
    def params(fn):
        return [(p.name, p.default, p.kind) for p in inspect.signature(fn).parameters.values()]

    assert params(fxt.binary_cross_entropy_with_logits) == params(
        F.binary_cross_entropy_with_logits)
    assert params(fxt.BCEWithLogitsLoss.__init__) == params(torch.nn.BCEWithLogitsLoss.__init__)


def test_legacy_reduction_arguments():
    x, y = torch.randn(4, 5), torch.rand(4, 5)
    with pytest.warns(UserWarning):
        ours = fxt.binary_cross_entropy_with_logits(x, y, reduce=False)
    torch.testing.assert_close(ours, F.binary_cross_entropy_with_logits(x, y, reduction="none"))


def test_custom_ops_pass_opcheck():
    x, y = torch.randn(5, 7), torch.rand(5, 7)
    xr = x.clone().requires_grad_()
    for args in [(x, y, None, None, "mean"), (xr, y, torch.rand(5, 1), torch.rand(7), "none"),
                 (xr, y.double(), None, torch.rand(7), "sum")]:
        torch.library.opcheck(torch.ops.fastxent.binary_cross_entropy_with_logits.default, args)
    for go, red in ((torch.tensor(1.0), "mean"), (torch.randn(5, 7), "none")):
        torch.library.opcheck(
            torch.ops.fastxent.binary_cross_entropy_with_logits_backward.default,
            (go, x, y, None, torch.rand(7), red), test_utils=("test_schema", "test_faketensor"))


def test_weight_and_pos_weight_are_not_differentiable_like_torch():
    x, y = torch.randn(4, 5), torch.rand(4, 5)
    for kw in ({"weight": torch.rand(5, requires_grad=True)},
               {"pos_weight": torch.rand(5, requires_grad=True)}):
        name = next(iter(kw))
        with pytest.raises(RuntimeError, match=f"not differentiable with respect to argument '{name}'"):
            F.binary_cross_entropy_with_logits(x, y, **kw)
        with pytest.raises(RuntimeError, match=f"not differentiable with respect to argument '{name}'"):
            fxt.binary_cross_entropy_with_logits(x, y, **kw)
        with torch.no_grad():
            fxt.binary_cross_entropy_with_logits(x, y, **kw)


def test_errors_name_the_argument():
    x = torch.randn(4, 5)
    with pytest.raises(ValueError, match="target: expected the input's shape"):
        fxt.binary_cross_entropy_with_logits(x, torch.rand(5))
    with pytest.raises(ValueError, match="pos_weight: shape \\(4,\\) cannot be broadcast"):
        fxt.binary_cross_entropy_with_logits(x, torch.rand(4, 5), pos_weight=torch.rand(4))
    with pytest.raises(TypeError, match="target: expected floating targets"):
        fxt.binary_cross_entropy_with_logits(x, torch.ones(4, 5, dtype=torch.long))


def test_no_grad_and_inference_mode():
    x, y = torch.randn(4, 5), torch.rand(4, 5)
    ref = F.binary_cross_entropy_with_logits(x, y)
    with torch.no_grad():
        torch.testing.assert_close(fxt.binary_cross_entropy_with_logits(x, y), ref)
    with torch.inference_mode():
        torch.testing.assert_close(fxt.binary_cross_entropy_with_logits(x, y), ref)


def test_numpy_facing_functions_take_and_return_torch_tensors():
    """fastxent.binary_cross_entropy_with_logits* on torch tensors: torch out (no autograd),
    the values of the NumPy path; out= and inplace=True write into the tensor and bump its
    version counter."""
    import fastxent

    x, y = torch.randn(5, 9), torch.rand(5, 9)
    loss = fastxent.binary_cross_entropy_with_logits(x, y, reduction="none")
    assert isinstance(loss, torch.Tensor) and loss.dtype == torch.float32
    np.testing.assert_array_equal(loss.numpy(), fastxent.binary_cross_entropy_with_logits(
        x.numpy(), y.numpy(), reduction="none"))
    out = torch.empty_like(x)
    v = out._version
    res = fastxent.binary_cross_entropy_with_logits_backward(x, y, out=out)
    assert res is out and out._version > v
    np.testing.assert_array_equal(
        out.numpy(), fastxent.binary_cross_entropy_with_logits_backward(x.numpy(), y.numpy()))
    xi = x.clone()
    v = xi._version
    _, g = fastxent.binary_cross_entropy_with_logits_with_grad(xi, y, inplace=True)
    assert g is xi and xi._version > v
    torch.testing.assert_close(xi, out, rtol=0, atol=0)

"""fastxent.torch with DESIGN.md's extensions (z_loss, softcap, return_lse): against a torch
composite of the same formulas, gradcheck in float64 (the lse output included), 16-bit
dtypes, in-place backward and torch.compile."""

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import fastxent.torch as fxt  # noqa: E402
import reference  # noqa: E402
from conftest import assert_close  # noqa: E402

EXTENSIONS = [
    pytest.param(dict(z_loss=1e-2), id="zloss"),
    pytest.param(dict(softcap=4.0), id="softcap"),
    pytest.param(dict(z_loss=0.3, softcap=1.5), id="both"),
]


def composite(x, t, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0,
              z_loss=0.0, softcap=None):
    """The extensions written with torch ops: (loss, per-row lse), autograd through both."""
    y = softcap * torch.tanh(x / softcap) if softcap else x
    lse = torch.logsumexp(y, dim=1 if y.dim() > 1 else 0)
    rows = F.cross_entropy(y, t, weight, ignore_index=ignore_index, reduction="none",
                           label_smoothing=label_smoothing)
    counted = torch.ones_like(rows) if t.is_floating_point() else (t != ignore_index).to(y.dtype)
    rows = rows + counted * z_loss * lse**2
    if reduction == "none":
        return rows, lse
    if reduction == "sum":
        return rows.sum(), lse
    if t.is_floating_point():
        return rows.sum() / rows.numel(), lse
    w_t = torch.ones_like(rows) if weight is None else weight[t.clamp(min=0)]
    return rows.sum() / (counted * w_t).sum(), lse


def problem(shape=(6, 40), dtype=torch.float64, prob=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    C = shape[1] if len(shape) > 1 else shape[0]
    if prob:
        t = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), 1).to(dtype)
    else:
        t = torch.randint(0, C, shape[:1] + shape[2:], generator=g)
        t.view(-1)[1] = -100
    return x.to(dtype), t


@pytest.mark.parametrize("ext", EXTENSIONS)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("prob", [False, True], ids=["index", "prob"])
@pytest.mark.parametrize("shape", [(6, 40), (3, 17, 4)], ids=["2d", "kdim"])
def test_matches_torch_composite(shape, prob, reduction, ext):
    x, t = problem(shape, prob=prob)
    w = torch.rand(shape[1], dtype=torch.float64) + 0.5
    kw = dict(weight=w, reduction=reduction, label_smoothing=0.1, **ext)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    loss, lse = fxt.cross_entropy(xa, t, **kw, return_lse=True)
    ref_loss, ref_lse = composite(xb, t, **kw)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(lse, ref_lse, rtol=1e-10, atol=1e-12)
    go = torch.rand_like(loss)
    gl = torch.rand_like(lse)
    ((loss * go).sum() + (lse * gl).sum()).backward()
    ((ref_loss * go).sum() + (ref_lse * gl).sum()).backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("ext", EXTENSIONS)
@pytest.mark.parametrize("prob", [False, True], ids=["index", "prob"])
def test_gradcheck_float64(prob, ext):
    x, t = problem((4, 9), prob=prob)
    x.requires_grad_()
    inputs = (x, t.requires_grad_()) if prob else (x,)

    def fn(x, t=t):
        loss, lse = fxt.cross_entropy(x, t, label_smoothing=0.2, reduction="none",
                                      return_lse=True, **ext)
        return loss, lse

    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("ext", EXTENSIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16],
                         ids=["f32", "bf16", "f16"])
def test_low_precision_dtypes(dtype, ext):
    """16-bit logits: the loss in the logits' dtype (as torch), the lse in float32, the gradient
    in the logits' dtype; all against the float64 reference within the dtype's tolerance."""
    x64, t = problem((8, 3001))
    x = x64.to(dtype).requires_grad_()
    loss, lse = fxt.cross_entropy(x, t, reduction="sum", **ext, return_lse=True)
    assert loss.dtype == dtype and lse.dtype == torch.float32
    loss.backward()
    xn, tn = x.detach().to(torch.float64).numpy(), t.numpy()
    ref_loss, mag = reference.cross_entropy(xn, tn, reduction="sum", **ext, with_magnitude=True)
    # torch's convention: the loss is rounded once to the logits' dtype
    eps = torch.finfo(dtype).eps
    assert abs(loss.double().item() - ref_loss) <= eps * float(mag)
    ref_lse = reference.row_logsumexp(xn, softcap=ext.get("softcap"))
    assert_close(lse.detach().numpy(), ref_lse, "float32", 3001, "lse", abs(ref_lse) + 1)
    ref_grad, gmag = reference.cross_entropy_backward(xn, tn, 1.0, reduction="sum", **ext,
                                                      with_magnitude=True)
    np_dtype = {torch.float32: "float32", torch.float16: "float16"}.get(dtype)
    if np_dtype is None:
        np_dtype = pytest.importorskip("ml_dtypes").bfloat16
    assert_close(x.grad.float().numpy().astype(np_dtype), ref_grad, np_dtype, 3001, "grad", gmag)


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_inplace_backward(ext):
    x, t = problem((5, 70))
    xa = x.clone().requires_grad_()
    xb = x.clone().requires_grad_()
    fxt.cross_entropy(xa * 1, t, **ext, inplace_backward=True).backward()
    composite(xb, t, **ext)[0].backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-10, atol=1e-12)


def test_module_passes_extensions():
    x, t = problem((5, 30))
    crit = fxt.CrossEntropyLoss(label_smoothing=0.1, z_loss=0.05, softcap=2.0, return_lse=True)
    loss, lse = crit(x, t)
    ref_loss, ref_lse = composite(x, t, label_smoothing=0.1, z_loss=0.05, softcap=2.0)
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(lse, ref_lse)


def test_torch_compile_fullgraph_with_extensions():
    torch._dynamo.reset()
    x, t = problem((8, 33), dtype=torch.float32)

    def step(x, t):
        loss, lse = fxt.cross_entropy(x * 2, t, label_smoothing=0.1, z_loss=1e-3, softcap=3.0,
                                      return_lse=True)
        return loss + lse.mean()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    la, lb = compiled(xa, t), step(xb, t)
    la.backward()
    lb.backward()
    torch.testing.assert_close(la, lb)
    torch.testing.assert_close(xa.grad, xb.grad)

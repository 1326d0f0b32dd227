"""fastxent against torch.nn.functional.cross_entropy on the CPU: loss and input.grad."""

import numpy as np
import pytest

import fastxent
import reference
from conftest import assert_close
from problems import DTYPES, Options, class_axis, make_logits, make_problem, option_grid

pytestmark = pytest.mark.every_isa  # each test once per CPU ISA (conftest.py)


def torch_loss_and_grad(torch, p, grad_output):
    """torch's loss and input.grad for problem `p` (torch's class axis is 1, so an `axis=` is
    moved there first; index targets go to torch as int64)."""
    F = torch.nn.functional
    kw = dict(p.kwargs)
    axis = kw.pop("axis")
    x = torch.tensor(p.x, requires_grad=True)
    xin = x
    t = torch.tensor(p.target.astype(np.int64) if p.target.dtype.kind in "iu" else p.target)
    if axis is not None and p.x.ndim > 1:
        ax = class_axis(p.x.ndim, axis)
        xin = x.movedim(ax, 1)
        if p.target.dtype.kind == "f":
            t = t.movedim(ax, 1)
    w = kw.pop("weight")
    loss = F.cross_entropy(xin, t, weight=None if w is None else torch.tensor(w), **kw)
    loss.backward(torch.as_tensor(np.asarray(grad_output, dtype=p.x.dtype)).expand(loss.shape))
    return loss.detach().numpy(), x.grad.numpy()


def check_against_torch(torch, p, rng):
    go = p.grad_output_rows(rng) if p.kwargs["reduction"] == "none" else np.asarray(-1.5)
    t_loss, t_grad = torch_loss_and_grad(torch, p, go)
    _, mag_loss = reference.cross_entropy(p.x, p.target, **p.kwargs, with_magnitude=True)
    _, mag = reference.cross_entropy_backward(p.x, p.target, go, **p.kwargs, with_magnitude=True)
    dt, n_loss, n_grad = p.x.dtype, 4 * p.terms(), 4 * p.C  # both sides round: 4n
    loss, grad = fastxent.cross_entropy_with_grad(p.x, p.target, go, **p.kwargs)
    assert_close(loss, t_loss, dt, n_loss, "with_grad loss vs torch", mag_loss)
    assert_close(grad, t_grad, dt, n_grad, "with_grad grad vs torch", mag)
    assert_close(fastxent.cross_entropy(p.x, p.target, **p.kwargs), t_loss, dt, n_loss,
                 "cross_entropy vs torch", mag_loss)
    assert_close(fastxent.cross_entropy_backward(p.x, p.target, go, **p.kwargs), t_grad, dt,
                 n_grad, "cross_entropy_backward vs torch", mag)


@pytest.mark.parametrize("opts", option_grid())
@pytest.mark.parametrize("shape", [(6, 11), (2, 5, 3, 4), (13,)], ids=["2d", "kdim", "1d"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_matches_torch(torch, dtype, shape, opts, rng):
    check_against_torch(torch, make_problem(rng, shape, dtype, opts), rng)


@pytest.mark.parametrize("opts", [
    pytest.param(Options(), id="defaults"),
    pytest.param(Options("index", True, "neg100", "none", 0.1), id="index-all"),
    pytest.param(Options("prob", True, "default", "mean", 0.1), id="prob-all")])
@pytest.mark.parametrize("shape,axis", [((64, 1000), None), ((3, 50257), None), ((4, 7, 33), -1),
                                        ((2, 300, 9), None)])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_matches_torch_larger(torch, dtype, shape, axis, opts, rng):
    check_against_torch(torch, make_problem(rng, shape, dtype, opts, axis=axis), rng)


EDGE_OPTS = [pytest.param(Options(kind, True, ign, red, ls), id=f"{kind}-{red}-ls{ls}")
             for kind, ign in (("index", "neg100"), ("prob", "default"))
             for red in ("none", "sum", "mean") for ls in (0.0, 0.1)]


def _masked(rng, x, p):
    x[:, [1, 4]] = -np.inf
    if p.target.dtype.kind == "f":
        p.target[:, 4] = 0  # y = 0 at a -inf logit: torch's 0 * -inf
    else:
        p.target[p.target == 1] = 0
        p.target[p.target == 4] = 2


def _minus_inf_target(rng, x, p):
    if p.target.dtype.kind != "f":
        p.target[2] = 3
    x[2, 3] = -np.inf


def _huge(rng, x, p):
    x += rng.choice([-1e4, 1e4], x.shape[0])[:, None]


def _huge_mixed(rng, x, p):
    x += rng.choice([-1e4, 1e4], x.shape)


def _nan_row(rng, x, p):
    if p.target.dtype.kind != "f":
        p.target[1] = 0
    x[1, 5] = np.nan


def _all_minus_inf_row(rng, x, p):
    if p.target.dtype.kind != "f":
        p.target[3] = 0
    x[3] = -np.inf


def _all_ignored(rng, x, p):
    if p.target.dtype.kind != "f":
        p.target[...] = -100


def _no_rows(rng, x, p):
    pass


@pytest.mark.parametrize("opts", EDGE_OPTS)
@pytest.mark.parametrize("edit", [_masked, _minus_inf_target, _huge, _huge_mixed, _nan_row,
                                  _all_minus_inf_row, _all_ignored, _no_rows],
                         ids=lambda f: f.__name__[1:])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_edge_values_match_torch(torch, dtype, edit, opts, rng):
    rows = 0 if edit is _no_rows else 6
    p = make_problem(rng, (rows, 9), dtype, opts)
    edit(rng, p.x, p)
    check_against_torch(torch, p, rng)


@pytest.mark.parametrize("tdtype", [np.uint8, np.int32, np.int64], ids=["u8", "i32", "i64"])
def test_target_dtypes_match_torch(torch, tdtype, rng):
    x = make_logits(rng, (10, 50), np.float32)
    t = rng.integers(0, 50, 10).astype(tdtype)
    expect = torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(t.astype(np.int64)))
    assert_close(fastxent.cross_entropy(x, t), expect.numpy(), np.float32, 4 * 60, "loss")

"""The vocabulary-parallel pieces of the core, in one process: per-shard statistics, the loss of
the whole vocabulary from them, and each shard's gradient slice, against the unsharded op and
the float64 reference for every option (fastxent.distributed runs them across processes)."""

import numpy as np
import pytest

import fastxent
import reference
from conftest import assert_bitwise_equal, assert_close
from fastxent import _api
from problems import Options, loss_dtype, make_problem, option_grid

pytestmark = pytest.mark.every_isa  # each test once per CPU ISA (conftest.py)

SPLITS = {  # shard boundaries as fractions of the vocabulary, and one shard of one class
    "halves": lambda V: [0, V // 2, V],
    "uneven4": lambda V: [0, 1, V // 3, V - 1, V],
    "whole": lambda V: [0, V],
}


def shard_run(p, bounds, go, ext):
    """(loss, lse, gradient) computed shard by shard (classes on the last axis)."""
    kw = dict(p.kwargs, **ext)
    V = p.x.shape[-1]
    prob = p.target.dtype.kind == "f"
    weight, axis = kw.pop("weight"), kw.pop("axis")
    assert axis in (None, -1) and p.x.ndim == 2 or axis == -1

    def local(a, b):
        x = p.x[..., a:b]
        t = p.target[..., a:b] if prob else p.target
        return x, t

    stats = [_api.shard_statistics(*local(a, b), a, V, weight, kw["ignore_index"],
                                   kw["label_smoothing"], axis=axis, softcap=kw.get("softcap"))
             for a, b in zip(bounds, bounds[1:])]
    all_stats = np.stack(stats)
    losses = [_api.loss_from_shard_statistics(*local(a, b), all_stats, a, V, weight, axis=axis,
                                              **kw) for a, b in zip(bounds, bounds[1:])]
    for other in losses[1:]:  # every shard computes the same bits
        assert_bitwise_equal(other[0], losses[0][0], "loss on another shard")
        assert_bitwise_equal(other[1], losses[0][1], "lse on another shard")
    loss, lse = losses[0]
    grads = [_api.shard_backward(*local(a, b), all_stats, a, V, go, weight, axis=axis, **kw)
             for a, b in zip(bounds, bounds[1:])]
    return loss, lse, np.concatenate(grads, axis=-1)


@pytest.mark.parametrize("ext", [{}, dict(z_loss=1e-2, softcap=3.0)], ids=["plain", "ext"])
@pytest.mark.parametrize("split", sorted(SPLITS))
@pytest.mark.parametrize("opts", option_grid(smoothings=(0.0, 0.1)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_shards_equal_the_whole(dtype, opts, split, ext, rng):
    p = make_problem(rng, (6, 37), dtype, opts, axis=-1)
    go = p.grad_output_rows(rng) if opts.reduction == "none" else 0.5
    loss, lse, grad = shard_run(p, SPLITS[split](37), go, ext)
    kw = dict(p.kwargs, **ext)
    ref_loss, mag = reference.cross_entropy(p.x, p.target, **kw, with_magnitude=True)
    assert_close(loss, ref_loss, loss_dtype(dtype), p.terms(), "sharded loss", mag)
    ref_lse = reference.row_logsumexp(p.x, -1, ext.get("softcap"))
    assert lse.dtype == np.float64
    assert_close(lse, ref_lse, loss_dtype(dtype), 37, "sharded lse", np.abs(ref_lse) + 1,
                 check_dtype=False)
    ref_grad, gmag = reference.cross_entropy_backward(p.x, p.target, go, **kw, with_magnitude=True)
    assert_close(grad, ref_grad, dtype, 37, "sharded gradient", gmag)
    whole = fastxent.cross_entropy(p.x, p.target, **kw)
    assert_close(loss, whole, loss_dtype(dtype), 2 * p.terms(), "sharded vs whole", mag)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_shards(dtype, rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    dt = np.dtype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)
    x = (rng.standard_normal((5, 4099)) * 3).astype(dt)
    p = make_problem(rng, None, None, Options("index", True, "neg100", "mean", 0.1), x=x)
    loss, lse, grad = shard_run(p, [0, 2048, 2049, 4099], 1.0, dict(z_loss=1e-3))
    ref_loss, mag = reference.cross_entropy(p.x, p.target, **p.kwargs, z_loss=1e-3,
                                            with_magnitude=True)
    assert_close(loss, ref_loss, np.float32, p.terms(), "loss", mag)
    ref_grad, gmag = reference.cross_entropy_backward(p.x, p.target, 1.0, **p.kwargs, z_loss=1e-3,
                                                      with_magnitude=True)
    assert_close(grad, ref_grad, dt, 4099, "gradient", gmag)


@pytest.mark.every_isa(False)
def test_shard_errors_are_clear(rng):
    x = rng.standard_normal((4, 10)).astype(np.float32)
    t = np.array([0, 5, 12, 19])
    with pytest.raises(ValueError, match="do not fit in vocab_size=15"):
        _api.shard_statistics(x, t, 10, 15)
    with pytest.raises(ValueError, match="vocab_start"):
        _api.shard_statistics(x, t, -1, 20)
    with pytest.raises(IndexError, match=r"target\[3\] = 19 is out of range.*< 18"):
        _api.shard_statistics(x, t, 8, 18)
    with pytest.raises(ValueError, match=r"weight: expected shape \(20,\)"):
        _api.shard_statistics(x, t, 10, 20, weight=np.ones(10, np.float32))
    with pytest.raises(ValueError, match="vocab_size must be > 0"):
        _api.shard_statistics(x, t, 3, 0)
    with pytest.raises(ValueError, match="all_stats: expected shape"):
        _api.loss_from_shard_statistics(x, t, np.zeros((2, 4, 4)), 0, 20)
    # the entry points that compute whole rows refuse a shard (only reachable through _core)
    from fastxent._arrays import numpy_alloc
    sharded = _api._options(None, -100, "mean", 0.0, None, 0.0, None, 0, 20)
    with pytest.raises(ValueError, match="forward needs the whole vocabulary"):
        _api._core.cross_entropy(x, t, sharded, "", numpy_alloc)
    with pytest.raises(ValueError, match="forward_backward needs the whole vocabulary"):
        _api._core.cross_entropy_with_grad(x, t, np.asarray(1.0), sharded, False, None, "",
                                           numpy_alloc)


@pytest.mark.parametrize("opts", option_grid(reductions=("none", "mean"), smoothings=(0.1,)))
def test_shard_backward_with_lse_gradient(opts, rng):
    """lse_grad_output (autograd through return_lse) adds lse_grad · ∂lse/∂x to every shard's
    slice: the slices equal the unsharded gradient from the saved lse."""
    p = make_problem(rng, (5, 29), np.float64, opts, axis=-1)
    go = p.grad_output_rows(rng) if opts.reduction == "none" else 0.5
    lse_grad = rng.uniform(-1.0, 1.0, p.rows_shape)
    kw = dict(p.kwargs, z_loss=1e-2, softcap=4.0)
    weight, _ = kw.pop("weight"), kw.pop("axis")
    V, bounds = 29, [0, 11, 12, 29]
    prob = opts.kind == "prob"
    local = [(p.x[:, a:b], p.target[:, a:b] if prob else p.target, a) for a, b in
             zip(bounds, bounds[1:])]
    all_stats = np.stack([_api.shard_statistics(x, t, a, V, weight, kw["ignore_index"],
                                                kw["label_smoothing"], softcap=kw["softcap"])
                          for x, t, a in local])
    grad = np.concatenate([_api.shard_backward(x, t, all_stats, a, V, go, weight, **kw,
                                               lse_grad_output=lse_grad) for x, t, a in local],
                          axis=-1)
    _, lse = _api.forward_saving_lse(p.x, p.target, weight, **kw)
    whole = _api.backward_from_lse(p.x, p.target, go, lse, weight, **kw,
                                   lse_grad_output=lse_grad)
    assert_close(grad, whole, np.float64, 29, "sharded gradient with lse gradient")
    without = _api.backward_from_lse(p.x, p.target, go, lse, weight, **kw)
    assert not np.allclose(whole, without)  # the lse gradient term is there

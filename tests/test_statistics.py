"""cross_entropy_statistics: loss, lse, argmax and entropy from one pass, against NumPy's
argmax and the float64 reference, for every ISA, dtype and layout."""

import numpy as np
import pytest

import fastxent
import reference
from conftest import assert_bitwise_equal, assert_close
from problems import DTYPES, Options, loss_dtype, make_logits, make_problem

pytestmark = pytest.mark.every_isa  # each test once per CPU ISA (conftest.py)


def check_statistics(p, softcap=None):
    kw = dict(p.kwargs, softcap=softcap)
    axis = kw["axis"]
    stats = fastxent.cross_entropy_statistics(p.x, p.target, **kw)
    ldt = loss_dtype(p.x.dtype)
    assert_bitwise_equal(stats.loss, fastxent.cross_entropy(p.x, p.target, **kw), "loss")
    assert_bitwise_equal(stats.lse, fastxent.cross_entropy(p.x, p.target, **kw,
                                                           return_lse=True)[1], "lse")
    x64 = np.asarray(p.x, np.float64)
    ax = 0 if x64.ndim == 1 and axis is None else (1 if axis is None else axis)
    assert stats.argmax.dtype == np.int64
    np.testing.assert_array_equal(stats.argmax, np.argmax(x64, axis=ax), "argmax")
    ref = reference.row_entropy(x64, axis, softcap)
    assert stats.entropy.dtype == ldt and stats.entropy.shape == ref.shape
    assert_close(stats.entropy, ref, ldt, p.C, "entropy", np.abs(ref) + 1e-30)


@pytest.mark.parametrize("softcap", [None, 4.0])
@pytest.mark.parametrize("shape,axis", [((7, 33), None), ((3, 2048 * 3 + 5), None),
                                        ((1, 262144), None), ((3, 17, 4), None), ((4, 5, 40), -1),
                                        ((29,), None), ((0, 8), None)],
                         ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_matches_numpy_and_reference(dtype, shape, axis, softcap, rng):
    p = make_problem(rng, shape, dtype, Options("index", True, "neg100", "none", 0.1), axis=axis)
    check_statistics(p, softcap)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision(dtype, rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    dt = np.dtype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)
    x = make_logits(rng, (6, 5000), np.float32).astype(dt)
    check_statistics(make_problem(rng, None, None, Options("index", False, "default", "mean"),
                                  x=x))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_ties_and_non_finite_rows(dtype, rng):
    """Ties go to the first index (also across 2048-class blocks), a NaN wins wherever it is
    (torch.argmax's rule), all -inf rows point at 0; masked classes add nothing to the
    entropy, a row with one finite class has entropy 0."""
    x = make_logits(rng, (6, 5000), dtype)
    x[0, [4999, 2048, 100]] = 99.0          # tie across blocks: the first wins
    x[1, 4500] = np.nan                      # a NaN after the max
    x[1, 3] = 99.0
    x[2, :] = -np.inf                        # all masked
    x[3, :] = -np.inf
    x[3, 2100] = 1.0                         # one class left: entropy 0
    x[4, :2500] = -np.inf                    # half masked
    x[5, 7] = np.inf
    t = np.zeros(6, np.int64)
    stats = fastxent.cross_entropy_statistics(x, t, reduction="none")
    np.testing.assert_array_equal(stats.argmax, [100, 4500, 0, 2100, np.argmax(x[4]), 7])
    ref = reference.row_entropy(x)
    assert_close(stats.entropy, ref, loss_dtype(dtype), 5000, "entropy", np.abs(ref) + 1e-30)
    assert stats.entropy[3] == 0.0


@pytest.mark.every_isa(False)
@pytest.mark.parametrize("shape", [(1, 262144), (64, 5000)], ids=["split-row", "rows"])
def test_bitwise_identical_for_any_thread_count(shape, rng, threads):
    x = make_logits(rng, shape, np.float32)
    x[0, -1] = x[0].max()  # a tie with the last block
    t = rng.integers(0, shape[1], shape[0])
    results = []
    for n in (1, 2):
        threads(n)
        results.append(fastxent.cross_entropy_statistics(x, t, reduction="none", softcap=5.0))
    for a, b in zip(*results):
        assert_bitwise_equal(a, b, f"{shape}: 1 vs 2 threads")


@pytest.mark.every_isa(False)
def test_torch_tensors_in_torch_out(rng):
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(make_logits(rng, (8, 300), np.float32)).to(torch.bfloat16)
    t = torch.from_numpy(rng.integers(0, 300, 8))
    stats = fastxent.cross_entropy_statistics(x, t, reduction="none")
    assert all(isinstance(v, torch.Tensor) for v in stats)
    assert torch.equal(stats.argmax, x.float().argmax(1))
    ent = torch.distributions.Categorical(logits=x.double()).entropy()
    torch.testing.assert_close(stats.entropy.double(), ent, rtol=1e-5, atol=1e-6)
    accuracy = (stats.argmax == t).float().mean()
    assert 0.0 <= float(accuracy) <= 1.0

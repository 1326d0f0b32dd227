"""fastxent.distributed with real processes on localhost: torch.multiprocessing + gloo and
mpirun + mpi4py, 2 and 4 ranks, every option (distributed_cases.CASES), even and uneven shards,
against the float64 reference, the unsharded fastxent and torch: the loss (the same bits on
every rank) and the rank's gradient slices put back together.

Each backend and world size is one launch of `world` processes that run every case and save
their results (distributed_cases.save); the tests below only read and check them."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastxent
import reference
from conftest import assert_bitwise_equal, assert_close
from distributed_cases import CASES, WORLDS, load
from problems import loss_dtype

TESTS = os.path.dirname(os.path.abspath(__file__))


def _memoized(launch):
    cache = {}

    def results(world):
        if world not in cache:
            cache[world] = launch(world)
        return cache[world]

    return results


@pytest.fixture(scope="module")
def torch_results(tmp_path_factory):
    """world → every rank's results of tests/torch_worker.py (launched on first use)."""
    pytest.importorskip("torch")
    import torch.multiprocessing as mp

    import torch_worker

    def launch(world):
        d = tmp_path_factory.mktemp(f"torch{world}")
        mp.spawn(torch_worker.run, args=(world, str(d / "init"), str(d)), nprocs=world)
        return load(d, world)

    return _memoized(launch)


def _mpi_env():
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
               # Open MPI: more ranks than cores is fine here; and Docker-safe shared memory
               OMPI_MCA_rmaps_base_oversubscribe="1",
               OMPI_MCA_btl_vader_single_copy_mechanism="none")
    if os.geteuid() == 0:  # CI containers run as root, which Open MPI refuses by default
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return env


@pytest.fixture(scope="module")
def mpi_results(tmp_path_factory):
    """world → every rank's results of `mpirun -np world tests/mpi_worker.py`."""
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        pytest.skip("mpirun not found (Debian: apt-get install openmpi-bin; .ci/run installs it)")
    pytest.importorskip("mpi4py", reason="mpi4py is in the test extra: pip install '.[test]'")

    def launch(world):
        d = tmp_path_factory.mktemp(f"mpi{world}")
        proc = subprocess.run([mpirun, "-np", str(world), sys.executable,
                               os.path.join(TESTS, "mpi_worker.py"), str(d)],
                              env=_mpi_env(), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (f"mpirun failed:\n{proc.stdout[-3000:]}\n"
                                      f"{proc.stderr[-3000:]}")
        return load(d, world)

    return _memoized(launch)


def _expected(case, through_lse):
    """The problem, and the float64 reference's loss, gradient (with the lse's gradient when
    `through_lse`: torch autograd backpropagates through the returned lse) and lse, with their
    magnitudes."""
    p, go, lse_grad = case.problem()
    kw = dict(p.kwargs, **case.ext())
    ref_loss, mag = reference.cross_entropy(p.x, p.target, **kw, with_magnitude=True)
    ref_grad, gmag = reference.cross_entropy_backward(p.x, p.target, go, **kw,
                                                      with_magnitude=True)
    if through_lse and lse_grad is not None:
        # ∂(Σ lse_grad·lse)/∂x = lse_grad · softmax(cap(x)) · cap'(x)
        x = p.x.astype(np.float64)
        slope = 1.0
        if case.softcap:
            x, slope = case.softcap * np.tanh(x / case.softcap), 1 - np.tanh(x / case.softcap) ** 2
        extra = lse_grad[..., None] * reference.softmax(x, -1) * slope
        ref_grad, gmag = ref_grad + extra, gmag + np.abs(extra)
    ref_lse = reference.row_logsumexp(p.x, -1, case.softcap)
    return p, go, (ref_loss, mag), (ref_grad, gmag), ref_lse


def _check(case, per_rank, loss_dt, through_lse):
    """The ranks' results of `case` against the reference and the unsharded fastxent."""
    p, go, (ref_loss, mag), (ref_grad, gmag), ref_lse = _expected(case, through_lse)
    first = per_rank[0]
    for r, res in enumerate(per_rank[1:], 1):  # the loss is replicated: the same bits
        assert_bitwise_equal(res["loss"][0], first["loss"][0], f"loss on rank {r}")
        if case.return_lse:
            assert_bitwise_equal(res["lse"][0], first["lse"][0], f"lse on rank {r}")
    loss, dt = first["loss"]
    assert dt == np.dtype(loss_dt).name, f"loss dtype {dt}"
    assert_close(loss, ref_loss, loss_dt, p.terms(), "sharded loss", mag, check_dtype=False)
    grads = [res["grad"] for res in per_rank]
    assert all(g[1] == p.x.dtype.name for g in grads), [g[1] for g in grads]
    grad = np.concatenate([g[0] for g in grads], axis=-1)
    assert_close(grad, ref_grad, p.x.dtype, p.C, "gathered gradient", gmag, check_dtype=False)
    if case.return_lse:
        lse, dt = first["lse"]
        assert dt == loss_dtype(p.x.dtype).name, f"lse dtype {dt}"
        assert_close(lse, ref_lse, loss_dtype(p.x.dtype), p.C, "lse", np.abs(ref_lse) + 1,
                     check_dtype=False)
    # the unsharded op on the whole logits
    kw = dict(p.kwargs, **case.ext())
    whole_loss, whole_grad = fastxent.cross_entropy_with_grad(p.x, p.target, go, **kw)
    assert_close(loss, whole_loss.astype(np.float64), loss_dt, 2 * p.terms(), "sharded vs whole",
                 mag, check_dtype=False)
    if not (through_lse and case.return_lse):
        assert_close(grad, whole_grad.astype(np.float64), p.x.dtype, 2 * p.C,
                     "sharded vs whole gradient", gmag, check_dtype=False)


def _check_torch_parity(case, per_rank):
    """torch's F.cross_entropy (float64, on the same values) where it has the options."""
    import torch

    p, go, _ = case.problem()
    x = torch.from_numpy(p.x.astype(np.float64)).movedim(-1, 1).requires_grad_()
    t = torch.from_numpy(p.target.astype(np.float64) if case.opts.kind == "prob" else p.target)
    if case.opts.kind == "prob":
        t = t.movedim(-1, 1)
    w = p.kwargs["weight"]
    loss = torch.nn.functional.cross_entropy(
        x, t, None if w is None else torch.from_numpy(w.astype(np.float64)),
        ignore_index=p.kwargs["ignore_index"], reduction=p.kwargs["reduction"],
        label_smoothing=p.kwargs["label_smoothing"])
    (loss * torch.from_numpy(go.astype(np.float64))).sum().backward()
    got = per_rank[0]["loss"][0]
    dt = p.x.dtype
    assert_close(got, loss.detach().numpy(), dt, 2 * p.terms(), "sharded loss vs torch",
                 check_dtype=False)
    grad = np.concatenate([res["grad"][0] for res in per_rank], axis=-1)
    assert_close(grad, x.grad.movedim(1, -1).numpy(), dt, 2 * p.C, "sharded gradient vs torch",
                 check_dtype=False)


def _check_errors(per_rank, world):
    """Every rank raised, none hung: the same ValueError where every rank sees the problem;
    the failing rank's own error and RuntimeError elsewhere for one rank's bad argument."""
    for r, res in enumerate(per_rank):
        kind, msg = res["errors"]["bad_tiling"]
        assert kind == "ValueError" and "must tile the vocabulary" in msg, (r, kind, msg)
        kind, msg = res["errors"]["bad_vocab_size"]
        assert kind == "ValueError" and f"vocab_size={5 * world + 1}" in msg, (r, kind, msg)
        kind, msg = res["errors"]["bad_local_target"]
        if r == world - 1:
            assert kind == "ValueError" and "target" in msg, (r, kind, msg)
        else:
            assert kind == "RuntimeError" and f"rank(s) [{world - 1}]" in msg, (r, kind, msg)


def _case_params():
    return [pytest.param(c, id=c.name) for c in CASES]


def _check_target_grad(case, per_rank):
    """Soft labels' gradient: torch's own (float64) through F.cross_entropy of the capped
    logits (the z-loss does not depend on the target)."""
    import torch

    p, go, _ = case.problem()
    x = torch.from_numpy(p.x.astype(np.float64))
    if case.softcap:
        x = case.softcap * torch.tanh(x / case.softcap)
    y = torch.from_numpy(p.target.astype(np.float64)).requires_grad_()
    w = p.kwargs["weight"]
    loss = torch.nn.functional.cross_entropy(
        x.movedim(-1, 1), y.movedim(-1, 1),
        None if w is None else torch.from_numpy(w.astype(np.float64)),
        reduction=p.kwargs["reduction"], label_smoothing=p.kwargs["label_smoothing"])
    (loss * torch.from_numpy(go.astype(np.float64))).sum().backward()
    grads = [res["target_grad"] for res in per_rank]
    assert all(g[1] == p.target.dtype.name for g in grads), [g[1] for g in grads]
    got = np.concatenate([g[0] for g in grads], axis=-1)
    # each entry is (1-ε)·w_c·(lse - x_c)·g_r: its rounding error scales with |lse| + |x_c|
    lse = reference.row_logsumexp(p.x, -1, case.softcap)
    g = np.broadcast_to(go.astype(np.float64), p.rows_shape)
    g = g / p.rows if p.kwargs["reduction"] == "mean" else g
    wc = np.ones(p.C) if w is None else w.astype(np.float64)
    mag = (1 - p.kwargs["label_smoothing"]) * wc * (np.abs(lse)[..., None] + np.abs(x.numpy())) \
        * np.abs(g)[..., None]
    assert_close(got, y.grad.numpy(), p.target.dtype, p.C, "probability target's gradient",
                 mag, check_dtype=False)


@pytest.mark.parametrize("case", _case_params())
@pytest.mark.parametrize("world", WORLDS, ids=lambda w: f"world{w}")
def test_torch_distributed(torch_results, world, case):
    per_rank = [res[case.name] for res in torch_results(world)]
    p = case.problem()[0]
    loss_dt = p.x.dtype  # fastxent.torch's convention: the loss in the logits' dtype
    _check(case, per_rank, loss_dt, through_lse=True)
    plain = not case.z_loss and not case.softcap and not case.return_lse
    if plain and p.x.dtype.itemsize >= 4:
        _check_torch_parity(case, per_rank)
    if case.opts.kind == "prob":
        _check_target_grad(case, per_rank)


@pytest.mark.parametrize("world", WORLDS, ids=lambda w: f"world{w}")
def test_torch_distributed_errors_reach_every_rank(torch_results, world):
    _check_errors(torch_results(world), world)


def test_torch_distributed_subgroup(torch_results):
    """Two groups of two ranks inside a world of four, each computing CASES[1] on its own."""
    per_rank = torch_results(4)
    loss_dt = CASES[1].problem()[0].x.dtype
    for pair in ([0, 1], [2, 3]):
        _check(CASES[1], [per_rank[r]["subgroup"] for r in pair], loss_dt, through_lse=True)


@pytest.mark.parametrize("case", _case_params())
@pytest.mark.parametrize("world", WORLDS, ids=lambda w: f"world{w}")
def test_mpi(mpi_results, world, case):
    per_rank = [res[case.name] for res in mpi_results(world)]
    _check(case, per_rank, loss_dtype(case.problem()[0].x.dtype), through_lse=False)
    for res in per_rank:
        assert_bitwise_equal(res["loss_only"][0], res["loss"][0], "mpi_cross_entropy's loss")
        assert res["wrote_input"] == case.inplace


@pytest.mark.parametrize("world", WORLDS, ids=lambda w: f"world{w}")
def test_mpi_errors_reach_every_rank(mpi_results, world):
    _check_errors(mpi_results(world), world)


def test_import_needs_neither_torch_nor_mpi4py():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['mpi4py'] = None; "
            "import fastxent.distributed")
    subprocess.run([sys.executable, "-c", code], check=True,
                   env=dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p)))


def test_argument_errors_before_any_collective():
    """Errors every rank would make alike are raised before communicating."""
    import fastxent.distributed as fxd

    x = np.zeros((3, 5))
    t = np.zeros(3, dtype=np.int64)
    with pytest.raises(TypeError, match="comm: expected an mpi4py communicator"):
        fxd.mpi_cross_entropy(x, t, 0, object())
    with pytest.raises(ValueError, match="out: give either inplace=True or out="):
        fxd.mpi_cross_entropy_with_grad(x, t, 0, None, inplace=True, out=x)
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="local_logits, target: expected torch tensors"):
        fxd.cross_entropy(x, t, 0)
    y = torch.zeros(3, 5, dtype=torch.float64, requires_grad=True)
    w = torch.ones(5, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="weight must not require grad"):
        fxd.cross_entropy(torch.zeros(3, 5, dtype=torch.float64), y, 0, weight=w)

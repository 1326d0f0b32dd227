"""One rank of the torch.distributed test (tests/test_distributed.py starts them with
torch.multiprocessing.spawn, gloo): runs every case of distributed_cases.CASES through
fastxent.distributed.cross_entropy with autograd and saves the loss, lse and local gradient."""

import datetime

import numpy as np
import torch
import torch.distributed as dist

import fastxent
import fastxent.distributed as fxd
from distributed_cases import CASES, as_float64, error_checks, local_slice, save, shard_kwargs


def _tensor(a):
    if a.dtype.name == "bfloat16":  # NumPy cannot hand ml_dtypes' bfloat16 to torch
        return torch.from_numpy(a.astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(a))


def run_case(case, world, rank, group=None):
    p, go, lse_grad = case.problem()
    x, t, start = local_slice(p, case, world, rank)
    kw = shard_kwargs(case, p)
    if kw["weight"] is not None:
        kw["weight"] = _tensor(kw["weight"])
    leaf = _tensor(x).requires_grad_()
    # inplace_backward writes into the logits: give it an intermediate, as a model's head is
    logits = leaf * 1 if case.inplace else leaf
    target = _tensor(t)
    if case.opts.kind == "prob":  # soft labels that require grad get their slice's gradient
        target.requires_grad_()
    out = fxd.cross_entropy(logits, target, start, group, **kw, return_lse=case.return_lse,
                            inplace_backward=case.inplace)
    loss, lse = out if case.return_lse else (out, None)
    total = (loss * _tensor(go)).sum()
    if lse is not None:
        total = total + (lse * torch.from_numpy(lse_grad).to(lse.dtype)).sum()
    total.backward()
    result = dict(loss=as_float64(_numpy(loss)), grad=as_float64(_numpy(leaf.grad)))
    if lse is not None:
        result["lse"] = as_float64(_numpy(lse))
    if target.requires_grad:
        result["target_grad"] = as_float64(_numpy(target.grad))
    return result


def _numpy(t):
    t = t.detach()
    name = str(t.dtype).removeprefix("torch.")
    if name == "bfloat16":
        import ml_dtypes

        return t.float().numpy().astype(ml_dtypes.bfloat16)
    return t.numpy()


def _bad_call(kind, world, rank):
    x = torch.zeros(3, 5, dtype=torch.float64)  # 5 classes per rank
    t = torch.zeros(3, dtype=torch.int64)
    V = 5 * world
    if kind == "bad_tiling":  # rank 0 claims classes [1, 6): class 0 is nobody's
        return fxd.cross_entropy(x, t, 5 * rank + (rank == 0))
    if kind == "bad_local_target":  # the last rank's probability target is one class short
        y = torch.zeros(3, 4 if rank == world - 1 else 5, dtype=torch.float64)
        return fxd.cross_entropy(x, y, 5 * rank, vocab_size=V)
    return fxd.cross_entropy(x, t, 5 * rank, vocab_size=V + 1)


def run(rank, world, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=120))
    torch.set_num_threads(1)
    fastxent.set_num_threads(1)  # world processes share the cores
    try:
        results = {case.name: run_case(case, world, rank) for case in CASES}
        # a subgroup: ranks [0, world/2) and [world/2, world) each run a case as two shards
        half = world // 2
        groups = [dist.new_group(list(range(0, half))), dist.new_group(list(range(half, world)))]
        mine = groups[rank // half]
        results["subgroup"] = run_case(CASES[1], half, dist.get_rank(mine), mine) if half > 1 \
            else None
        results["errors"] = error_checks(lambda kind: _bad_call(kind, world, rank))
        save(results, out_dir, rank)
    finally:
        dist.destroy_process_group()

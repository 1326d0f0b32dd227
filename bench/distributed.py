"""Scaling of fastxent.distributed.cross_entropy (vocabulary-parallel, torch.distributed + gloo)
over 1, 2, 4 processes on this machine, against gathering the logits.

    PYTHONPATH=python python bench/distributed.py                       # N=4096, V=128256
    PYTHONPATH=python python bench/distributed.py --rows 1024 --baseline

For each world size, `world` processes each hold ``logits[:, v0:v1]`` (float32, V split evenly)
and time, as the slowest rank sees it (a barrier before every iteration; median of --repeats):

- fwd+bwd: ``fastxent.distributed.cross_entropy(...)`` then ``.backward()`` (a fresh gradient
  slice each time, as autograd allocates it);
- in place: the same with ``inplace_backward=True`` (the gradient overwrites the logits: no
  fresh N × V_local allocation, whose first-touch page faults cost more than the kernels here);
- fwd: the forward alone (no_grad);
- gather: the one all-gather of per-row statistics alone (N × 5 float64 + 3 per rank);
- baseline (``--baseline``): all-gather the logits (what the statistics replace), then
  fastxent's fused in-place fwd+bwd over the whole vocabulary on every rank, keeping the slice.

Bytes received per rank: the statistics' (world × (5N + 3) × 8) against the logits'
((world - 1) × N × V_local × 4). Verification before timing: every world's loss equals the
1-process loss (the logits are generated per fixed column block, so every world sees the same
matrix), and with --baseline the sharded loss and gradient equal the gathered ones.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import fastxent
import fastxent.distributed as fxd

BLOCKS = 4  # the logits are generated per column block, so every world size sees one matrix


def make_local(rows, vocab, start, stop):
    """Columns [start, stop) of the (rows, vocab) float32 logits, block by block."""
    width = vocab // BLOCKS
    parts = []
    for b in range(start // width, stop // width):
        g = torch.Generator().manual_seed(1000 + b)
        parts.append(torch.randn(rows, width, generator=g) * 3)
    return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


def timed(fn, repeats):
    """Per-iteration times as the slowest rank sees them (barrier first), after one warm-up."""
    fn()
    local = []
    for _ in range(repeats):
        dist.barrier()
        t0 = time.perf_counter()
        fn()
        local.append(time.perf_counter() - t0)
    every = [None] * dist.get_world_size()
    dist.all_gather_object(every, local)
    return [max(ts) for ts in zip(*every)]


def worker(rank, world, args, init_file, out_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    torch.set_num_threads(args.threads)
    fastxent.set_num_threads(args.threads)
    N, V = args.rows, args.vocab
    start, stop = V * rank // world, V * (rank + 1) // world
    local = make_local(N, V, start, stop)
    target = torch.randint(0, V, (N,), generator=torch.Generator().manual_seed(7))
    result = {}

    def fwd_bwd():
        x = local.requires_grad_()
        x.grad = None
        loss = fxd.cross_entropy(x, target, start, vocab_size=V)
        loss.backward()
        return loss, x.grad

    def time_inplace():
        # The gradient overwrites the logits (no page faults of a fresh one), so from the
        # second call on the logits are the previous gradient: other values, the same work.
        work = local.detach().clone()

        def fwd_bwd_inplace():
            x = work.requires_grad_()
            x.grad = None
            fxd.cross_entropy(x, target, start, vocab_size=V, inplace_backward=True).backward()

        return timed(fwd_bwd_inplace, args.repeats)

    def fwd():
        with torch.no_grad():
            return fxd.cross_entropy(local, target, start, vocab_size=V)

    message = torch.zeros(N * 5 + 3, dtype=torch.float64)
    received = torch.empty(world * message.numel(), dtype=torch.float64)

    def gather():
        dist.all_gather_single(received, message)

    loss, grad = fwd_bwd()
    result["loss"] = loss.item()
    result["fwd_bwd"] = timed(fwd_bwd, args.repeats)
    result["fwd_bwd_inplace"] = time_inplace()
    result["fwd"] = timed(fwd, args.repeats)
    result["gather"] = timed(gather, args.repeats)
    if args.baseline:
        recv = torch.empty(world * N, stop - start)  # the ranks' shards one below the other

        def baseline():
            dist.all_gather_single(recv, local.detach())
            # (world, N, V_local) → (N, V): a copy
            full = recv.view(world, N, -1).permute(1, 0, 2).reshape(N, V)
            bl, g = fastxent.cross_entropy_with_grad(full, target, inplace=True)
            return bl, g[:, start:stop].clone()

        bl, bgrad = baseline()  # verify before timing
        err = (grad - bgrad).abs().max().item()
        assert abs(bl.item() - loss.item()) <= 1e-5 * abs(loss.item()), (bl.item(), loss.item())
        assert err <= 1e-6 * grad.abs().max().item() + 1e-9, err
        result["baseline"] = timed(baseline, args.repeats)
        del recv
    del grad
    if rank == 0:
        with open(out_file, "w") as f:
            json.dump(result, f)
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--threads", type=int, default=1, help="fastxent/torch threads per rank")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--baseline", action="store_true", help="also time gathering the logits")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    if args.vocab % BLOCKS or any(BLOCKS % w for w in args.worlds):
        ap.error(f"--vocab must divide by {BLOCKS} and every world size must divide {BLOCKS}")
    N, V = args.rows, args.vocab
    print(f"fastxent.distributed bench: N={N}, V={V} float32, gloo, {args.threads} thread(s) "
          f"per rank, {os.cpu_count()} CPUs, median of {args.repeats}")
    head = (f"{'world':>5} {'V_local':>8} {'fwd+bwd ms':>11} {'in place ms':>12} {'fwd ms':>8} "
            f"{'gather ms':>10} "
            f"{'stats KiB':>10} {'logits MiB':>11}")
    print(head + (f" {'gather-logits ms':>17}" if args.baseline else ""))
    rows, reference_loss = [], None
    for world in args.worlds:
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "result.json")
            mp.spawn(worker, args=(world, args, os.path.join(d, "init"), out), nprocs=world)
            with open(out) as f:
                r = json.load(f)
        if reference_loss is None:
            reference_loss = r["loss"]
        assert abs(r["loss"] - reference_loss) <= 1e-5 * abs(reference_loss), (world, r["loss"])
        med = {k: statistics.median(v) * 1e3 for k, v in r.items() if isinstance(v, list)}
        stats_bytes = world * (5 * N + 3) * 8
        logits_bytes = (world - 1) * N * (V // world) * 4
        line = (f"{world:>5} {V // world:>8} {med['fwd_bwd']:>11.1f} "
                f"{med['fwd_bwd_inplace']:>12.1f} {med['fwd']:>8.1f} "
                f"{med['gather']:>10.3f} {stats_bytes / 1024:>10.0f} "
                f"{logits_bytes / 2**20:>11.0f}")
        if args.baseline:
            line += f" {med['baseline']:>17.1f}"
        print(line, flush=True)
        rows.append(dict(world=world, loss=r["loss"], stats_bytes=stats_bytes,
                         logits_bytes=logits_bytes, **{f"{k}_ms": v for k, v in med.items()}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(rows=N, vocab=V, threads=args.threads, results=rows), f, indent=1)


if __name__ == "__main__":
    main()

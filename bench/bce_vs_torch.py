"""Time fastxent's binary_cross_entropy_with_logits against torch's on one shape (CPU).

    PYTHONPATH=python python bench/bce_vs_torch.py --shape 4096 50257 --dtype float32

Forward (loss, reduction "mean") and forward+backward (fastxent: one fused pass,
binary_cross_entropy_with_logits_with_grad; torch: F.binary_cross_entropy_with_logits + backward,
as training runs it), median of --repeats runs after a warm-up, with the bytes each must move at
least (forward: read x and y; fused: also write the gradient) over the time. Results are checked
against each other before timing.
"""

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

import fastxent


def median_time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs="+", default=[4096, 50257])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pos-weight", action="store_true", help="pass a (C,) pos_weight")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(args.shape, generator=g) * 3).to(dtype)
    y = (torch.rand(args.shape, generator=g) > 0.5).to(dtype)
    pw = (torch.rand(args.shape[-1], generator=g) + 0.5).to(dtype) if args.pos_weight else None
    nbytes = x.numel() * x.element_size()

    ours = fastxent.binary_cross_entropy_with_logits(x, y, pos_weight=pw)
    theirs = F.binary_cross_entropy_with_logits(x.double(), y.double(), pos_weight=None if pw is None else pw.double())
    assert abs(float(ours) - float(theirs)) <= 1e-5 * abs(float(theirs)), (ours, theirs)

    xg = x.clone().requires_grad_()
    grad_out = torch.empty_like(x)

    def torch_fused():
        xg.grad = None
        F.binary_cross_entropy_with_logits(xg, y, pos_weight=pw).backward()

    rows = [
        ("forward", "fastxent", lambda: fastxent.binary_cross_entropy_with_logits(x, y, pos_weight=pw), 2 * nbytes),
        ("forward", "torch", lambda: F.binary_cross_entropy_with_logits(x, y, pos_weight=pw), 2 * nbytes),
        ("fwd+bwd", "fastxent", lambda: fastxent.binary_cross_entropy_with_logits_with_grad(
            x, y, pos_weight=pw, out=grad_out), 3 * nbytes),
        ("fwd+bwd", "torch", torch_fused, 3 * nbytes),
    ]
    print(f"shape {tuple(args.shape)} {args.dtype}, pos_weight={'(C,)' if pw is not None else None}, "
          f"threads fastxent {fastxent.get_num_threads()} torch {torch.get_num_threads()}, "
          f"isa {fastxent.info()['isa']}")
    results = {}
    for what, who, fn, moved in rows:
        t = median_time(fn, args.repeats)
        results[(what, who)] = t
        print(f"  {what:8s} {who:9s} {t * 1e3:9.1f} ms  {moved / t / 1e9:6.2f} GB/s")
    for what in ("forward", "fwd+bwd"):
        print(f"  {what}: fastxent is {results[(what, 'torch')] / results[(what, 'fastxent')]:.2f}x torch")


if __name__ == "__main__":
    main()

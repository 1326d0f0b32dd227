"""GPU benchmark: fastxent's CUDA kernels against torch on the same inputs, verified first, as
bandwidth (GB/s) next to a device-to-device copy of the same logits measured in the same run.

Forward reads the logits once (N·C values); forward+backward reads them and writes the gradient
(2·N·C values). GB/s counts those bytes only (targets and per-row outputs are negligible), so a
kernel at the memory roofline reaches the copy's GB/s (a copy also reads and writes each byte).
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

import fastxent
import fastxent.torch as fxt

SHAPES = [  # (N, C, dtype)
    (4096, 50257, torch.float32),
    (4096, 50257, torch.bfloat16),
    (8192, 32000, torch.bfloat16),
    (4096, 128256, torch.bfloat16),
    (65536, 1000, torch.float32),
    (262144, 10, torch.float32),
    (8, 256000, torch.float32),
    (1, 128256, torch.float32),
]
QUICK = SHAPES[:2] + SHAPES[4:5] + SHAPES[6:7]


def timed(fn, reps):
    """Median milliseconds of fn over `reps` runs, timed with CUDA events (after 3 warm-ups)."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def verify(x, t):
    """fastxent against torch (float64) on these inputs, before anything is timed."""
    xd = x.detach().double().requires_grad_()
    ref = F.cross_entropy(xd, t)
    ref.backward()
    loss, grad = fastxent.cross_entropy_with_grad(x, t)
    tol = 1e-6 if x.dtype == torch.float32 else 1e-2
    torch.testing.assert_close(loss.double(), ref.detach(), rtol=max(tol, 1e-5), atol=1e-6)
    torch.testing.assert_close(grad.double(), xd.grad, rtol=tol * 10, atol=tol / x.shape[0])


def bench_shape(n, c, dtype, reps):
    x = torch.randn(n, c, device="cuda").mul_(3).to(dtype)
    t = torch.randint(0, c, (n,), device="cuda")
    verify(x, t)
    nbytes = x.numel() * x.element_size()
    dst = torch.empty_like(x)
    xr = x.detach().clone().requires_grad_()

    def torch_fwd_bwd():
        xr.grad = None
        F.cross_entropy(xr, t).backward()

    def fxt_fwd_bwd():
        xr.grad = None
        fxt.cross_entropy(xr, t).backward()

    ms = {
        "copy": timed(lambda: dst.copy_(x), reps),
        "fastxent forward": timed(lambda: fastxent.cross_entropy(x, t), reps),
        "torch forward": timed(lambda: F.cross_entropy(x, t), reps),
        "fastxent fused (with_grad)": timed(lambda: fastxent.cross_entropy_with_grad(x, t), reps),
        "fastxent fused in place": timed(
            lambda: fastxent.cross_entropy_with_grad(dst, t, inplace=True), reps),
        "fastxent.torch fwd+bwd": timed(fxt_fwd_bwd, reps),
        "torch fwd+bwd": timed(torch_fwd_bwd, reps),
    }
    moved = {k: (nbytes if "forward" in k else 2 * nbytes) for k in ms}
    return {k: dict(ms=v, gbps=moved[k] / v / 1e6) for k, v in ms.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer shapes and repetitions")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    props = torch.cuda.get_device_properties(0)
    print(f"device: {props.name}, {props.total_memory / 2**30:.0f} GiB; "
          f"fastxent {fastxent.__version__}, torch {torch.__version__}")
    print("GB/s = logits bytes read (forward) or read + gradient written (fwd+bwd) per second; "
          "copy = the same bytes read and written by a device copy (the roofline)\n")
    results = []
    for n, c, dtype in QUICK if args.quick else SHAPES:
        r = bench_shape(n, c, dtype, 10 if args.quick else 30)
        copy = r["copy"]["gbps"]
        print(f"N={n} C={c} {str(dtype).replace('torch.', '')}  (copy {copy:.0f} GB/s)")
        for name, v in r.items():
            if name != "copy":
                print(f"  {name:28s} {v['ms']:9.3f} ms  {v['gbps']:7.0f} GB/s  "
                      f"{100 * v['gbps'] / copy:5.1f}% of copy")
        results.append(dict(N=n, C=c, dtype=str(dtype), results=r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=props.name, results=results), f, indent=1)


if __name__ == "__main__":
    main()

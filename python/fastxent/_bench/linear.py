"""The linear cross-entropy cases of the benchmark: the loss of cross_entropy(hidden @ weight.T
+ bias, target) and its gradients for hidden, weight and bias, computed

- by fastxent in chunks of rows (fastxent.torch.linear_cross_entropy with autograd, and
  fastxent.linear_cross_entropy_with_grad on NumPy arrays): never N×V logits;
- by plain torch (F.linear + F.cross_entropy, autograd): N×V logits, log-softmax, gradient;
- by the library's matmul + fastxent's cross-entropy, unchunked (torch: F.linear +
  fastxent.torch.cross_entropy(inplace_backward=True); NumPy: one (N, V) logits array turned
  into its gradient in place): N×V logits, nothing more.

Each case reports its time and its peak extra memory (bench.py measures both); the loss and
sampled gradient rows (of hidden and weight) are checked against the first case's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import numpy as np

from fastxent._bench.peers import Bound, Case
from fastxent._bench.timing import Budget

FWD, FWD_BWD = "linear fwd", "linear fwd+bwd"  # ops of their own: not in the GB/s plot

# (N, H, V): a Llama-3 vocabulary and hidden size with 4096 tokens (~2 TFLOP per product, three
# products per forward+backward: one call per case, which is both verified and timed), and a
# small shape for --quick (a few seconds) that still runs in two chunks of 256 rows.
SHAPES: List[Tuple[int, int, int]] = [(4096, 2048, 128256)]
QUICK_SHAPES: List[Tuple[int, int, int]] = [(512, 256, 32000)]
FULL = Budget(target_s=0.0, min_repeats=0, max_repeats=0, min_sample_s=0.0, warmup_below_s=0.0)
QUICK = Budget(target_s=0.5, min_repeats=1, max_repeats=3, min_sample_s=0.0, warmup_below_s=0.0)


@dataclass
class Problem:
    """float32 hidden (N, H), weight (V, H), bias (V,), int64 targets (N,); logits ~ N(0, 4)."""

    hidden: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    target: np.ndarray

    @classmethod
    def make(cls, n: int, h: int, v: int, seed: int = 0) -> "Problem":
        rng = np.random.default_rng(seed)
        hidden = rng.standard_normal((n, h), dtype=np.float32)
        weight = rng.standard_normal((v, h), dtype=np.float32)
        weight *= np.float32(2.0 / np.sqrt(h))
        bias = rng.standard_normal(v, dtype=np.float32)
        return cls(hidden, weight, bias, rng.integers(0, v, n, dtype=np.int64))

    @property
    def shape(self) -> Tuple[int, int, int]:
        return (self.hidden.shape[0], self.hidden.shape[1], self.weight.shape[0])

    @property
    def logits_bytes(self) -> int:
        return self.hidden.shape[0] * self.weight.shape[0] * 4

    def sampled(self, grad_hidden: Any, grad_weight: Any) -> np.ndarray:
        """A few rows of each gradient, as one float64 vector (compared across cases)."""
        n, _, v = self.shape
        rows = [np.asarray(g[_sample(k)], dtype=np.float64).reshape(-1)
                for g, k in ((grad_hidden, n), (grad_weight, v))]
        return np.concatenate(rows)


def _sample(n: int, k: int = 8) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(np.int64))


def cases(p: Problem, impls: List[str], torch: Optional[Any]) -> List[Case]:
    """The cases whose implementations are in `impls` ("fastxent", "torch", "numpy"), the
    torch-based ones when torch is given. The first case is the reference of the others."""
    import fastxent

    out: List[Case] = []
    h, w, b, t = p.hidden, p.weight, p.bias, p.target

    def numpy_chunked() -> Bound:
        run = lambda: fastxent.linear_cross_entropy_with_grad(h, w, t, b)  # noqa: E731
        return Bound(run, lambda r: (float(r[0]), p.sampled(r[1], r[2])))

    def numpy_unchunked() -> Bound:
        def run():
            x = np.matmul(h, w.T)  # (N, V)
            x += b
            loss, g = fastxent.cross_entropy_with_grad(x, t, inplace=True)
            return loss, g @ w, g.T @ h, g.sum(axis=0)
        return Bound(run, lambda r: (float(r[0]), p.sampled(r[1], r[2])))

    if torch is not None:
        out += _torch_cases(p, impls, torch)
    if "fastxent" in impls:
        out.append(Case("fastxent", "numpy", FWD_BWD, numpy_chunked,
                        "fastxent.linear_cross_entropy_with_grad on NumPy arrays (NumPy's BLAS)"))
    if "numpy" in impls:
        out.append(Case("numpy", "mm+fastxent", FWD_BWD, numpy_unchunked,
                        "h @ W.T + b (N×V), fastxent.cross_entropy_with_grad(inplace=True), "
                        "back-products"))
    return out


def _torch_cases(p: Problem, impls: List[str], torch: Any) -> List[Case]:
    import torch.nn.functional as F

    import fastxent.torch as fxt

    def leaves():
        return [torch.from_numpy(a).requires_grad_() for a in (p.hidden, p.weight, p.bias)]

    t = torch.from_numpy(p.target)

    def training(loss_fn) -> Bound:
        h, w, b = leaves()

        def setup():  # free the last gradients outside the timed region
            h.grad = w.grad = b.grad = None

        def run():
            loss = loss_fn(h, w, b)
            loss.backward()
            return loss.detach(), h.grad, w.grad

        return Bound(run, lambda r: (float(r[0]), p.sampled(r[1], r[2])), setup,
                     {"leaves": (h, w, b)})

    def forward(loss_fn) -> Bound:
        h, w, b = (torch.from_numpy(a) for a in (p.hidden, p.weight, p.bias))

        def run():
            with torch.no_grad():
                return loss_fn(h, w, b)

        return Bound(run, lambda r: (float(r), None))

    def ours(h, w, b):
        return fxt.linear_cross_entropy(h, w, t, b)

    def ours_inplace(h, w, b):
        return fxt.linear_cross_entropy(h, w, t, b, inplace_backward=True)

    def plain(h, w, b):
        return F.cross_entropy(F.linear(h, w, b), t)

    def unchunked(h, w, b):
        return fxt.cross_entropy(F.linear(h, w, b), t, inplace_backward=True)

    out = []
    if "fastxent" in impls:
        out += [Case("fastxent", "", FWD, lambda: forward(ours),
                     "fastxent.torch.linear_cross_entropy under no_grad"),
                Case("fastxent", "", FWD_BWD, lambda: training(ours),
                     "fastxent.torch.linear_cross_entropy + backward: chunks of logits no "
                     "larger than the weight (<= 256 MiB)"),
                Case("fastxent", "inplace", FWD_BWD, lambda: training(ours_inplace),
                     "the same with inplace_backward=True: backward scales the gradients in "
                     "place")]
    out += [Case("torch", "", FWD, lambda: forward(plain),
                 "F.cross_entropy(F.linear(h, W, b)) under no_grad"),
            Case("torch", "", FWD_BWD, lambda: training(plain),
                 "F.cross_entropy(F.linear(h, W, b)) + backward")]
    if "fastxent" in impls:
        out.append(Case("torch", "mm+fastxent", FWD_BWD, lambda: training(unchunked),
                        "F.linear (N×V logits) + fastxent.torch.cross_entropy("
                        "inplace_backward=True) + backward"))
    return out

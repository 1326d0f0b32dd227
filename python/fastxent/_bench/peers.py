"""The implementations compared by the benchmark, each run on the very same NumPy buffers.

Every implementation yields ``Case`` objects: one operation ("fwd": the mean loss, "fwd+bwd": the
mean loss and its gradient) in one variant ("" = fresh outputs, "out" = gradient written into an
existing buffer, "inplace" = gradient written over the logits). ``Case.bind()`` allocates what the
case needs (buffers, device copies, jitted functions) only when it runs, so that no more than a
few N×C arrays are alive at once; dropping the returned ``Bound`` frees them.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

FWD = "fwd"
FWD_BWD = "fwd+bwd"

# What a verification call yields: the loss and the gradient on a few sampled rows (or None).
Extracted = Tuple[float, Optional[np.ndarray]]


class Unsupported(Exception):
    """The implementation cannot run this case (dtype, missing feature); reported, not fatal."""


@dataclass
class Bound:
    run: Callable[[], Any]  # the timed call
    extract: Callable[[Any], Extracted]  # result of run() -> (loss, sampled gradient rows)
    setup: Optional[Callable[[], None]] = None  # untimed, before every call
    keep: Dict[str, Any] = field(default_factory=dict)  # buffers kept alive with the case


@dataclass
class Case:
    impl: str
    variant: str
    op: str
    bind: Callable[[], Bound]
    note: str = ""  # what the variant does, when the name is not enough

    @property
    def label(self) -> str:
        return f"{self.impl}[{self.variant}]" if self.variant else self.impl


@dataclass
class Problem:
    """One benchmark input: logits (N, C) in the benchmarked dtype, int64 targets (N,)."""

    x: np.ndarray
    t: np.ndarray
    rows: np.ndarray  # row indices whose gradient is compared across implementations

    @property
    def shape(self) -> Tuple[int, int]:
        return self.x.shape  # type: ignore[return-value]


def _resident_like(x: np.ndarray) -> np.ndarray:
    """An existing buffer shaped like ``x``, its pages already faulted in (np.empty only maps them,
    and the first write would then count as the timed call's memory and time)."""
    buf = np.empty_like(x)
    buf.fill(0)
    return buf


def _rows_f64(g: Any, rows: np.ndarray) -> np.ndarray:
    return np.asarray(g[rows]).astype(np.float64)


# --- fastxent ------------------------------------------------------------------------------------

class FastxentPeer:
    name = "fastxent"

    def __init__(self) -> None:
        import fastxent

        self.fx = fastxent
        self.version = fastxent.info().get("version", "?")
        params = inspect.signature(fastxent.cross_entropy_with_grad).parameters
        self.fused_out = "out" in params

    def cases(self, p: Problem) -> List[Case]:
        fx, x, t, rows = self.fx, p.x, p.t, p.rows

        def fwd() -> Bound:
            return Bound(lambda: fx.cross_entropy(x, t), lambda r: (float(r), None))

        def fresh() -> Bound:
            return Bound(lambda: fx.cross_entropy_with_grad(x, t),
                         lambda r: (float(r[0]), _rows_f64(r[1], rows)))

        def out() -> Bound:
            buf = _resident_like(x)
            if self.fused_out:
                run = lambda: fx.cross_entropy_with_grad(x, t, out=buf)  # noqa: E731
                return Bound(run, lambda r: (float(r[0]), _rows_f64(buf, rows)), keep={"buf": buf})

            def run():
                loss = fx.cross_entropy(x, t)
                fx.cross_entropy_backward(x, t, out=buf)
                return loss

            return Bound(run, lambda r: (float(r), _rows_f64(buf, rows)), keep={"buf": buf})

        def inplace() -> Bound:
            # The in-place call overwrites its logits: it runs on a scratch copy that is refreshed
            # from the original before every call, outside the timed region.
            scratch = _resident_like(x)
            return Bound(lambda: fx.cross_entropy_with_grad(scratch, t, inplace=True),
                         lambda r: (float(r[0]), _rows_f64(scratch, rows)),
                         setup=lambda: np.copyto(scratch, x), keep={"scratch": scratch})

        out_note = ("cross_entropy_with_grad(out=buf)" if self.fused_out
                    else "cross_entropy + cross_entropy_backward(out=buf): two passes")
        return [
            Case(self.name, "", FWD, fwd),
            Case(self.name, "", FWD_BWD, fresh, "cross_entropy_with_grad: fresh gradient"),
            Case(self.name, "out", FWD_BWD, out, out_note),
            Case(self.name, "inplace", FWD_BWD, inplace,
                 "cross_entropy_with_grad(inplace=True) on a re-copied scratch buffer"),
        ]


# --- NumPy: what a NumPy user writes -------------------------------------------------------------

def numpy_cross_entropy(x: np.ndarray, t: np.ndarray) -> float:
    """Mean softmax cross-entropy of (N, C) logits, computed in float32 (max-shifted)."""
    x = np.asarray(x, dtype=np.float32)
    z = x - x.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(lse - np.take_along_axis(z, t[:, None], axis=1)[:, 0]))


def numpy_cross_entropy_with_grad(x: np.ndarray, t: np.ndarray) -> Tuple[float, np.ndarray]:
    """Mean loss and its gradient softmax(x) - onehot(t), divided by N; float32 compute."""
    dtype = x.dtype
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[0]
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(s[:, 0]) - np.take_along_axis(z, t[:, None], axis=1)[:, 0]))
    e /= s
    e[np.arange(n), t] -= 1.0
    e *= np.float32(1.0 / n)
    return loss, (e if e.dtype == dtype else e.astype(dtype))


class NumpyPeer:
    name = "numpy"

    def __init__(self) -> None:
        self.version = np.__version__

    def cases(self, p: Problem) -> List[Case]:
        x, t, rows = p.x, p.t, p.rows
        return [
            Case(self.name, "", FWD, lambda: Bound(lambda: numpy_cross_entropy(x, t),
                                                   lambda r: (float(r), None))),
            Case(self.name, "", FWD_BWD, lambda: Bound(
                lambda: numpy_cross_entropy_with_grad(x, t),
                lambda r: (r[0], _rows_f64(r[1], rows))),
                "float32 max-shift, exp, sum, log, take_along_axis; softmax minus one-hot"),
        ]


# --- torch ---------------------------------------------------------------------------------------

class TorchPeer:
    name = "torch"

    def __init__(self) -> None:
        import torch
        import torch.nn.functional as F

        self.torch, self.F = torch, F
        self.version = torch.__version__

    def _tensor(self, a: np.ndarray) -> Any:
        """A torch tensor sharing ``a``'s memory (bfloat16 through a uint16 view)."""
        torch = self.torch
        if a.dtype.name == "bfloat16":
            return torch.from_numpy(a.view(np.uint16)).view(torch.bfloat16)
        try:
            return torch.from_numpy(a)
        except TypeError as e:
            raise Unsupported(f"torch cannot view {a.dtype.name} arrays: {e}") from None

    def cases(self, p: Problem) -> List[Case]:
        torch, F, rows = self.torch, self.F, p.rows
        x, t = self._tensor(p.x), torch.from_numpy(p.t)
        n = p.x.shape[0]

        def grad_rows(g: Any) -> np.ndarray:
            return g[torch.from_numpy(rows)].float().numpy().astype(np.float64)

        def fwd() -> Bound:
            def run():
                with torch.no_grad():
                    return F.cross_entropy(x, t)
            return Bound(run, lambda r: (float(r), None))

        def fresh() -> Bound:
            xg = x.detach().requires_grad_(True)  # a leaf sharing the logits' memory

            def run():
                xg.grad = None  # a fresh gradient each call, as in a training step
                loss = F.cross_entropy(xg, t)
                loss.backward()
                return loss.detach(), xg.grad

            def setup():
                xg.grad = None  # free the last gradient outside the timed region

            return Bound(run, lambda r: (float(r[0]), grad_rows(r[1])), setup, {"xg": xg})

        def out() -> Bound:
            # The gradient goes into an existing buffer: softmax(out=) writes it, the one-hot and
            # 1/N corrections touch it in place. (torch.logsumexp still allocates temporaries.)
            buf = torch.zeros_like(x)  # written: its pages are resident before the first call
            ar = torch.arange(n)
            tcol = t[:, None]

            def run():
                with torch.no_grad():
                    lse = torch.logsumexp(x, 1)
                    loss = (lse.float() - x.gather(1, tcol)[:, 0].float()).mean()
                    torch.ops.aten._softmax.out(x, 1, False, out=buf)
                    buf[ar, t] -= 1
                    buf.mul_(1.0 / n)
                    return loss

            return Bound(run, lambda r: (float(r), grad_rows(buf)), keep={"buf": buf})

        return [
            Case(self.name, "", FWD, fwd, "F.cross_entropy under no_grad"),
            Case(self.name, "", FWD_BWD, fresh,
                 "F.cross_entropy + loss.backward(), grad=None each call"),
            Case(self.name, "out", FWD_BWD, out,
                 "logsumexp + gather, aten._softmax.out(buf), one-hot and 1/N in place"),
        ]


# --- JAX -----------------------------------------------------------------------------------------

class JaxPeer:
    name = "jax"

    def __init__(self) -> None:
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        self.version = jax.__version__

        def loss(x, t):
            logp = jax.nn.log_softmax(x, axis=1)
            return -jnp.mean(jnp.take_along_axis(logp, t[:, None], axis=1))

        self.fwd = jax.jit(loss)
        self.fwd_bwd = jax.jit(jax.value_and_grad(loss))

    def cases(self, p: Problem) -> List[Case]:
        jax, jnp, rows = self.jax, self.jnp, p.rows
        src, tgt = p.x, p.t.astype(np.int32)

        def device_inputs() -> Tuple[Any, Any]:
            # JAX works on its own buffers: one copy per case, made outside the timed region.
            try:
                return jax.device_put(src), jax.device_put(tgt)
            except TypeError as e:
                raise Unsupported(f"jax: {e}") from None

        def fwd() -> Bound:
            xj, tj = device_inputs()
            return Bound(lambda: self.fwd(xj, tj).block_until_ready(),
                         lambda r: (float(r), None), keep={"x": xj})

        def fwd_bwd() -> Bound:
            xj, tj = device_inputs()
            return Bound(lambda: jax.block_until_ready(self.fwd_bwd(xj, tj)),
                         lambda r: (float(r[0]), _rows_f64(np.asarray(r[1]), rows)), keep={"x": xj})

        return [
            Case(self.name, "", FWD, fwd, "jit(log_softmax + take_along_axis)"),
            Case(self.name, "", FWD_BWD, fwd_bwd, "jit(value_and_grad(...))"),
        ]


PEERS = {"fastxent": FastxentPeer, "torch": TorchPeer, "numpy": NumpyPeer, "jax": JaxPeer}


def load_peers(names: List[str]) -> Tuple[List[Any], Dict[str, str]]:
    """Instantiates the named peers; returns (peers, {name: why skipped}) for those missing."""
    peers, skipped = [], {}
    for name in names:
        try:
            peers.append(PEERS[name]())
        except ImportError as e:
            skipped[name] = f"not importable ({e})"
    return peers, skipped

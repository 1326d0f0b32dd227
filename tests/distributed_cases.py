"""The cases of the multi-process tests of fastxent.distributed (tests/test_distributed.py), shared
by the processes that run them (the torch.multiprocessing workers below and tests/mpi_worker.py)
and the pytest process that checks their results: each case is rebuilt from its seed, so only
results travel between processes (a pickle file per rank).

Every worker runs every case in one process launch (start-up dominates the wall time).
"""

import pickle
import zlib
from dataclasses import dataclass

import numpy as np

from problems import Options, make_problem, option_grid

try:
    import ml_dtypes
except ImportError:  # the 16-bit cases are then left out (test_low_precision.py skips too)
    ml_dtypes = None


@dataclass(frozen=True)
class Case:
    name: str
    dtype: str
    shape: tuple  # the whole logits; classes last
    opts: Options
    z_loss: float = 0.0
    softcap: float = None
    return_lse: bool = False
    uneven: bool = False  # shards of 1 class, then uneven sizes; else as equal as possible
    give_vocab_size: bool = False  # else the ranks' class counts are summed
    inplace: bool = False  # inplace_backward / inplace=True

    def problem(self):
        rng = np.random.default_rng(zlib.crc32(self.name.encode()))
        dt = np.dtype(ml_dtypes.bfloat16 if self.dtype == "bfloat16" else self.dtype)
        p = make_problem(rng, self.shape, dt, self.opts, axis=-1)
        go = p.grad_output_rows(rng) if self.opts.reduction == "none" else np.asarray(0.5, dt)
        lse_grad = rng.uniform(-1.0, 1.0, p.rows_shape) if self.return_lse else None
        return p, go, lse_grad

    def bounds(self, world):
        """Shard boundaries [0, v1, ..., V] of `world` ranks."""
        V = self.shape[-1]
        if not self.uneven:
            return [round(V * r / world) for r in range(world + 1)]
        inner = [1] + [1 + (V - 2) * r * r // (world * world) + r for r in range(1, world - 1)]
        return [0] + inner[: world - 1] + [V]

    def ext(self):
        return dict(z_loss=self.z_loss, softcap=self.softcap)


def _cases():
    out = []
    i = 0
    for dtype in ("float32", "float64"):
        for param in option_grid(smoothings=(0.0, 0.1)):
            for ext in ({}, dict(z_loss=1e-2, softcap=3.0)):
                opts = param.values[0]
                shape = (6, 37) if i % 3 else (2, 3, 29)
                out.append(Case(f"c{i}-{dtype}-{opts.id}-{'ext' if ext else 'plain'}", dtype,
                                shape, opts, **ext, return_lse=i % 2 == 0,
                                uneven=i % 4 < 2, give_vocab_size=i % 3 == 1,
                                inplace=i % 5 == 0))
                i += 1
    lowp = ("float16", "bfloat16") if ml_dtypes is not None else ("float16",)
    for dtype in lowp:
        for kind in ("index", "prob"):
            opts = Options(kind, True, "neg1", "mean", 0.1)
            out.append(Case(f"lowp-{dtype}-{kind}", dtype, (3, 4099), opts, z_loss=1e-3,
                            softcap=20.0, return_lse=True, uneven=True))
    out.append(Case("large-vocab", "float32", (3, 50257), Options("index", False, "neg100",
                                                                  "sum", 0.1), return_lse=True))
    return out


CASES = _cases()
WORLDS = (2, 4)


def as_float64(array):
    """Results travel as (float64 values, dtype name): exact for every dtype tested."""
    a = np.asarray(array)
    return a.astype(np.float64), a.dtype.name


def save(results, out_dir, rank):
    with open(f"{out_dir}/rank{rank}.pkl", "wb") as f:
        pickle.dump(results, f)


def load(out_dir, world):
    out = []
    for r in range(world):
        with open(f"{out_dir}/rank{r}.pkl", "rb") as f:
            out.append(pickle.load(f))
    return out


def local_slice(p, case, world, rank):
    """(local logits, local target, vocab_start) of `rank` (probability targets are sliced)."""
    b = case.bounds(world)
    a, z = b[rank], b[rank + 1]
    prob = case.opts.kind == "prob"
    return p.x[..., a:z], p.target[..., a:z] if prob else p.target, a


def shard_kwargs(case, p):
    kw = dict(p.kwargs, **case.ext())
    kw.pop("axis")
    if case.give_vocab_size:
        kw["vocab_size"] = p.x.shape[-1]
    return kw


def error_checks(call):
    """Bad calls whose errors every rank must see (none may hang in a collective): `call(kind)`
    runs one on this rank; returns {kind: (exception type name, message)}."""
    out = {}
    for kind in ("bad_tiling", "bad_local_target", "bad_vocab_size"):
        try:
            call(kind)
            out[kind] = ("no error", "")
        except Exception as exc:  # noqa: BLE001  (the test checks the type)
            out[kind] = (type(exc).__name__, str(exc))
    return out

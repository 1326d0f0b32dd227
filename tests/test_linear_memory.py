"""Linear cross-entropy never holds N×V logits: the peak extra memory of a call is one chunk of
logits plus the gradients it returns (and NumPy's scratch block), measured with tracemalloc for
NumPy (NumPy reports its allocations to it) and with the process's resident high-water mark for
torch (VmHWM reset by /proc/self/clear_refs, one subprocess per library, as
tests/test_torch_memory.py)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastxent
from fastxent import _linear_ops
from test_memory import traced_peak

N, H, V, CHUNK = 1024, 64, 32000, 64  # logits: 131 MB; one chunk: 8.2 MB


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    h = rng.standard_normal((N, H), dtype=np.float32)
    w = rng.standard_normal((V, H), dtype=np.float32) * 0.1
    b = rng.standard_normal(V, dtype=np.float32)
    t = rng.integers(0, V, N)
    return h, w, b, t


def test_numpy_forward_peak_is_one_chunk(problem):
    h, w, b, t = problem
    peak, loss = traced_peak(lambda: fastxent.linear_cross_entropy(h, w, t, b, chunk_size=CHUNK))
    chunk = CHUNK * V * 4
    assert np.isfinite(loss)
    assert chunk <= peak <= chunk + (1 << 20), f"forward peaked at {peak} bytes, chunk {chunk}"


def test_numpy_with_grad_peak_is_one_chunk_plus_gradients(problem):
    h, w, b, t = problem
    peak, (loss, gh, gw, gb) = traced_peak(lambda: fastxent.linear_cross_entropy_with_grad(
        h, w, t, b, chunk_size=CHUNK))
    chunk = CHUNK * V * 4
    grads = gh.nbytes + gw.nbytes + gb.nbytes
    scratch = min(_linear_ops._NUMPY_SCRATCH_BYTES, gw.nbytes)
    print(f"\nlinear CE ({N}, {H}) x ({V}, {H}) float32, chunk {CHUNK}: traced peak "
          f"{peak / 2**20:.1f} MiB = chunk {chunk / 2**20:.1f} + gradients "
          f"{grads / 2**20:.1f} + scratch {scratch / 2**20:.1f} + "
          f"{(peak - chunk - grads - scratch) / 2**10:.0f} KiB; N×V logits "
          f"{N * V * 4 / 2**20:.0f} MiB")
    assert np.isfinite(loss)
    assert peak <= chunk + grads + scratch + (1 << 20), f"peaked at {peak} bytes"
    assert peak < N * V * 4 / 4


_PEAK_SCRIPT = textwrap.dedent("""
    import sys
    import torch
    import torch.nn.functional as F
    import fastxent.torch as fxt

    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        raise KeyError(key)

    which, n, h, v, chunk = sys.argv[1], *map(int, sys.argv[2:])
    g = torch.Generator().manual_seed(0)

    def step(x, w, b, t):
        if which.startswith("fastxent"):
            return fxt.linear_cross_entropy(x, w, t, b, chunk_size=chunk,
                                            inplace_backward=which.endswith("inplace"))
        return F.cross_entropy(F.linear(x, w, b), t)

    small = [torch.randn(4, 3, requires_grad=True), torch.randn(5, 3, requires_grad=True),
             torch.randn(5, requires_grad=True), torch.tensor([0, 1, 2, 4])]
    step(*small).backward()  # warm
    x = torch.randn(n, h, generator=g).requires_grad_()
    w = (torch.randn(v, h, generator=g) * 0.1).requires_grad_()
    b = torch.randn(v, generator=g).requires_grad_()
    t = torch.randint(0, v, (n,), generator=g)
    base = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    loss = step(x, w, b, t)
    loss.backward()
    assert torch.isfinite(loss) and w.grad is not None
    print(status("VmHWM") - base)
""")


def peak_bytes(which, n, h, v, chunk):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    r = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, which, *map(str, (n, h, v, chunk))],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return int(r.stdout)


@pytest.mark.slow  # ~15 s: three subprocesses, torch's run materialises 2048 × 32000 logits
@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK),
                    reason="needs Linux /proc/self/clear_refs to reset the high-water mark")
def test_torch_peak_is_one_chunk_plus_gradients(record_property):
    n, h, v, chunk = 2048, 256, 32000, 256
    ours = peak_bytes("fastxent", n, h, v, chunk)
    inplace = peak_bytes("fastxent-inplace", n, h, v, chunk)
    theirs = peak_bytes("torch", n, h, v, chunk)
    record_property("fastxent_peak_bytes", ours)
    record_property("fastxent_inplace_backward_peak_bytes", inplace)
    record_property("torch_peak_bytes", theirs)
    logits, chunk_bytes, grads = n * v * 4, chunk * v * 4, (n * h + v * h + v) * 4
    print(f"\npeak of forward+backward, linear CE ({n}, {h}) x ({v}, {h}) float32: "
          f"fastxent.torch {ours / 2**20:.0f} MiB, with inplace_backward "
          f"{inplace / 2**20:.0f} MiB (chunk {chunk_bytes / 2**20:.0f} MiB, gradients "
          f"{grads / 2**20:.0f} MiB); F.linear + F.cross_entropy {theirs / 2**20:.0f} MiB "
          f"(logits {logits / 2**20:.0f} MiB)")
    # Forward: the chunk + the gradients; backward: their products with grad_output (none with
    # inplace_backward). 16 MiB for the allocator's, the BLAS's and the interpreter's pages.
    slack = 16 << 20
    assert ours <= chunk_bytes + 2 * grads + slack, f"peaked at {ours / 2**20:.0f} MiB"
    assert inplace <= chunk_bytes + grads + slack, f"peaked at {inplace / 2**20:.0f} MiB"
    assert ours < logits / 2 < theirs

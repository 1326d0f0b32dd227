"""Thread safety and thread budget (README "Guarantees").

* Many Python threads calling every entry point at once, on shared read-only inputs and on
  their own in-place / out= buffers, get exactly the results of a serial run (results do not
  depend on the thread count, so "exactly" means bitwise).
* The GIL is released around the kernels: two calls on two large inputs run inside their
  kernels at the same moment (counted by the kernels themselves), and the time they take
  together is printed next to the time they take one after the other.
* No oversubscription: the calls running at once share the budget set_num_threads gives (a
  call alone uses up to `budget` threads; calls running together add at most budget - 1
  helper threads to their own calling threads), and a call made from inside an OpenMP
  parallel region runs on its calling thread. Observed through fastxent._core._thread_peaks():
  the most helper threads held by running calls and the most threads inside the kernels'
  OpenMP regions at once (cpp/src/core/threads.cc).
"""

import sys
import threading
import time

import numpy as np
import pytest

import fastxent
from conftest import assert_bitwise_equal
from fastxent import _core
from problems import Options, make_problem


def _read_only(*arrays):
    for a in arrays:
        a.flags.writeable = False


def _entry_points(x, t, w, go_rows, torch_mod):
    """name -> fn() for every entry point on (x, t): each fn returns NumPy arrays and writes
    only into buffers it allocates itself (the in-place ones copy the logits first)."""
    kw = dict(weight=w, ignore_index=3, label_smoothing=0.1)

    def inplace():
        xi = x.copy()
        loss, g = fastxent.cross_entropy_with_grad(xi, t, **kw, inplace=True)
        assert g is xi
        return loss, xi

    def backward_out():
        out = np.empty_like(x)
        assert fastxent.cross_entropy_backward(x, t, go_rows, **kw, reduction="none",
                                               out=out) is out
        return out

    def with_grad_out():
        out = np.empty_like(x)
        loss, g = fastxent.cross_entropy_with_grad(x, t, **kw, reduction="sum", out=out)
        assert g is out
        return loss, out

    def log_softmax_out():
        out = np.empty_like(x)
        assert fastxent.log_softmax(x, axis=1, out=out) is out
        return out

    def torch_ops():
        import fastxent.torch as fxt  # noqa: PLC0415

        xt = torch_mod.from_numpy(x.copy()).requires_grad_()
        loss = fxt.cross_entropy(xt, torch_mod.from_numpy(t.copy()),
                                 weight=torch_mod.from_numpy(w.copy()),
                                 ignore_index=3, label_smoothing=0.1)
        loss.backward()
        return loss.detach().numpy(), xt.grad.numpy()

    fns = {
        "cross_entropy": lambda: fastxent.cross_entropy(x, t, **kw),
        "cross_entropy(none)": lambda: fastxent.cross_entropy(x, t, **kw, reduction="none"),
        "backward": lambda: fastxent.cross_entropy_backward(x, t, 0.5, **kw),
        "backward(out=)": backward_out,
        "with_grad": lambda: fastxent.cross_entropy_with_grad(x, t, **kw),
        "with_grad(out=)": with_grad_out,
        "with_grad(inplace)": inplace,
        "logsumexp": lambda: fastxent.logsumexp(x, axis=1),
        "log_softmax": lambda: fastxent.log_softmax(x, axis=1),
        "log_softmax(out=)": log_softmax_out,
        "softmax": lambda: fastxent.softmax(x, axis=1),
    }
    if torch_mod is not None:
        fns["torch"] = torch_ops
    return fns


def _as_list(result):
    return list(result) if isinstance(result, tuple) else [result]


def _run_threads(n, target):
    """Runs target(i) on n threads started together; re-raises the first failure."""
    errors = []
    barrier = threading.Barrier(n)

    def run(i):
        try:
            barrier.wait()
            target(i)
        except BaseException as exc:  # noqa: BLE001  (reported below, in the test's thread)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]


@pytest.mark.parametrize("shape", [(64, 37), (300, 1000), (2, 70000)],
                         ids=["small", "rows", "split-rows"])
def test_many_threads_every_entry_point(shape, threads, rng):
    """12 threads × every entry point × 3 rounds, interleaved differently in each thread, all
    compared bitwise with a serial run; the shared inputs are read-only NumPy arrays (a write
    into them would raise)."""
    torch_mod = sys.modules.get("torch") or pytest.importorskip("torch")
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    t = rng.integers(0, shape[1], shape[0])
    t[::5] = 3  # ignore_index
    w = rng.uniform(0.5, 2.0, shape[1]).astype(np.float32)
    go_rows = rng.uniform(-1, 1, shape[0]).astype(np.float32)
    _read_only(x, t, w, go_rows)
    threads(2)
    fns = _entry_points(x, t, w, go_rows, torch_mod)
    expected = {name: _as_list(fn()) for name, fn in fns.items()}
    names = list(fns)
    calls = [0] * 12

    def work(i):
        order = np.random.default_rng(i).permutation(len(names))
        for _ in range(3):
            for k in order:
                got = _as_list(fns[names[k]]())
                for a, b in zip(got, expected[names[k]]):
                    assert_bitwise_equal(a, b, f"{names[k]} in thread {i}")
                calls[i] += 1

    _run_threads(12, work)
    assert calls == [3 * len(names)] * 12


def _big_problem(seed, shape=(512, 65536)):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape, dtype=np.float32)
    return x, rng.integers(0, shape[1], shape[0])


def test_gil_released_two_threads_overlap(threads, measurement):
    """Two threads, one kernel thread each (budget 1), two 128 MiB inputs: both calls are in
    their kernels at the same moment (the kernels count the threads inside them), which a
    call holding the GIL would forbid. The times are printed, never asserted."""
    threads(1)
    problems = [_big_problem(0), _big_problem(1)]
    outs = [np.empty_like(x) for x, _ in problems]  # reused: no page faults in the timings

    def call(i):
        x, t = problems[i]
        fastxent.cross_entropy_with_grad(x, t, out=outs[i])

    serial, together, overlapped = [], [], False
    for _ in range(3):
        t0 = time.perf_counter()
        call(0)
        call(1)
        serial.append(time.perf_counter() - t0)
        _core._reset_thread_peaks()
        t0 = time.perf_counter()
        _run_threads(2, call)
        together.append(time.perf_counter() - t0)
        # Two threads started together almost always meet inside the kernels.
        overlapped |= _core._thread_peaks()["active"] == 2
    s, t = min(serial), min(together)
    measurement(f"GIL release: two cross_entropy_with_grad(out=) calls on (512, 65536) float32, "
                f"one kernel thread each: {s * 1e3:.0f} ms one after the other, {t * 1e3:.0f} ms "
                f"on two Python threads (ratio {t / s:.2f}; 0.5 = perfect overlap on 2 free "
                f"cores; best of 3)")
    assert overlapped, "the two calls never ran inside their kernels at the same moment"


def test_thread_budget_is_shared_between_python_threads(threads):
    """Budget 4, then 2 and 8 Python threads hammering large calls: together they never hold
    more than 3 helper threads besides their own, and the kernels never run more than
    3 + (number of calls) threads at once. A single call alone does get the whole budget (so
    the bound is not met by never threading)."""
    x, t = _big_problem(2, (256, 65536))
    threads(4)
    _core._reset_thread_peaks()
    fastxent.cross_entropy(x, t)
    alone = _core._thread_peaks()
    assert alone == {"helpers": 3, "active": 4}, alone

    for n in (2, 8):
        _core._reset_thread_peaks()
        _run_threads(n, lambda i: [fastxent.cross_entropy_with_grad(x, t) for _ in range(3)])
        peaks = _core._thread_peaks()
        assert peaks["helpers"] <= 3 and 1 <= peaks["active"] <= 3 + n, (n, peaks)


def test_call_inside_a_parallel_region_runs_on_its_thread(threads):
    """Called from each thread of an OpenMP team (as from inside one of torch's parallel
    regions), fastxent adds no threads of its own: never more threads inside the kernels than
    the team has, and the same results as a serial call."""
    x, t = _big_problem(3, (128, 65536))
    threads(4)
    expected = fastxent.cross_entropy_with_grad(x, t, label_smoothing=0.2)
    results = {}

    def call(i):
        results[i] = fastxent.cross_entropy_with_grad(x, t, label_smoothing=0.2)

    _core._reset_thread_peaks()
    _core._run_in_parallel_region(2, call)
    peaks = _core._thread_peaks()
    assert sorted(results) == [0, 1]
    assert peaks["active"] <= 2 and peaks["helpers"] == 0, peaks
    for i in results:
        for a, b in zip(results[i], expected):
            assert_bitwise_equal(a, b, f"call from team thread {i}")


def test_errors_in_a_parallel_region_propagate():
    def boom(i):
        raise KeyError(f"thread {i}")

    with pytest.raises(KeyError, match="thread"):
        _core._run_in_parallel_region(2, boom)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_torch_and_fastxent_share_one_openmp_runtime(torch):
    """The in-region rule sees torch's parallel regions only if both use one OpenMP runtime:
    torch's bundled libgomp and the system one have the same soname, so one is loaded."""
    with open("/proc/self/maps") as maps:
        runtimes = {line.split()[-1] for line in maps if "libgomp" in line or "libiomp" in line}
    assert len(runtimes) == 1, runtimes


def test_threads_get_equal_results_on_separate_buffers(rng):
    """Each thread owns its logits and writes its gradient over them (inplace) while the others
    do the same: every thread gets its own problem's answer, bitwise."""
    probs = [make_problem(rng, (200, 513), np.float64, Options("index", True, "neg1", "mean", 0.1))
             for _ in range(8)]
    expected = [fastxent.cross_entropy_with_grad(p.x, p.target, **p.kwargs) for p in probs]
    buffers = [p.x.copy() for p in probs]

    def work(i):
        p = probs[i]
        for _ in range(5):
            np.copyto(buffers[i], p.x)
            loss, g = fastxent.cross_entropy_with_grad(buffers[i], p.target, **p.kwargs,
                                                       inplace=True)
            assert_bitwise_equal(loss, expected[i][0], f"loss {i}")
            assert_bitwise_equal(buffers[i], expected[i][1], f"grad {i}")

    _run_threads(8, work)

"""Timing and memory probes: median of repeats after a warm-up, peak extra memory of one call.

Times are wall-clock (``time.perf_counter``). A cheap call is repeated ``inner`` times per sample
so that one sample lasts at least ``min_sample_s`` (timer resolution and call overhead then stay
far below 1%); an expensive one is timed call by call. The number of samples adapts to the cost of
a call within [min_repeats, max_repeats] so that a whole run stays within its time budget.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
import tracemalloc
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple


@dataclass(frozen=True)
class Budget:
    """How long to spend on one measurement."""

    target_s: float = 1.5  # wall time aimed at for the timed samples of one case
    min_repeats: int = 5
    max_repeats: int = 50
    min_sample_s: float = 0.01  # shortest sample: cheap calls are batched up to this
    warmup_below_s: float = 1.0  # a second warm-up call only when one call is cheaper than this


FULL = Budget()
QUICK = Budget(target_s=0.25, min_repeats=3, max_repeats=15, min_sample_s=0.005,
               warmup_below_s=0.05)


@dataclass
class Timing:
    median_s: float  # per call
    min_s: float
    samples_s: List[float]  # per call, one entry per sample
    inner: int  # calls per sample


def time_call(fn: Callable[[], Any], setup: Optional[Callable[[], None]] = None,
              budget: Budget = FULL, first_call_s: Optional[float] = None) -> Timing:
    """Times ``fn()``. ``setup()`` (untimed) runs before every call and forces one call per sample.

    ``first_call_s``: the duration of a call already made (the verification call), used as the
    cost estimate; when absent, one untimed call is made first.
    """
    if first_call_s is None:
        first_call_s = _one_call(fn, setup)
    estimate = first_call_s
    if estimate < budget.warmup_below_s:
        estimate = min(estimate, _one_call(fn, setup))
    estimate = max(estimate, 1e-7)
    inner = 1 if setup is not None else max(1, int(budget.min_sample_s / estimate))
    repeats = int(budget.target_s / (estimate * inner))
    repeats = max(budget.min_repeats, min(budget.max_repeats, repeats))

    samples = []
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a sample would be charged to whichever call triggered it
    try:
        for _ in range(repeats):
            if setup is not None:
                setup()
            t0 = time.perf_counter()
            for _ in range(inner):
                result = fn()
            t1 = time.perf_counter()
            del result
            samples.append((t1 - t0) / inner)
    finally:
        if gc_was_enabled:
            gc.enable()
    return Timing(statistics.median(samples), min(samples), samples, inner)


def _one_call(fn: Callable[[], Any], setup: Optional[Callable[[], None]]) -> float:
    if setup is not None:
        setup()
    t0 = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - t0
    del result
    return elapsed


# --- memory --------------------------------------------------------------------------------------

# glibc serves every allocation above its largest mmap threshold (32 MiB on 64-bit) with fresh
# pages from the kernel, so the rise of the peak resident set over one call counts every large
# temporary of that call, whoever allocated it (torch's c10 allocator, XLA, OpenMP runtimes).
# Smaller allocations may reuse pages that are already resident and go uncounted: below this size
# the RSS probe is not trusted.
RSS_TRUSTED_BYTES = 32 << 20


def _status_kib(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0: ``echo 5 > /proc/self/clear_refs``).

    This process's own peak then no longer covers its whole life (``/usr/bin/time`` and
    ``ru_maxrss`` report the peak since the last reset): fine for a benchmark run."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


RSS_PROBE_AVAILABLE = os.name == "posix" and _reset_peak_rss()


def mmap_allocations_from(threshold: int = 1 << 20) -> bool:
    """Makes glibc serve every allocation of at least `threshold` bytes with fresh pages from
    the kernel, returned on free (mallopt(M_MMAP_THRESHOLD); fixing it also stops glibc from
    raising the threshold after large frees). Below its 32 MiB default maximum, a freed block
    may otherwise be reused from the heap without raising the resident set, and the RSS probe
    would miss it. Returns False where this is not glibc."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        M_MMAP_THRESHOLD = -3
        return bool(libc.mallopt(M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):
        return False


@dataclass
class MemoryProbe:
    """Peak extra memory of one call, by two independent methods (None where unavailable)."""

    traced_bytes: Optional[int] = None  # tracemalloc: Python and NumPy allocations
    rss_bytes: Optional[int] = None  # peak resident set rise (large allocations of any origin)


def call_with_memory_probe(fn: Callable[[], Any], setup: Optional[Callable[[], None]] = None
                           ) -> Tuple[Any, float, MemoryProbe]:
    """Calls ``fn()`` once under both memory probes; returns (result, seconds, probe).

    The result is kept alive until the peak is read, so outputs count as extra memory.
    """
    if setup is not None:
        setup()
    gc.collect()
    probe = MemoryProbe()
    rss_ok = RSS_PROBE_AVAILABLE and _reset_peak_rss()
    rss_before = _status_kib("VmRSS") if rss_ok else None
    tracing_already = tracemalloc.is_tracing()
    if not tracing_already:
        tracemalloc.start()
    tracemalloc.reset_peak()
    traced_before = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - t0
    probe.traced_bytes = max(0, tracemalloc.get_traced_memory()[1] - traced_before)
    if not tracing_already:
        tracemalloc.stop()
    if rss_before is not None:
        peak = _status_kib("VmHWM")
        if peak is not None:
            probe.rss_bytes = max(0, peak - rss_before) * 1024
    return result, elapsed, probe

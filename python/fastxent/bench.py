"""Side-by-side benchmark of softmax cross-entropy: fastxent, torch, NumPy, JAX on the same inputs.

Run it as ``python -m fastxent bench`` (``--help`` lists the options) or from Python::

    from fastxent import bench
    meta, rows = bench.run(shapes=[(4096, 50257)], dtypes=["float32"], quick=True)
    print(bench.format_table(rows))

For every shape and dtype it first measures the memory roofline of this machine on a buffer of
the same size (``stream_read`` and ``stream_copy`` from the C++ core), then, for each
implementation and operation, makes one verified call (loss, and the gradient on a few rows,
against fastxent's) that also probes peak memory, then times the call (median of repeats).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import math
import os
import platform
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from fastxent._bench import linear as _linear
from fastxent._bench import peers as _peers
from fastxent._bench import timing as _timing
from fastxent._bench.report import (COPY, ERROR, LEGEND, MISMATCH, OK, READ, UNSUPPORTED, Progress,
                                    Row, format_table, write_json, write_plot)

__all__ = ["SHAPES", "QUICK_SHAPES", "DTYPES", "run", "format_table", "add_arguments", "main"]

# LM vocabularies (GPT-2, Llama 3, Llama 2), one huge row (threads must split it), tiny rows
# (per-row overhead), ImageNet-like classes.
SHAPES: List[Tuple[int, int]] = [(4096, 50257), (2048, 128256), (8192, 32000), (1, 262144),
                                 (65536, 10), (16384, 1000)]
QUICK_SHAPES: List[Tuple[int, int]] = [(4096, 50257), (1, 262144), (65536, 10), (16384, 1000)]
DTYPES = ["float32", "bfloat16"]
IMPLS = ["fastxent", "numpy", "torch", "jax"]

# (loss rtol, gradient tolerance relative to max |gradient|) against the reference. bfloat16 peers
# may round the loss and the gradient to bfloat16 (8 significant bits).
TOLERANCE = {"float32": (1e-4, 1e-4), "float16": (5e-3, 5e-3), "bfloat16": (2e-2, 2e-2)}


def numpy_dtype(name: str) -> Any:
    if name in ("bfloat16", "float8_e4m3fn"):
        try:
            import ml_dtypes
        except ImportError:
            raise _peers.Unsupported("needs ml_dtypes (pip install ml_dtypes)") from None
        return np.dtype(getattr(ml_dtypes, name))
    return np.dtype(name)


def make_logits(shape: Tuple[int, int], seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """float32 logits uniform in [-6, 6) and int64 class targets, reproducibly."""
    rng = np.random.default_rng(seed)
    x = rng.random(shape, dtype=np.float32)
    x *= 12
    x -= 6
    t = rng.integers(0, shape[1], shape[0], dtype=np.int64)
    return x, t


def _sample_rows(n: int, k: int = 8) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(np.int64))


class _OtherLoad:
    """CPU time used by other processes while the benchmark runs (the machine's busy time from
    /proc/stat minus this process's own): the best hint of how noisy the timings are."""

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> Optional[Tuple[float, float, float]]:
        try:
            import resource

            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
            busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
            me = resource.getrusage(resource.RUSAGE_SELF)
            return time.perf_counter(), busy, me.ru_utime + me.ru_stime
        except (ImportError, OSError, ValueError, IndexError):
            return None

    def share(self) -> Optional[float]:
        """Fraction of all CPUs that other processes kept busy since construction."""
        end = self._sample()
        if self.start is None or end is None or end[0] <= self.start[0]:
            return None
        other = (end[1] - self.start[1]) - (end[2] - self.start[2])
        return max(0.0, other) / ((end[0] - self.start[0]) * (os.cpu_count() or 1))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --- one case ------------------------------------------------------------------------------------

class _Reference:
    """The loss and sampled gradient rows every implementation is checked against: fastxent's,
    or the first implementation that could run when fastxent cannot (e.g. unsupported dtype)."""

    def __init__(self) -> None:
        self.loss: Optional[float] = None
        self.loss_by = ""
        self.grad: Optional[np.ndarray] = None
        self.grad_by = ""


def _verify(row: Row, loss: float, grad: Optional[np.ndarray], ref: _Reference,
            tol: Tuple[float, float]) -> None:
    row.loss = loss
    if not math.isfinite(loss):
        row.status, row.detail = ERROR, f"non-finite loss {loss}"
        return
    problems = []
    if ref.loss is None:
        ref.loss, ref.loss_by = loss, row.impl
    else:
        row.loss_ref = ref.loss
        row.loss_rel_err = abs(loss - ref.loss) / max(abs(ref.loss), 1e-30)
        if row.loss_rel_err > tol[0]:
            problems.append(f"loss {loss:.7g} vs {ref.loss:.7g} ({ref.loss_by}), "
                            f"rel err {row.loss_rel_err:.1e}")
    if grad is not None:
        if ref.grad is None:
            ref.grad, ref.grad_by = grad, row.impl
        else:
            scale = max(float(np.max(np.abs(ref.grad))), 1e-30)
            row.grad_rel_err = float(np.max(np.abs(grad - ref.grad))) / scale
            if not np.all(np.isfinite(grad)) or not row.grad_rel_err <= tol[1]:
                problems.append(f"gradient max err {row.grad_rel_err:.1e} × max|g| "
                                f"vs {ref.grad_by}")
    if problems:
        row.status, row.detail = MISMATCH, "; ".join(problems)


def _memory(impl: str, probe: _timing.MemoryProbe,
            nbytes: int) -> Tuple[Optional[int], Optional[str]]:
    """Peak extra memory by the methods that see this implementation's allocations."""
    candidates = []
    if impl in ("fastxent", "numpy") and probe.traced_bytes is not None:
        candidates.append(("tracemalloc", probe.traced_bytes))
    if probe.rss_bytes is not None and nbytes >= _timing.RSS_TRUSTED_BYTES:
        candidates.append(("rss", probe.rss_bytes))
    if not candidates:
        return None, None
    return max(b for _, b in candidates), "+".join(m for m, _ in candidates)


def _run_case(case: _peers.Case, shape: Tuple[int, ...], nbytes: int, dtype: str,
              ref: _Reference, budget: _timing.Budget, moved_bytes: int = 0) -> Row:
    """One case: a verified call that also probes memory, then the timed calls. `nbytes` is the
    size of the problem's largest array (whether the RSS probe can be trusted); `moved_bytes`
    what must move through memory (for GB/s; 0 when not meaningful)."""
    row = Row(shape, dtype, case.op, case.label, detail=case.note, bytes=moved_bytes)
    bound = None
    try:
        bound = case.bind()
        result, first_s, probe = _timing.call_with_memory_probe(bound.run, bound.setup)
        loss, grad = bound.extract(result)
        del result
        row.mem_bytes, row.mem_method = _memory(case.impl, probe, nbytes)
        row.detail = ""
        _verify(row, loss, grad, ref, TOLERANCE.get(dtype, (1e-4, 1e-4)))
        if row.status == ERROR:
            return row
        if budget.max_repeats == 0:  # one call only (heavy cases): its time is the timing
            t = _timing.Timing(first_s, first_s, [first_s], 1)
        else:
            t = _timing.time_call(bound.run, bound.setup, budget, first_call_s=first_s)
        _set_timing(row, t)
    except _peers.Unsupported as e:
        row.status, row.detail = UNSUPPORTED, str(e)
    except TypeError as e:  # how fastxent (and others) reject a dtype they do not handle
        row.status, row.detail = UNSUPPORTED, f"{type(e).__name__}: {e}"
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as e:  # one failing peer must not end the benchmark
        row.status, row.detail = ERROR, f"{type(e).__name__}: {e}"
    finally:
        del bound
        gc.collect()
    return row


def _set_timing(row: Row, t: _timing.Timing) -> None:
    row.median_s, row.min_s, row.samples_s, row.inner = t.median_s, t.min_s, t.samples_s, t.inner


def _roofline_rows(core: Any, x: np.ndarray, x32: np.ndarray, dtype: str,
                   budget: _timing.Budget) -> List[Row]:
    """stream_read / stream_copy of a float32 buffer of x's byte size (x itself when float32)."""
    n = x.nbytes // 4
    if x.dtype == np.float32:
        buf = x
    else:
        buf = x32.reshape(-1)[:n] if n <= x32.size else np.ones(n, np.float32)
    rows = []
    read = Row(x.shape, dtype, _peers.FWD, READ, bytes=buf.nbytes)
    t = _timing.time_call(lambda: core.stream_read(buf), budget=budget)
    _set_timing(read, t)
    rows.append(read)
    dst = np.empty_like(buf)
    copy = Row(x.shape, dtype, _peers.FWD_BWD, COPY, bytes=2 * buf.nbytes)
    t = _timing.time_call(lambda: core.stream_copy(buf, dst), budget=budget)
    _set_timing(copy, t)
    rows.append(copy)
    if not np.array_equal(dst[:: max(1, dst.size // 4096)], buf[:: max(1, buf.size // 4096)]):
        copy.status, copy.detail = MISMATCH, "stream_copy did not copy"
    return rows


def _finish_group(rows: List[Row]) -> None:
    """Roofline shares and fastxent's speed-up over each peer, within one shape and dtype."""
    roof = {r.op: r.median_s for r in rows if r.impl in (READ, COPY) and r.median_s}
    fx = {(r.op, r.impl): r.median_s for r in rows
          if r.impl.startswith("fastxent") and r.status == OK and r.median_s}
    for r in rows:
        if not r.median_s:
            continue
        if r.op in roof:
            r.roofline_pct = 100.0 * roof[r.op] / r.median_s
        if r.impl in (READ, COPY) or r.impl.startswith("fastxent"):
            continue
        variant = r.impl[r.impl.index("["):] if "[" in r.impl else ""
        vs = "fastxent" + variant if (r.op, "fastxent" + variant) in fx else "fastxent"
        if (r.op, vs) in fx:
            r.speedup, r.speedup_vs = r.median_s / fx[(r.op, vs)], vs


def _run_group(cases: List[_peers.Case], shape: Tuple[int, ...], nbytes: int, dtype: str,
               budget: _timing.Budget, tag: str, bar: Progress, meta: Dict[str, Any],
               moved: Any) -> List[Row]:
    """Runs `cases` of one problem, each verified against the first that could run."""
    ref = _Reference()
    group = []
    for case in cases:
        bar.step(f"{tag} {case.op} {case.label}", 0)
        row = _run_case(case, shape, nbytes, dtype, ref, budget, moved(case.op))
        if case.note:
            meta["notes"][case.label + " " + case.op] = case.note
        if row.status in (MISMATCH, ERROR):
            bar.message(f"!! {row.status}: {tag} {row.op} {row.impl}: {row.detail}")
        group.append(row)
        bar.step(f"{tag} {case.op} {case.label}")
    return group


# --- the whole run -------------------------------------------------------------------------------

def run(shapes: Optional[Sequence[Tuple[int, int]]] = None, dtypes: Optional[Sequence[str]] = None,
        *, impls: Optional[Sequence[str]] = None, quick: bool = False,
        threads: Optional[int] = None, progress: bool = True, seed: int = 0,
        linear_shapes: Optional[Sequence[Tuple[int, int, int]]] = None,
        ) -> Tuple[Dict[str, Any], List[Row]]:
    """Runs the benchmark; returns (metadata, rows) in table order. Shapes left None take the
    presets (quick or full); an empty list runs none of that kind. The linear cross-entropy
    cases (shapes (N, H, V)) run in float32 after the cross-entropy ones; before them glibc's
    mmap threshold is fixed at 1 MiB for the rest of the process (see
    _timing.mmap_allocations_from)."""
    import fastxent
    from fastxent import _core

    shapes = list(shapes if shapes is not None else (QUICK_SHAPES if quick else SHAPES))
    linear_shapes = list(linear_shapes if linear_shapes is not None
                         else (_linear.QUICK_SHAPES if quick else _linear.SHAPES))
    dtypes = list(dtypes or DTYPES)
    budget = _timing.QUICK if quick else _timing.FULL
    loaded, skipped = _peers.load_peers(list(impls or IMPLS))
    if threads:
        fastxent.set_num_threads(threads)
        for p in loaded:
            if p.name == "torch":
                p.torch.set_num_threads(threads)
    info = dict(fastxent.info())
    meta: Dict[str, Any] = {
        "command": " ".join([os.path.basename(sys.executable), "-m", "fastxent", "bench"]
                            + sys.argv[2:]) if sys.argv[1:2] == ["bench"] else "",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "fastxent": info.get("version", "?"), "isa": info.get("isa", "?"), "info": info,
        "threads": fastxent.get_num_threads(), "cpu": _cpu_model(), "cores": os.cpu_count(),
        "other_cpu_share": None,
        "platform": platform.platform(), "python": platform.python_version(),
        "versions": {p.name: p.version for p in loaded}, "skipped": skipped,
        "quick": quick, "budget": dataclasses.asdict(budget),
        "notes": {},
    }
    for p in loaded:
        if p.name == "torch":
            meta["torch_threads"] = p.torch.get_num_threads()

    # Everything imported so far (torch alone: ~10^5 objects) moves out of the collector's
    # sight, so the gc.collect() between cases costs milliseconds instead of ~0.2 s.
    gc.collect()
    gc.freeze()

    tiny = _peers.Problem(np.zeros((2, 3), np.float32), np.zeros(2, np.int64), np.arange(2))
    per_group = 2 + sum(len(p.cases(tiny)) for p in loaded)
    torch = next((p.torch for p in loaded if p.name == "torch"), None)
    impl_names = [p.name for p in loaded]
    per_linear = len(_linear.cases(_linear.Problem.make(2, 2, 3), impl_names, torch))
    bar = Progress(len(shapes) * len(dtypes) * per_group + len(linear_shapes) * per_linear,
                   enabled=progress)
    for name, why in skipped.items():
        bar.message(f"fastxent bench: {name} skipped: {why}")

    rows: List[Row] = []
    other_load = _OtherLoad()
    try:
        for shape in shapes:
            x32, t = make_logits(shape, seed)
            for dtype in dtypes:
                tag = f"{shape[0]}×{shape[1]} {dtype}"
                group: List[Row] = []
                try:
                    x = x32 if dtype == "float32" else x32.astype(numpy_dtype(dtype))
                except _peers.Unsupported as e:
                    bar.message(f"fastxent bench: {dtype} skipped: {e}")
                    bar.step(tag, per_group)
                    continue
                bar.step(f"{tag} memory roofline", 0)
                group += _roofline_rows(_core, x, x32, dtype, budget)
                bar.step(f"{tag} memory roofline", 2)
                problem = _peers.Problem(x, t, _sample_rows(shape[0]))
                cases = [case for peer in loaded for case in peer.cases(problem)]
                group += _run_group(cases, problem.shape, x.nbytes, dtype, budget, tag, bar,
                                    meta, lambda op: x.nbytes * (1 if op == _peers.FWD else 2))
                del problem, x, cases
                gc.collect()
                _finish_group(group)
                group.sort(key=lambda r: r.op != _peers.FWD)  # stable: fwd rows first
                rows += group
            del x32, t
            gc.collect()
        if linear_shapes:
            # Their temporaries (chunks, gradients) may be below 32 MiB: make them fresh pages
            # the RSS probe sees; and run every case once on a tiny problem, so that no case's
            # measured call pays for the libraries' one-time set-up (BLAS buffers, op caches).
            meta["linear_mmap_threshold"] = _timing.mmap_allocations_from(1 << 20)
            tiny_linear = _linear.Problem.make(8, 4, 16, seed=seed)
            for case in _linear.cases(tiny_linear, impl_names, torch):
                bound = case.bind()
                bound.run()
                del bound
        for shape in linear_shapes:
            problem = _linear.Problem.make(*shape, seed=seed)
            cases = _linear.cases(problem, impl_names, torch)
            group = _run_group(cases, shape, problem.logits_bytes, "float32",
                               _linear.QUICK if quick else _linear.FULL,
                               "×".join(map(str, shape)) + " linear", bar, meta, lambda op: 0)
            del problem, cases
            gc.collect()
            _finish_group(group)
            group.sort(key=lambda r: r.op != _linear.FWD)
            rows += group
    finally:
        bar.close()
        gc.unfreeze()
    meta["other_cpu_share"] = other_load.share()
    return meta, rows


# --- command line --------------------------------------------------------------------------------

def parse_shapes(text: str, dims: int = 2) -> List[Tuple[int, ...]]:
    """"4096x50257,1x262144" -> [(4096, 50257), (1, 262144)]; "all" / "quick" name the presets,
    "none" runs none. dims=3: linear cross-entropy shapes NxHxV."""
    presets = {2: (SHAPES, QUICK_SHAPES), 3: (_linear.SHAPES, _linear.QUICK_SHAPES)}[dims]
    if text in ("all", "full"):
        return list(presets[0])
    if text == "quick":
        return list(presets[1])
    if text == "none":
        return []
    form, example = ("NxC", "4096x50257") if dims == 2 else ("NxHxV", "4096x2048x128256")
    shapes = []
    for item in text.split(","):
        parts = item.strip().lower().replace("×", "x").split("x")
        try:
            shape = tuple(int(p) for p in parts)
        except ValueError:
            shape = ()
        if len(shape) != dims:
            raise argparse.ArgumentTypeError(f"bad shape {item!r}: expected {form}, e.g. {example}")
        if min(shape) < 1:
            raise argparse.ArgumentTypeError(f"bad shape {item!r}: sizes must be positive")
        shapes.append(shape)
    return shapes


def _parse_list(choices: Sequence[str]) -> Any:
    def parse(text: str) -> List[str]:
        items = [s.strip() for s in text.split(",") if s.strip()]
        bad = [s for s in items if s not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated subset of "
                                             f"{','.join(choices)}, got {text!r}")
        return items
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="about a minute: fewer shapes, shorter timing budget")
    parser.add_argument("--shapes", type=parse_shapes, default=None, metavar="NxC,...",
                        help="shapes to run, e.g. 4096x50257,1x262144, or all/quick/none "
                             f"(default: all = {','.join(f'{n}x{c}' for n, c in SHAPES)})")
    parser.add_argument("--linear-shapes", type=lambda text: parse_shapes(text, 3), default=None,
                        metavar="NxHxV,...",
                        help="linear cross-entropy shapes (hidden N×H, weight V×H; float32), "
                             "or all/quick/none (default: all = "
                             f"{','.join('x'.join(map(str, s)) for s in _linear.SHAPES)}, "
                             "--quick: "
                             f"{','.join('x'.join(map(str, s)) for s in _linear.QUICK_SHAPES)})")
    parser.add_argument("--dtypes", type=_parse_list(["float32", "bfloat16", "float16", "float64"]),
                        default=None, metavar="D,...", help="default: float32,bfloat16")
    parser.add_argument("--impls", type=_parse_list(IMPLS), default=None, metavar="I,...",
                        help=f"implementations to compare (default: {','.join(IMPLS)}; "
                             "the ones not installed are skipped)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="threads for fastxent and torch (default: their defaults)")
    parser.add_argument("--json", metavar="FILE", help="write the raw results as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="bar chart of GB/s (needs matplotlib)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar on stderr")


def main_from_args(args: argparse.Namespace) -> int:
    if args.threads is not None and args.threads < 1:
        raise SystemExit("--threads must be >= 1")
    if args.plot:  # fail before a ten-minute run, not after it
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise SystemExit("--plot needs matplotlib: pip install matplotlib") from None
    meta, rows = run(args.shapes, args.dtypes, impls=args.impls, quick=args.quick,
                     threads=args.threads, progress=args.progress,
                     linear_shapes=args.linear_shapes)
    print(format_header(meta))
    print()
    print(format_table(rows))
    print()
    print(LEGEND)
    if meta["notes"]:
        print("\nVariants:")
        for k, v in meta["notes"].items():
            print(f"- {k}: {v}")
    bad = [r for r in rows if r.status in (MISMATCH, ERROR)]
    if args.json:
        write_json(args.json, meta, rows)
        print(f"\nraw results: {args.json}")
    if args.plot:
        write_plot(args.plot, meta, rows)
        print(f"plot: {args.plot}")
    if bad:
        print(f"\n!! {len(bad)} case(s) failed verification or raised: see the check column",
              file=sys.stderr)
        return 1
    return 0


def format_header(meta: Dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    lines = [
        f"fastxent {meta['fastxent']} bench{' --quick' if meta['quick'] else ''}"
        f" — {meta['date']}",
        f"CPU: {meta['cpu']} ({meta['cores']} logical cores), ISA {meta['isa']}, "
        f"fastxent threads {meta['threads']}"
        + (f", torch threads {meta['torch_threads']}" if "torch_threads" in meta else ""),
        f"{versions}; Python {meta['python']}; {meta['platform']}",
    ]
    share = meta.get("other_cpu_share")
    if share is not None:
        warn = "  !! timings are noisy: rerun on an idle machine" if share > 0.05 else ""
        lines.append(f"other processes kept {100 * share:.0f}% of the CPUs busy during the run"
                     + warn)
    if meta.get("command"):
        lines.append(f"command: {meta['command']}")
    for name, why in meta["skipped"].items():
        lines.append(f"skipped {name}: {why}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastxent bench",
                                     description=__doc__.split("\n")[0])
    add_arguments(parser)
    return main_from_args(parser.parse_args(argv))

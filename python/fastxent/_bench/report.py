"""Presentation of benchmark results: progress bar, aligned Markdown table, JSON, bar chart."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple

READ = "memory read"  # roofline rows: stream_read / stream_copy of a buffer of the same size
COPY = "memory copy"

OK, MISMATCH, UNSUPPORTED, ERROR = "ok", "MISMATCH", "unsupported", "error"


@dataclass
class Row:
    shape: Tuple[int, ...]  # (N, C); (N, H, V) for linear cross-entropy
    dtype: str
    op: str  # "fwd" | "fwd+bwd"
    impl: str  # label, e.g. "torch[out]", or READ / COPY
    status: str = OK
    detail: str = ""  # why unsupported / mismatching, or what the variant does
    bytes: int = 0  # bytes that must move: N*C*itemsize (fwd), twice that (fwd+bwd, copy)
    median_s: Optional[float] = None
    min_s: Optional[float] = None
    samples_s: List[float] = field(default_factory=list)
    inner: int = 1
    roofline_pct: Optional[float] = None  # of the read (fwd) / copy (fwd+bwd) bandwidth
    speedup: Optional[float] = None  # t(this) / t(matching fastxent row)
    speedup_vs: Optional[str] = None
    mem_bytes: Optional[int] = None
    mem_method: Optional[str] = None  # "tracemalloc", "rss", "tracemalloc+rss"
    loss: Optional[float] = None
    loss_ref: Optional[float] = None
    loss_rel_err: Optional[float] = None
    grad_rel_err: Optional[float] = None  # max |g - g_ref| / max |g_ref| on the sampled rows

    @property
    def gbps(self) -> Optional[float]:
        return self.bytes / self.median_s / 1e9 if self.median_s and self.bytes else None


# --- progress ------------------------------------------------------------------------------------

class Progress:
    """A text progress bar on stderr (tqdm when installed); one line per step when not a tty."""

    def __init__(self, total: int, enabled: bool = True, stream: TextIO = sys.stderr) -> None:
        self.total, self.done, self.enabled, self.stream = max(total, 1), 0, enabled, stream
        self.start = self._last_line = time.perf_counter()
        self.tty = enabled and stream.isatty()
        self._tqdm = None
        if self.tty:
            try:
                from tqdm import tqdm

                self._tqdm = tqdm(total=total, file=stream, unit="case", leave=False)
            except ImportError:
                pass

    def step(self, desc: str, n: int = 1) -> None:
        self.done = min(self.total, self.done + n)
        if not self.enabled:
            return
        if self._tqdm is not None:
            self._tqdm.set_description_str(desc[:40])
            self._tqdm.update(n)
            return
        now = time.perf_counter()
        elapsed = now - self.start
        if self.tty:
            width = 30
            filled = int(width * self.done / self.total)
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r[{bar}] {self.done}/{self.total} {elapsed:5.0f}s  "
                              f"{desc[:44]:<44}")
        elif n and (now - self._last_line >= 10 or self.done == self.total):
            # Not a terminal (a log file, CI): a line every 10 s at most.
            self._last_line = now
            self.stream.write(f"[{self.done}/{self.total} {elapsed:.0f}s] {desc}\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A line that must not be overwritten by the bar (mismatches, skipped peers)."""
        if self._tqdm is not None:
            self._tqdm.write(text, file=self.stream)
            return
        self.stream.write(("\r\033[K" if self.tty else "") + text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
        elif self.tty and self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


# --- table ---------------------------------------------------------------------------------------

def _fmt_ms(seconds: Optional[float]) -> str:
    if seconds is None:
        return "—"
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def fmt_bytes(n: Optional[int]) -> str:
    if n is None:
        return "n/a"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}" if n < 10 * scale else f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _check(row: Row) -> str:
    if row.status == OK:
        return "ok" if row.loss_ref is not None or row.impl in (READ, COPY) else "ok (ref)"
    if row.status == MISMATCH:
        return f"MISMATCH: {row.detail}"
    return f"{row.status}: {row.detail}" if row.detail else row.status


HEADERS = ["shape", "dtype", "op", "impl", "ms", "GB/s", "% roof", "fastxent ×", "peak mem",
           "check"]
RIGHT = {"ms", "GB/s", "% roof", "fastxent ×", "peak mem"}


def table_rows(rows: Sequence[Row]) -> List[List[str]]:
    out = []
    for r in rows:
        timed = r.status in (OK, MISMATCH) and r.median_s is not None
        out.append([
            "×".join(str(d) for d in r.shape),
            r.dtype,
            r.op,
            r.impl,
            _fmt_ms(r.median_s) if timed else "—",
            f"{r.gbps:.1f}" if timed and r.gbps is not None else "—",
            f"{r.roofline_pct:.0f}%" if timed and r.roofline_pct is not None else "—",
            f"{r.speedup:.2f}×" if r.speedup is not None else "",
            "" if r.impl in (READ, COPY) else fmt_bytes(r.mem_bytes) if timed else "—",
            _check(r),
        ])
    return out


def format_table(rows: Sequence[Row]) -> str:
    """An aligned Markdown table (readable as plain text, pasteable into bench/RESULTS.md)."""
    cells = table_rows(rows)
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(HEADERS)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if h in RIGHT else v.ljust(w)
                 for v, w, h in zip(values, widths, HEADERS)]
        return "| " + " | ".join(parts) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if h in RIGHT else ("-" * (w + 2))
                          for w, h in zip(widths, HEADERS)) + "|"
    return "\n".join([line(HEADERS), rule] + [line(c) for c in cells])


LEGEND = """\
ms: median wall time of one call. GB/s: bytes that must move / time, where bytes = N·C·itemsize
for fwd (one read) and 2·N·C·itemsize for fwd+bwd (read the logits, write the gradient).
% roof: share of the bandwidth of a plain streaming read (fwd) or copy (fwd+bwd) of a buffer of
the same size, measured in the same run (the "memory read" / "memory copy" rows).
fastxent ×: how many times faster fastxent is than that row (fresh vs fresh, out vs out).
peak mem: peak extra memory of one call, outputs included; tracemalloc (NumPy/Python
allocations) and the rise of the peak resident set (allocations above glibc's 32 MiB mmap
threshold, any allocator); n/a where neither covers the allocator (small torch/JAX inputs).
check: loss (and gradient on sampled rows) against fastxent on the same input.
linear rows (shape N×H×V): cross_entropy(hidden @ weight.T + bias) and, for fwd+bwd, the
gradients of hidden, weight and bias; fastxent computes them in chunks of rows (never N×V
logits), the others materialise the N×V logits; peak mem is what matters there (before these
rows glibc is told to serve every allocation from 1 MiB up with fresh pages, so the resident-set
probe sees each of them)."""


def format_notes(notes: Dict[str, str]) -> str:
    return "\n".join(f"- {k}: {v}" for k, v in notes.items())


# --- JSON ----------------------------------------------------------------------------------------

def write_json(path: str, meta: Dict[str, Any], rows: Sequence[Row]) -> None:
    records = []
    for r in rows:
        d = asdict(r)
        d["shape"] = list(r.shape)
        d["gbps"] = r.gbps
        records.append(d)
    with open(path, "w") as f:
        json.dump({"meta": meta, "results": records}, f, indent=1)
        f.write("\n")


# --- plot ----------------------------------------------------------------------------------------

def write_plot(path: str, meta: Dict[str, Any], rows: Sequence[Row]) -> None:
    """Bar chart of GB/s per shape and dtype, one panel per op, the roofline as a black line."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install matplotlib "
                         "(or pip install 'fastxent[bench]')") from None

    ops = [op for op in ("fwd", "fwd+bwd") if any(r.op == op for r in rows)]
    fig, axes = plt.subplots(len(ops), 1, figsize=(13, 4.2 * len(ops)), squeeze=False)
    for ax, op in zip(axes[:, 0], ops):
        roof_name = READ if op == "fwd" else COPY
        mine = [r for r in rows if r.op == op and r.status in (OK, MISMATCH) and r.median_s]
        groups = list(dict.fromkeys((r.shape, r.dtype) for r in mine))
        impls = list(dict.fromkeys(r.impl for r in mine if r.impl != roof_name))
        if not groups or not impls:
            ax.set_visible(False)
            continue
        width = 0.8 / len(impls)
        colors = plt.get_cmap("tab10")
        for j, impl in enumerate(impls):
            xs, ys = [], []
            for g, key in enumerate(groups):
                hit = [r for r in mine if (r.shape, r.dtype) == key and r.impl == impl]
                if hit:
                    xs.append(g - 0.4 + (j + 0.5) * width)
                    ys.append(hit[0].gbps)
            ax.bar(xs, ys, width, label=impl, color=colors(j % 10))
        for g, key in enumerate(groups):
            roof = [r for r in mine if (r.shape, r.dtype) == key and r.impl == roof_name]
            if roof:
                ax.hlines(roof[0].gbps, g - 0.45, g + 0.45, colors="black", linewidth=2,
                          label=roof_name if g == 0 else None)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([f"{s[0]}×{s[1]}\n{d}" for s, d in groups])
        ax.set_yscale("log")
        ax.set_ylabel("GB/s (log)")
        ax.set_title(f"{op}: softmax cross-entropy, mean reduction")
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0))
    share = meta.get("other_cpu_share")
    noisy = ""
    if share and share > 0.05:
        noisy = f" — NOISY: other processes used {100 * share:.0f}% of the CPUs"
    fig.suptitle(f"fastxent {meta.get('fastxent', '')} — {meta.get('cpu', '')}, "
                 f"{meta.get('threads', '?')} threads, ISA {meta.get('isa', '?')}{noisy}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

"""``python -m fastxent`` (also the ``fastxent`` console script): ``info`` and ``bench``."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from typing import Any, List, Optional, Sequence, Tuple


def _versions() -> List[Tuple[str, str]]:
    out = [("python", platform.python_version())]
    for name in ("numpy", "torch", "ml_dtypes", "jax"):
        try:
            module = __import__(name)
        except ImportError:
            out.append((name, "not installed"))
            continue
        extra = ""
        if name == "torch":
            cuda = getattr(module.version, "cuda", None)
            device = f"CUDA {cuda}" if cuda else "CPU"
            extra = f" (threads {module.get_num_threads()}, {device})"
        out.append((name, getattr(module, "__version__", "?") + extra))
    return out


def _format_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if value else "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def info(args: argparse.Namespace) -> int:
    import fastxent

    info = fastxent.info()
    cuda = info.pop("cuda")
    items = list(info.items())
    width = max(len(k) for k, _ in items + list(cuda.items()) + _versions())
    print("fastxent")
    for key, value in items:
        print(f"  {key:<{width}}  {_format_value(value)}")
    print("cuda")
    for key, value in cuda.items():
        print(f"  {key:<{width}}  {_format_value(value)}")
    print(f"  {'platform':<{width}}  {platform.platform()}")
    print("environment")
    for key, value in _versions():
        print(f"  {key:<{width}}  {value}")
    return 0


def bench(args: argparse.Namespace) -> int:
    from fastxent import bench as _bench

    return _bench.main_from_args(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fastxent",
        description="fastxent: softmax cross-entropy and its gradient at the speed of memory.")
    sub = parser.add_subparsers(dest="command", metavar="{info,bench}")
    p_info = sub.add_parser("info", help="build, instruction set, threads and library versions")
    p_info.set_defaults(func=info)
    p_bench = sub.add_parser(
        "bench", help="benchmark against torch / NumPy / JAX and the memory roofline",
        description="Times softmax cross-entropy (forward, forward+backward) in fastxent and in "
                    "the installed peers on the same inputs, verified against each other, next to "
                    "a streaming read and copy of the same bytes. Prints a Markdown table.")
    from fastxent.bench import add_arguments

    add_arguments(p_bench)
    p_bench.set_defaults(func=bench)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `python -m fastxent info | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())

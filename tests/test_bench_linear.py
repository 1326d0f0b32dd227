"""python -m fastxent bench's linear cross-entropy cases run, agree with each other (the bench
exits 1 on a mismatch or an error) and report every implementation, on a small shape."""

import os
import subprocess
import sys


def test_linear_bench_cases_verify():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    r = subprocess.run([sys.executable, "-m", "fastxent", "bench", "--quick", "--shapes", "none",
                        "--linear-shapes", "64x16x500,3x8x40", "--no-progress"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = [line for line in r.stdout.splitlines() if "| linear " in line]
    impls = {line.split("|")[4].strip() for line in rows}
    expected = {"fastxent", "fastxent[inplace]", "fastxent[numpy]", "numpy[mm+fastxent]"}
    if "torch" in sys.modules or _importable("torch"):
        expected |= {"torch", "torch[mm+fastxent]"}
    assert expected <= impls, impls
    assert all(line.rstrip(" |").endswith(("ok", "ok (ref)")) for line in rows), rows


def _importable(name):
    try:
        __import__(name)
    except ImportError:
        return False
    return True

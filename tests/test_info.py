"""fastxent.info() and every instruction set the CPU offers (FASTXENT_ISA), each against the
reference in a fresh process (the ISA is chosen once per process)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastxent
import reference
from conftest import assert_close

CHILD = r"""
import json, sys
import numpy as np
import fastxent
rng = np.random.default_rng(3)
out = {"isa": fastxent.info()["isa"]}
for dtype in ("float32", "float64"):
    for C in (1, 3, 15, 16, 17, 31, 33, 64, 1000 + 3):
        x = (rng.standard_normal((5, C)) * 4).astype(dtype)
        x[1, 0] = -np.inf if C > 1 else x[1, 0]
        t = rng.integers(0, C, 5)
        w = rng.uniform(0.5, 2, C).astype(dtype)
        kw = dict(weight=w, reduction="none", label_smoothing=0.1)
        loss, grad = fastxent.cross_entropy_with_grad(x, t, **kw)
        out[f"{dtype}-{C}"] = dict(x=x.tolist(), t=t.tolist(), w=w.tolist(), loss=loss.tolist(),
                                   grad=grad.tolist(), lse=fastxent.logsumexp(x).tolist(),
                                   softmax=fastxent.softmax(x).tolist())
json.dump(out, sys.stdout)
"""


def test_info_fields():
    info = fastxent.info()
    assert {"version", "isa", "isas", "openmp", "num_threads"} <= set(info)
    assert isinstance(info["version"], str) and info["version"]
    assert info["isa"] in info["isas"] and "scalar" in info["isas"]
    assert isinstance(info["openmp"], bool)
    assert info["num_threads"] == fastxent.get_num_threads() >= 1


@pytest.mark.parametrize("isa", fastxent.info()["isas"])
def test_each_isa_matches_reference(isa):
    env = dict(os.environ, FASTXENT_ISA=isa)
    res = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    out = json.loads(res.stdout)
    assert out.pop("isa") == isa
    for key, case in out.items():
        dtype = np.dtype(key.split("-")[0])
        x, t, w = np.array(case["x"], dtype), np.array(case["t"]), np.array(case["w"], dtype)
        C = x.shape[1]
        kw = dict(weight=w, reduction="none", label_smoothing=0.1)
        assert_close(np.array(case["loss"], dtype), reference.cross_entropy(x, t, **kw), dtype, C,
                     f"{isa} loss {key}")
        assert_close(np.array(case["grad"], dtype), reference.cross_entropy_backward(x, t, **kw),
                     dtype, C, f"{isa} grad {key}")
        assert_close(np.array(case["lse"], dtype), reference.logsumexp(x), dtype, C, f"{isa} lse")
        assert_close(np.array(case["softmax"], dtype), reference.softmax(x), dtype, C,
                     f"{isa} softmax")


def test_cli_info():
    res = subprocess.run([sys.executable, "-m", "fastxent", "info"], capture_output=True, text=True,
                         timeout=120, check=True)
    assert fastxent.info()["isa"] in res.stdout and fastxent.info()["version"] in res.stdout

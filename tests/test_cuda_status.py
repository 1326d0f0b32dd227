"""What runs without a GPU: the module imports and reports its CUDA status whether or not it was
built with CUDA and whether or not a device is present, and CUDA arrays it cannot serve are
refused with a clear TypeError before anything is exported or written."""

import subprocess
import sys

import numpy as np
import pytest

import fastxent
from test_dlpack import Producer, x45

T4 = np.array([0, 4, 2, 1])


def no_gpu():
    return not fastxent.info()["cuda"]["devices"]


def test_cuda_info_fields():
    cuda = fastxent.info()["cuda"]
    assert {"built", "toolkit", "architectures", "runtime_version", "driver_version", "devices",
            "status", "available"} <= set(cuda)
    assert isinstance(cuda["built"], bool) and isinstance(cuda["devices"], list)
    assert cuda["available"] == fastxent.cuda_available()
    assert cuda["available"] == (cuda["built"] and bool(cuda["devices"]))
    if cuda["built"]:
        # The default architectures: machine code for 75, 80, 90 at least, PTX for the newest.
        assert cuda["toolkit"] and cuda["runtime_version"] > 0
        if "75-real" in cuda["architectures"]:
            assert "80-real" in cuda["architectures"] and "90-real" in cuda["architectures"]
        assert cuda["status"] == "ok" or not cuda["devices"]
    else:
        assert cuda["status"] == "built without CUDA" and not cuda["devices"]


@pytest.mark.skipif(not no_gpu(), reason="a CUDA device is present")
def test_no_gpu_here():
    assert fastxent.cuda_available() is False
    assert fastxent.info()["cuda"]["status"] != "ok"


def test_cli_reports_cuda():
    res = subprocess.run([sys.executable, "-m", "fastxent", "info"], capture_output=True,
                         text=True, timeout=120, check=True)
    assert "\ncuda\n" in res.stdout and "built" in res.stdout and "status" in res.stdout


@pytest.mark.skipif(not no_gpu(), reason="a CUDA device is present")
@pytest.mark.parametrize("which", ["input", "target", "weight"])
def test_cuda_array_without_a_device_is_refused(which):
    """A CUDA array where no CUDA device (or no CUDA build) can serve it: TypeError naming the
    argument, and the export is released."""
    args = dict(input=Producer(x45()), target=Producer(T4), weight=Producer(np.ones(5, np.float32)))
    args[which] = Producer(args[which].array, device=(2, 0))
    with pytest.raises(TypeError, match=f"{which} is on a CUDA device, but (this build|no CUDA)"):
        fastxent.cross_entropy(args["input"], args["target"], weight=args["weight"])
    args[which].check_consumed()


@pytest.mark.skipif(not no_gpu(), reason="a CUDA device is present")
@pytest.mark.parametrize("fn", ["logsumexp", "softmax", "log_softmax"])
def test_cuda_array_refused_by_the_softmax_family(fn):
    p = Producer(x45(), device=(2, 0))
    with pytest.raises(TypeError, match="input is on a CUDA device"):
        getattr(fastxent, fn)(p)
    p.check_consumed()


def test_managed_memory_counts_as_cuda():
    p = Producer(x45(), device=(13, 0))  # kDLCUDAManaged
    if fastxent.cuda_available():
        pytest.skip("a CUDA device is present: managed memory would be served")
    with pytest.raises(TypeError, match="input is on a CUDA device"):
        fastxent.cross_entropy(p, T4)


def test_pinned_host_memory_is_read_on_the_cpu():
    """kDLCUDAHost (pinned host memory) is host memory: the CPU kernels read it."""
    p = Producer(x45(), device=(3, 0))
    np.testing.assert_allclose(fastxent.cross_entropy(p, T4), fastxent.cross_entropy(x45(), T4))


def test_roofline_probes_refuse_cuda_arrays():
    if not fastxent.cuda_available():
        pytest.skip("needs a CUDA device to get past the device check")
    from fastxent import _core  # noqa: PLC0415

    with pytest.raises(TypeError, match="buffer: expected a CPU array"):
        _core.stream_read(Producer(x45(), device=(2, 0)))

"""fastxent: softmax cross-entropy and its gradient at the speed of memory.

Exactly ``torch.nn.functional.cross_entropy``'s semantics (and those of
``binary_cross_entropy_with_logits`` for binary and multi-label targets), computed by a C++ core
(SIMD + OpenMP on the CPU, CUDA kernels on NVIDIA GPUs when built with them) in one pass over
the logits, with no N×C temporaries. NumPy in, NumPy out; torch / CuPy in, the same out, on the
same device.
"""

from . import _core
from ._api import (
    CrossEntropyStatistics,
    cross_entropy,
    cross_entropy_backward,
    cross_entropy_statistics,
    cross_entropy_with_grad,
    log_softmax,
    logsumexp,
    softmax,
)
from ._bce import (
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_backward,
    binary_cross_entropy_with_logits_with_grad,
)
from ._linear import linear_cross_entropy, linear_cross_entropy_with_grad

__version__ = _core.version()

__all__ = [
    "cross_entropy",
    "cross_entropy_backward",
    "cross_entropy_with_grad",
    "cross_entropy_statistics",
    "CrossEntropyStatistics",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_backward",
    "binary_cross_entropy_with_logits_with_grad",
    "logsumexp",
    "log_softmax",
    "softmax",
    "linear_cross_entropy",
    "linear_cross_entropy_with_grad",
    "info",
    "cuda_available",
    "set_num_threads",
    "get_num_threads",
    "__version__",
]


def set_num_threads(n: int) -> None:
    """Threads every fastxent kernel may use (default: OpenMP's, i.e. OMP_NUM_THREADS or the
    number of cores). Results do not depend on it: they are bitwise identical for any count."""
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    """Threads fastxent kernels use at most."""
    return _core.get_num_threads()


def cuda_available() -> bool:
    """True when this build has the CUDA kernels and a CUDA device is present: only then are
    CUDA arrays (torch CUDA tensors, CuPy arrays) accepted; otherwise they raise TypeError."""
    return _core.cuda_available()


def info() -> dict:
    """What this build and machine run: version, chosen ISA, ISAs available, OpenMP, threads,
    and under "cuda" what the CUDA build compiled (toolkit, architectures) and what is present
    (runtime and driver versions, devices, status)."""
    return {
        "version": __version__,
        "isa": _core.cpu_isa(),
        "isas": _core.available_cpu_isas(),
        "openmp": _core.openmp_enabled(),
        "num_threads": _core.get_num_threads(),
        "cuda": dict(_core.cuda_info(), available=_core.cuda_available()),
    }

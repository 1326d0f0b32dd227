"""The array-library side of linear cross-entropy: the matrix products of one chunk of rows,
done by the library the inputs came from (NumPy's BLAS for NumPy arrays, torch's matmul for
torch tensors, on the tensors' device), always into buffers allocated once per call."""

from __future__ import annotations

import numpy as np

from ._arrays import is_torch, numpy_alloc

# NumPy has no "C += A @ B" (BLAS gemm with beta = 1): grad_weight accumulates a chunk's
# contribution through a scratch block of weight rows. Blocks of this many bytes keep the scratch
# small (it stays in cache between the product and the addition) while each product is still
# large enough for BLAS to run at full speed.
_NUMPY_SCRATCH_BYTES = 8 << 20


class NumpyOps:
    """Products of NumPy arrays (float32 / float64: NumPy's BLAS has no 16-bit kernels)."""

    dtypes = ("float32", "float64")
    library = "NumPy"

    def __init__(self) -> None:
        self._scratch = None

    @staticmethod
    def dtype_name(a) -> str:
        return a.dtype.name

    @staticmethod
    def empty(shape, dtype: str, like):
        return numpy_alloc(tuple(shape), dtype)

    @staticmethod
    def zeros(shape, dtype: str, like):
        return np.zeros(tuple(shape), dtype=dtype)

    @staticmethod
    def logits(h, w, b, out) -> None:
        """out = h @ w.T + b."""
        np.matmul(h, w.T, out=out)
        if b is not None:
            out += b

    @staticmethod
    def matmul(a, b, out) -> None:
        np.matmul(a, b, out=out)

    def add_matmul(self, c, a, b) -> None:
        """c += a @ b, through a scratch of at most _NUMPY_SCRATCH_BYTES (rows of c)."""
        rows = max(1, _NUMPY_SCRATCH_BYTES // max(1, c.shape[1] * c.itemsize))
        rows = min(rows, c.shape[0])
        if self._scratch is None or self._scratch.shape[0] < rows:
            self._scratch = np.empty((rows, c.shape[1]), dtype=c.dtype)
        for r0 in range(0, c.shape[0], rows):
            r1 = min(c.shape[0], r0 + rows)
            s = self._scratch[: r1 - r0]
            np.matmul(a[r0:r1], b, out=s)
            c[r0:r1] += s

    @staticmethod
    def add_column_sums(acc, g) -> None:
        """acc += g.sum(0), summed in acc's dtype."""
        acc += g.sum(axis=0, dtype=acc.dtype)

    @staticmethod
    def cast(a, dtype: str):
        return np.asarray(a, dtype=dtype)

    @staticmethod
    def first_where(mask):
        """Index of the first True of a 1-D mask, or None."""
        hits = np.flatnonzero(mask)
        return int(hits[0]) if hits.size else None


class TorchOps:
    """Products of torch tensors with torch's own matmul (any device; 16-bit dtypes multiply in
    their own dtype, as F.linear does), outside autograd."""

    dtypes = ("float32", "float64", "bfloat16", "float16")
    library = "torch"

    def __init__(self) -> None:
        import torch  # noqa: PLC0415  (only reached with torch tensors)

        self.torch = torch

    @staticmethod
    def dtype_name(a) -> str:
        return str(a.dtype).rpartition(".")[2]

    def empty(self, shape, dtype: str, like):
        return self.torch.empty(tuple(shape), dtype=getattr(self.torch, dtype), device=like.device)

    def zeros(self, shape, dtype: str, like):
        return self.torch.zeros(tuple(shape), dtype=getattr(self.torch, dtype), device=like.device)

    def logits(self, h, w, b, out) -> None:
        if b is None:
            self.torch.mm(h, w.t(), out=out)
        else:
            self.torch.addmm(b, h, w.t(), out=out)

    def matmul(self, a, b, out) -> None:
        self.torch.mm(a, b, out=out)

    def add_matmul(self, c, a, b) -> None:
        c.addmm_(a, b)  # gemm with beta = 1: no temporary

    @staticmethod
    def add_column_sums(acc, g) -> None:
        acc += g.sum(0, dtype=acc.dtype)

    def cast(self, a, dtype: str):
        return a.to(getattr(self.torch, dtype))

    @staticmethod
    def first_where(mask):
        hits = mask.nonzero()
        return int(hits[0, 0]) if hits.shape[0] else None


def ops_for(hidden):
    """The library of `hidden` (NumPy arrays and torch tensors; the other arguments must be of
    the same library, checked by the caller)."""
    if isinstance(hidden, np.ndarray):
        return NumpyOps()
    if is_torch(hidden):
        return TorchOps()
    raise TypeError("hidden: linear_cross_entropy takes NumPy arrays or torch tensors, got "
                    f"{type(hidden).__name__}")

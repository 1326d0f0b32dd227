from typing import Any, Literal, NamedTuple, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

_Reduction = Literal["none", "sum", "mean"]
_ArrayLike = npt.ArrayLike

__version__: str

def cross_entropy(
    input: _ArrayLike,
    target: _ArrayLike,
    weight: Optional[_ArrayLike] = ...,
    ignore_index: int = ...,
    reduction: _Reduction = ...,
    label_smoothing: float = ...,
    *,
    axis: Optional[int] = ...,
    z_loss: float = ...,
    softcap: Optional[float] = ...,
    return_lse: bool = ...,
) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]: ...
def cross_entropy_backward(
    input: _ArrayLike,
    target: _ArrayLike,
    grad_output: Union[float, _ArrayLike] = ...,
    weight: Optional[_ArrayLike] = ...,
    ignore_index: int = ...,
    reduction: _Reduction = ...,
    label_smoothing: float = ...,
    *,
    axis: Optional[int] = ...,
    z_loss: float = ...,
    softcap: Optional[float] = ...,
    out: Optional[np.ndarray] = ...,
) -> np.ndarray: ...
def cross_entropy_with_grad(
    input: _ArrayLike,
    target: _ArrayLike,
    grad_output: Union[float, _ArrayLike] = ...,
    weight: Optional[_ArrayLike] = ...,
    ignore_index: int = ...,
    reduction: _Reduction = ...,
    label_smoothing: float = ...,
    *,
    axis: Optional[int] = ...,
    z_loss: float = ...,
    softcap: Optional[float] = ...,
    return_lse: bool = ...,
    inplace: bool = ...,
    out: Optional[np.ndarray] = ...,
) -> Union[Tuple[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray, np.ndarray]]: ...
class CrossEntropyStatistics(NamedTuple):
    loss: np.ndarray
    lse: np.ndarray
    argmax: np.ndarray
    entropy: np.ndarray

def cross_entropy_statistics(
    input: _ArrayLike,
    target: _ArrayLike,
    weight: Optional[_ArrayLike] = ...,
    ignore_index: int = ...,
    reduction: _Reduction = ...,
    label_smoothing: float = ...,
    *,
    axis: Optional[int] = ...,
    z_loss: float = ...,
    softcap: Optional[float] = ...,
) -> CrossEntropyStatistics: ...
def binary_cross_entropy_with_logits(
    input: _ArrayLike,
    target: _ArrayLike,
    weight: Optional[_ArrayLike] = ...,
    pos_weight: Optional[_ArrayLike] = ...,
    reduction: _Reduction = ...,
) -> np.ndarray: ...
def binary_cross_entropy_with_logits_backward(
    input: _ArrayLike,
    target: _ArrayLike,
    grad_output: Union[float, _ArrayLike] = ...,
    weight: Optional[_ArrayLike] = ...,
    pos_weight: Optional[_ArrayLike] = ...,
    reduction: _Reduction = ...,
    *,
    out: Optional[np.ndarray] = ...,
) -> np.ndarray: ...
def binary_cross_entropy_with_logits_with_grad(
    input: _ArrayLike,
    target: _ArrayLike,
    grad_output: Union[float, _ArrayLike] = ...,
    weight: Optional[_ArrayLike] = ...,
    pos_weight: Optional[_ArrayLike] = ...,
    reduction: _Reduction = ...,
    *,
    inplace: bool = ...,
    out: Optional[np.ndarray] = ...,
) -> Tuple[np.ndarray, np.ndarray]: ...
def logsumexp(x: _ArrayLike, axis: int = ...) -> np.ndarray: ...
def log_softmax(x: _ArrayLike, axis: int = ..., *, out: Optional[np.ndarray] = ...) -> np.ndarray: ...
def softmax(x: _ArrayLike, axis: int = ..., *, out: Optional[np.ndarray] = ...) -> np.ndarray: ...
def linear_cross_entropy(
    hidden: _ArrayLike,
    weight: _ArrayLike,
    target: _ArrayLike,
    bias: Optional[_ArrayLike] = ...,
    class_weight: Optional[_ArrayLike] = ...,
    ignore_index: int = ...,
    reduction: _Reduction = ...,
    label_smoothing: float = ...,
    *,
    chunk_size: Optional[int] = ...,
    z_loss: float = ...,
    softcap: Optional[float] = ...,
    return_lse: bool = ...,
) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]: ...
def linear_cross_entropy_with_grad(
    hidden: _ArrayLike,
    weight: _ArrayLike,
    target: _ArrayLike,
    bias: Optional[_ArrayLike] = ...,
    class_weight: Optional[_ArrayLike] = ...,
    ignore_index: int = ...,
    reduction: _Reduction = ...,
    label_smoothing: float = ...,
    *,
    grad_output: Union[float, _ArrayLike] = ...,
    chunk_size: Optional[int] = ...,
    z_loss: float = ...,
    softcap: Optional[float] = ...,
    return_lse: bool = ...,
) -> Tuple[np.ndarray, ...]: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def info() -> dict[str, Any]: ...
def cuda_available() -> bool: ...

from typing import Any, Dict, List, Literal, Optional, Tuple, Union, overload

import numpy as np
import numpy.typing as npt

from . import Subspace

Array = npt.NDArray[Any]

@overload
def detox_subspace(preferred: npt.ArrayLike, toxic: npt.ArrayLike, rank: int = ..., *, centering: bool = ...,
                   return_details: Literal[False] = ...) -> Subspace: ...
@overload
def detox_subspace(preferred: npt.ArrayLike, toxic: npt.ArrayLike, rank: int = ..., *, centering: bool = ...,
                   return_details: Literal[True] = ...) -> Tuple[Subspace, Array, Array]: ...

class AlphaEdit:
    dtype: np.dtype[Any]
    def __init__(self, preserved_keys: Optional[npt.ArrayLike] = ..., *, threshold: float = ..., lam: float = ...,
                 second_moment: Optional[npt.ArrayLike] = ..., dtype: Optional[npt.DTypeLike] = ...) -> None: ...
    def update(self, K: npt.ArrayLike, R: npt.ArrayLike) -> Array: ...
    def compute_update(self, K: npt.ArrayLike, R: npt.ArrayLike) -> Array: ...
    @property
    def null_space(self) -> Subspace: ...
    @property
    def cache(self) -> Array: ...

class Dama:
    rank: int
    subspace: Optional[Subspace]
    x_weights: Optional[Array]
    def __init__(self, rank: int = ..., *, whitening: Optional[npt.ArrayLike] = ..., lam: float = ...,
                 max_iter: int = ..., tol: float = ...) -> None: ...
    def fit(self, X: npt.ArrayLike, Y: npt.ArrayLike) -> "Dama": ...
    @property
    def projector(self) -> Array: ...

class Inlp:
    subspace: Subspace
    null_space: Subspace
    accuracies: List[float]
    majority: float
    weights: List[Array]
    def __init__(self, iterations: int = ..., *, classifier: Literal["svm", "logistic"] = ..., min_accuracy: float = ...,
                 C: float = ..., fit_intercept: bool = ..., balanced: bool = ...) -> None: ...
    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike) -> "Inlp": ...
    @property
    def projector(self) -> Array: ...
    def transform(self, X: npt.ArrayLike) -> Array: ...

class ThinkEdit:
    direction: Array
    gap: float
    subspace: Subspace
    def fit(self, A: npt.ArrayLike, B: npt.ArrayLike) -> "ThinkEdit": ...

class EditReport(Dict[str, Any]):
    delta_norm: float
    weight_norm: float
    norm_before: Array
    norm_after: Array
    storage_side: str

class WeightEditor:
    def __init__(self, side: Literal["output", "input"] = ..., *, transposed: bool = ..., strength: float = ...,
                 output_range: Optional[Tuple[int, Optional[int]]] = ...,
                 input_range: Optional[Tuple[int, Optional[int]]] = ..., accumulate_in_double: bool = ...) -> None: ...
    def apply(self, W: npt.ArrayLike, subspace: Union[Subspace, npt.ArrayLike]) -> Tuple[Array, EditReport]: ...

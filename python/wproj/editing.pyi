from typing import Any, Literal, Optional, Tuple, Union, overload

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

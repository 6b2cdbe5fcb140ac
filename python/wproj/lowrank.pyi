from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

class LoraFactors:
    B: np.ndarray
    A: np.ndarray
    sigma: np.ndarray
    scale: float
    rank: int
    norm_sq: float
    error_sq: float
    randomized: bool
    @property
    def relative_error(self) -> float: ...

def extract(fine_tuned: Any, base: Any = ..., *, rank: Optional[int] = ..., energy: Optional[float] = ...,
            rel_error: Optional[float] = ..., sv_epsilon: Optional[float] = ..., max_rank: Optional[int] = ...,
            scale: float = ..., split: str = ..., solver: str = ..., seed: int = ..., oversampling: int = ...,
            power_iterations: int = ...) -> LoraFactors: ...
def apply(W: Any, B: Any, A: Any, scale: float = ..., *, transposed: bool = ...) -> np.ndarray: ...
def remove(W: Any, B: Any, A: Any, scale: float = ..., *, transposed: bool = ...) -> np.ndarray: ...
def spectrum(tau: Any, cap: int, *, seed: int = ...) -> Tuple[np.ndarray, float]: ...
def allocate_budget(spectra: Sequence[Tuple[Any, float]], bytes_per_rank: Sequence[int], budget: int, *,
                    min_rank: int = ..., force_greedy: bool = ...) -> Dict[str, Any]: ...

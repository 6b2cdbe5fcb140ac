from typing import Any, Callable, Dict, Iterable, Optional, Tuple, Union

import torch

_Params = Union[Iterable[torch.Tensor], Iterable[Dict[str, Any]]]

class GaLoreAdamW(torch.optim.Optimizer):
    def __init__(self, params: _Params, lr: float = ..., betas: Tuple[float, float] = ..., eps: float = ...,
                 weight_decay: float = ..., correct_bias: bool = ...) -> None: ...
    def step(self, closure: Optional[Callable[[], float]] = ...) -> Optional[float]: ...

class GaLoreAdafactor(torch.optim.Optimizer):
    def __init__(self, params: _Params, lr: Optional[float] = ..., eps: Tuple[float, float] = ...,
                 clip_threshold: float = ..., decay_rate: float = ..., beta1: Optional[float] = ...,
                 weight_decay: float = ..., scale_parameter: bool = ..., relative_step: bool = ...,
                 warmup_init: bool = ...) -> None: ...
    def step(self, closure: Optional[Callable[[], float]] = ...) -> Optional[float]: ...

class APOLLOAdamW(torch.optim.Optimizer):
    def __init__(self, params: _Params, lr: float = ..., betas: Tuple[float, float] = ..., eps: float = ...,
                 weight_decay: float = ..., correct_bias: bool = ...) -> None: ...
    def step(self, closure: Optional[Callable[[], float]] = ...) -> Optional[float]: ...

class Muon(torch.optim.Optimizer):
    def __init__(self, params: _Params, lr: float = ..., weight_decay: float = ..., momentum: float = ...,
                 nesterov: bool = ..., ns_steps: int = ..., scaling: str = ...) -> None: ...
    def step(self, closure: Optional[Callable[[], float]] = ...) -> Optional[float]: ...

import os
from typing import Any, Dict, Mapping, Optional, Union

import numpy.typing as npt

PathLike = Union[str, os.PathLike[str]]

def load_safetensors(path: PathLike) -> Dict[str, npt.NDArray[Any]]: ...
def safetensors_metadata(path: PathLike) -> Dict[str, str]: ...
def save_safetensors(path: PathLike, tensors: Mapping[str, npt.ArrayLike],
                     metadata: Optional[Mapping[str, str]] = ...) -> None: ...

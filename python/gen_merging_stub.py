"""Writes python/wproj/merging.pyi from the merge registry of a built module:
    PYTHONPATH=<build>/python /usr/bin/python3 python/gen_merging_stub.py > python/wproj/merging.pyi"""
import inspect, sys

sys.path.pop(0)  # this folder holds the source package, without the compiled module
from wproj import merging
lines = ['"""Type stubs of wproj.merging (generated from the merge registry; one function per method)."""',
         "from typing import Any, Callable, Dict, List, Optional, Sequence, Union", "",
         "import numpy.typing as npt", "",
         "Array = npt.NDArray[Any]", "Models = Sequence[npt.ArrayLike]", "PerModel = Union[float, Sequence[float]]", "",
         "REGISTRY: Dict[str, Dict[str, Any]]", "METHODS: Dict[str, Callable[..., Array]]", "",
         "def merge(method: str, base: Optional[npt.ArrayLike], models: Models, **params: Any) -> Array: ...", ""]
kinds = {"per-model": "PerModel", "scalar": "float", "integer": "int", "bool": "bool"}
for name in sorted(merging.METHODS):
    f = merging.METHODS[name]
    m = merging._lookup(name)
    specs = {merging._py_name(p["name"]): p for p in m["params"]}
    base = "npt.ArrayLike" if m["needs_base"] else ("Optional[npt.ArrayLike]" if m["accepts_base"] else "None")
    args = [f"base: {base}", "models: Models"]
    star = False
    for pn, P in inspect.signature(f).parameters.items():
        if pn in ("base", "models"):
            continue
        if not star:
            args.append("*")
            star = True
        t = "int" if pn == "seed" else kinds[specs[pn]["kind"]]
        args.append(f"{pn}: {t}" + (" = ..." if P.default is not inspect.Parameter.empty else ""))
    lines.append(f"def {name}({', '.join(args)}) -> Array: ...")
print("\n".join(lines))

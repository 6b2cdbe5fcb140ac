"""Model merging on arrays: one function per method of wproj's merge registry.

The functions are generated at import from the C++ registry (``wproj/merging/registry.hpp``), the
same table the ``wproj merge`` command reads: mergekit's methods with mergekit's names, parameters
and defaults (linear, slerp, nuslerp, multislerp, karcher, task_arithmetic, ties, dare_ties,
dare_linear (alias ``dare``), breadcrumbs, breadcrumbs_ties, della, della_linear, sce,
model_stock, nearswap, arcee_fusion, passthrough) and wproj's own (task_slerp, iso_c, iso_cts,
tsv, opcm).

Every function is ``f(base, models, *, <parameters>, seed=0)``:

- ``base``: the base weights θ₀ (2-D array), or ``None`` for the methods that do not need one;
- ``models``: a sequence of weights θ_i of the same shape (the base excluded);
- scalar parameters as numbers, flags as ``bool``, per-model parameters (``weight``,
  ``density``, ``gamma``, ``epsilon``) as one number for every model or a sequence of one number
  per model;
- ``seed`` (randomized methods only: dare_*, della*): the seed of the counter-based masks; the
  same seed gives the same result.

It returns the merged weights, float32 when every input is float32, float64 otherwise.
Invalid parameters, shapes or model counts raise ``ValueError`` naming the parameter.

``lambda`` is a Python keyword: pass it as ``lambda_=`` (or ``**{"lambda": x}``). The per-model
``weight`` that mergekit requires in its YAML files defaults to 1.0 for every model here.
"""

from __future__ import annotations

import inspect as _inspect
import math as _math
import warnings as _warnings

from . import _core

#: The registry as data: one dict per method (name, aliases, title, reference, params, needs_base,
#: accepts_base, randomized, elementwise, continual, min_models, max_models).
REGISTRY = {m["name"]: m for m in _core.merge_methods()}

# Spellings of the 0.1 Python functions, still accepted: (method, old keyword) -> new keyword
# (and a conversion of the value).
_OLD_KEYWORDS = {
    ("task_arithmetic", "scale"): ("lambda", None),
    ("ties", "scale"): ("lambda", None),
    ("dare_linear", "scale"): ("lambda", None),
    ("dare_linear", "drop_rate"): ("density", lambda p: 1.0 - float(p)),
    ("iso_c", "scale"): ("alpha", None),
    ("iso_cts", "scale"): ("alpha", None),
    ("tsv", "scale"): ("alpha", None),
}


def _py_name(name):
    """The Python keyword for a registry parameter (``lambda`` → ``lambda_``)."""
    return name + "_" if name in ("lambda",) else name


def _describe_param(p):
    kind = p["kind"]
    if p["required"]:
        default = "required" if p["name"] != "weight" else "default 1.0 per model (required in mergekit's YAML)"
    elif kind == "bool":
        default = f"default {bool(p['default'])}"
    elif kind == "per-model":
        default = f"default {p['default']:g} per model"
    else:
        default = f"default {p['default']:g}"
    kind_text = {"per-model": "float or sequence of floats (one per model)", "scalar": "float", "integer": "int",
                 "bool": "bool"}[kind]
    return f"{_py_name(p['name'])} : {kind_text}, {default}\n    {p['meaning']}; {p['expected']}."


def _docstring(m):
    lines = [m["title"][0].upper() + m["title"][1:] + ".", "", f"Registry method ``{m['name']}`` ({m['reference']})."]
    if m["aliases"]:
        lines.append("Also called: " + ", ".join(m["aliases"]) + ".")
    lines += ["", "Parameters", "----------"]
    if m["needs_base"]:
        lines.append("base : 2-D array\n    the base weights θ₀ (required).")
    elif m["accepts_base"]:
        lines.append("base : 2-D array or None\n    the base weights θ₀ (optional).")
    else:
        lines.append("base : None\n    the method takes no base model.")
    hi = m["max_models"]
    count = (f"exactly {hi}" if hi == m["min_models"] else
             f"at least {m['min_models']}" if hi is None else f"{m['min_models']} to {hi}")
    lines.append(f"models : sequence of 2-D arrays\n    {count} model(s), each the shape of the base.")
    for p in m["params"]:
        lines.append(_describe_param(p))
    if m["randomized"]:
        lines.append("seed : int, default 0\n    seed of the random masks (same seed, same result).")
    lines += ["", "Returns", "-------", "The merged weights (float32 when every input is float32, else float64).",
              "", "Raises", "------", "ValueError: a parameter out of range (the message names it), a shape mismatch,",
              "    a wrong number of models or a missing base."]
    return "\n".join(lines)


def _convert(method, params):
    """Python keywords → registry names and values; checks the names."""
    m = REGISTRY[method]
    names = {p["name"]: p for p in m["params"]}
    out = {}
    for key, value in params.items():
        name = key
        if key.endswith("_") and key[:-1] in names:
            name = key[:-1]
        elif (method, key) in _OLD_KEYWORDS:
            name, conv = _OLD_KEYWORDS[(method, key)]
            _warnings.warn(f"wproj.merging.{method}: '{key}' is the 0.1 spelling; use '{_py_name(name)}'",
                           DeprecationWarning, stacklevel=4)
            if conv is not None:
                value = conv(value)
        if name not in names:
            expected = ", ".join(_py_name(n) for n in names) or "none"
            raise ValueError(f"merge method '{method}': unknown parameter '{key}'; expected one of {expected}"
                             + (", seed" if m["randomized"] else ""))
        if name in out:
            raise ValueError(f"merge method '{method}': parameter '{name}' is given twice")
        if value is None:
            continue
        p = names[name]
        if p["kind"] == "bool":
            if not isinstance(value, (bool,)) and not (hasattr(value, "dtype") and value.dtype == bool):
                raise ValueError(f"merge method '{method}': argument '{_py_name(name)}' = {value!r}; expected True or False")
            value = bool(value)
        elif p["kind"] == "per-model":
            if isinstance(value, (str, bytes)):
                raise ValueError(f"merge method '{method}': argument '{name}' = {value!r}; expected a number or one number per model")
            value = [float(x) for x in value] if hasattr(value, "__iter__") else float(value)
        elif p["kind"] == "integer":
            if isinstance(value, bool) or float(value) != _math.floor(float(value)):
                raise ValueError(f"merge method '{method}': argument '{name}' = {value!r}; expected an integer")
            value = float(value)
        else:
            if isinstance(value, bool) or isinstance(value, (str, bytes)):
                raise ValueError(f"merge method '{method}': argument '{_py_name(name)}' = {value!r}; expected a number")
            value = float(value)
        out[name] = value
    # mergekit requires `weight` in its YAML; here it defaults to 1 for every model.
    if "weight" in names and names["weight"]["required"] and "weight" not in out:
        out["weight"] = 1.0
    return out


def merge(method, base, models, **params):
    """Merges ``models`` (and ``base``) with the registry method ``method`` (a name or an alias).

    ``params`` are the method's parameters (see the method's function, e.g. :func:`ties`, or
    ``REGISTRY[method]['params']``) and ``seed`` for the randomized methods. Returns the merged
    weights. ValueError for an unknown method or parameter, a value out of range, a shape
    mismatch, a wrong number of models or a missing base.
    """
    m = _lookup(method)
    seed = params.pop("seed", 0)
    if not m["randomized"] and seed != 0:
        raise ValueError(f"merge method '{m['name']}': argument 'seed' = {seed!r}; the method draws no random masks")
    if isinstance(seed, bool) or int(seed) != seed or int(seed) < 0:
        raise ValueError(f"merge method '{m['name']}': argument 'seed' = {seed!r}; expected an integer >= 0")
    models = list(models)
    return _core.merge_arrays(m["name"], base, models, _convert(m["name"], params), int(seed))


def _lookup(method):
    if method in REGISTRY:
        return REGISTRY[method]
    for m in REGISTRY.values():
        if method in m["aliases"]:
            return m
    raise ValueError(f"argument 'method' = {method!r}; expected one of {', '.join(REGISTRY)}")


def _make(m):
    name = m["name"]

    def f(base, models, **params):
        return merge(name, base, models, **params)

    P = _inspect.Parameter
    sig = [P("base", P.POSITIONAL_OR_KEYWORD), P("models", P.POSITIONAL_OR_KEYWORD)]
    for p in m["params"]:
        if p["required"] and p["name"] != "weight":
            default = P.empty
        elif p["name"] == "weight" and p["required"]:
            default = 1.0
        elif p["kind"] == "bool":
            default = bool(p["default"])
        elif p["kind"] == "integer":
            default = int(p["default"])
        else:
            default = p["default"]
        sig.append(P(_py_name(p["name"]), P.KEYWORD_ONLY, default=default))
    if m["randomized"]:
        sig.append(P("seed", P.KEYWORD_ONLY, default=0))
    f.__signature__ = _inspect.Signature(sig)
    f.__name__ = f.__qualname__ = name
    f.__doc__ = _docstring(m)
    f.__module__ = __name__
    return f


#: Name (and alias) → function, for every registry method.
METHODS = {}
for _m in REGISTRY.values():
    _f = _make(_m)
    globals()[_m["name"]] = _f
    METHODS[_m["name"]] = _f
    for _a in _m["aliases"]:
        globals()[_a] = _f
        METHODS[_a] = _f
del _m, _f

__all__ = sorted(METHODS) + ["METHODS", "REGISTRY", "merge"]

"""safetensors files: memory-mapped reading into NumPy, atomic writing.

``.npy`` files need nothing from wproj: use ``numpy.load`` / ``numpy.save``.
"""

from __future__ import annotations

import os

import numpy as _np

from . import _core

__all__ = ["load_safetensors", "save_safetensors", "safetensors_metadata"]

# safetensors dtype name → NumPy dtype (little-endian), for the dtypes NumPy has.
_TO_NUMPY = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?",
}
_FROM_NUMPY = {_np.dtype(v).str.replace("|", ""): k for k, v in _TO_NUMPY.items()}


def load_safetensors(path):
    """Reads a safetensors file into ``dict[str, numpy.ndarray]``.

    The file is memory-mapped once and validated (header, offsets, sizes). Tensors whose dtype
    NumPy has (F64, F32, F16, integers, BOOL) are **read-only views into the mapping**, not copies;
    every view's ``base`` chain holds the mapping, which stays alive as long as any view does.
    BF16 and FP8 tensors are converted (once) to float32 arrays. Malformed files raise OSError.
    """
    f = _core.SafetensorsFile(os.fspath(path))
    raw = _np.frombuffer(f, dtype=_np.uint8)  # read-only, base = the mapped file
    out = {}
    for name, dtype, shape, begin, end in f.tensors():
        if dtype in _TO_NUMPY:
            a = raw[begin:end].view(_np.dtype(_TO_NUMPY[dtype])).reshape(shape)
        elif dtype == "BF16":
            bits = raw[begin:end].view("<u2").astype(_np.uint32) << 16
            a = bits.view(_np.float32).reshape(shape)
        else:
            a = _np.ascontiguousarray(f.read_float32(name)).reshape(shape)
        out[name] = a
    return out


def safetensors_metadata(path):
    """The ``__metadata__`` of a safetensors file as ``dict[str, str]``."""
    return _core.SafetensorsFile(os.fspath(path)).metadata()


def save_safetensors(path, tensors, metadata=None):
    """Writes ``tensors`` (``dict[str, array_like]``) to ``path`` in the safetensors format.

    Atomic: the data goes to a temporary file in the same folder, which is renamed into place
    only when complete, so ``path`` never holds a partial file. Arrays are written in C order
    (others are copied once); supported dtypes: float64/32/16, (u)int8–64, bool. ``metadata``:
    ``dict[str, str]`` stored as ``__metadata__``. Raises TypeError (unsupported dtype),
    ValueError (bad names) or OSError (cannot write).
    """
    items = []
    for name, a in tensors.items():
        a = _np.ascontiguousarray(a)
        key = a.dtype.newbyteorder("<").str.replace("|", "") if a.dtype.byteorder != "|" else a.dtype.str.replace("|", "")
        if key not in _FROM_NUMPY:
            raise TypeError(f"save_safetensors: tensor {name!r} has dtype {a.dtype}; expected float64/32/16, "
                            "(u)int8-64 or bool")
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        items.append((str(name), _FROM_NUMPY[key], a))
    meta = [(str(k), str(v)) for k, v in (metadata or {}).items()]
    _core.save_safetensors(os.fspath(path), items, meta)
